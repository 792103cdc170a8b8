//! Global object identification: the `Node` interface and its opaque
//! global ids.
//!
//! The contract fixes `id` on `City`, `Activity` and `Document` as each
//! table's own number (clients pass it to `activity(id:)`,
//! `updateActivity(id:)`, federation keys, calendar UIDs), so `City` "1"
//! and `Activity` "1" share a value. Changing `id` would break every
//! client; instead each of them also has `globalId`, unique across types,
//! which `node(id:)` and `nodes(ids:)` accept: the interface is
//! `Node { globalId: ID! }` (Relay's compiler takes it with
//! `nodeInterfaceIdField: "globalId"`).
//!
//! A global id is the URL-safe base64 (no padding) of `City:<id>`,
//! `Activity:<id>` or `Document:<activity id>:<id>` (a document is read
//! through its activity, whose visibility it shares). Clients must treat it
//! as opaque.

use async_graphql::{ID, Interface};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cityhub_domain::{ActivityId, CityId};

use crate::error::bad_input;
use crate::objects::activity::{ActivityObject, DocumentObject};
use crate::objects::city::CityObject;

/// An object with a global id, unique across every type of the schema.
#[expect(
    clippy::large_enum_variant,
    reason = "one short-lived value per node a request resolves; boxing the activity would only add an allocation"
)]
#[derive(Interface)]
#[graphql(
    name = "Node",
    field(
        name = "global_id",
        ty = "ID",
        desc = "Opaque id unique across every type of the schema, for `node(id:)`, `nodes(ids:)` and normalised client caches (Relay: `nodeInterfaceIdField: \"globalId\"`). `id` stays the type's own id."
    )
)]
pub enum Node {
    /// A member city.
    City(CityObject),
    /// An activity.
    Activity(ActivityObject),
    /// A document of an activity.
    Document(DocumentObject),
}

/// What a global id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalId {
    /// A member city.
    City(CityId),
    /// An activity.
    Activity(ActivityId),
    /// A document, and the activity it belongs to.
    Document {
        /// The activity whose visibility the document shares.
        activity: ActivityId,
        /// The document's own id.
        document: i64,
    },
}

impl GlobalId {
    /// The opaque text of this id.
    pub fn encode(self) -> ID {
        let plain = match self {
            GlobalId::City(id) => format!("City:{}", id.get()),
            GlobalId::Activity(id) => format!("Activity:{}", id.get()),
            GlobalId::Document { activity, document } => {
                format!("Document:{}:{document}", activity.get())
            }
        };
        ID(URL_SAFE_NO_PAD.encode(plain))
    }

    /// Reads a global id; `None` when `id` is not one this hub gave.
    pub fn decode(id: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
        let plain = std::str::from_utf8(&bytes).ok()?;
        let positive = |n: &str| n.parse::<i64>().ok().filter(|n| *n > 0);
        let mut parts = plain.split(':');
        let found = match (parts.next()?, parts.next()?) {
            ("City", n) => GlobalId::City(CityId(positive(n)?)),
            ("Activity", n) => GlobalId::Activity(ActivityId(positive(n)?)),
            ("Document", activity) => GlobalId::Document {
                activity: ActivityId(positive(activity)?),
                document: positive(parts.next()?)?,
            },
            _ => return None,
        };
        parts.next().is_none().then_some(found)
    }

    /// Reads argument `field`, refusing what is not a global id of this
    /// hub (`BAD_USER_INPUT`, `extensions.field` naming the argument).
    pub fn parse_arg(id: &ID, field: &str) -> async_graphql::Result<Self> {
        Self::decode(id.as_str()).ok_or_else(|| {
            bad_input(
                field,
                format!(
                    "'{}' is not a global id of this hub (take it from a `globalId` field)",
                    id.as_str()
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_ids_round_trip_and_differ_across_types() {
        let ids = [
            GlobalId::City(CityId(1)),
            GlobalId::Activity(ActivityId(1)),
            GlobalId::Document {
                activity: ActivityId(1),
                document: 1,
            },
        ];
        let texts: Vec<ID> = ids.iter().map(|id| id.encode()).collect();
        for (id, text) in ids.iter().zip(&texts) {
            assert_eq!(GlobalId::decode(text.as_str()), Some(*id));
        }
        assert_ne!(texts[0], texts[1]);
        assert_ne!(texts[1], texts[2]);
        assert_eq!(texts[1].as_str(), "QWN0aXZpdHk6MQ");
    }

    #[test]
    fn anything_else_is_not_a_global_id() {
        for text in [
            "1",
            "",
            "QWN0aXZpdHk6MQ==",
            &URL_SAFE_NO_PAD.encode("Activity:0"),
            &URL_SAFE_NO_PAD.encode("Activity:-3"),
            &URL_SAFE_NO_PAD.encode("Activity:1:2"),
            &URL_SAFE_NO_PAD.encode("Document:1"),
            &URL_SAFE_NO_PAD.encode("Token:1"),
            &URL_SAFE_NO_PAD.encode("City:x"),
        ] {
            assert_eq!(GlobalId::decode(text), None, "{text}");
        }
    }
}
