//! `poll`: what connected calendars cost a hub that polls them on its
//! schedule. Local HTTP servers inside this process serve `--sources`
//! small iCalendar feeds (200 by default, 25 events each) from 20 loopback
//! addresses (`127.0.0.2` …, so the hub's one-request-per-host rule spreads
//! them as it would over 20 city websites). A second hub is started on the
//! same database with its scheduler on and every source due each
//! `--interval` (60 s by default, a sixtieth of the default hour), and:
//!
//! 1. its CPU is measured for `--warmup` seconds (at least 5) with no
//!    source connected: the idle scheduler;
//! 2. the sources are connected (each to the next member city) and their
//!    first runs imported;
//! 3. its CPU and the runs it ended are measured over `--duration`.
//!
//! The feeds answer as city websites do: three in four send an `ETag` and
//! answer `304 Not Modified` to a matching `If-None-Match`; one in five
//! sends the same body with no validator (the hub compares it and writes
//! nothing); one in twenty changes one event's title on every fetch (one
//! activity written per run). Every run must end `OK` or `NOT_MODIFIED`.
//!
//! Reported: the hub's share of one core over the window
//! (`cpu_share_of_core`, the issue's figure), the same at the default
//! one-hour interval (`share_at_default_interval`: the idle share plus the
//! measured CPU per run at one run per source per hour), CPU per run,
//! runs ended and their statuses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::load;
use crate::report::{ScenarioReport, Usage};
use crate::server::{self, Hub};

/// Loopback addresses the feeds are served from.
const HOSTS: u8 = 20;
/// Events in each feed.
const EVENTS: usize = 25;
/// The schedule the issue's figure is stated for.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// What the scenario needs from the run.
pub struct PollRun<'a> {
    /// Starts the polling hub with these extra `CITYHUB_*` settings.
    pub start: &'a (dyn Fn(Vec<(String, String)>) -> HubFuture + Sync),
    /// A secretariat `Authorization` value.
    pub secretariat: &'a str,
    /// Member cities, one per source in turn.
    pub cities: &'a [String],
    /// Sources to connect.
    pub sources: usize,
    /// Each source is due this often.
    pub interval: Duration,
    /// The idle measurement.
    pub idle: Duration,
    /// The measured window.
    pub window: Duration,
    /// Unique to this run: feed paths and event UIDs hold it.
    pub run_id: &'a str,
    /// `sqlite` or `postgres`.
    pub backend: &'a str,
}

/// A hub being started.
pub type HubFuture = std::pin::Pin<Box<dyn Future<Output = anyhow::Result<Hub>> + Send>>;

/// How a feed answers, by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// `ETag`, and `304` to a matching `If-None-Match`.
    Validators,
    /// The same body, no validator.
    SameBody,
    /// One event's title changes on every fetch.
    Changing,
}

fn behaviour(feed: usize) -> Behaviour {
    if feed % 20 == 19 {
        Behaviour::Changing
    } else if feed % 5 == 1 {
        Behaviour::SameBody
    } else {
        Behaviour::Validators
    }
}

#[derive(Clone)]
struct Feeds {
    run_id: Arc<str>,
    fetches: Arc<AtomicU64>,
}

async fn serve(
    State(feeds): State<Feeds>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let fetch = feeds.fetches.fetch_add(1, Ordering::Relaxed);
    let Some(number) = name
        .strip_suffix(".ics")
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let calendar = |version: u64| {
        (
            [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
            calendar(&feeds.run_id, number, version),
        )
    };
    match behaviour(number) {
        Behaviour::Validators => {
            let etag = format!("\"{}-{number}\"", feeds.run_id);
            let matches = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
            if matches {
                (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
            } else {
                ([(header::ETAG, etag)], calendar(0)).into_response()
            }
        }
        Behaviour::SameBody => calendar(0).into_response(),
        Behaviour::Changing => calendar(fetch).into_response(),
    }
}

/// Feed `number`: `EVENTS` events from tomorrow on; with a `version` other
/// than 0 the first event's title carries it.
fn calendar(run_id: &str, number: usize, version: u64) -> String {
    let today = chrono::Utc::now().date_naive();
    let mut out = String::with_capacity(EVENTS * 400 + 256);
    out.push_str("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cityhub-bench//poll//EN\r\n");
    for i in 0..EVENTS {
        let day = today
            .checked_add_days(chrono::Days::new(1 + ((number * 7 + i * 11) % 300) as u64))
            .unwrap_or(today);
        let ymd = day.format("%Y%m%d");
        let hour = 9 + (i + number) % 10;
        out.push_str("BEGIN:VEVENT\r\n");
        out.push_str(&format!("UID:poll-{run_id}-{number}-{i}@cityhub-bench\r\n"));
        out.push_str("DTSTAMP:20260101T000000Z\r\n");
        out.push_str(&format!(
            "DTSTART;TZID=Europe/Paris:{ymd}T{hour:02}0000\r\nDTEND;TZID=Europe/Paris:{ymd}T{:02}3000\r\n",
            hour + 1
        ));
        let version = if i == 0 && version > 0 {
            format!(" (programme {version})")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "SUMMARY:Poll event {i} of feed {number}{version}\r\n"
        ));
        out.push_str("DESCRIPTION:A workshop of the city's programme\\, open to all.\r\n");
        out.push_str(&format!("LOCATION:Hall {}\r\n", i % 7));
        out.push_str("END:VEVENT\r\n");
    }
    out.push_str("END:VCALENDAR\r\n");
    out
}

/// Runs ended so far, by status, from the hub's `/metrics`.
async fn runs(hub: SocketAddr) -> anyhow::Result<Vec<(String, f64)>> {
    let (status, body) = load::get(hub, "/metrics").await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("cityhub_source_runs"))
        .filter_map(|l| {
            let status = l.split("status=\"").nth(1)?.split('"').next()?;
            let n = l.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((status.to_owned(), n))
        })
        .collect())
}

