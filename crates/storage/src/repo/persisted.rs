//! Persisted queries: GraphQL documents registered by their SHA-256 (hex),
//! shared by every instance through the database.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use crate::db::ReadConnection;
use crate::error::StorageError;
use crate::time::now_micros;

/// Repository of persisted queries.
pub struct PersistedQueryRepo;

impl PersistedQueryRepo {
    /// The document registered under `sha256`, if any.
    pub async fn find(
        db: &impl ConnectionTrait,
        sha256: &str,
    ) -> Result<Option<String>, StorageError> {
        let backend = db.get_database_backend();
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "SELECT query FROM persisted_queries WHERE sha256 = {}",
                    super::mark(backend, 1)
                ),
                [sha256.into()],
            ))
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String>("", "query")?),
            None => None,
        })
    }

    /// Registers `query` under `sha256` (the caller checked the hash); a
    /// hash already registered keeps its document. At most `keep`
    /// documents stay: registering one more drops the oldest, whose
    /// clients get `PERSISTED_QUERY_NOT_FOUND` and register it again (the
    /// protocol's own recovery), so a client that floods the table cannot
    /// stop new documents from being registered.
    pub async fn insert(
        db: &impl ConnectionTrait,
        sha256: &str,
        query: &str,
        keep: u64,
    ) -> Result<(), StorageError> {
        let backend = db.get_database_backend();
        let inserted = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                format!(
                    "INSERT INTO persisted_queries (sha256, query, created_at) VALUES ({}, {}, {}) \
                 ON CONFLICT (sha256) DO NOTHING",
                    super::mark(backend, 1),
                    super::mark(backend, 2),
                    super::mark(backend, 3)
                ),
                [sha256.into(), query.into(), now_micros().into()],
            ))
            .await?;
        if inserted.rows_affected() == 0 {
            return Ok(());
        }
        // Everything past the newest `keep` (ties broken by hash).
        let beyond = match backend {
            DatabaseBackend::Postgres => "OFFSET $1",
            _ => "LIMIT -1 OFFSET ?",
        };
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "DELETE FROM persisted_queries WHERE sha256 IN (SELECT sha256 FROM \
                 persisted_queries ORDER BY created_at DESC, sha256 DESC {beyond})"
            ),
            [i64::try_from(keep).unwrap_or(i64::MAX).into()],
        ))
        .await?;
        Ok(())
    }

    /// How many documents are registered.
    pub async fn count(db: &impl ReadConnection) -> Result<u64, StorageError> {
        super::count(
            db,
            Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM persisted_queries",
            ),
        )
        .await
    }
}
