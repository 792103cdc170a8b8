//! Persisted queries (Apollo's automatic persisted queries, issue 9): each
//! document registered by its SHA-256, kept in the database so that every
//! instance knows a hash any of them learned.

use sea_orm_migration::prelude::*;

use crate::run_sql;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE persisted_queries (
    sha256 TEXT PRIMARY KEY,
    query TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
"#;

const DOWN: &str = "DROP TABLE IF EXISTS persisted_queries;";

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_sql(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_sql(manager, DOWN).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
