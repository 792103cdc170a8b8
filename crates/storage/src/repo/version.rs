//! The data version: what the response cache and `ETag`s are keyed by. It
//! changes in the same transaction as any change a read can see — the event
//! log's head moves with every activity write (in commit order on
//! PostgreSQL), and `hub_meta.cities_version` with every city write (by a
//! trigger) — so a version read after a write committed is never the
//! version of an earlier state.

use sea_orm::{ConnectionTrait, Statement};

use crate::error::StorageError;

/// A point in the history of the readable data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataVersion {
    /// The event log's newest sequence number.
    pub events: i64,
    /// How many city writes there were.
    pub cities: i64,
}

/// Repository of the data version.
pub struct VersionRepo;

impl VersionRepo {
    /// The current data version (one statement, two index probes).
    pub async fn current(db: &impl ConnectionTrait) -> Result<DataVersion, StorageError> {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT (SELECT COALESCE(MAX(seq), 0) FROM activity_events) AS events, \
                 (SELECT COALESCE(MAX(value), 0) FROM hub_meta WHERE key = 'cities_version') AS cities",
            ))
            .await?;
        Ok(match row {
            Some(r) => DataVersion {
                events: r.try_get::<i64>("", "events")?,
                cities: r.try_get::<i64>("", "cities")?,
            },
            None => DataVersion {
                events: 0,
                cities: 0,
            },
        })
    }
}
