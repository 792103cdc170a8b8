//! Bulk writes for loading the benchmark's synthetic network: relations of
//! many activities written in a few multi-row statements, inside a
//! transaction the caller begins. Bench-only, so it lives here and not in
//! the production storage crate.

use cityhub_domain::{ActivityId, CityId};
use sea_orm::{ConnectionTrait, EntityTrait, Set};

use cityhub_storage::StorageError;
use cityhub_storage::entities::activity_city;

/// Role of a participant city in `activity_cities` (as `ActivityRepo` writes it).
const PARTICIPANT: &str = "PARTICIPANT";

/// Rows per multi-row `INSERT`: four values each, well under SQLite's
/// limit on bound parameters.
const CHUNK: usize = 1_000;

/// Repository of bulk writes.
pub struct BulkRepo;

impl BulkRepo {
    /// Adds participant cities to freshly inserted activities, in order
    /// (positions 0, 1, …), in a few multi-row inserts. Each list must not
    /// repeat a city; the activities must have no participants yet.
    /// Returns how many rows were written.
    pub async fn add_participants(
        db: &impl ConnectionTrait,
        participants: &[(ActivityId, Vec<CityId>)],
    ) -> Result<u64, StorageError> {
        let rows: Vec<activity_city::ActiveModel> = participants
            .iter()
            .flat_map(|(activity, cities)| {
                cities
                    .iter()
                    .enumerate()
                    .map(move |(i, city)| activity_city::ActiveModel {
                        activity_id: Set(activity.get()),
                        role: Set(PARTICIPANT.to_owned()),
                        city_id: Set(city.get()),
                        position: Set(i32::try_from(i).unwrap_or(i32::MAX)),
                    })
            })
            .collect();
        let written = rows.len() as u64;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<_> = rows.by_ref().take(CHUNK).collect();
            activity_city::Entity::insert_many(chunk)
                .exec_without_returning(db)
                .await?;
        }
        Ok(written)
    }

    /// Records a generated batch in the audit log, as every write of the
    /// hub ends with its audit row: on SQLite that row is also where the
    /// kept counts of the batch's activities are refreshed, once
    /// (migration `m20261206_000002_stats_refresh_once`).
    pub async fn audit_generated(
        db: &impl ConnectionTrait,
        from: usize,
        to: usize,
    ) -> Result<(), StorageError> {
        let backend = db.get_database_backend();
        let (at, target) = match backend {
            sea_orm::DatabaseBackend::Postgres => ("$1", "$2"),
            _ => ("?", "?"),
        };
        db.execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO audit_log (at, actor, action, target_type, target_id) \
                 VALUES ({at}, 'bench', 'generateActivities', 'activities', {target})"
            ),
            [
                chrono::Utc::now().timestamp_micros().into(),
                format!("{from}..{to}").into(),
            ],
        ))
        .await?;
        Ok(())
    }
}
