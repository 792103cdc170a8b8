//! Persisted queries: GraphQL documents registered by their SHA-256 (hex),
//! shared by every instance through the database.

use sea_orm::{ConnectionTrait, Statement};

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
    /// hash already registered keeps its document.
    pub async fn insert(
        db: &impl ConnectionTrait,
        sha256: &str,
        query: &str,
    ) -> Result<(), StorageError> {
        let backend = db.get_database_backend();
        db.execute_raw(Statement::from_sql_and_values(
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
        Ok(())
    }
}
