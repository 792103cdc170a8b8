//! Kept counts for dashboards and `network`: every activity's countable
//! facts (`stats_facts`) and, per pair of facts, how many visible activities
//! have both (`stats_pairs`), maintained by database triggers in the same
//! transaction as the write that changes them, so the write path's code
//! stays as it is and a count never disagrees with the rows it counts.
//!
//! A fact is `(dim, val)`: `all` (every activity), `kind`, `format`,
//! `year` (of the start date; output only), `field`, `country` (of the
//! venue city and of host cities) and `city` (host, participant or venue).
//! `f` marks facts one may filter on, `o` facts one may count. A pair row
//! `(fdim, fval, status, scope, odim, oval, n)` says: `n` activities of that
//! status and visibility scope have fact `(fdim, fval)` and fact
//! `(odim, oval)`. `scope` is 0 for non-drafts, the publishing city's id for
//! a draft, and -1 for a draft of the secretariat.
//!
//! A change to an activity refreshes its facts: the new facts are inserted
//! beside the old ones (`fresh = 1`), the pair counts move by the
//! difference of the two sets' pairs (only changed pairs are written), then
//! the old facts go. The refresh is idempotent, so it does not matter how
//! many triggers fire for one write, nor in which order.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

use crate::run_sql;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables, and the facts of every live activity as they are now (a
/// view). Each branch of the view exposes `activity_id`, so a `WHERE
/// activity_id IN (…)` is pushed into every branch (checked with `EXPLAIN`
/// on both backends; a plain `UNION` would defeat that on SQLite). A
/// country or city reached twice is merged by the facts' primary key.
const TABLES: &str = r#"
CREATE TABLE stats_facts (
    activity_id BIGINT NOT NULL,
    fresh INTEGER NOT NULL,
    dim TEXT NOT NULL,
    val TEXT NOT NULL,
    scope BIGINT NOT NULL,
    status TEXT NOT NULL,
    f INTEGER NOT NULL,
    o INTEGER NOT NULL,
    PRIMARY KEY (activity_id, fresh, dim, val)
);
CREATE TABLE stats_pairs (
    fdim TEXT NOT NULL,
    fval TEXT NOT NULL,
    status TEXT NOT NULL,
    scope BIGINT NOT NULL,
    odim TEXT NOT NULL,
    oval TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (fdim, fval, status, scope, odim, oval)
);
CREATE VIEW stats_current_facts AS
SELECT a.id AS activity_id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END AS scope,
       a.status AS status, 'all' AS dim, '' AS val, 1 AS f, 1 AS o
  FROM activities a WHERE a.deleted_at IS NULL
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'kind', a.kind, 1, 1
  FROM activities a WHERE a.deleted_at IS NULL
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'format', a.format, 1, 1
  FROM activities a WHERE a.deleted_at IS NULL
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'year', CAST(a.start_key / 10000 AS TEXT), 0, 1
  FROM activities a WHERE a.deleted_at IS NULL AND a.start_key > 0
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'field', af.field, 1, 1
  FROM activities a JOIN activity_fields af ON af.activity_id = a.id WHERE a.deleted_at IS NULL
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'country', c.country, 1, 1
  FROM activities a JOIN cities c ON c.id = a.venue_city_id WHERE a.deleted_at IS NULL
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'country', c.country, 1, 1
  FROM activities a JOIN activity_cities ac ON ac.activity_id = a.id AND ac.role = 'HOST'
  JOIN cities c ON c.id = ac.city_id WHERE a.deleted_at IS NULL
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'city', CAST(a.venue_city_id AS TEXT), 1, 1
  FROM activities a WHERE a.deleted_at IS NULL AND a.venue_city_id IS NOT NULL
UNION ALL
SELECT a.id, CASE WHEN a.status = 'DRAFT' THEN COALESCE(a.published_by, -1) ELSE 0 END, a.status, 'city', CAST(ac.city_id AS TEXT), 1, 1
  FROM activities a JOIN activity_cities ac ON ac.activity_id = a.id WHERE a.deleted_at IS NULL;
"#;

/// Fills the kept counts from the rows already there.
const BACKFILL: &str = r#"
INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
SELECT activity_id, 0, dim, val, scope, status, f, o FROM stats_current_facts WHERE true
ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;
INSERT INTO stats_pairs (fdim, fval, status, scope, odim, oval, n)
SELECT x.dim, x.val, x.status, x.scope, y.dim, y.val, COUNT(*)
  FROM stats_facts x JOIN stats_facts y ON y.activity_id = x.activity_id AND y.fresh = x.fresh
 WHERE x.f = 1 AND y.o = 1
 GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val;
"#;

/// The refresh of the activities `{ids}` (a parenthesized list or
/// subquery), as four statements.
const REFRESH: &str = r#"
    INSERT INTO stats_facts (activity_id, fresh, dim, val, scope, status, f, o)
    SELECT activity_id, 1, dim, val, scope, status, f, o FROM stats_current_facts WHERE activity_id IN {ids}
    ON CONFLICT (activity_id, fresh, dim, val) DO NOTHING;
    INSERT INTO stats_pairs (fdim, fval, status, scope, odim, oval, n)
    SELECT x.dim, x.val, x.status, x.scope, y.dim, y.val, SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END)
      FROM stats_facts x JOIN stats_facts y ON y.activity_id = x.activity_id AND y.fresh = x.fresh
     WHERE x.activity_id IN {ids} AND x.f = 1 AND y.o = 1
     GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val
    HAVING SUM(CASE WHEN x.fresh = 1 THEN 1 ELSE -1 END) <> 0
    ON CONFLICT (fdim, fval, status, scope, odim, oval) DO UPDATE SET n = stats_pairs.n + excluded.n;
    DELETE FROM stats_facts WHERE activity_id IN {ids} AND fresh = 0;
    UPDATE stats_facts SET fresh = 0 WHERE activity_id IN {ids} AND fresh = 1;
