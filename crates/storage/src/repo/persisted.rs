//! Persisted queries: GraphQL documents registered by their SHA-256 (hex),
//! shared by every instance through the database.

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

use crate::db::ReadConnection;
use crate::error::StorageError;
use crate::time::now_micros;

/// Repository of persisted queries.
pub struct PersistedQueryRepo;

/// How much the table keeps: the newest documents within both bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    /// Most documents.
    pub documents: u64,
    /// Most bytes of document text.
    pub bytes: u64,
}

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
    /// hash already registered keeps its document. Only the newest
    /// documents within `keep` (a count and a total of bytes) stay:
    /// registering past either drops the oldest, whose clients get
    /// `PERSISTED_QUERY_NOT_FOUND` and register it again (the protocol's
    /// own recovery), so a client that floods the table cannot stop new
    /// documents from being registered, nor grow it without bound.
    pub async fn insert(
        db: &impl ConnectionTrait,
        sha256: &str,
        query: &str,
        keep: Keep,
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
        // Everything past the newest `keep.documents`, or past
        // `keep.bytes` counted from the newest (ties broken by hash).
        let bytes = match backend {
            DatabaseBackend::Postgres => "octet_length(query)",
            _ => "length(CAST(query AS BLOB))",
        };
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            format!(
                "DELETE FROM persisted_queries WHERE sha256 IN (SELECT sha256 FROM (\
                 SELECT sha256, \
                 ROW_NUMBER() OVER (ORDER BY created_at DESC, sha256 DESC) AS n, \
                 SUM({bytes}) OVER (ORDER BY created_at DESC, sha256 DESC \
                 ROWS UNBOUNDED PRECEDING) AS total \
                 FROM persisted_queries) AS ranked WHERE n > {} OR total > {})",
                super::mark(backend, 1),
                super::mark(backend, 2),
            ),
            [
                i64::try_from(keep.documents).unwrap_or(i64::MAX).into(),
                i64::try_from(keep.bytes).unwrap_or(i64::MAX).into(),
            ],
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
