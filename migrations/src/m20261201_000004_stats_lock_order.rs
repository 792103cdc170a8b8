//! Kept counts without deadlocks (PostgreSQL): the `stats_pairs` counter
//! rows are now locked in one fixed order by every writer.
//!
//! Before, each trigger refreshed its activity's counts at once, in the
//! order a hash aggregate produced the pair rows, and one write ran several
//! refreshes (the activity row, then its fields, then its cities), each
//! locking a different subset of pair rows. Two concurrent writers could
//! therefore take two counter rows in opposite orders and deadlock (the
//! write was retried). Now:
//!
//! - the triggers only note the activity in `stats_pending` (a row the
//!   transaction itself deletes again before it commits, so no other
//!   transaction ever sees it);
//! - one deferred constraint trigger refreshes every noted activity once, at
//!   commit, after every other lock the transaction takes;
//! - that refresh locks the activities' facts, inserts facts, and upserts
//!   pair rows each sorted by their primary key.
//!
//! Every transaction thus takes counter rows last and in primary-key order,
//! so no two can wait on each other in a cycle. The counts are the same as
//! before (the refresh is the same idempotent computation, run once).
//!
//! SQLite needs nothing: its writers never hold row locks concurrently (one
//! writer at a time holds the database lock), so up and down do nothing
//! there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The refresh of the activities `ids`, every lock in a fixed order.
const REFRESH_ORDERED: &str = r#"
CREATE OR REPLACE FUNCTION stats_refresh(ids BIGINT[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM 1 FROM stats_facts WHERE activity_id IN (SELECT unnest(ids))
      ORDER BY activity_id, fresh, dim, val FOR UPDATE;
    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
    SELECT activity_id, 1, dim, val, scope, status, f, o FROM stats_current_facts
     WHERE activity_id IN (SELECT unnest(ids))
     ORDER BY activity_id, dim, val
    ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;
    INSERT INTO stats_pairs (fdim, fval, status, scope, odim, oval, n)
    SELECT x.dim, x.val, x.status, x.scope, y.dim, y.val, SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END)
      FROM stats_facts x JOIN stats_facts y ON y.activity_id = x.activity_id AND y.fresh = x.fresh
     WHERE x.activity_id IN (SELECT unnest(ids)) AND x.f = 1 AND y.o = 1
     GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    HAVING SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END) <> 0
     ORDER BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    ON CONFLICT (fdim, fval, status, scope, odim, oval) DO UPDATE SET n = stats_pairs.n + excluded.n;
    DELETE FROM stats_facts WHERE activity_id IN (SELECT unnest(ids)) AND fresh = 0;
    UPDATE stats_facts SET fresh = 0 WHERE activity_id IN (SELECT unnest(ids)) AND fresh = 1;
END
$fn$
"#;

/// Up on PostgreSQL, one statement each.
const UP_POSTGRES: &[&str] = &[
    // No key: two transactions noting the same activity never wait on
    // each other here.
    "CREATE TABLE stats_pending (activity_id BIGINT NOT NULL)",
    REFRESH_ORDERED,
    r#"
CREATE FUNCTION stats_flush() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    ids BIGINT[];
BEGIN
    -- One refresh per transaction: the first firing takes every noted
    -- activity; the others (one per noted row) find nothing to do.
    IF current_setting('cityhub.stats_pending', true) IS DISTINCT FROM 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('cityhub.stats_pending', 'off', true);
    WITH gone AS (DELETE FROM stats_pending RETURNING activity_id)
    SELECT array_agg(DISTINCT activity_id ORDER BY activity_id) INTO ids FROM gone;
    IF ids IS NOT NULL THEN
        PERFORM stats_refresh(ids);
    END IF;
    RETURN NULL;
END
$fn$
"#,
    r#"
CREATE OR REPLACE FUNCTION stats_refresh_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM set_config('cityhub.stats_pending', 'on', true);
    INSERT INTO stats_pending (activity_id) SELECT DISTINCT activity_id FROM changed;
    RETURN NULL;
END
$fn$
"#,
    r#"
CREATE OR REPLACE FUNCTION stats_refresh_activity() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM set_config('cityhub.stats_pending', 'on', true);
    IF TG_OP = 'DELETE' THEN
        INSERT INTO stats_pending (activity_id) VALUES (OLD.id);
    ELSE
        INSERT INTO stats_pending (activity_id) VALUES (NEW.id);
    END IF;
    RETURN NULL;
END
$fn$
"#,
    r#"
CREATE OR REPLACE FUNCTION stats_refresh_city() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM set_config('cityhub.stats_pending', 'on', true);
    INSERT INTO stats_pending (activity_id)
    SELECT activity_id FROM activity_cities WHERE city_id = NEW.id
     UNION SELECT id FROM activities WHERE venue_city_id = NEW.id;
    RETURN NULL;
END
$fn$
"#,
    "CREATE CONSTRAINT TRIGGER stats_pending_flush AFTER INSERT ON stats_pending \
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stats_flush()",
];

/// Down on PostgreSQL: the functions exactly as `m20261201_000002_stats`
/// created them (the triggers, unchanged, call them again).
const DOWN_POSTGRES: &[&str] = &[
    "DROP TRIGGER IF EXISTS stats_pending_flush ON stats_pending",
    "DROP FUNCTION IF EXISTS stats_flush()",
    r#"
CREATE OR REPLACE FUNCTION stats_refresh(ids BIGINT[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
    SELECT activity_id, 1, dim, val, scope, status, f, o FROM stats_current_facts WHERE activity_id IN (SELECT unnest(ids))
    ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;
    INSERT INTO stats_pairs (fdim, fval, status, scope, odim, oval, n)
    SELECT x.dim, x.val, x.status, x.scope, y.dim, y.val, SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END)
      FROM stats_facts x JOIN stats_facts y ON y.activity_id = x.activity_id AND y.fresh = x.fresh
     WHERE x.activity_id IN (SELECT unnest(ids)) AND x.f = 1 AND y.o = 1
     GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    HAVING SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END) <> 0
    ON CONFLICT (fdim, fval, status, scope, odim, oval) DO UPDATE SET n = stats_pairs.n + excluded.n;
    DELETE FROM stats_facts WHERE activity_id IN (SELECT unnest(ids)) AND fresh = 0;
    UPDATE stats_facts SET fresh = 0 WHERE activity_id IN (SELECT unnest(ids)) AND fresh = 1;
END
$fn$
"#,
    r#"
CREATE OR REPLACE FUNCTION stats_refresh_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM stats_refresh(ARRAY(SELECT DISTINCT activity_id FROM changed));
    RETURN NULL;
END
$fn$
"#,
    r#"
CREATE OR REPLACE FUNCTION stats_refresh_activity() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM stats_refresh(ARRAY[OLD.id]);
    ELSE
        PERFORM stats_refresh(ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$fn$
"#,
    r#"
CREATE OR REPLACE FUNCTION stats_refresh_city() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM stats_refresh(ARRAY(SELECT activity_id FROM activity_cities WHERE city_id = NEW.id
                                UNION SELECT id FROM activities WHERE venue_city_id = NEW.id));
    RETURN NULL;
END
$fn$
"#,
    // Nothing is left in it: every transaction empties what it noted.
    "DROP TABLE IF EXISTS stats_pending",
];

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    let conn = manager.get_connection();
    for statement in statements {
        conn.execute_unprepared(statement.trim()).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, UP_POSTGRES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, DOWN_POSTGRES).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
