//! Read paths that do not grow with the network (issue 9).
//!
//! Expand: `city_activities`, one row per (city, activity) for every city
//! that hosts, joins or is the venue of a not-deleted activity, carrying the
//! activity's `status`, `start_key`, `end_key` and `published_by`, indexed
//! `(city_id, status, start_key, activity_id)`: a city's listing page is a
//! range scan of `first + 1` index entries, and its `totalCount` a count of
//! one index range, whatever the table's size. Triggers keep it exact on
//! every write (insert, update, status change, soft or hard delete, hosts and
//! participants), so the write path is unchanged. Backfill: one
//! `INSERT … SELECT`. Contract: nothing to drop (the old indexes still serve
//! the other filters).
//!
//! Also `hub_meta.cities_version`, bumped by a trigger on every change to
//! `cities`: with the event log's head it forms the data version the
//! response cache and `ETag`s are keyed by.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm;

use crate::run_sql;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLE: &str = r#"
CREATE TABLE city_activities (
    city_id BIGINT NOT NULL,
    activity_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    start_key INTEGER NOT NULL,
    end_key INTEGER NOT NULL,
    published_by BIGINT,
    PRIMARY KEY (activity_id, city_id)
);
CREATE INDEX city_activities_listing ON city_activities (city_id, status, start_key, activity_id);
INSERT INTO city_activities (city_id, activity_id, status, start_key, end_key, published_by)
SELECT x.city_id, a.id, a.status, a.start_key, a.end_key, a.published_by
FROM (SELECT activity_id, city_id FROM activity_cities
      UNION SELECT id, venue_city_id FROM activities WHERE venue_city_id IS NOT NULL) x
JOIN activities a ON a.id = x.activity_id
WHERE a.deleted_at IS NULL;
INSERT INTO hub_meta (key, value) VALUES ('cities_version', 0) ON CONFLICT (key) DO NOTHING;
"#;

/// SQLite: row triggers (statements inline; SQLite has no functions).
const SQLITE_TRIGGERS: &str = r#"
CREATE TRIGGER city_activities_activity_insert AFTER INSERT ON activities WHEN new.deleted_at IS NULL AND new.venue_city_id IS NOT NULL BEGIN
    INSERT OR IGNORE INTO city_activities (city_id, activity_id, status, start_key, end_key, published_by)
    VALUES (new.venue_city_id, new.id, new.status, new.start_key, new.end_key, new.published_by);
END;
CREATE TRIGGER city_activities_activity_update AFTER UPDATE OF status, start_key, end_key, published_by, deleted_at, venue_city_id ON activities WHEN old.status IS NOT new.status OR old.start_key IS NOT new.start_key OR old.end_key IS NOT new.end_key OR old.published_by IS NOT new.published_by OR old.deleted_at IS NOT new.deleted_at OR old.venue_city_id IS NOT new.venue_city_id BEGIN
    DELETE FROM city_activities WHERE activity_id = new.id;
    INSERT OR IGNORE INTO city_activities (city_id, activity_id, status, start_key, end_key, published_by)
    SELECT x.city_id, new.id, new.status, new.start_key, new.end_key, new.published_by
    FROM (SELECT city_id FROM activity_cities WHERE activity_id = new.id
          UNION SELECT new.venue_city_id WHERE new.venue_city_id IS NOT NULL) x
    WHERE new.deleted_at IS NULL;
END;
CREATE TRIGGER city_activities_activity_delete AFTER DELETE ON activities BEGIN
    DELETE FROM city_activities WHERE activity_id = old.id;
END;
CREATE TRIGGER city_activities_link_insert AFTER INSERT ON activity_cities BEGIN
    INSERT OR IGNORE INTO city_activities (city_id, activity_id, status, start_key, end_key, published_by)
    SELECT new.city_id, a.id, a.status, a.start_key, a.end_key, a.published_by
    FROM activities a WHERE a.id = new.activity_id AND a.deleted_at IS NULL;
END;
CREATE TRIGGER city_activities_link_delete AFTER DELETE ON activity_cities BEGIN
    DELETE FROM city_activities WHERE activity_id = old.activity_id AND city_id = old.city_id
    AND NOT EXISTS (SELECT 1 FROM activity_cities WHERE activity_id = old.activity_id AND city_id = old.city_id)
    AND NOT EXISTS (SELECT 1 FROM activities WHERE id = old.activity_id AND venue_city_id = old.city_id);
END;
CREATE TRIGGER cities_version_insert AFTER INSERT ON cities BEGIN
    UPDATE hub_meta SET value = value + 1 WHERE key = 'cities_version';
END;
CREATE TRIGGER cities_version_update AFTER UPDATE ON cities BEGIN
    UPDATE hub_meta SET value = value + 1 WHERE key = 'cities_version';
END;
CREATE TRIGGER cities_version_delete AFTER DELETE ON cities BEGIN
    UPDATE hub_meta SET value = value + 1 WHERE key = 'cities_version';
END;
"#;

