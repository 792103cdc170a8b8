//! SQLite's kept-count refresh reads the noted activities by key.
//!
//! `m20261206_000002_stats_refresh_once` refreshes every noted activity
//! when a write appends its event or audit row, selecting the noted
//! activities' facts from the nine-branch view `stats_current_facts`
//! (`… WHERE activity_id IN (SELECT activity_id FROM stats_pending)`).
//! SQLite does not push that condition into the branches of a compound
//! view: `EXPLAIN QUERY PLAN` shows the view run as a co-routine that
//! scans every activity in each branch (`SCAN a USING INDEX
//! activities_by_kind`) and filters afterwards, so every publish read the
//! whole table nine times, and publishing slowed as the network grew
//! (about 49 publishes/s at 49,000 activities, ≈ 12 ms of CPU each;
//! BENCHMARKS.md). PostgreSQL's refresh already reads its activities by
//! key (`m20261208_000002_stats_deltas`).
//!
//! The flush now spells the nine branches out, each restricted to the
//! noted activities by primary key (a trigger cannot hold a `WITH`, so
//! the restriction is repeated per branch), and reads `activities NOT
//! INDEXED`: the plan must not depend on the planner's statistics. With
//! `sqlite_stat1` taken while the table was empty (and nothing refreshes
//! it by itself), SQLite judged a scan of the partial index
//! `activities_by_kind` cheaper than the key lookups, for the spelled-out
//! branches too; without an index to choose, the only way in left is the
//! primary key (`SEARCH a USING INTEGER PRIMARY KEY`, whatever the
//! statistics say). Same facts as the view,
//! branch for branch (the view stays, for recounts); the pairs, deletes
//! and updates already reached `stats_facts` by its key.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The noted activities, by primary key.
const NOTED: &str = "a.id IN (SELECT activity_id FROM stats_pending)";

/// An activity's count scope: its publisher's id for a draft, else 0.
const SCOPE: &str = "CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END";

/// The facts of `stats_current_facts` for the noted activities only: each
/// branch is `(dimension, value, f, o, joins, extra condition)`, in the
/// view's order.
fn noted_facts() -> String {
    let branches: [(&str, &str, &str, &str, &str); 9] = [
        ("'all'", "''", "1", "", ""),
        ("'kind'", "a.kind", "1", "", ""),
        ("'format'", "a.format", "1", "", ""),
        (
            "'year'",
            "CAST(a.start_key / 10000 AS TEXT)",
            "0",
            "",
            " AND a.start_key > 0",
        ),
        (
            "'field'",
            "af.field",
            "1",
            " JOIN activity_fields af ON af.activity_id = a.id",
            "",
        ),
        (
            "'country'",
            "c.country",
            "1",
            " JOIN cities c ON c.id = a.venue_city_id",
            "",
        ),
        (
            "'country'",
            "c.country",
            "1",
            " JOIN activity_cities ac ON ac.activity_id = a.id AND ac.role = 'HOST' JOIN cities c ON c.id = ac.city_id",
            "",
        ),
        (
            "'city'",
            "CAST(a.venue_city_id AS TEXT)",
            "1",
            "",
            " AND a.venue_city_id IS NOT NULL",
        ),
        (
            "'city'",
            "CAST(ac.city_id AS TEXT)",
            "1",
            " JOIN activity_cities ac ON ac.activity_id = a.id",
            "",
        ),
    ];
    branches
        .iter()
        .map(|(dim, val, f, joins, extra)| {
            format!(
                "        SELECT a.id AS activity_id, {SCOPE} AS scope, a.status AS status, {dim} AS dim, {val} AS val, {f} AS f, 1 AS o\n          FROM activities a NOT INDEXED{joins} WHERE {NOTED} AND a.deleted_at IS NULL{extra}"
            )
        })
        .collect::<Vec<_>>()
        .join("\n        UNION ALL\n")
}

/// The end of the facts statement, in both flushes.
const FACTS_END: &str = "ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;\n";

/// The refresh of every noted activity, then the notes cleared:
/// `m20261206_000002_stats_refresh_once`'s flush, its first statement
/// (the facts) reading the activities by key; the pairs, the stale facts
/// and the notes as they were.
fn flush() -> String {
    let (_, rest) = crate::m20261206_000002_stats_refresh_once::FLUSH
        .split_once(FACTS_END)
        .expect("the earlier flush starts with its facts statement");
    format!(
        "    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)\n    \
         SELECT activity_id, 1, dim, val, scope, status, f, o FROM (\n{facts}\n    ) WHERE true\n    \
         {FACTS_END}{rest}",
        facts = noted_facts()
    )
}

/// The two flushing triggers, with `body` (dropped first: `IF [NOT]
/// EXISTS` for the reason `m20261206_000002_stats_refresh_once` gives).
fn flush_triggers(body: &str) -> String {
    let mut sql = String::new();
    for table in ["activity_events", "audit_log"] {
        sql.push_str(&format!(
            "DROP TRIGGER IF EXISTS stats_flush_{table};\n\
             CREATE TRIGGER IF NOT EXISTS stats_flush_{table} AFTER INSERT ON {table} FOR EACH ROW \
             WHEN EXISTS (SELECT 1 FROM stats_pending) BEGIN\n{body}END;\n"
        ));
    }
    sql
}

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => {
                crate::run_sql(manager, &flush_triggers(&flush())).await
            }
            _ => Ok(()),
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => {
                crate::run_sql(
                    manager,
                    &flush_triggers(crate::m20261206_000002_stats_refresh_once::FLUSH),
                )
                .await
            }
            _ => Ok(()),
        }
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_branch_of_the_view_is_read_by_key() {
        let facts = noted_facts();
        assert_eq!(facts.matches("UNION ALL").count(), 8);
        assert_eq!(facts.matches(NOTED).count(), 9);
        assert_eq!(facts.matches("a.deleted_at IS NULL").count(), 9);
        let triggers = flush_triggers(&flush());
        assert_eq!(triggers.matches("CREATE TRIGGER IF NOT EXISTS").count(), 2);
        assert!(!triggers.contains("stats_current_facts"));
        // Only the facts statement differs from the earlier flush.
        let earlier = crate::m20261206_000002_stats_refresh_once::FLUSH;
        let (_, rest) = earlier.split_once(FACTS_END).expect("facts statement");
        assert!(flush().ends_with(rest) && rest.contains("INSERT INTO stats_pairs"));
        assert_eq!(flush().matches("DELETE FROM stats_pending;").count(), 1);
    }
}
