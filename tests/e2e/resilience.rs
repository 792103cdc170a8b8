//! When the database goes away: requests fail within seconds with a clear
//! error, `/readyz` turns 503, nothing is acknowledged that was not stored,
//! and the hub recovers by itself when the database is back. The outage is
//! a real one: the hub reaches PostgreSQL through a TCP proxy that the test
//! cuts (closing every connection) and restores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::support::{Backend, TestHub, pg_available};

/// A TCP proxy to PostgreSQL that can be cut and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, conns) = (up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().await.push(task);
            }
        });
        Self {
            port,
            up,
            connections,
            _accept: accept,
        }
    }

    /// Cuts every open connection and refuses new ones.
    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().await.drain(..) {
            task.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn ready(hub: &TestHub) -> u16 {
    match hub.client.get(format!("{}/readyz", hub.base)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// A deadline for what must happen, never a measure of how fast.
const GENEROUS: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_fast_and_recovers() {
    if !pg_available().await {
        return;
    }
    let proxy = Proxy::start("127.0.0.1:5432".into()).await;
    let port = proxy.port;
    let hub = TestHub::start_with(Backend::Postgres, move |c| {
        c.database.url = c.database.url.replacen(":5432/", &format!(":{port}/"), 1);
        c.database.connect_timeout_secs = 2;
        c.database.acquire_timeout_secs = 2;
    })
    .await;
    let token = hub.token(Some("lyon")).await;
    let count = "{ activities(first: 1) { totalCount } }";
    let before = hub.ok(count, json!({}), None).await["activities"]["totalCount"]
        .as_i64()
        .expect("count");
    assert_eq!(ready(&hub).await, 200);

    proxy.cut().await;
    // The read is answered (not left hanging); how fast is the bench's
    // business, so the deadline is generous.
    let (_, body) = tokio::time::timeout(GENEROUS, hub.post(count, json!({}), None))
        .await
        .expect("a read during the outage is answered");
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    assert_eq!(error["extensions"]["retryable"], true, "{body}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("database is unavailable"),
        "{body}"
    );
    assert!(!body.to_string().contains("SELECT"), "no SQL leaks: {body}");
    assert_eq!(ready(&hub).await, 503);
    // A write during the outage is refused, not acknowledged, and says so:
    // SERVICE_UNAVAILABLE, retryable, HTTP 503 where the media type allows.
    let response = hub
        .client
        .post(hub.url())
        .bearer_auth(&token)
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": r#"mutation { publishActivity(input: { kind: WORKSHOP, title: "During the outage" }) { id } }"# }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some(), "Retry-After with the 503");
    // A token check that cannot reach the database is refused the same way
    // (or, while the record is still cached, the write itself fails so).
    let code = &body["errors"][0]["extensions"]["code"];
    assert_eq!(code, "SERVICE_UNAVAILABLE", "{body}");
    assert_eq!(body["errors"][0]["extensions"]["retryable"], true, "{body}");
    assert!(
        body["data"].is_null() || body["data"]["publishActivity"].is_null(),
        "{body}"
    );

    proxy.restore();
    // Recovery is the pool reconnecting on demand: each probe is a fresh
    // attempt, so this is a bounded retry of a request, not a sleep-poll
    // on state (no event announces that the database is back).
    crate::support::eventually("the hub recovering (/readyz 200)", GENEROUS, || async {
        match ready(&hub).await {
            200 => Ok(()),
            status => Err(status),
        }
    })
    .await;
    let created = hub
        .ok(r#"mutation { publishActivity(input: { kind: WORKSHOP, title: "After the outage" }) { slug } }"#, json!({}), Some(&token))
        .await;
    assert_eq!(created["publishActivity"]["slug"], "after-the-outage");
    let after = hub.ok(count, json!({}), None).await["activities"]["totalCount"]
        .as_i64()
        .expect("count");
    assert_eq!(after, before + 1, "exactly the acknowledged write is there");
    let search = hub
        .ok(
            r#"{ activities(filter: { text: "outage" }) { nodes { title } } }"#,
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        search["activities"]["nodes"],
        json!([{ "title": "After the outage" }])
    );
}