/// PostgreSQL: trigger functions, each one statement (their bodies hold `;`).
const POSTGRES_TRIGGERS: &[&str] = &[
    r#"CREATE FUNCTION cityhub_city_activities_refresh(aid BIGINT) RETURNS void AS $$
BEGIN
    DELETE FROM city_activities WHERE activity_id = aid;
    INSERT INTO city_activities (city_id, activity_id, status, start_key, end_key, published_by)
    SELECT x.city_id, a.id, a.status, a.start_key, a.end_key, a.published_by
    FROM activities a
    JOIN (SELECT city_id FROM activity_cities WHERE activity_id = aid
          UNION SELECT venue_city_id FROM activities WHERE id = aid AND venue_city_id IS NOT NULL) x ON TRUE
    WHERE a.id = aid AND a.deleted_at IS NULL
    ON CONFLICT DO NOTHING;
END $$ LANGUAGE plpgsql"#,
    r#"CREATE FUNCTION cityhub_city_activities_on_activity() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM city_activities WHERE activity_id = OLD.id;
    ELSIF TG_OP = 'INSERT' THEN
        IF NEW.deleted_at IS NULL AND NEW.venue_city_id IS NOT NULL THEN
            INSERT INTO city_activities (city_id, activity_id, status, start_key, end_key, published_by)
            VALUES (NEW.venue_city_id, NEW.id, NEW.status, NEW.start_key, NEW.end_key, NEW.published_by)
            ON CONFLICT DO NOTHING;
        END IF;
    ELSIF OLD.status IS DISTINCT FROM NEW.status OR OLD.start_key IS DISTINCT FROM NEW.start_key
        OR OLD.end_key IS DISTINCT FROM NEW.end_key OR OLD.published_by IS DISTINCT FROM NEW.published_by
        OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at OR OLD.venue_city_id IS DISTINCT FROM NEW.venue_city_id THEN
        PERFORM cityhub_city_activities_refresh(NEW.id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql"#,
    r#"CREATE TRIGGER city_activities_activity AFTER INSERT OR UPDATE OR DELETE ON activities
    FOR EACH ROW EXECUTE FUNCTION cityhub_city_activities_on_activity()"#,
    r#"CREATE FUNCTION cityhub_city_activities_on_link() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO city_activities (city_id, activity_id, status, start_key, end_key, published_by)
        SELECT NEW.city_id, a.id, a.status, a.start_key, a.end_key, a.published_by
        FROM activities a WHERE a.id = NEW.activity_id AND a.deleted_at IS NULL
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM city_activities WHERE activity_id = OLD.activity_id AND city_id = OLD.city_id
        AND NOT EXISTS (SELECT 1 FROM activity_cities WHERE activity_id = OLD.activity_id AND city_id = OLD.city_id)
        AND NOT EXISTS (SELECT 1 FROM activities WHERE id = OLD.activity_id AND venue_city_id = OLD.city_id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql"#,
    r#"CREATE TRIGGER city_activities_link AFTER INSERT OR DELETE ON activity_cities
    FOR EACH ROW EXECUTE FUNCTION cityhub_city_activities_on_link()"#,
    r#"CREATE FUNCTION cityhub_cities_version() RETURNS trigger AS $$
BEGIN
    UPDATE hub_meta SET value = value + 1 WHERE key = 'cities_version';
    RETURN NULL;
END $$ LANGUAGE plpgsql"#,
    r#"CREATE TRIGGER cities_version AFTER INSERT OR UPDATE OR DELETE ON cities
    FOR EACH STATEMENT EXECUTE FUNCTION cityhub_cities_version()"#,
];

const SQLITE_DOWN: &str = r#"
DROP TRIGGER IF EXISTS city_activities_activity_insert;
DROP TRIGGER IF EXISTS city_activities_activity_update;
DROP TRIGGER IF EXISTS city_activities_activity_delete;
DROP TRIGGER IF EXISTS city_activities_link_insert;
DROP TRIGGER IF EXISTS city_activities_link_delete;
DROP TRIGGER IF EXISTS cities_version_insert;
DROP TRIGGER IF EXISTS cities_version_update;
DROP TRIGGER IF EXISTS cities_version_delete;
DROP TABLE IF EXISTS city_activities;
DELETE FROM hub_meta WHERE key = 'cities_version';
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER IF EXISTS city_activities_activity ON activities;
DROP TRIGGER IF EXISTS city_activities_link ON activity_cities;
DROP TRIGGER IF EXISTS cities_version ON cities;
DROP FUNCTION IF EXISTS cityhub_city_activities_on_activity();
DROP FUNCTION IF EXISTS cityhub_city_activities_on_link();
DROP FUNCTION IF EXISTS cityhub_city_activities_refresh(BIGINT);
DROP FUNCTION IF EXISTS cityhub_cities_version();
DROP TABLE IF EXISTS city_activities;
DELETE FROM hub_meta WHERE key = 'cities_version';
"#;

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => {
                // Triggers first, then the backfill, in one transaction: no
                // write can fall between them.
                let conn = manager.get_connection();
                for statement in POSTGRES_TRIGGERS {
                    conn.execute_unprepared(statement).await?;
                }
                run_sql(manager, TABLE).await
            }
            _ => {
                run_sql(manager, TABLE).await?;
                run_sql(manager, SQLITE_TRIGGERS).await
            }
        }
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            sea_orm::DatabaseBackend::Postgres => run_sql(manager, POSTGRES_DOWN).await,
            _ => run_sql(manager, SQLITE_DOWN).await,
        }
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
