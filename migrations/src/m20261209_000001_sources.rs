//! Sources (issue 21): a city connects the calendars it already publishes
//! (iCalendar feeds, pages with schema.org `Event` JSON-LD) and the hub
//! imports their events as activities.
//!
//! - `sources`: one row per connected calendar, with its run state (last
//!   run, status, error, the validators of the last answer and the hash of
//!   the last body read) and its schedule (`next_run_at`, `failures` for
//!   the back-off, and a lease `lease_until`/`lease_owner` so that one
//!   instance at a time fetches it). Times are microseconds since the
//!   epoch, as elsewhere.
//! - `source_items`: the identity of an imported item — (source, key),
//!   the key being the iCalendar `UID` (with the `RECURRENCE-ID` of an
//!   instance) or the JSON-LD `@id`/`url` — and the activity it became,
//!   with the hash of its content (a re-run writes only what changed) and
//!   the item's own page. `gone` marks an item that left its feed (its
//!   activity was cancelled if upcoming, or left as it was if past);
//!   `detached` an activity its city made its own (`detachFromSource`):
//!   the item keeps its identity, so later runs leave it alone.
//! - `source_skipped`: why the items of the last run that were not
//!   imported were skipped.
//! - `activities` gains the columns of timed activities: local start and
//!   end time (`HH:MM`), the IANA zone, and the UTC instants they make.
//!
//! Expand only; down drops what up added.

use sea_orm_migration::prelude::*;

use crate::run_sql;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
CREATE TABLE sources (
    id {pk},
    city_id BIGINT NOT NULL REFERENCES cities (id),
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    defaults TEXT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    last_run_at BIGINT,
    last_change_at BIGINT,
    last_status TEXT NOT NULL,
    last_error TEXT,
    etag TEXT,
    last_modified TEXT,
    body_hash TEXT,
    next_run_at BIGINT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    lease_until BIGINT,
    lease_owner TEXT,
    UNIQUE (city_id, url)
);
CREATE INDEX sources_due ON sources (next_run_at);
CREATE TABLE source_items (
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    item_key TEXT NOT NULL,
    city_id BIGINT NOT NULL REFERENCES cities (id),
    activity_id BIGINT NOT NULL REFERENCES activities (id) ON DELETE CASCADE,
    content_hash TEXT NOT NULL,
    item_url TEXT,
    gone BOOLEAN NOT NULL DEFAULT FALSE,
    detached BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (source_id, item_key)
);
CREATE UNIQUE INDEX source_items_activity ON source_items (activity_id);
CREATE INDEX source_items_city_key ON source_items (city_id, item_key);
CREATE TABLE source_skipped (
    source_id BIGINT NOT NULL REFERENCES sources (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    uid TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (source_id, position)
);
ALTER TABLE activities ADD COLUMN start_time TEXT;
ALTER TABLE activities ADD COLUMN end_time TEXT;
ALTER TABLE activities ADD COLUMN time_zone TEXT;
ALTER TABLE activities ADD COLUMN starts_at BIGINT;
ALTER TABLE activities ADD COLUMN ends_at BIGINT;
"#;

const DOWN: &str = r#"
ALTER TABLE activities DROP COLUMN ends_at;
ALTER TABLE activities DROP COLUMN starts_at;
ALTER TABLE activities DROP COLUMN time_zone;
ALTER TABLE activities DROP COLUMN end_time;
ALTER TABLE activities DROP COLUMN start_time;
DROP TABLE IF EXISTS source_skipped;
DROP INDEX IF EXISTS source_items_city_key;
DROP INDEX IF EXISTS source_items_activity;
DROP TABLE IF EXISTS source_items;
DROP INDEX IF EXISTS sources_due;
DROP TABLE IF EXISTS sources;
"#;

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The same SQL on both backends.
        run_sql(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_sql(manager, DOWN).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
