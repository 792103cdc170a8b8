//! Fan-out: `N` WebSocket subscribers speaking `graphql-transport-ws` to
//! `activityEvents`, opened at a paced ramp (connect latency: TCP connect
//! to `connection_ack`), then `M` publishes at `R` per second. Each event's
//! title carries its publish number, so every subscriber counts missing
//! and duplicate deliveries, and the delay from the publish request being
//! sent (and from the event's `occurredAt`) to its arrival.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Mutex, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::load::{self, Req};
use crate::scenarios;

/// What to run.
#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Subscribers to open.
    pub subscribers: usize,
    /// Connections opened per second during the ramp.
    pub ramp_rate: f64,
    /// Publishes to make.
    pub publishes: usize,
    /// Publishes per second.
    pub rate: f64,
    /// Seconds to wait for the last deliveries after the last publish.
    pub grace: Duration,
    /// Distinct subscription documents (subscriber `i` uses number
    /// `i % selections`); 1 means every subscriber sends the same one.
    pub selections: usize,
    /// PostgreSQL: hold a write transaction open in another database of
    /// the same server for the whole run (a foreign transaction must delay
    /// no delivery).
    pub foreign_write: bool,
}

/// Subscription document number `n`: the common one for 0, else the same
/// selection with `n` extra aliased fields, so the documents differ (the
/// hub cannot share their execution) while the work per event is similar.
pub fn selection(n: usize) -> String {
    if n == 0 {
        return scenarios::SUBSCRIPTION.to_owned();
    }
    let extra: String = (0..n).map(|i| format!(" s{i}: type")).collect();
    scenarios::SUBSCRIPTION.replacen("cursor type", &format!("cursor type{extra}"), 1)
}

/// What a fan-out run measured.
#[derive(Debug)]
pub struct FanoutResult {
    /// Subscribers connected and acknowledged.
    pub connected: usize,
    /// Connections that failed (refused, closed, no ack).
    pub connect_failures: usize,
    /// Seconds the ramp took.
    pub ramp_secs: f64,
    /// Connect latency (TCP connect to `connection_ack`), µs.
    pub connect: Histogram<u64>,
    /// Publishes that succeeded.
    pub published: usize,
    /// Publishes that failed.
    pub publish_errors: usize,
    /// Publish request latency, µs.
    pub publish_latency: Histogram<u64>,
    /// Delivery delay from the publish request being sent, µs.
    pub delivery: Histogram<u64>,
    /// Delivery delay from the event's `occurredAt`, µs.
    pub delivery_from_occurred: Histogram<u64>,
    /// Expected deliveries never received.
    pub missing: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// Subscriptions ended by the server with an error or close.
    pub dropped: usize,
    /// Deliveries received.
    pub delivered: u64,
}

struct Received {
    index: u32,
    at: Instant,
    from_occurred_us: u64,
}

/// What a subscriber searches each message for, built once (a `str::find`
/// per message built its searcher anew: 10% of the bench's CPU).
struct Patterns {
    marker: memchr::memmem::Finder<'static>,
    marker_len: usize,
    occurred: memchr::memmem::Finder<'static>,
}

impl Patterns {
    fn new(marker: &str) -> Self {
        Self {
            marker: memchr::memmem::Finder::new(marker.as_bytes()).into_owned(),
            marker_len: marker.len(),
            occurred: memchr::memmem::Finder::new(b"\"occurredAt\":\"").into_owned(),
        }
    }
}

/// The message's `type`, looked for in its first bytes only (the hub puts
/// `id` and `type` before the payload).
fn message_type(text: &str) -> &str {
    let head = &text.as_bytes()[..text.len().min(96)];
    let Some(at) = memchr::memmem::find(head, b"\"type\":\"") else {
        return "";
    };
    let rest = &text[at + 8..];
    rest.find('"').map_or("", |end| &rest[..end])
}

/// Reads the publish number after `#` in the marker, and `occurredAt`.
fn parse_event(text: &str, patterns: &Patterns) -> Option<(u32, u64)> {
    let bytes = text.as_bytes();
    let at = patterns.marker.find(bytes)? + patterns.marker_len;
    let digits = bytes[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let index = text[at..at + digits].parse().ok()?;
    let occurred = patterns
        .occurred
        .find(bytes)
        .map(|i| i + 14)
        .and_then(|i| text[i..].find('"').map(|j| &text[i..i + j]))
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| {
            let now = chrono::Utc::now();
            (now - t.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0)
                .max(0) as u64
        })
        .unwrap_or(0);
    Some((index, occurred))
}

