//! The data version: what the response cache and `ETag`s are keyed by. It
//! changes with any change a read can see — every activity write appends to
//! the event log, and `hub_meta.cities_version` moves with every city write
//! (by a trigger) — so a version read after a write committed is never the
//! version of an earlier state.
//!
//! On PostgreSQL writers commit out of sequence order (see migration
//! `m20261201_000003_event_order`), so the log's plain maximum would miss
//! an event committed below it. There the version is the maximum AND the
//! number of events in the log: a commit adds at least one event, so the
//! count grows even when its sequence lands below the maximum. Both depend
//! only on what is committed, never on the read horizon (which moves with
//! other databases' transactions on the same server), so an unchanged
//! database keeps its version and its `ETag`s. The count is an index-only
//! scan of the log, run once per database round trip for all waiting
//! requests (`app::cache::VersionGate`).

use sea_orm::{ConnectionTrait, Statement};

use crate::error::StorageError;

/// A point in the history of the readable data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataVersion {
    /// The event log's newest sequence number.
    pub events: i64,
    /// How many events the log holds (PostgreSQL; 0 on SQLite, whose
    /// sequence is commit-ordered).
    pub events_count: i64,
    /// How many city writes there were.
    pub cities: i64,
}

/// Repository of the data version.
pub struct VersionRepo;

impl VersionRepo {
    /// The current data version (one statement, a few index probes).
    pub async fn current(db: &impl ConnectionTrait) -> Result<DataVersion, StorageError> {
        let backend = db.get_database_backend();
        let sql = if backend == sea_orm::DatabaseBackend::Postgres {
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM activity_events) AS events, \
             (SELECT COUNT(*) FROM activity_events) AS events_count, \
             (SELECT COALESCE(MAX(value), 0) FROM hub_meta WHERE key = 'cities_version') AS cities"
        } else {
            "SELECT (SELECT COALESCE(MAX(seq), 0) FROM activity_events) AS events, \
             0 AS events_count, \
             (SELECT COALESCE(MAX(value), 0) FROM hub_meta WHERE key = 'cities_version') AS cities"
        };
        let row = db
            .query_one_raw(Statement::from_string(backend, sql))
            .await?;
        Ok(match row {
            Some(r) => DataVersion {
                events: r.try_get::<i64>("", "events")?,
                events_count: r.try_get::<i64>("", "events_count")?,
                cities: r.try_get::<i64>("", "cities")?,
            },
            None => DataVersion {
                events: 0,
                events_count: 0,
                cities: 0,
            },
        })
    }
}