fn total(runs: &[(String, f64)]) -> f64 {
    runs.iter().map(|(_, n)| n).sum()
}

/// The hub's CPU seconds over `window`.
async fn cpu_over(hub: &Hub, window: Duration) -> anyhow::Result<Usage> {
    let pid = hub
        .pid()
        .context("poll measures the hub's CPU: it must be a child process or in this one")?;
    let before = server::sample(&pid).context("cannot read the hub's /proc")?;
    tokio::time::sleep(window).await;
    let after = server::sample(&pid).context("cannot read the hub's /proc")?;
    Ok(Usage::between(before, after))
}

/// Runs the scenario.
pub async fn run(run: PollRun<'_>) -> anyhow::Result<ScenarioReport> {
    if run.cities.is_empty() {
        bail!("poll needs member cities");
    }
    let feeds = Feeds {
        run_id: Arc::from(run.run_id),
        fetches: Arc::new(AtomicU64::new(0)),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let mut addrs = Vec::new();
    for host in 0..HOSTS {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + host));
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .with_context(|| format!("cannot listen on {ip}"))?;
        addrs.push(listener.local_addr()?);
        let app = axum::Router::new()
            .route("/feeds/{name}", axum::routing::get(serve))
            .with_state(feeds.clone());
        let mut stopped = stopped.clone();
        servers.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
        }));
    }
    let interval = format!("{}s", run.interval.as_secs().max(1));
    let hub = (run.start)(vec![
        ("CITYHUB_SOURCES_SCHEDULER".into(), "true".into()),
        ("CITYHUB_SOURCES_DEFAULT_INTERVAL".into(), interval.clone()),
        ("CITYHUB_SOURCES_MIN_INTERVAL".into(), interval),
        ("CITYHUB_SOURCES_POLL_INTERVAL_MS".into(), "1000".into()),
    ])
    .await?;
    let result = measure(&run, &hub, &addrs, &feeds).await;
    hub.stop().await;
    let _ = stop.send(true);
    for s in servers {
        let _ = s.await;
    }
    result
}

