//! Kept counts refreshed once per write.
//!
//! SQLite: its triggers are row triggers, so one publish refreshed its
//! activity's facts and pairs once per row it wrote (the activity, each
//! host, each field: three times for the simplest publish, fifteen for one
//! with twelve participants), each refresh evaluating the nine-branch facts
//! view and joining facts × facts. That was ≈ 700 of the ≈ 800 µs of SQL a
//! publish ran (BENCHMARKS.md). Now the row triggers only note the activity
//! in `stats_pending`, and one refresh of every noted activity runs when
//! the write appends its event or its audit row, which every write of the
//! hub does last (a city's change has an audit row and no event). Same
//! computation, same counts (the e2e stats tests compare them with the
//! listing after every kind of write); a transaction that wrote no event
//! and no audit row leaves its notes for the next write's refresh.
//!
//! Every statement says `IF [NOT] EXISTS`: the migration's statements may
//! run on different pooled connections, and SQLite checks a trigger's name
//! against the connection's cached schema while parsing, so a plain
//! `CREATE TRIGGER` could be refused for a name another connection just
//! dropped; with `IF [NOT] EXISTS` a stale cache makes the statement
//! reload the schema and run again.
//!
//! PostgreSQL: the refresh already runs once, at commit
//! (`m20261201_000004_stats_lock_order`), but plpgsql planned its
//! statements for each call's ids, and planning the insert over the
//! nine-branch view took 6–9 ms of every 7–24 ms call; the generic plan
//! pushes `= ANY(ids)` into every branch just as well (planning 0.02 ms).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The refresh of every noted activity, then the notes cleared.
pub(crate) const FLUSH: &str = r#"
    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
    SELECT activity_id, 1, dim, val, scope, status, f, o FROM stats_current_facts WHERE activity_id IN (SELECT activity_id FROM stats_pending)
    ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;
    INSERT INTO stats_pairs (fdim, fval, status, scope, odim, oval, n)
    SELECT x.dim, x.val, x.status, x.scope, y.dim, y.val, SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END)
      FROM stats_facts x JOIN stats_facts y ON y.activity_id = x.activity_id AND y.fresh = x.fresh
     WHERE x.activity_id IN (SELECT activity_id FROM stats_pending) AND x.f = 1 AND y.o = 1
     GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    HAVING SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END) <> 0
    ON CONFLICT (fdim, fval, status, scope, odim, oval) DO UPDATE SET n = stats_pairs.n + excluded.n;
    DELETE FROM stats_facts WHERE activity_id IN (SELECT activity_id FROM stats_pending) AND fresh = 0;
    UPDATE stats_facts SET fresh = 0 WHERE activity_id IN (SELECT activity_id FROM stats_pending) AND fresh = 1;
    DELETE FROM stats_pending;
"#;