"#;

/// The columns whose change changes an activity's facts.
pub(crate) const COUNTED_CHANGED_SQLITE: &str = "OLD.status IS NOT NEW.status OR OLD.deleted_at IS NOT NEW.deleted_at \
     OR OLD.kind IS NOT NEW.kind OR OLD.format IS NOT NEW.format OR OLD.start_key IS NOT NEW.start_key \
     OR OLD.venue_city_id IS NOT NEW.venue_city_id OR OLD.published_by IS NOT NEW.published_by";

/// SQLite: row triggers (SQLite has no statement triggers), each running
/// the refresh for the one activity it concerns.
pub(crate) fn sqlite_triggers() -> String {
    let refresh = |ids: &str| REFRESH.replace("{ids}", ids);
    let mut sql = String::new();
    let mut trigger = |name: &str, event: &str, when: Option<&str>, ids: &str| {
        let when = when.map(|w| format!(" WHEN {w}")).unwrap_or_default();
        sql.push_str(&format!(
            "CREATE TRIGGER {name} AFTER {event} FOR EACH ROW{when} BEGIN\n{}END;\n",
            refresh(ids)
        ));
    };
    trigger(
        "stats_activities_insert",
        "INSERT ON activities",
        None,
        "(NEW.id)",
    );
    trigger(
        "stats_activities_update",
        "UPDATE ON activities",
        Some(COUNTED_CHANGED_SQLITE),
        "(NEW.id)",
    );
    trigger(
        "stats_activities_delete",
        "DELETE ON activities",
        None,
        "(OLD.id)",
    );
    for table in ["activity_fields", "activity_cities"] {
        trigger(
            &format!("stats_{table}_insert"),
            &format!("INSERT ON {table}"),
            None,
            "(NEW.activity_id)",
        );
        trigger(
            &format!("stats_{table}_delete"),
            &format!("DELETE ON {table}"),
            None,
            "(OLD.activity_id)",
        );
    }
    trigger(
        "stats_cities_update",
        "UPDATE OF country ON cities",
        Some("OLD.country IS NOT NEW.country"),
        "(SELECT activity_id FROM activity_cities WHERE city_id = NEW.id UNION SELECT id FROM activities WHERE venue_city_id = NEW.id)",
    );
    sql
}

