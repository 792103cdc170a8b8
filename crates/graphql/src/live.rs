//! What the WebSocket transport (`ws`) and the `activityEvents` stream
//! tell each other: [`StartAt`] tells a stream where to start, and
//! [`StreamTap`] lets the transport learn which event each result belongs
//! to, so it can run one stream per group of identical subscriptions and
//! share its serialized results.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where a stream without `after` starts: the log head read when the
/// client subscribed (request data set by the transport). Without it, the
/// head is read when the stream starts.
#[derive(Debug, Clone, Copy)]
pub struct StartAt(pub i64);

/// What a stream has consumed and yielded (request data set by the
/// transport): `consumed` is the highest sequence read (delivered or
/// not), `yielded` the sequence of the last result handed out
/// (`i64::MAX` for an error that ends the stream, and until the first
/// event: a result before any event is an error).
#[derive(Debug)]
pub struct StreamTap {
    /// Highest sequence the stream has read.
    pub consumed: AtomicI64,
    /// Sequence of the last result yielded.
    pub yielded: AtomicI64,
}

impl Default for StreamTap {
    fn default() -> Self {
        Self {
            consumed: AtomicI64::new(0),
            yielded: AtomicI64::new(i64::MAX),
        }
    }
}

impl StreamTap {
    pub(crate) fn consume(tap: &Option<Arc<StreamTap>>, seq: i64) {
        if let Some(t) = tap {
            t.consumed.fetch_max(seq, Ordering::SeqCst);
        }
    }

    pub(crate) fn yielding(tap: &Option<Arc<StreamTap>>, seq: i64) {
        if let Some(t) = tap {
            t.yielded.store(seq, Ordering::SeqCst);
        }
    }
}

/// Why a subscriber that fell behind the instance's buffer was closed.
pub const FELL_BEHIND: &str = "this subscriber fell too far behind and was closed; resubscribe with `after` set to the last cursor received";
