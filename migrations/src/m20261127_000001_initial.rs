//! The initial schema: cities, activities and their relations, documents,
//! full-text search, tokens and signing keys, the audit trail, the event log
//! and idempotency records.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

use crate::run_sql;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COMMON: &str = r#"
CREATE TABLE cities (
    id {pk},
    slug {ctext} NOT NULL UNIQUE,
    name TEXT NOT NULL,
    name_key {ctext} NOT NULL,
    country TEXT NOT NULL,
    fields TEXT NOT NULL,
    member_since INTEGER NOT NULL,
    website TEXT,
    latitude DOUBLE PRECISION,
    longitude DOUBLE PRECISION,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX cities_name_key ON cities (name_key, id);
CREATE INDEX cities_country ON cities (country);
CREATE TABLE city_fields (
    city_id BIGINT NOT NULL REFERENCES cities (id) ON DELETE CASCADE,
    field TEXT NOT NULL,
    PRIMARY KEY (city_id, field)
);
CREATE INDEX city_fields_field ON city_fields (field, city_id);

CREATE TABLE activities (
    id {pk},
    slug {ctext} NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    title TEXT NOT NULL,
    title_key {ctext} NOT NULL,
    summary TEXT,
    description TEXT,
    start_date DATE,
    end_date DATE,
    date_precision TEXT NOT NULL,
    start_key INTEGER NOT NULL,
    end_key INTEGER NOT NULL,
    venue TEXT,
    venue_city_id BIGINT REFERENCES cities (id),
    organizations TEXT NOT NULL,
    fields TEXT NOT NULL,
    themes TEXT NOT NULL,
    objectives TEXT NOT NULL,
    published_by BIGINT REFERENCES cities (id),
    published_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version INTEGER NOT NULL,
    cancel_reason TEXT,
    deleted_at BIGINT,
    search_text TEXT NOT NULL
);
CREATE INDEX activities_by_start ON activities (status, start_key, id) WHERE deleted_at IS NULL;
CREATE INDEX activities_by_updated ON activities (status, updated_at, id) WHERE deleted_at IS NULL;
CREATE INDEX activities_by_title ON activities (status, title_key, id) WHERE deleted_at IS NULL;
CREATE INDEX activities_by_kind ON activities (kind, start_key, id) WHERE deleted_at IS NULL;
CREATE INDEX activities_venue_city ON activities (venue_city_id);
CREATE INDEX activities_published_by ON activities (published_by);

CREATE TABLE activity_cities (
    activity_id BIGINT NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    city_id BIGINT NOT NULL REFERENCES cities (id),
    role TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (activity_id, role, city_id)
);
CREATE INDEX activity_cities_city ON activity_cities (city_id, activity_id);
CREATE TABLE activity_fields (
    activity_id BIGINT NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    field TEXT NOT NULL,
    PRIMARY KEY (activity_id, field)
);
CREATE INDEX activity_fields_field ON activity_fields (field, activity_id);
CREATE TABLE activity_themes (
    activity_id BIGINT NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    theme_key TEXT NOT NULL,
    PRIMARY KEY (activity_id, theme_key)
);
CREATE INDEX activity_themes_theme ON activity_themes (theme_key, activity_id);

CREATE TABLE documents (
    id {pk},
    activity_id BIGINT NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    url TEXT,
    issued_on DATE,
    issued_precision TEXT NOT NULL,
    editors TEXT NOT NULL
);
CREATE INDEX documents_activity ON documents (activity_id, position);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_der {bytes} NOT NULL,
    public_x TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    city_id BIGINT REFERENCES cities (id),
    label TEXT,
    kid TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX tokens_subject ON tokens (subject);

CREATE TABLE audit_log (
    id {pk},
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    version_before INTEGER,
    version_after INTEGER,
    detail TEXT
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, id);

CREATE TABLE activity_events (
    seq {pk},
    activity_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    actor_city_id BIGINT,
    status TEXT NOT NULL,
    published_by BIGINT
);
CREATE INDEX activity_events_time ON activity_events (occurred_at);

CREATE TABLE hub_meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE idempotency_keys (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    activity_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (actor, key)
);
"#;

/// SQLite: an FTS5 index over the folded search text, kept in step by triggers.
const SQLITE_FTS: &str = r#"
CREATE VIRTUAL TABLE activity_fts USING fts5 (search_text, content='activities', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER activities_fts_insert AFTER INSERT ON activities BEGIN
    INSERT INTO activity_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
CREATE TRIGGER activities_fts_delete AFTER DELETE ON activities BEGIN
    INSERT INTO activity_fts (activity_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
END;
CREATE TRIGGER activities_fts_update AFTER UPDATE OF search_text ON activities BEGIN
    INSERT INTO activity_fts (activity_fts, rowid, search_text) VALUES ('delete', old.id, old.search_text);
    INSERT INTO activity_fts (rowid, search_text) VALUES (new.id, new.search_text);
END;
"#;

/// PostgreSQL: a generated tsvector over the folded search text, GIN-indexed.
const POSTGRES_FTS: &str = r#"
ALTER TABLE activities ADD COLUMN search tsvector GENERATED ALWAYS AS (to_tsvector('simple', search_text)) STORED;
CREATE INDEX activities_search ON activities USING GIN (search);
"#;

const DOWN: &str = r#"
DROP TABLE IF EXISTS idempotency_keys;
DROP TABLE IF EXISTS hub_meta;
DROP TABLE IF EXISTS activity_events;
DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS tokens;
DROP TABLE IF EXISTS signing_keys;
DROP TABLE IF EXISTS documents;
DROP TABLE IF EXISTS activity_themes;
DROP TABLE IF EXISTS activity_fields;
DROP TABLE IF EXISTS activity_cities;
DROP TABLE IF EXISTS activity_fts;
DROP TABLE IF EXISTS activities;
DROP TABLE IF EXISTS city_fields;
DROP TABLE IF EXISTS cities;
"#;

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_sql(manager, COMMON).await?;
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => run_sql(manager, POSTGRES_FTS).await,
            _ => run_sql(manager, SQLITE_FTS).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_sql(manager, DOWN).await
    }

    fn use_transaction(&self) -> Option<bool> {
        // SQLite's DDL is transactional too: a failed step leaves nothing.
        Some(true)
    }
}
