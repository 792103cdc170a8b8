//! The live-event horizon on PostgreSQL (issue 20): only the hub's own
//! unfinished writers hold back delivery. A transaction of any length in
//! another database of the server, or in the hub's database on a
//! connection that is not the hub's, delays nothing; a hub connection's
//! open writer still holds back the events committed after it, so they are
//! delivered in sequence order, each once, even to a reader whose snapshot
//! predates that writer's commit. Also: every connection the hub opens is
//! named as the hub's, the log's trigger refuses others, and the migration
//! goes down and up again.
//!
//! PostgreSQL only: SQLite has one writer at a time and no horizon.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cityhub_storage::db::HUB_APPLICATION_NAME;
use cityhub_storage::repo::events::{EventLog, NewEvent};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, Statement,
    TransactionTrait,
};
use serde_json::json;

use crate::support::{Backend, TestHub, pg_admin_url};
use crate::ws::{WAIT, WsClient};

/// The name of the test's own connections that are not the hub's.
const FOREIGN: &str = "horizon-test-foreign";

/// A connection of its own to `url`, named `application_name`.
async fn connect_as(url: &str, application_name: &'static str) -> DatabaseConnection {
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(move |o| o.application_name(application_name));
    sea_orm::Database::connect(options)
        .await
        .expect("connect to PostgreSQL")
}

/// One bigint column `value` of the only row of `sql`, run on `db`.
async fn bigint(db: &impl ConnectionTrait, sql: &str) -> Option<i64> {
    db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .expect("query")
        .expect("a row")
        .try_get::<Option<i64>>("", "value")
        .expect("a bigint")
}

/// The transaction id `txn` holds, if it has taken one.
async fn xact_id(txn: &DatabaseTransaction) -> Option<i64> {
    bigint(
        txn,
        "SELECT pg_current_xact_id_if_assigned()::text::bigint AS value",
    )
    .await
}

/// Begins a transaction on `conn` that takes a transaction id (as any
/// write does) and stays open: the transaction and its id.
async fn open_writer(conn: &DatabaseConnection) -> (DatabaseTransaction, i64) {
    let txn = conn.begin().await.expect("begin");
    txn.execute_unprepared("CREATE TEMP TABLE horizon_probe (x int)")
        .await
        .expect("a write");
    let xid = xact_id(&txn)
        .await
        .expect("the write took a transaction id");
    (txn, xid)
}

/// Asserts that the server-wide snapshot `xmin`, which the horizon used to
/// follow, is at or below `xid` as seen from the hub's database: before
/// issue 20, the open transaction `xid` held back every later event.
async fn assert_old_horizon_would_wait_for(hub: &TestHub, xid: i64) {
    let xmin = bigint(
        hub.db.conn(),
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS value",
    )
    .await
    .expect("an xmin");
    assert!(
        xmin <= xid,
        "the server-wide xmin {xmin} is at or below the open transaction {xid}"
    );
}

/// Publishes a workshop titled `title` as `token`: its id and slug.
async fn publish(hub: &TestHub, token: &str, title: &str) -> (i64, String) {
    let data = hub
        .ok(
            "mutation($i: ActivityInput!) { publishActivity(input: $i) { id slug } }",
            json!({ "i": { "kind": "WORKSHOP", "title": title } }),
            Some(token),
        )
        .await;
    let activity = &data["publishActivity"];
    (
        activity["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("a numeric id"),
        activity["slug"].as_str().expect("a slug").to_owned(),
    )
}

/// The sequence number of an event's cursor (`ev:<seq>`, base64).
fn seq_of(cursor: &str) -> i64 {
    use base64::Engine;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .expect("a base64 cursor");
    String::from_utf8(text)
        .expect("cursor text")
        .strip_prefix("ev:")
        .and_then(|seq| seq.parse().ok())
        .expect("an ev: cursor")
}

/// The story of a foreign transaction: with a subscription open, a
/// transaction on `foreign` takes an id and stays open; an activity
/// published meanwhile reaches the subscriber while it is still open.
async fn foreign_transaction_delays_nothing(hub: &TestHub, foreign: &DatabaseConnection) {
    let secretariat = hub.token(None).await;
    let client = WsClient::connect(hub, None).await;
    let mut stream = client.events(json!(null), None).await;
    client.synced().await;

    let (open, xid) = open_writer(foreign).await;
    assert_old_horizon_would_wait_for(hub, xid).await;
    let (_, slug) = publish(hub, &secretariat, "Not held back").await;
    let event = stream.event().await;
    assert_eq!(event.slug, slug);
    assert_eq!(event.kind, "PUBLISHED");
    assert_eq!(
        xact_id(&open).await,
        Some(xid),
        "the event arrived while the foreign transaction was still open"
    );
    open.rollback().await.expect("rollback");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_transaction_in_another_database_delays_nothing() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let foreign = connect_as(&pg_admin_url(), FOREIGN).await;
    foreign_transaction_delays_nothing(&hub, &foreign).await;
    let _ = foreign.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_foreign_transaction_in_the_hubs_database_delays_nothing() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let foreign = connect_as(&hub.test_db.url, FOREIGN).await;
    foreign_transaction_delays_nothing(&hub, &foreign).await;
    let _ = foreign.close().await;
}

/// Another hub on the same server (its connections named as the hub's,
/// in its own database) writes nothing to this hub's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_hub_writer_of_another_database_delays_nothing() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let other_hub = connect_as(&pg_admin_url(), HUB_APPLICATION_NAME).await;
    foreign_transaction_delays_nothing(&hub, &other_hub).await;
    let _ = other_hub.close().await;
}