enum Outcome {
    Failed,
    Done {
        received: Vec<Received>,
        dropped: bool,
    },
}

/// One subscriber: connect, subscribe, collect until `stop`.
async fn subscriber(
    addr: SocketAddr,
    query: Arc<str>,
    marker: Arc<Patterns>,
    connected: Arc<Mutex<Histogram<u64>>>,
    subscribed: Arc<AtomicUsize>,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let t0 = Instant::now();
    let Ok(mut request) = format!("ws://{addr}/graphql").into_client_request() else {
        return Outcome::Failed;
    };
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        hyper::header::HeaderValue::from_static("graphql-transport-ws"),
    );
    // Small buffers: with tungstenite's default 128 KiB read buffer, zeroing
    // it for every read was a quarter of the bench's CPU at 10,000 sockets.
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let connect = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
        ws.send(Message::text(r#"{"type":"connection_init","payload":{}}"#))
            .await?;
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg?
                && t.contains("connection_ack")
            {
                return Ok::<_, anyhow::Error>(ws);
            }
        }
        anyhow::bail!("closed before connection_ack")
    };
    let mut ws = match tokio::time::timeout(Duration::from_secs(30), connect).await {
        Ok(Ok(ws)) => ws,
        _ => return Outcome::Failed,
    };
    let latency = (t0.elapsed().as_micros() as u64).max(1);
    let _ = connected.lock().await.record(latency);
    let subscribe = serde_json::json!({
        "id": "1",
        "type": "subscribe",
        "payload": {"query": &*query},
    })
    .to_string();
    if ws.send(Message::text(subscribe)).await.is_err() {
        return Outcome::Failed;
    }
    subscribed.fetch_add(1, Ordering::Relaxed);
    let mut received = Vec::new();
    let mut dropped = false;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let at = Instant::now();
                    match message_type(&t) {
                        "next" => {
                            if let Some((index, from_occurred_us)) = parse_event(&t, &marker) {
                                received.push(Received { index, at, from_occurred_us });
                                delivered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        "ping" => {
                            let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
                        }
                        "error" | "complete" => {
                            dropped = true;
                            break;
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    dropped = true;
                    break;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    let _ = ws.close(None).await;
    Outcome::Done { received, dropped }
}

/// Reads the hub's `subscribers` gauge from `/metrics`.
pub async fn subscriber_gauge(addr: SocketAddr) -> Option<u64> {
    let (status, body) = load::get(addr, "/metrics").await.ok()?;
    if status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            (name == "subscribers" || name.ends_with("_subscribers"))
                .then(|| parts.next()?.parse::<f64>().ok())
                .flatten()
        })
        .map(|v| v as u64)
}

/// Runs the fan-out; `on_subscribed` is called once every subscriber is in
/// (the caller samples the hub's memory there).
pub async fn run(
    addr: SocketAddr,
    options: &FanoutOptions,
    publish_token: Arc<str>,
    run_id: &str,
    on_subscribed: impl AsyncFnOnce(),
) -> anyhow::Result<FanoutResult> {
    let marker_text = format!("probe {run_id} #");
    let marker = Arc::new(Patterns::new(&marker_text));
    let connected = Arc::new(Mutex::new(load::histogram()));
    let subscribed = Arc::new(AtomicUsize::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let base = subscriber_gauge(addr).await.unwrap_or(0);
    let ramp_started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / options.ramp_rate.max(1.0));
    let mut tasks = Vec::with_capacity(options.subscribers);
    let queries: Vec<Arc<str>> = (0..options.selections.max(1))
        .map(|n| Arc::from(selection(n)))
        .collect();
    for i in 0..options.subscribers {
        let due = ramp_started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        tasks.push(tokio::spawn(subscriber(
            addr,
            queries[i % queries.len()].clone(),
            marker.clone(),
            connected.clone(),
            subscribed.clone(),
            delivered.clone(),
            stop_rx.clone(),
        )));
    }
    // Every subscription is registered on the hub before the first publish.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let finished = tasks.iter().filter(|t| t.is_finished()).count();
        let ours = subscribed.load(Ordering::Relaxed);
        let on_hub = subscriber_gauge(addr)
            .await
            .unwrap_or(0)
            .saturating_sub(base);
        if (ours + finished >= options.subscribers && on_hub >= ours as u64)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ramp_secs = ramp_started.elapsed().as_secs_f64();
    on_subscribed().await;
    let active = subscribed.load(Ordering::Relaxed);

    // Publishes, paced open-loop: a slow publish does not delay the next.
    let sent_at: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; options.publishes]));
    let publish_latency = Arc::new(std::sync::Mutex::new(load::histogram()));
    let publish_errors = Arc::new(AtomicUsize::new(0));
    let every = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let started = Instant::now();
    let mut publishers = Vec::new();
    for i in 0..options.publishes {
        tokio::time::sleep_until((started + every.mul_f64(i as f64)).into()).await;
        let input = serde_json::json!({
            "kind": "MEMBER_MEETING",
            "format": "ONLINE",
            "title": format!("Fanout {marker_text}{i}"),
            "summary": "A member meeting announced to every subscriber.",
            "fields": ["MUSIC"],
            "themes": ["live music"],
        });
        let body = serde_json::to_vec(&serde_json::json!({
            "query": scenarios::PUBLISH,
            "variables": {"input": input},
        }))?;
        let req = Req {
            path: "/graphql",
            body: body.into(),
            authorization: Some(publish_token.clone()),
            if_none_match: None,
            get: None,
        };
        let sent_at = sent_at.clone();
        let latency = publish_latency.clone();
        let errors = publish_errors.clone();
        publishers.push(tokio::spawn(async move {
            let t0 = Instant::now();
            if let Ok(mut v) = sent_at.lock() {
                v[i] = Some(t0);
            }
            match load::post(addr, &req).await {
                Ok((200, body)) if !load::has_errors(&body) => {
                    if let Ok(mut h) = latency.lock() {
                        let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
                    }
                }
                Ok((status, body)) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "fanout publish {i} failed: {status} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                Err(e) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("fanout publish {i} failed: {e}");
                }
            }
        }));
    }
    for p in publishers {
        let _ = p.await;
    }
    let published = options.publishes - publish_errors.load(Ordering::Relaxed);
    let expected = (published * active) as u64;
    let wait_until = Instant::now() + options.grace;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < wait_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);

    let sent_at: Vec<Option<Instant>> = sent_at.lock().map(|v| v.clone()).unwrap_or_default();
    let mut result = FanoutResult {
        connected: 0,
        connect_failures: 0,
        ramp_secs,
        connect: load::histogram(),
        published,
        publish_errors: options.publishes - published,
        publish_latency: publish_latency
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| load::histogram()),
        delivery: load::histogram(),
        delivery_from_occurred: load::histogram(),
        missing: 0,
        duplicates: 0,
        dropped: 0,
        delivered: 0,
    };
    for task in tasks {
        match task.await.context("a subscriber panicked")? {
            Outcome::Failed => result.connect_failures += 1,
            Outcome::Done { received, dropped } => {
                result.connected += 1;
                if dropped {
                    result.dropped += 1;
                }
                let mut seen = vec![0u32; options.publishes];
                for r in &received {
                    let Some(slot) = seen.get_mut(r.index as usize) else {
                        continue;
                    };
                    *slot += 1;
                    if *slot > 1 {
                        result.duplicates += 1;
                        continue;
                    }
                    result.delivered += 1;
                    if let Some(Some(t0)) = sent_at.get(r.index as usize) {
                        let us = r.at.saturating_duration_since(*t0).as_micros() as u64;
                        let _ = result.delivery.record(us.max(1));
                    }
                    let _ = result
                        .delivery_from_occurred
                        .record(r.from_occurred_us.max(1));
                }
                result.missing += (published as u64)
                    .saturating_sub(seen.iter().filter(|n| **n > 0).count() as u64);
            }
        }
    }
    result.connect = connected.lock().await.clone();
    Ok(result)
}
