//! Identifiers of stored records. Each is its own type, so a city's id
//! cannot be passed where an activity's is expected: the compiler refuses
//! `EventLog::append(activity, city)` written the wrong way round.
//! Storage converts at its edge (`CityId(row.city_id)`, `id.get()`); the
//! database columns stay plain integers.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// The database value.
            #[must_use]
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Database identifier of a member city.
    CityId
);
id_type!(
    /// Database identifier of an activity.
    ActivityId
);
id_type!(
    /// Database identifier of a city's connected calendar (a source).
    SourceId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_plain_integers() {
        assert_eq!(serde_json::to_string(&CityId(7)).expect("serialize"), "7");
        assert_eq!(
            serde_json::from_str::<ActivityId>("42").expect("deserialize"),
            ActivityId(42)
        );
        assert_eq!(CityId(3).to_string(), "3");
    }
}
