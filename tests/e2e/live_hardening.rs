//! Durability of group-committed publishes: 20 writers publish at once on
//! SQLite (where concurrent publishes share one transaction and one
//! fsync), the process is killed with SIGKILL mid-stream, and every publish
//! that was acknowledged must be in the database file afterwards.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_publish_is_lost_to_a_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let banner = crate::support::demo_banner(&mut child).await;
    let find = |label: &str| banner.value(label);
    let url = find("GraphQL and GraphiQL:");
    let token = find("Secretariat token");
    let client = reqwest::Client::new();

    // 20 writers publish as fast as they are answered; each acknowledgement
    // is announced on `count`, so the kill below waits for an event, not
    // for a fixed time.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..20 {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let (acknowledged, stop, count_tx) = (acknowledged.clone(), stop.clone(), count_tx.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let body = json!({
                    "query": "mutation($i: ActivityInput!) { publishActivity(input: $i) { slug } }",
                    "variables": { "i": { "kind": "WORKSHOP", "title": format!("Durable {w} {i}") } },
                });
                let Ok(response) = client.post(&url).bearer_auth(&token).json(&body).send().await
                else {
                    return;
                };
                let Ok(value) = response.json::<Value>().await else {
                    return;
                };
                if let Some(slug) = value["data"]["publishActivity"]["slug"].as_str()
                    && let Ok(mut list) = acknowledged.lock()
                {
                    list.push(slug.to_owned());
                    count_tx.send_replace(list.len());
                }
            }
        }));
    }
    // Kill once a good number is acknowledged, while writers are mid-flight.
    tokio::time::timeout(Duration::from_secs(120), count_rx.wait_for(|n| *n >= 200))
        .await
        .expect("200 publishes acknowledged within the deadline")
        .expect("the writers are running");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let acknowledged = acknowledged.lock().expect("list").clone();

    let db = format!("sqlite://{}", dir.path().join("cityhub.db").display());
    let conn = sea_orm::Database::connect(db.as_str())
        .await
        .expect("open the killed hub's database");
    let rows = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT a.slug AS slug FROM activities a \
             JOIN activity_events e ON e.activity_id = a.id AND e.event_type = 'PUBLISHED' \
             WHERE a.title LIKE 'Durable %'",
        ))
        .await
        .expect("read");
    let stored: std::collections::HashSet<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String>("", "slug").ok())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|s| !stored.contains(*s))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged publishes lost: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(10)]
    );
}
