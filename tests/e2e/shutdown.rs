//! Stopping a hub ends every task it started: the event pump, the
//! PostgreSQL listener, the pruner, the rate-limit sweeper, and each
//! connection, even one that never finishes its request (cut when the
//! grace period is over). `app::serve` returns only after its task
//! registry is empty, so a task outliving `stop` fails here.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::support::TestHub;

both_backends!(no_task_outlives_stop, |backend| async move {
    let hub = TestHub::start(backend).await;
    let tasks = hub.tasks.clone();
    hub.ok("{ activities(first: 1) { totalCount } }", json!({}), None)
        .await;
    // Pump, pruner and sweeper; the listener too on PostgreSQL.
    let background = if backend == crate::support::Backend::Postgres {
        4
    } else {
        3
    };
    assert!(tasks.len() >= background, "{} tasks running", tasks.len());
    // A connection stuck in the middle of its headers: graceful shutdown
    // alone would wait for it until the header timer fires (10 s).
    let addr = hub.base.trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stuck
        .write_all(b"POST /graphql HTTP/1.1\r\nHost: cityhub\r\n")
        .await
        .expect("write");
    hub.stop().await;
    assert!(
        tasks.is_closed(),
        "the registry is closed once serving stops"
    );
    assert_eq!(tasks.len(), 0, "every task ended before `serve` returned");
    // The stuck connection was closed by the hub, not left open.
    let mut rest = Vec::new();
    // (EOF or a reset: either way the read ends instead of waiting.)
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stuck.read_to_end(&mut rest),
    )
    .await
    .expect("the hub closed the stuck connection");
});