/// A writer on a connection of the hub (another instance's, say) that
/// appended an event and is still open holds back the events committed
/// after it: nothing past it is final until it ends, then both arrive in
/// sequence order, the open writer's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_open_hub_writer_holds_back_later_events_in_order() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let secretariat = hub.token(None).await;
    let (first_id, first_slug) = publish(&hub, &secretariat, "Updated while open").await;
    let client = WsClient::connect(&hub, None).await;
    let mut stream = client.events(json!(null), None).await;
    client.synced().await;

    let instance = connect_as(&hub.test_db.url, HUB_APPLICATION_NAME).await;
    let open = instance.begin().await.expect("begin");
    let open_seq = EventLog::append(
        &open,
        NewEvent {
            activity: cityhub_domain::ActivityId(first_id),
            event_type: cityhub_domain::ActivityEventType::Updated,
            actor: None,
            status: cityhub_domain::ActivityStatus::Published,
            published_by: None,
        },
    )
    .await
    .expect("append in the open transaction");
    let (_, later) = tokio::time::timeout(WAIT, publish(&hub, &secretariat, "Committed first"))
        .await
        .expect("a publish does not wait for another open writer");

    // The pump's own rule: nothing from the open writer's event on is
    // final while it is open, and the later commit waits above it.
    let (final_events, waiting) = EventLog::read(hub.db.conn(), open_seq - 1, 10)
        .await
        .expect("read the log");
    assert!(final_events.is_empty(), "{final_events:?}");
    assert!(waiting, "the later commit waits above the horizon");

    open.commit().await.expect("commit");
    let events = stream.events(2).await;
    assert_eq!(
        events
            .iter()
            .map(|e| (e.kind.as_str(), e.slug.as_str()))
            .collect::<Vec<_>>(),
        [
            ("UPDATED", first_slug.as_str()),
            ("PUBLISHED", later.as_str())
        ]
    );
    assert_eq!(seq_of(&events[0].cursor), open_seq);
    assert!(seq_of(&events[1].cursor) > open_seq);
    client.close().await;
    let _ = instance.close().await;
}

