//! Kept counts without a row every publish must lock (PostgreSQL).
//!
//! Until now each write's refresh (`stats_refresh`, run once at commit)
//! upserted its pair counts into `stats_pairs` with `ON CONFLICT DO
//! UPDATE`. Some of those rows are shared by almost every activity (`all ×
//! all`, `all × kind=WORKSHOP`, `all × field=DESIGN`, …), so every publish
//! took row locks on the same few counters at commit, and concurrent
//! publishers queued behind each other's commits: sampling
//! `pg_stat_activity` under 20 publishers found nearly every session in
//! `COMMIT`, waiting on `Lock:transactionid` (BENCHMARKS.md).
//!
//! Now a refresh appends its pair differences to `stats_pair_deltas`, a
//! table without a key that nobody updates, so writers never wait for one
//! another there; `stats_pair_counts` (a view: kept pairs plus pending
//! deltas, both read in the reader's one snapshot) is what every count
//! reads, so counts stay exact at every moment. `stats_fold()` moves the
//! deltas into `stats_pairs` in one statement (the hub runs it in the
//! background, `database.stats_fold_interval_ms`); two folders running at
//! once take disjoint rows (the second's `DELETE` skips rows the first
//! deleted), so nothing is counted twice. Readers' work stays bounded by
//! what accumulates between folds, not by the size of the network.
//!
//! The refresh also stops growing with the network. `EXPLAIN ANALYZE` of
//! one publish's refresh at 10,000 activities showed each of the nine
//! branches of `stats_current_facts` combining the activity's primary key
//! with a partial index `WHERE deleted_at IS NULL` in a `BitmapAnd`, and
//! scanning that partial index whole (9,994 entries, 0.8–3.7 ms a branch,
//! 12–14 ms a refresh, more as the table grew, worst under the generic
//! plan a pooled connection keeps from when the tables were small). The
//! refresh now reads the activities once, by primary key, in a
//! materialized CTE, and computes the same facts from it (the view stays
//! as it was, for recounts and SQLite).
//!
//! Every statement of the refresh reaches its rows by key, and its plans
//! are generic, made once per connection: `enable_seqscan = off` keeps a
//! plan made while the tables were small (a pooled connection outlives
//! many thousand publishes; where autovacuum is off, statistics never
//! catch up) from scanning them whole once they are large.
//!
//! `stats_pending` only carries the refresh trigger: its rows never outlive
//! the transaction that inserts them, so it is now `UNLOGGED` (no WAL for
//! it), and each transaction takes back its own notes by an index on its
//! transaction id (`xid`) instead of scanning the dead notes of every
//! transaction before it (0.82 ms a publish in the same run).
//!
//! SQLite keeps its one writer and its upserts (nobody waits there);
//! `stats_pair_counts` is the plain `stats_pairs` there, so every count
//! reads the same name on both backends.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Up on PostgreSQL, one statement each.
const UP_POSTGRES: &[&str] = &[
    "ALTER TABLE stats_pending SET UNLOGGED",
    "CREATE TABLE stats_pair_deltas (
        fdim TEXT NOT NULL,
        fval TEXT NOT NULL,
        status TEXT NOT NULL,
        scope BIGINT NOT NULL,
        odim TEXT NOT NULL,
        oval TEXT NOT NULL,
        n BIGINT NOT NULL
    )",
    // Reads select by the leading columns of the pairs' key.
    "CREATE INDEX stats_pair_deltas_filter ON stats_pair_deltas (fdim, fval, status, scope)",
    "CREATE VIEW stats_pair_counts AS
        SELECT fdim, fval, status, scope, odim, oval, n FROM stats_pairs
        UNION ALL
        SELECT fdim, fval, status, scope, odim, oval, n FROM stats_pair_deltas",
    r#"
