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
//! `stats_pending` only carries the refresh trigger: its rows never outlive
//! the transaction that inserts them, so it is now `UNLOGGED` (no WAL for
//! it).
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
SET plan_cache_mode = force_generic_plan AS $fn$
BEGIN
    PERFORM 1 FROM stats_facts WHERE activity_id = ANY(ids)
      ORDER BY activity_id, fresh, dim, val FOR UPDATE;
    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
    SELECT activity_id, 1, dim, val, scope, status, f, o FROM stats_current_facts
     WHERE activity_id = ANY(ids)
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