/// The horizon is exact for the snapshot it is computed in: a reader whose
/// snapshot was taken while a hub writer was open, and which reads after
/// that writer committed (here a `REPEATABLE READ` transaction, the
/// longest-lived snapshot there is), does not see the writer's event, so
/// it must not take the later events as final either: it would skip it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_reader_does_not_skip_a_writer_that_ended_after_its_snapshot() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let secretariat = hub.token(None).await;
    let (first_id, _) = publish(&hub, &secretariat, "Ends after the snapshot").await;
    let instance = connect_as(&hub.test_db.url, HUB_APPLICATION_NAME).await;
    let open = instance.begin().await.expect("begin");
    let open_seq = EventLog::append(
        &open,
        NewEvent {
            activity: cityhub_domain::ActivityId(first_id),
            event_type: cityhub_domain::ActivityEventType::Updated,
            actor: None,
            status: cityhub_domain::ActivityStatus::Published,
            published_by: None,
        },
    )
    .await
    .expect("append in the open transaction");
    let (_, later) = publish(&hub, &secretariat, "Committed while open").await;

    let reader = hub
        .db
        .conn()
        .begin_with_config(Some(sea_orm::IsolationLevel::RepeatableRead), None)
        .await
        .expect("begin the reader");
    // Its snapshot, taken by its first statement: the later event
    // committed, the writer still open.
    bigint(&reader, "SELECT count(*) AS value FROM activity_events").await;
    open.commit().await.expect("commit the writer");

    let (final_events, waiting) = EventLog::read(&reader, open_seq - 1, 10)
        .await
        .expect("read the log");
    assert!(
        final_events.is_empty(),
        "the snapshot does not see the ended writer's event, so nothing after it is final: {final_events:?}"
    );
    assert!(
        waiting,
        "the later event ({later}) waits for a newer snapshot"
    );
    reader.rollback().await.expect("end the reader");

    // A new snapshot sees both, in order (once no write of the hub's own
    // is open: its background fold of the kept counts may be, for a
    // moment, on a loaded machine).
    let both = crate::support::eventually(
        "both events final in a new snapshot",
        std::time::Duration::from_secs(20),
        || async {
            let (both, waiting) = EventLog::read(hub.db.conn(), open_seq - 1, 10)
                .await
                .expect("read the log");
            if waiting { Err(both) } else { Ok(both) }
        },
    )
    .await;
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[0].seq, open_seq);
    let _ = instance.close().await;
}

/// The horizon waits only for connections named as the hub's, so the
/// log's trigger refuses an event from any other connection (it could
/// commit below events already delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_log_refuses_events_from_connections_not_the_hubs() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let secretariat = hub.token(None).await;
    let (id, _) = publish(&hub, &secretariat, "Refused event").await;
    let foreign = connect_as(&hub.test_db.url, FOREIGN).await;
    let txn = foreign.begin().await.expect("begin");
    let refused = EventLog::append(
        &txn,
        NewEvent {
            activity: cityhub_domain::ActivityId(id),
            event_type: cityhub_domain::ActivityEventType::Updated,
            actor: None,
            status: cityhub_domain::ActivityStatus::Published,
            published_by: None,
        },
    )
    .await
    .expect_err("an event from a connection not named cityhub");
    assert!(
        format!("{refused:?}").contains("appended only by connections named cityhub"),
        "{refused:?}"
    );
    let _ = txn.rollback().await;
    let _ = foreign.close().await;
}

/// The application names and queries of the other client connections on
/// the database of `admin`.
async fn sessions(admin: &DatabaseConnection) -> Vec<(String, String)> {
    admin
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT application_name, query FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
        ))
        .await
        .expect("pg_stat_activity")
        .into_iter()
        .map(|row| {
            (
                row.try_get("", "application_name").expect("name"),
                row.try_get("", "query").expect("query"),
            )
        })
        .collect()
}

/// Every connection the hub opens, the pool's and the listener's, is
/// named as the hub's, even when its URL names them otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_hub_connection_is_named_as_the_hubs() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start_with(Backend::Postgres, |c| {
        c.database.url = format!("{}?application_name=renamed", c.database.url);
    })
    .await;
    let admin = connect_as(&hub.test_db.url, FOREIGN).await;
    let seen = crate::support::eventually("a LISTEN connection", WAIT, || async {
        let seen = sessions(&admin).await;
        if seen.iter().any(|(_, query)| query.starts_with("LISTEN")) {
            Ok(seen)
        } else {
            Err(seen)
        }
    })
    .await;
    assert!(seen.len() >= 2, "the pool and the listener: {seen:?}");
    assert!(
        seen.iter().all(|(name, _)| name == HUB_APPLICATION_NAME),
        "{seen:?}"
    );
    let _ = admin.close().await;
}

/// The source of `cityhub_event_horizon()`, its language, and the shift
/// kept in `hub_meta` (if any).
async fn horizon_function(hub: &TestHub) -> (String, String, Option<i64>) {
    let row = hub
        .db
        .conn()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "SELECT prosrc, (SELECT lanname::text FROM pg_language WHERE oid = prolang) AS language, \
             (SELECT value FROM hub_meta WHERE key = 'event_seq_shift') AS shift \
             FROM pg_proc WHERE proname = 'cityhub_event_horizon'",
        ))
        .await
        .expect("pg_proc")
        .expect("the function");
    (
        row.try_get("", "prosrc").expect("prosrc"),
        row.try_get("", "language").expect("language"),
        row.try_get("", "shift").expect("shift"),
    )
}

