//! `import`: a city's calendar of N timed events (5,000 by default, the
//! most a source imports per run), served by a local HTTP server inside
//! this process, connected as a source of a city and synced four times:
//!
//! 1. `import-first`: the first import (every event becomes an activity);
//! 2. `import-same`: the same body again (a `NOT_MODIFIED` run);
//! 3. `import-restamped`: every `DTSTAMP` changed and nothing else (the
//!    body differs, every item is compared and none is written);
//! 4. `import-1pct`: 1 % of the events changed (only those are written).
//!
//! Each is timed from `syncSource` to the run's outcome, and counts what
//! it wrote: activity writes are the rows appended to `activity_events`
//! (every created, changed or cancelled activity appends one, in the same
//! transaction), audit rows, and every SQL statement the hub ran
//! (`cityhub_db_queries_total` of `/metrics`, reads included). The first
//! must write N activities, the second and third none, the fourth N/100.
//!
//! The hub must be allowed to fetch from loopback
//! (`sources.allow_private_networks`), which the hubs this bench starts
//! are; its scheduler is off so that only these syncs run the source.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{Days, NaiveDate, Utc};
use cityhub_storage::Db;
use serde_json::{Value, json};

use crate::generate::count_rows;
use crate::load;
use crate::report::ScenarioReport;

/// What the scenario needs from the run.
pub struct ImportRun<'a> {
    /// The hub.
    pub hub: SocketAddr,
    /// Its database (to count rows).
    pub db: &'a Db,
    /// A secretariat `Authorization` value.
    pub secretariat: &'a str,
    /// The city the source is connected to.
    pub city: &'a str,
    /// Unique to this run: the feed's URL and its events' UIDs hold it.
    pub run_id: &'a str,
    /// Events in the feed.
    pub events: usize,
    /// `sqlite` or `postgres`.
    pub backend: &'a str,
}

/// The feed as it is served now.
#[derive(Clone, Default)]
struct Feed(Arc<RwLock<Arc<str>>>);

impl Feed {
    fn set(&self, body: String) {
        if let Ok(mut current) = self.0.write() {
            *current = Arc::from(body);
        }
    }

    fn get(&self) -> Arc<str> {
        self.0
            .read()
            .map(|b| b.clone())
            .unwrap_or_else(|_| Arc::from(""))
    }
}

async fn serve_feed(State(feed): State<Feed>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
        feed.get().to_string(),
    )
}

/// The calendar: `events` events from tomorrow on, one in ten all-day, the
/// others timed in Europe/Paris (some across the change to winter time);
/// events in `changed` carry a different title.
fn calendar(run_id: &str, events: usize, stamp: &str, changed: &HashSet<usize>) -> String {
    let today = Utc::now().date_naive();
    let mut out = String::with_capacity(events * 420 + 256);
    out.push_str("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cityhub-bench//import//EN\r\n");
    out.push_str("X-WR-CALNAME:Bench city\r\nX-WR-TIMEZONE:Europe/Paris\r\n");
    for i in 0..events {
        let day: NaiveDate = today
            .checked_add_days(Days::new(1 + (i % 330) as u64))
            .unwrap_or(today);
        let ymd = day.format("%Y%m%d");
        let hour = 9 + i % 12;
        out.push_str("BEGIN:VEVENT\r\n");
        out.push_str(&format!("UID:bench-{run_id}-{i}@cityhub-bench\r\n"));
        out.push_str(&format!("DTSTAMP:{stamp}\r\n"));
        if i % 10 == 0 {
            out.push_str(&format!("DTSTART;VALUE=DATE:{ymd}\r\n"));
        } else {
            out.push_str(&format!(
                "DTSTART;TZID=Europe/Paris:{ymd}T{hour:02}3000\r\nDTEND;TZID=Europe/Paris:{ymd}T{:02}0000\r\n",
                hour + 2
            ));
        }
        let suffix = if changed.contains(&i) {
            " (new programme)"
        } else {
            ""
        };
        out.push_str(&format!("SUMMARY:Bench event {i} of {run_id}{suffix}\r\n"));
        out.push_str(&format!(
            "DESCRIPTION:Event {i} of the bench calendar: concerts\\, talks and workshops\r\n \
             for everyone\\, folded as calendar software folds long lines.\r\n"
        ));
        out.push_str(&format!("LOCATION:Hall {}\\, Bench city\r\n", i % 40));
        out.push_str("CATEGORIES:music,bench\r\n");
        out.push_str(&format!(
            "URL:https://bench.example/events/{run_id}/{i}\r\n"
        ));
        out.push_str("END:VEVENT\r\n");
    }
    out.push_str("END:VCALENDAR\r\n");
    out
}

/// What the hub has written so far: activity events, audit rows, and SQL
/// statements.
async fn writes(hub: SocketAddr, db: &Db) -> anyhow::Result<(i64, i64, f64)> {
    let events = count_rows(db, "activity_events").await?;
    let audit = count_rows(db, "audit_log").await?;
    let statements = match load::get(hub, "/metrics").await {
        Ok((200, body)) => String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix("cityhub_db_queries_total "))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN),
        _ => f64::NAN,
    };
    Ok((events, audit, statements))
}

const SOURCE: &str = "id lastStatus lastError importedCount skippedItems { uid reason }";