CREATE OR REPLACE FUNCTION stats_refresh(ids BIGINT[]) RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
BEGIN
    PERFORM 1 FROM stats_facts WHERE activity_id = ANY(ids)
      ORDER BY activity_id, fresh, dim, val FOR UPDATE;
    -- The facts of `stats_current_facts`, for these activities only: the
    -- activities are read once, by primary key (a materialized CTE takes
    -- no outer condition, so no partial index on `deleted_at IS NULL`
    -- can be combined with the key and scanned whole), then each
    -- relation by its key.
    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
    WITH a AS MATERIALIZED (
        SELECT id, status, kind, format, start_key, venue_city_id, deleted_at,
               CASE WHEN status = 'DRAFT' THEN COALESCE(published_by, -1) ELSE 0 END AS scope
          FROM activities WHERE id = ANY(ids)
    ), live AS (
        SELECT * FROM a WHERE deleted_at IS NULL
    )
    SELECT activity_id, 1, dim, val, scope, status, f, o FROM (
        SELECT id AS activity_id, scope, status, 'all' AS dim, '' AS val, 1 AS f, 1 AS o FROM live
        UNION ALL SELECT id, scope, status, 'kind', kind, 1, 1 FROM live
        UNION ALL SELECT id, scope, status, 'format', format, 1, 1 FROM live
        UNION ALL SELECT id, scope, status, 'year', CAST(start_key / 10000 AS TEXT), 0, 1 FROM live WHERE start_key > 0
        UNION ALL SELECT l.id, l.scope, l.status, 'field', af.field, 1, 1
            FROM live l JOIN activity_fields af ON af.activity_id = l.id
        UNION ALL SELECT l.id, l.scope, l.status, 'country', c.country, 1, 1
            FROM live l JOIN cities c ON c.id = l.venue_city_id
        UNION ALL SELECT l.id, l.scope, l.status, 'country', c.country, 1, 1
            FROM live l JOIN activity_cities ac ON ac.activity_id = l.id AND ac.role = 'HOST'
            JOIN cities c ON c.id = ac.city_id
        UNION ALL SELECT id, scope, status, 'city', CAST(venue_city_id AS TEXT), 1, 1
            FROM live WHERE venue_city_id IS NOT NULL
        UNION ALL SELECT l.id, l.scope, l.status, 'city', CAST(ac.city_id AS TEXT), 1, 1
            FROM live l JOIN activity_cities ac ON ac.activity_id = l.id
    ) facts
     ORDER BY activity_id, dim, val
    ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;
    INSERT INTO stats_pair_deltas (fdim, fval, status, scope, odim, oval, n)
    SELECT x.dim, x.val, x.status, x.scope, y.dim, y.val, SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END)
      FROM stats_facts x JOIN stats_facts y ON y.activity_id = x.activity_id AND y.fresh = x.fresh
     WHERE x.activity_id = ANY(ids) AND x.f = 1 AND y.o = 1
     GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    HAVING SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END) <> 0;
    DELETE FROM stats_facts WHERE activity_id = ANY(ids) AND fresh = 0;
    UPDATE stats_facts SET fresh = 0 WHERE activity_id = ANY(ids) AND fresh = 1;
END
$fn$
"#,
    // Each transaction takes back only its own notes, by index, instead of
    // scanning every note left dead by the transactions before it.
    "ALTER TABLE stats_pending ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id()",
    "CREATE INDEX stats_pending_by_xid ON stats_pending (xid)",
    r#"
CREATE OR REPLACE FUNCTION stats_flush() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    ids BIGINT[];
BEGIN
    -- One refresh per transaction: the first firing takes every noted
    -- activity; the others (one per noted row) find nothing to do.
    IF current_setting('cityhub.stats_pending', true) IS DISTINCT FROM 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('cityhub.stats_pending', 'off', true);
    WITH gone AS (DELETE FROM stats_pending WHERE xid = pg_current_xact_id() RETURNING activity_id)
    SELECT array_agg(DISTINCT activity_id ORDER BY activity_id) INTO ids FROM gone;
    IF ids IS NOT NULL THEN
        PERFORM stats_refresh(ids);
    END IF;
    RETURN NULL;