/// The migration goes down (the server-wide horizon is back, with the
/// same shift) and up again, and events still flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_horizon_migration_goes_down_and_up_again() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let (source, language, shift) = horizon_function(&hub).await;
    let shift = shift.expect("the shift is kept");
    assert_eq!(language, "plpgsql");
    assert!(source.contains("pg_stat_activity"), "{source}");

    // This migration and every one after it.
    hub.db
        .migrate_down(Some(crate::support::steps_to_undo(
            "m20261207_000001_event_horizon_own_writers",
        )))
        .await
        .expect("down");
    let (old, old_language, gone) = horizon_function(&hub).await;
    assert_eq!(old_language, "sql");
    assert!(gone.is_none());
    assert!(
        old.contains(&format!(
            "pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {shift}) * 65536"
        )),
        "{old}"
    );

    hub.db.migrate_up().await.expect("up");
    let (again, again_language, again_shift) = horizon_function(&hub).await;
    assert_eq!((again, again_language), (source, language));
    assert_eq!(again_shift, Some(shift));

    let secretariat = hub.token(None).await;
    let client = WsClient::connect(&hub, None).await;
    let mut stream = client.events(json!(null), None).await;
    client.synced().await;
    let (_, slug) = publish(&hub, &secretariat, "After the round trip").await;
    assert_eq!(stream.event().await.slug, slug);
    client.close().await;
}

/// Concurrent publishers, while a foreign transaction stays open and short
/// hub transactions that take an id keep beginning and ending (so some end
/// between a reader's snapshot and its look at the hub's writers): the
/// subscriber gets every event once, in increasing sequence order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_writers_deliver_every_event_once_in_order() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = Arc::new(TestHub::start(Backend::Postgres).await);
    let secretariat = hub.token(None).await;
    let client = WsClient::connect(&hub, None).await;
    let mut stream = client.events(json!(null), None).await;
    client.synced().await;
    let foreign = connect_as(&hub.test_db.url, FOREIGN).await;
    let (foreign_open, foreign_xid) = open_writer(&foreign).await;

    let stop = Arc::new(tokio::sync::Notify::new());
    let churn = {
        let url = hub.test_db.url.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let instance = connect_as(&url, HUB_APPLICATION_NAME).await;
            loop {
                let (txn, _) = open_writer(&instance).await;
                txn.rollback().await.expect("rollback");
                tokio::select! {
                    () = stop.notified() => break,
                    () = tokio::task::yield_now() => {}
                }
            }
            let _ = instance.close().await;
        })
    };
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let hub = hub.clone();
            let token = secretariat.clone();
            tokio::spawn(async move {
                let mut slugs = Vec::new();
                for i in 0..10 {
                    slugs.push(
                        publish(&hub, &token, &format!("Writer {p} event {i}"))
                            .await
                            .1,
                    );
                }
                slugs
            })
        })
        .collect();
    let mut published = BTreeSet::new();
    for publisher in publishers {
        let slugs = tokio::time::timeout(Duration::from_secs(60), publisher)
            .await
            .expect("publishing timed out")
            .expect("publisher");
        published.extend(slugs);
    }
    let events = stream.events(published.len()).await;
    stop.notify_one();
    churn.await.expect("churn");

    let seqs: Vec<i64> = events.iter().map(|e| seq_of(&e.cursor)).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "increasing sequence numbers: {seqs:?}"
    );
    let delivered: BTreeSet<String> = events.iter().map(|e| e.slug.clone()).collect();
    assert_eq!(delivered, published, "every event once");
    // Nothing more (no event twice): the next one is a new publish.
    let (_, last) = publish(&hub, &secretariat, "The last one").await;
    assert_eq!(stream.event().await.slug, last);
    assert_eq!(
        xact_id(&foreign_open).await,
        Some(foreign_xid),
        "all of it while the foreign transaction was open"
    );
    foreign_open.rollback().await.expect("rollback");
    client.close().await;
    let _ = foreign.close().await;
}