async fn measure(
    run: &PollRun<'_>,
    hub: &Hub,
    addrs: &[SocketAddr],
    feeds: &Feeds,
) -> anyhow::Result<ScenarioReport> {
    let mut report = ScenarioReport {
        name: "poll".into(),
        backend: run.backend.to_owned(),
        concurrency: run.sources,
        ..ScenarioReport::default()
    };
    let idle = cpu_over(hub, run.idle).await?;
    let idle_share = idle.cpu_secs / run.idle.as_secs_f64();

    let ids = connect(run, hub.addr, addrs).await?;
    let settled = settle(run, hub.addr, &ids).await?;

    let before = runs(hub.addr).await?;
    let fetches_before = feeds.fetches.load(Ordering::Relaxed);
    let started = Instant::now();
    let usage = cpu_over(hub, run.window).await?;
    let secs = started.elapsed().as_secs_f64();
    let after = runs(hub.addr).await?;
    let fetches = feeds.fetches.load(Ordering::Relaxed) - fetches_before;
    let ended = total(&after) - total(&before);

    let share = usage.cpu_secs / secs;
    let per_run = if ended > 0.0 {
        ((usage.cpu_secs - idle_share * secs) / ended).max(0.0)
    } else {
        f64::NAN
    };
    let hourly = idle_share + per_run * run.sources as f64 / DEFAULT_INTERVAL.as_secs_f64();
    let by_status: serde_json::Map<String, Value> = after
        .iter()
        .map(|(status, n)| {
            let was = before
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0.0, |(_, n)| *n);
            (status.clone(), json!(n - was))
        })
        .collect();
    let round = |x: f64, f: f64| (x * f).round() / f;
    report.extra.insert("sources".into(), json!(run.sources));
    report
        .extra
        .insert("interval_s".into(), json!(run.interval.as_secs_f64()));
    report
        .extra
        .insert("window_s".into(), json!(round(secs, 10.0)));
    report
        .extra
        .insert("first_runs_s".into(), json!(round(settled, 10.0)));
    report.extra.insert("runs".into(), json!(ended));
    report
        .extra
        .insert("runs_by_status".into(), Value::Object(by_status.clone()));
    report.extra.insert("fetches".into(), json!(fetches));
    report.extra.insert(
        "idle_share_of_core".into(),
        json!(round(idle_share, 10_000.0)),
    );
    report
        .extra
        .insert("cpu_share_of_core".into(), json!(round(share, 10_000.0)));
    report.extra.insert(
        "cpu_ms_per_run".into(),
        json!(round(per_run * 1000.0, 1000.0)),
    );
    report.extra.insert(
        "share_at_default_interval".into(),
        json!(round(hourly, 100_000.0)),
    );
    report.server = Some(usage);
    report.note = format!(
        "{} sources every {:.0} s: {ended:.0} runs in {secs:.0} s, {:.2} % of a core ({:.2} % idle), {:.2} ms per run; {:.3} % at one run an hour",
        run.sources,
        run.interval.as_secs_f64(),
        share * 100.0,
        idle_share * 100.0,
        per_run * 1000.0,
        hourly * 100.0
    );
    if ended < 1.0 {
        report
            .failures
            .push("no run ended in the window: the scheduler did not poll".into());
    }
    for (status, n) in &by_status {
        if status != "OK" && status != "NOT_MODIFIED" && n.as_f64().unwrap_or(0.0) > 0.0 {
            report.failures.push(format!("{n} runs ended {status}"));
        }
    }
    Ok(report)
}

/// Connects the sources (each to the next member city); returns their ids.
async fn connect(
    run: &PollRun<'_>,
    hub: SocketAddr,
    addrs: &[SocketAddr],
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(run.sources);
    for i in 0..run.sources {
        let addr = addrs[i % addrs.len()];
        let url = format!("http://{addr}/feeds/{i}.ics");
        let city = &run.cities[i % run.cities.len()];
        let data = load::graphql(
            hub,
            "mutation($input: SourceInput!) { connectSource(input: $input) { id } }",
            json!({ "input": { "kind": "ICALENDAR", "url": url, "city": city } }),
            Some(run.secretariat),
        )
        .await
        .context("connectSource")?;
        ids.push(
            data["connectSource"]["id"]
                .as_str()
                .context("connectSource gave no id")?
                .to_owned(),
        );
    }
    Ok(ids)
}

/// Waits until every source has run once; returns the seconds it took.
async fn settle(run: &PollRun<'_>, hub: SocketAddr, ids: &[String]) -> anyhow::Result<f64> {
    let ids: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let count = ids.len();
    let started = Instant::now();
    loop {
        let data = load::graphql(
            hub,
            "{ sources { id lastStatus lastError } }",
            json!({}),
            Some(run.secretariat),
        )
        .await?;
        let sources: Vec<Value> = data["sources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["id"].as_str().is_some_and(|id| ids.contains(id)))
            .collect();
        let pending = sources
            .iter()
            .filter(|s| s["lastStatus"] == "NEVER_RUN" || s["lastStatus"] == "RUNNING")
            .count();
        if let Some(failed) = sources.iter().find(|s| s["lastStatus"] == "FAILED") {
            bail!("a source's first run failed: {}", failed["lastError"]);
        }
        if sources.len() >= count && pending == 0 {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("{pending} of {count} sources had not run after 900 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_answer_as_their_share_says() {
        let all: Vec<Behaviour> = (0..200).map(behaviour).collect();
        let count = |b| all.iter().filter(|x| **x == b).count();
        assert_eq!(count(Behaviour::Changing), 10);
        assert_eq!(count(Behaviour::SameBody), 40);
        assert_eq!(count(Behaviour::Validators), 150);
    }

    #[test]
    fn a_changing_feed_differs_only_by_its_version() {
        let a = calendar("r", 3, 1);
        let b = calendar("r", 3, 2);
        assert_ne!(a, b);
        assert_eq!(a.matches("BEGIN:VEVENT").count(), EVENTS);
        assert_eq!(calendar("r", 3, 0), calendar("r", 3, 0));
    }
}