/// PostgreSQL: one refresh function over an array of ids; statement
/// triggers with transition tables on the relation tables, so a multi-row
/// insert refreshes each activity once.
fn postgres_triggers() -> String {
    let body = REFRESH.replace("{ids}", "(SELECT unnest(ids))");
    format!(
        r#"
CREATE FUNCTION stats_refresh(ids BIGINT[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
{body}
END
$fn$;
CREATE FUNCTION stats_refresh_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM stats_refresh(ARRAY(SELECT DISTINCT activity_id FROM changed));
    RETURN NULL;
END
$fn$;
CREATE FUNCTION stats_refresh_activity() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM stats_refresh(ARRAY[OLD.id]);
    ELSE
        PERFORM stats_refresh(ARRAY[NEW.id]);
    END IF;
    RETURN NULL;
END
$fn$;
CREATE FUNCTION stats_refresh_city() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM stats_refresh(ARRAY(SELECT activity_id FROM activity_cities WHERE city_id = NEW.id
                                UNION SELECT id FROM activities WHERE venue_city_id = NEW.id));
    RETURN NULL;
END
$fn$;
CREATE TRIGGER stats_activities_insert AFTER INSERT ON activities FOR EACH ROW EXECUTE FUNCTION stats_refresh_activity();
CREATE TRIGGER stats_activities_update AFTER UPDATE ON activities FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
          OR OLD.kind IS DISTINCT FROM NEW.kind OR OLD.format IS DISTINCT FROM NEW.format
          OR OLD.start_key IS DISTINCT FROM NEW.start_key OR OLD.venue_city_id IS DISTINCT FROM NEW.venue_city_id
          OR OLD.published_by IS DISTINCT FROM NEW.published_by)
    EXECUTE FUNCTION stats_refresh_activity();
CREATE TRIGGER stats_activities_delete AFTER DELETE ON activities FOR EACH ROW EXECUTE FUNCTION stats_refresh_activity();
CREATE TRIGGER stats_activity_fields_insert AFTER INSERT ON activity_fields REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION stats_refresh_changed();
CREATE TRIGGER stats_activity_fields_delete AFTER DELETE ON activity_fields REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION stats_refresh_changed();
CREATE TRIGGER stats_activity_cities_insert AFTER INSERT ON activity_cities REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION stats_refresh_changed();
CREATE TRIGGER stats_activity_cities_delete AFTER DELETE ON activity_cities REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION stats_refresh_changed();
CREATE TRIGGER stats_cities_update AFTER UPDATE OF country ON cities FOR EACH ROW
    WHEN (OLD.country IS DISTINCT FROM NEW.country)
    EXECUTE FUNCTION stats_refresh_city();
"#
    )
}

const DOWN_SQLITE: &str = r#"
DROP TRIGGER IF EXISTS stats_cities_update;
DROP TRIGGER IF EXISTS stats_activity_cities_delete;
DROP TRIGGER IF EXISTS stats_activity_cities_insert;
DROP TRIGGER IF EXISTS stats_activity_fields_delete;
DROP TRIGGER IF EXISTS stats_activity_fields_insert;
DROP TRIGGER IF EXISTS stats_activities_delete;
DROP TRIGGER IF EXISTS stats_activities_update;
DROP TRIGGER IF EXISTS stats_activities_insert;
DROP VIEW IF EXISTS stats_current_facts;
DROP TABLE IF EXISTS stats_pairs;
DROP TABLE IF EXISTS stats_facts;
"#;

const DOWN_POSTGRES: &str = r#"
DROP TRIGGER IF EXISTS stats_cities_update ON cities;
DROP TRIGGER IF EXISTS stats_activity_cities_delete ON activity_cities;
DROP TRIGGER IF EXISTS stats_activity_cities_insert ON activity_cities;
DROP TRIGGER IF EXISTS stats_activity_fields_delete ON activity_fields;
DROP TRIGGER IF EXISTS stats_activity_fields_insert ON activity_fields;
DROP TRIGGER IF EXISTS stats_activities_delete ON activities;
DROP TRIGGER IF EXISTS stats_activities_update ON activities;
DROP TRIGGER IF EXISTS stats_activities_insert ON activities;
DROP FUNCTION IF EXISTS stats_refresh_city();
DROP FUNCTION IF EXISTS stats_refresh_activity();
DROP FUNCTION IF EXISTS stats_refresh_changed();
DROP FUNCTION IF EXISTS stats_refresh(BIGINT[]);
DROP VIEW IF EXISTS stats_current_facts;
DROP TABLE IF EXISTS stats_pairs;
DROP TABLE IF EXISTS stats_facts;
"#;

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run_sql(manager, TABLES).await?;
        run_sql(manager, BACKFILL).await?;
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                // One statement per call: the function bodies hold `;`.
                let conn = manager.get_connection();
                for statement in postgres_statements(&postgres_triggers()) {
                    conn.execute_unprepared(&statement).await?;
                }
                Ok(())
            }
            _ => run_sql(manager, &sqlite_triggers()).await,
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => run_sql(manager, DOWN_POSTGRES).await,
            _ => run_sql(manager, DOWN_SQLITE).await,
        }
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

/// Splits the PostgreSQL script on `;` at line ends outside `$fn$` bodies.
fn postgres_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_body = false;
    for line in sql.lines() {
        current.push_str(line);
        current.push('\n');
        if line.matches("$fn$").count() % 2 == 1 {
            in_body = !in_body;
        }
        if !in_body && line.trim_end().ends_with(';') {
            let statement = current.trim().to_owned();
            if !statement.is_empty() {
                out.push(statement);
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_functions_stay_whole() {
        let parts = postgres_statements(&postgres_triggers());
        assert!(
            parts
                .iter()
                .any(|p| p.starts_with("CREATE FUNCTION stats_refresh(") && p.ends_with("$fn$;"))
        );
        assert_eq!(
            parts
                .iter()
                .filter(|p| p.starts_with("CREATE TRIGGER"))
                .count(),
            8
        );
    }

    #[test]
    fn sqlite_triggers_hold_the_whole_refresh() {
        let sql = sqlite_triggers();
        assert_eq!(sql.matches("CREATE TRIGGER").count(), 8);
        assert_eq!(sql.matches("ON CONFLICT (fdim").count(), 8);
        assert!(!sql.contains("{ids}"));
    }
}
