//! SQLite full-text search in the listing's order: the FTS5 index is keyed
//! by `(start_key << 36) | id`, so its own rowid order is the listing's
//! `ORDER BY start_key DESC, id DESC`, and a search page stops after its
//! rows instead of reading every match; plus `search_vocab`, every word
//! the index holds, so a prefix term expands to the exact words it covers.
//!
//! Before, `activity_fts` was keyed by the activity's id: a search for a
//! common word built the set of all its matches (76,053 of 100,000 for
//! "sustainable development"), and each prefix term (`"design"*`) merged
//! the doclists of every word it covers before returning the first row.
//! The page statement took 1.3–44 ms at 100k activities; the new one
//! 0.15–0.36 ms for the same rows in the same order (BENCHMARKS.md).
//!
//! - `activity_search` is contentless (`content=''`) with
//!   `contentless_delete=1` (SQLite ≥ 3.43): the text is in `activities`;
//!   the index keeps only the words, and rows are deleted by key.
//! - `search_vocab` is kept by the same triggers (a word is never removed:
//!   a word no row holds any more expands to a term that matches nothing).
//!   The search text is folded words separated by single spaces
//!   (`text::search_document`), split here as a JSON array; a quote or
//!   backslash, which that text never holds, is escaped all the same, so
//!   no row can make the split fail.
//! - `start_key` is `yyyymmdd` (< 2^27) and an id is below 2^36, so the key
//!   fits a positive 64-bit rowid.
//!
//! Expand, backfill and contract in one step (the old index and its
//! triggers go); down rebuilds the old index from the rows. PostgreSQL is
//! unchanged: its GIN-indexed `tsvector` has no such order.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE IF NOT EXISTS search_vocab (term TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS activity_search USING fts5 (search_text, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
INSERT INTO activity_search (rowid, search_text) SELECT (start_key << 36) | id, search_text FROM activities;
INSERT OR IGNORE INTO search_vocab (term) SELECT w.value FROM activities a, json_each('["' || replace(replace(replace(a.search_text, '\', '\\'), '"', '\"'), ' ', '","') || '"]') w WHERE w.value <> '';
DROP TRIGGER IF EXISTS activities_fts_insert;
DROP TRIGGER IF EXISTS activities_fts_delete;
DROP TRIGGER IF EXISTS activities_fts_update;
DROP TABLE IF EXISTS activity_fts;
CREATE TRIGGER IF NOT EXISTS activities_search_insert AFTER INSERT ON activities BEGIN
    INSERT INTO activity_search (rowid, search_text) VALUES ((new.start_key << 36) | new.id, new.search_text);
    INSERT OR IGNORE INTO search_vocab (term) SELECT value FROM json_each('["' || replace(replace(replace(new.search_text, '\', '\\'), '"', '\"'), ' ', '","') || '"]') WHERE value <> '';
END;
CREATE TRIGGER IF NOT EXISTS activities_search_delete AFTER DELETE ON activities BEGIN
    DELETE FROM activity_search WHERE rowid = (old.start_key << 36) | old.id;
END;
CREATE TRIGGER IF NOT EXISTS activities_search_update AFTER UPDATE OF search_text, start_key ON activities BEGIN
    DELETE FROM activity_search WHERE rowid = (old.start_key << 36) | old.id;
    INSERT INTO activity_search (rowid, search_text) VALUES ((new.start_key << 36) | new.id, new.search_text);
    INSERT OR IGNORE INTO search_vocab (term) SELECT value FROM json_each('["' || replace(replace(replace(new.search_text, '\', '\\'), '"', '\"'), ' ', '","') || '"]') WHERE value <> '';
END;
"#;

/// The initial migration's index and triggers, rebuilt from the rows.
const DOWN: &str = r#"
DROP TRIGGER IF EXISTS activities_search_insert;
DROP TRIGGER IF EXISTS activities_search_delete;
DROP TRIGGER IF EXISTS activities_search_update;
DROP TABLE IF EXISTS activity_search;
DROP TABLE IF EXISTS search_vocab;
CREATE VIRTUAL TABLE IF NOT EXISTS activity_fts USING fts5 (search_text, content='activities', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
INSERT INTO activity_fts (activity_fts) VALUES ('rebuild');
CREATE TRIGGER IF NOT EXISTS activities_fts_insert AFTER INSERT ON activities BEGIN
    INSERT INTO activity_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER IF NOT EXISTS activities_fts_delete AFTER DELETE ON activities BEGIN
    INSERT INTO activity_fts (activity_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER IF NOT EXISTS activities_fts_update AFTER UPDATE OF search_text ON activities BEGIN
    INSERT INTO activity_fts (activity_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
    INSERT INTO activity_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
"#;

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            crate::run_sql(manager, UP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Sqlite {
            crate::run_sql(manager, DOWN).await?;
        }
        Ok(())
    }
}