END
$fn$
"#,
    r#"
CREATE FUNCTION stats_fold() RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    moved bigint;
BEGIN
    WITH gone AS (
        DELETE FROM stats_pair_deltas RETURNING fdim, fval, status, scope, odim, oval, n
    ), summed AS (
        SELECT fdim, fval, status, scope, odim, oval, SUM(n) AS n, COUNT(*) AS rows
          FROM gone GROUP BY fdim, fval, status, scope, odim, oval
    ), kept AS (
        INSERT INTO stats_pairs (fdim, fval, status, scope, odim, oval, n)
        SELECT fdim, fval, status, scope, odim, oval, n FROM summed WHERE n <> 0
         ORDER BY fdim, fval, status, scope, odim, oval
        ON CONFLICT (fdim, fval, status, scope, odim, oval) DO UPDATE SET n = stats_pairs.n + excluded.n
    )
    SELECT COALESCE(SUM(rows), 0) INTO moved FROM summed;
    RETURN moved;
END
$fn$
"#,
];

/// Down on PostgreSQL: every delta folded, then the upserting refresh of
/// `m20261201_000005_stats_refresh_any` (with the generic plan of
/// `m20261206_000002_stats_refresh_once`).
const DOWN_POSTGRES: &[&str] = &[
    "SELECT stats_fold()",
    "DROP FUNCTION IF EXISTS stats_fold()",
    "DROP VIEW IF EXISTS stats_pair_counts",
    "DROP TABLE IF EXISTS stats_pair_deltas",
    r#"
CREATE OR REPLACE FUNCTION stats_refresh(ids BIGINT[]) RETURNS void LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $fn$
BEGIN
    PERFORM 1 FROM stats_facts WHERE activity_id = ANY(ids)
      ORDER BY activity_id, fresh, dim, val FOR UPDATE;
    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
    SELECT activity_id, 1, dim, val, scope, status, f, o FROM stats_current_facts
     WHERE activity_id = ANY(ids)
     ORDER BY activity_id, dim, val
    ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;
    INSERT INTO stats_pairs (fdim, fval, status, scope, odim, oval, n)
    SELECT x.dim, x.val, x.status, x.scope, y.dim, y.val, SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END)
      FROM stats_facts x JOIN stats_facts y ON y.activity_id = x.activity_id AND y.fresh = x.fresh
     WHERE x.activity_id = ANY(ids) AND x.f = 1 AND y.o = 1
     GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    HAVING SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END) <> 0
     ORDER BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    ON CONFLICT (fdim, fval, status, scope, odim, oval) DO UPDATE SET n = stats_pairs.n + excluded.n;
    DELETE FROM stats_facts WHERE activity_id = ANY(ids) AND fresh = 0;
    UPDATE stats_facts SET fresh = 0 WHERE activity_id = ANY(ids) AND fresh = 1;
END
$fn$
"#,
    r#"
CREATE OR REPLACE FUNCTION stats_flush() RETURNS trigger LANGUAGE plpgsql AS $fn$
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
    "DROP INDEX IF EXISTS stats_pending_by_xid",
    "ALTER TABLE stats_pending DROP COLUMN IF EXISTS xid",
    "ALTER TABLE stats_pending SET LOGGED",
];

const UP_SQLITE: &str = "CREATE VIEW IF NOT EXISTS stats_pair_counts AS \
     SELECT fdim, fval, status, scope, odim, oval, n FROM stats_pairs;";

const DOWN_SQLITE: &str = "DROP VIEW IF EXISTS stats_pair_counts;";

async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
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
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => run(manager, UP_POSTGRES).await,
            _ => crate::run_sql(manager, UP_SQLITE).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => run(manager, DOWN_POSTGRES).await,
            _ => crate::run_sql(manager, DOWN_SQLITE).await,
        }
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
