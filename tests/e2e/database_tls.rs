//! The hub's PostgreSQL connections to a server on a loopback address do
//! not negotiate TLS unless the URL's `sslmode` asks for it (TLS there
//! protects nothing that leaves the machine, and cost about a fifth of the
//! hub's CPU per read); an explicit `sslmode` always wins.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

use crate::support::{Backend, TestHub};

/// The hub's connections to `db`'s database: (with TLS, in all).
async fn hub_connections(db: &DatabaseConnection) -> (i64, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FILTER (WHERE s.ssl) AS tls, COUNT(*) AS total \
             FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.application_name = 'cityhub' AND a.datname = current_database()",
        ))
        .await
        .expect("pg_stat_ssl")
        .expect("a row");
    (
        row.try_get::<i64>("", "tls").expect("tls"),
        row.try_get::<i64>("", "total").expect("total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_loopback_connections_skip_tls_unless_the_url_asks() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    assert!(
        hub.base.contains("127.0.0.1") && hub.test_db.url.contains("@127.0.0.1"),
        "the test server is on loopback: {}",
        hub.test_db.url
    );
    hub.ok("{ activities(first: 5) { totalCount } }", json!({}), None)
        .await;
    let db = sea_orm::Database::connect(&hub.test_db.url)
        .await
        .expect("connect");
    let (tls, total) = hub_connections(&db).await;
    assert!(total > 0, "the hub holds connections");
    assert_eq!(tls, 0, "no TLS over loopback by default");
    let test_db = hub.test_db.clone();
    hub.stop().await;

    // Asked for, it is used (where the server offers it at all).
    let offered = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT current_setting('ssl') = 'on' AS offered",
        ))
        .await
        .expect("ssl setting")
        .expect("a row")
        .try_get::<bool>("", "offered")
        .expect("offered");
    if !offered {
        eprintln!("the test server offers no TLS: sslmode=require not checked");
        return;
    }
    let url = format!("{}?sslmode=require", test_db.url);
    let hub = TestHub::start_on(Backend::Postgres, test_db.clone(), |c| {
        c.database.url = url;
    })
    .await;
    hub.ok("{ activities(first: 5) { totalCount } }", json!({}), None)
        .await;
    let (tls, total) = hub_connections(&db).await;
    assert!(total > 0 && tls == total, "{tls} of {total} with TLS");
    hub.stop().await;
}