/// Syncs the source and waits for the run's outcome; returns it and the
/// seconds it took.
async fn sync(run: &ImportRun<'_>, id: &str) -> anyhow::Result<(Value, f64)> {
    let started = Instant::now();
    let data = load::graphql(
        run.hub,
        &format!("mutation($id: ID!) {{ syncSource(id: $id) {{ {SOURCE} }} }}"),
        json!({ "id": id }),
        Some(run.secretariat),
    )
    .await?;
    let mut source = data["syncSource"].clone();
    let deadline = started + Duration::from_secs(600);
    while source["lastStatus"] == "RUNNING" {
        if Instant::now() > deadline {
            bail!("the run did not end within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let data = load::graphql(
            run.hub,
            &format!("query($id: ID!) {{ source(id: $id) {{ {SOURCE} }} }}"),
            json!({ "id": id }),
            Some(run.secretariat),
        )
        .await?;
        source = data["source"].clone();
    }
    Ok((source, started.elapsed().as_secs_f64()))
}

/// One sync, reported: its time, its outcome and its writes, checked
/// against `expected_status` and `expected_writes` activity writes.
async fn phase(
    run: &ImportRun<'_>,
    id: &str,
    name: &str,
    expected_status: &str,
    expected_writes: i64,
) -> anyhow::Result<ScenarioReport> {
    let before = writes(run.hub, run.db).await?;
    let (source, seconds) = sync(run, id).await?;
    let after = writes(run.hub, run.db).await?;
    let mut report = ScenarioReport {
        name: name.to_owned(),
        backend: run.backend.to_owned(),
        concurrency: 1,
        ..ScenarioReport::default()
    };
    let activity_writes = after.0 - before.0;
    let status = source["lastStatus"].as_str().unwrap_or_default().to_owned();
    report.extra.insert("events".into(), json!(run.events));
    report
        .extra
        .insert("seconds".into(), json!((seconds * 1000.0).round() / 1000.0));
    report.extra.insert("status".into(), json!(status));
    report
        .extra
        .insert("activity_writes".into(), json!(activity_writes));
    report
        .extra
        .insert("audit_rows".into(), json!(after.1 - before.1));
    report
        .extra
        .insert("statements".into(), json!(after.2 - before.2));
    report
        .extra
        .insert("imported".into(), source["importedCount"].clone());
    let skipped = source["skippedItems"].as_array().map_or(0, Vec::len);
    report.extra.insert("skipped".into(), json!(skipped));
    report.note = format!(
        "{:.3} s, {status}, {activity_writes} activity writes, {} statements",
        seconds,
        after.2 - before.2
    );
    if status != expected_status {
        report.failures.push(format!(
            "the run ended {status}, not {expected_status} ({})",
            source["lastError"]
        ));
    }
    if activity_writes != expected_writes {
        report.failures.push(format!(
            "{activity_writes} activity writes, expected {expected_writes}"
        ));
    }
    if skipped > 0 {
        report.failures.push(format!(
            "{skipped} items skipped: {}",
            source["skippedItems"]
        ));
    }
    Ok(report)
}

/// Runs the four phases.
pub async fn run(run: ImportRun<'_>) -> anyhow::Result<Vec<ScenarioReport>> {
    let feed = Feed::default();
    let none = HashSet::new();
    feed.set(calendar(run.run_id, run.events, "20260101T000000Z", &none));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let feed_addr = listener.local_addr()?;
    let app = axum::Router::new()
        .route("/feeds/{name}", axum::routing::get(serve_feed))
        .with_state(feed.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    let result = phases(&run, &feed, feed_addr).await;
    let _ = stop.send(());
    let _ = server.await;
    result
}

async fn phases(
    run: &ImportRun<'_>,
    feed: &Feed,
    feed_addr: SocketAddr,
) -> anyhow::Result<Vec<ScenarioReport>> {
    let url = format!("http://{feed_addr}/feeds/{}.ics", run.run_id);
    let data = load::graphql(
        run.hub,
        "mutation($input: SourceInput!) { connectSource(input: $input) { id } }",
        json!({ "input": { "kind": "ICALENDAR", "url": url, "city": run.city } }),
        Some(run.secretariat),
    )
    .await
    .context(
        "connectSource (the hub must allow private networks: sources.allow_private_networks)",
    )?;
    let id = data["connectSource"]["id"]
        .as_str()
        .context("connectSource gave no id")?
        .to_owned();
    let events = i64::try_from(run.events)?;
    let mut reports = vec![phase(run, &id, "import-first", "OK", events).await?];
    reports.push(phase(run, &id, "import-same", "NOT_MODIFIED", 0).await?);
    let none = HashSet::new();
    feed.set(calendar(run.run_id, run.events, "20260102T000000Z", &none));
    reports.push(phase(run, &id, "import-restamped", "OK", 0).await?);
    // Every hundredth event, spread over the feed.
    let changed: HashSet<usize> = (0..run.events)
        .step_by(100)
        .map(|i| i + 7)
        .filter(|i| *i < run.events)
        .collect();
    feed.set(calendar(
        run.run_id,
        run.events,
        "20260103T000000Z",
        &changed,
    ));
    reports.push(phase(run, &id, "import-1pct", "OK", i64::try_from(changed.len())?).await?);
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_is_icalendar_with_the_events_asked_for() {
        let changed = HashSet::from([3]);
        let text = calendar("r1", 12, "20260101T000000Z", &changed);
        assert!(text.starts_with("BEGIN:VCALENDAR\r\n"));
        assert_eq!(text.matches("BEGIN:VEVENT").count(), 12);
        assert_eq!(text.matches("DTSTART;VALUE=DATE").count(), 2);
        assert_eq!(text.matches("(new programme)").count(), 1);
        assert!(
            text.lines().all(|l| l.trim_end_matches('\r').len() <= 75),
            "lines are folded"
        );
    }
}