/// SQLite's noting triggers (replacing the refreshing ones of
/// `m20261201_000002_stats`, same events and conditions) and the flushes.
fn sqlite_up() -> String {
    let note = |name: &str, event: &str, when: &str, ids: &str| {
        format!(
            "CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} FOR EACH ROW{when} BEGIN\n    INSERT OR IGNORE INTO stats_pending (activity_id) {ids};\nEND;\n"
        )
    };
    let mut sql = String::from(
        "DROP TRIGGER IF EXISTS stats_cities_update;\n\
         DROP TRIGGER IF EXISTS stats_activity_cities_delete;\n\
         DROP TRIGGER IF EXISTS stats_activity_cities_insert;\n\
         DROP TRIGGER IF EXISTS stats_activity_fields_delete;\n\
         DROP TRIGGER IF EXISTS stats_activity_fields_insert;\n\
         DROP TRIGGER IF EXISTS stats_activities_delete;\n\
         DROP TRIGGER IF EXISTS stats_activities_update;\n\
         DROP TRIGGER IF EXISTS stats_activities_insert;\n\
         CREATE TABLE IF NOT EXISTS stats_pending (activity_id INTEGER PRIMARY KEY);\n",
    );
    sql.push_str(&note(
        "stats_note_activities_insert",
        "INSERT ON activities",
        "",
        "VALUES (NEW.id)",
    ));
    sql.push_str(&note(
        "stats_note_activities_update",
        "UPDATE ON activities",
        &format!(
            " WHEN {}",
            crate::m20261201_000002_stats::COUNTED_CHANGED_SQLITE
        ),
        "VALUES (NEW.id)",
    ));
    sql.push_str(&note(
        "stats_note_activities_delete",
        "DELETE ON activities",
        "",
        "VALUES (OLD.id)",
    ));
    for table in ["activity_fields", "activity_cities"] {
        sql.push_str(&note(
            &format!("stats_note_{table}_insert"),
            &format!("INSERT ON {table}"),
            "",
            "VALUES (NEW.activity_id)",
        ));
        sql.push_str(&note(
            &format!("stats_note_{table}_delete"),
            &format!("DELETE ON {table}"),
            "",
            "VALUES (OLD.activity_id)",
        ));
    }
    sql.push_str(&note(
        "stats_note_cities_update",
        "UPDATE OF country ON cities",
        " WHEN OLD.country IS NOT NEW.country",
        "SELECT activity_id FROM activity_cities WHERE city_id = NEW.id UNION SELECT id FROM activities WHERE venue_city_id = NEW.id",
    ));
    for table in ["activity_events", "audit_log"] {
        sql.push_str(&format!(
            "CREATE TRIGGER IF NOT EXISTS stats_flush_{table} AFTER INSERT ON {table} FOR EACH ROW \
             WHEN EXISTS (SELECT 1 FROM stats_pending) BEGIN\n{FLUSH}END;\n"
        ));
    }
    sql
}

/// Back to `m20261201_000002_stats`'s refreshing triggers (nothing can be
/// pending between transactions but notes of writes without an event or
/// audit row; they are refreshed first).
fn sqlite_down() -> String {
    format!(
        "DROP TRIGGER IF EXISTS stats_flush_activity_events;\n\
         DROP TRIGGER IF EXISTS stats_flush_audit_log;\n\
         DROP TRIGGER IF EXISTS stats_note_cities_update;\n\
         DROP TRIGGER IF EXISTS stats_note_activity_cities_delete;\n\
         DROP TRIGGER IF EXISTS stats_note_activity_cities_insert;\n\
         DROP TRIGGER IF EXISTS stats_note_activity_fields_delete;\n\
         DROP TRIGGER IF EXISTS stats_note_activity_fields_insert;\n\
         DROP TRIGGER IF EXISTS stats_note_activities_delete;\n\
         DROP TRIGGER IF EXISTS stats_note_activities_update;\n\
         DROP TRIGGER IF EXISTS stats_note_activities_insert;\n\
         {}\
         DROP TABLE IF EXISTS stats_pending;\n\
         {}",
        FLUSH.replace("    DELETE FROM stats_pending;\n", ""),
        crate::m20261201_000002_stats::sqlite_triggers()
    )
}

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => crate::run_sql(
                manager,
                "ALTER FUNCTION stats_refresh(BIGINT[]) SET plan_cache_mode = force_generic_plan;",
            )
            .await,
            _ => crate::run_sql(manager, &sqlite_up()).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                crate::run_sql(
                    manager,
                    "ALTER FUNCTION stats_refresh(BIGINT[]) RESET plan_cache_mode;",
                )
                .await
            }
            _ => crate::run_sql(manager, &sqlite_down()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refreshing_trigger_is_replaced_by_a_note() {
        let up = sqlite_up();
        assert_eq!(up.matches("DROP TRIGGER").count(), 8);
        assert_eq!(up.matches("INSERT OR IGNORE INTO stats_pending").count(), 8);
        assert_eq!(
            up.matches("CREATE TRIGGER IF NOT EXISTS stats_flush_")
                .count(),
            2
        );
        let down = sqlite_down();
        assert_eq!(down.matches("DROP TRIGGER").count(), 10);
        assert_eq!(down.matches("CREATE TRIGGER").count(), 8);
    }
}
