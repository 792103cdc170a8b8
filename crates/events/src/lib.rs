//! cityhub's live events. Every change appends a row to the durable event
//! log in its own transaction; this crate turns that log into live
//! deliveries: one pump per instance reads new events in sequence order
//! (woken by local commits, by PostgreSQL `NOTIFY` from any instance, and
//! by a periodic poll that covers lost notifications), loads each event's
//! activity and relations once, and broadcasts it to the instance's
//! subscribers. It also prunes the log and counts connections and
//! subscribers. The GraphQL layer only sees [`EventBus`], [`LiveEvent`],
//! [`EventFilter`] matching and the cursor helpers.

mod bus;
mod filter;
mod live;

pub use bus::{ConnectionGuard, EventBus, EventSettings, SubscriberGuard};
pub use filter::{EventFilter, visible};
pub use live::{LiveEvent, Related, load_live};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes a log sequence as an opaque cursor.
pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("ev:{seq}"))
}

/// Decodes an event cursor.
pub fn decode_cursor(text: &str) -> Option<i64> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    raw.strip_prefix("ev:")?
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("nope"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("ev:-1")), None);
    }
}
