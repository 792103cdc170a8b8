//! The hub keeps the query planner's statistics current by itself
//! (`database.analyze_interval_secs`): statistics taken while the network
//! was small are taken again once it has grown, on both backends, with no
//! operator and no autovacuum.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

use crate::support::{Backend, TestHub, eventually};

/// Checks of the statistics every `every_secs` seconds (none for 0).
fn keeper(every_secs: u64) -> impl FnOnce(&mut cityhub::config::Config) {
    move |c| c.database.analyze_interval_secs = every_secs
}

async fn connect(url: &str) -> DatabaseConnection {
    sea_orm::Database::connect(url).await.expect("connect")
}

async fn single_i64(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect(sql)
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("an integer")
}

async fn activities(db: &DatabaseConnection) -> i64 {
    single_i64(db, "SELECT COUNT(*) FROM activities").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_statistics_taken_small_are_taken_again_once_the_table_grew() {
    let hub = TestHub::start_with(Backend::Sqlite, keeper(0)).await;
    let test_db = hub.test_db.clone();
    hub.stop().await;
    // Statistics as if taken when the network had two activities: the
    // table now holds more than ten times that.
    let db = connect(&test_db.url).await;
    for sql in [
        "ANALYZE",
        "UPDATE sqlite_stat1 SET stat = '2' || substr(stat, instr(stat, ' ')) \
         WHERE tbl = 'activities' AND instr(stat, ' ') > 0",
    ] {
        db.execute_unprepared(sql).await.expect(sql);
    }
    let rows_in_statistics = "SELECT CAST(substr(stat, 1, instr(stat, ' ') - 1) AS INTEGER) \
         FROM sqlite_stat1 WHERE idx = 'sqlite_autoindex_activities_1'";
    assert_eq!(single_i64(&db, rows_in_statistics).await, 2);
    let total = activities(&db).await;
    assert!(total > 20, "the seeded network has {total} activities");

    let hub = TestHub::start_on(Backend::Sqlite, test_db.clone(), keeper(1)).await;
    eventually(
        "the planner's statistics count every activity",
        Duration::from_secs(30),
        || async {
            Some(single_i64(&db, rows_in_statistics).await)
                .filter(|n| *n == total)
                .ok_or(())
        },
    )
    .await;
    // The hub still answers after its connections reloaded the schema.
    let data = hub
        .ok("{ activities(first: 1) { totalCount } }", json!({}), None)
        .await;
    assert!(
        data["activities"]["totalCount"]
            .as_i64()
            .is_some_and(|n| n > 0)
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_changed_past_the_threshold_are_analyzed() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = Arc::new(TestHub::start_with(Backend::Postgres, keeper(0)).await);
    // More than 50 changed rows on a table never analyzed: past the
    // hub's threshold (50 plus the rows at the last analysis).
    let lyon = hub.token(Some("lyon")).await;
    for i in 0..60 {
        hub.ok(
            "mutation($i: ActivityInput!) { publishActivity(input: $i) { id } }",
            json!({ "i": { "kind": "WORKSHOP", "title": format!("Grown {i}") } }),
            Some(&lyon),
        )
        .await;
    }
    let test_db = hub.test_db.clone();
    Arc::into_inner(hub).expect("one owner").stop().await;
    let db = connect(&test_db.url).await;
    let total = activities(&db).await;
    assert_eq!(
        single_i64(&db, "SELECT COUNT(*) FROM pg_stat_user_tables WHERE relname = 'activities' AND last_analyze IS NOT NULL").await,
        0,
        "nobody analyzed the table yet"
    );

    let hub = TestHub::start_on(Backend::Postgres, test_db.clone(), keeper(1)).await;
    let analyzed = "SELECT CAST(c.reltuples AS BIGINT) FROM pg_class c \
         JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE s.relname = 'activities' AND s.schemaname = current_schema() AND s.last_analyze IS NOT NULL";
    eventually(
        "the hub analyzed the activities",
        Duration::from_secs(30),
        || async {
            let rows = db
                .query_all_raw(Statement::from_string(db.get_database_backend(), analyzed))
                .await
                .expect("pg_stat_user_tables");
            match rows.first().map(|r| r.try_get_by_index::<i64>(0)) {
                Some(Ok(n)) if n == total => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    hub.stop().await;
}
