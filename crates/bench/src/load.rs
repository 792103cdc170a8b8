//! The load generator: `C` workers, each on its own keep-alive HTTP/1.1
//! connection. Closed loop (each sends its next request as soon as the
//! previous answer is read, for a warm-up and then a measured window),
//! open loop (requests due at a fixed rate, latency counted from when each
//! was due) or a fixed number of requests measured in buckets ([`Plan`]).
//! Latencies go into one HDR histogram per worker, merged at the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Req {
    /// Path, e.g. `/graphql`.
    pub path: &'static str,
    /// JSON body.
    pub body: Bytes,
    /// `Authorization` header value, if any.
    pub authorization: Option<Arc<str>>,
    /// `If-None-Match` header value: a 304 answer then counts as success.
    /// (A request without a body is sent as `GET`.)
    pub if_none_match: Option<Arc<str>>,
    /// A path to GET instead of POSTing `body` to `path` (calendars, feeds).
    pub get: Option<Arc<str>>,
}

/// Builds request number `seq` of worker `worker`.
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Req + Send + Sync>;

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests answered 200 without GraphQL errors, in the measured window.
    pub ok: u64,
    /// Requests that failed (transport error, non-200 status or `errors` in the body).
    pub errors: u64,
    /// Body bytes of the successful responses: what an answer weighs
    /// (a cost that follows the answer's size is not one that follows
    /// the data's).
    pub body_bytes: u64,
    /// The first few error descriptions.
    pub error_samples: Vec<String>,
    /// Seconds measured.
    pub secs: f64,
    /// Latencies in microseconds (successful and failed requests).
    pub histogram: Histogram<u64>,
}

impl LoadResult {
    /// Requests per second (answered, ok or not).
    pub fn throughput(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.secs.max(1e-9)
    }

    /// A latency quantile, in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The largest latency, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.histogram.max() as f64 / 1000.0
    }
}

/// A new latency histogram: 1 µs to 120 s, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("constant bounds are valid")
}

/// An open keep-alive connection.
async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Sends one request; returns the status and body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    req: &Req,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let mut builder = Request::builder()
        .method(method)
        .uri(req.get.as_deref().unwrap_or(req.path))
        .header(hyper::header::HOST, addr.to_string());
    if !req.body.is_empty() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    if let Some(auth) = &req.authorization {
        builder = builder.header(hyper::header::AUTHORIZATION, auth.as_ref());
    }
    if let Some(tag) = &req.if_none_match {
        builder = builder.header(hyper::header::IF_NONE_MATCH, tag.as_ref());
    }
    let request = builder.body(Full::new(req.body.clone()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// One GET on a fresh connection (health checks, metrics).
pub async fn get(addr: SocketAddr, path: &'static str) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(addr).await?;
    let req = Req {
        path,
        body: Bytes::new(),
        authorization: None,
        if_none_match: None,
        get: None,
    };
    send(&mut sender, addr, Method::GET, &req).await
}

/// The `ETag` of a `GET` on a fresh connection.
pub async fn etag_of(addr: SocketAddr, path: &str) -> anyhow::Result<Option<String>> {
    let mut sender = connect(addr).await?;
    sender.ready().await?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let tag = response
        .headers()
        .get(hyper::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = response.into_body().collect().await?;
    Ok(tag)
}

/// One POST on a fresh connection.
pub async fn post(addr: SocketAddr, req: &Req) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(addr).await?;
    send(&mut sender, addr, Method::POST, req).await
}

/// Whether a 200 body carries GraphQL errors.
pub fn has_errors(body: &[u8]) -> bool {
    body.windows(9).any(|w| w == b"\"errors\":")
}

/// Sends one GraphQL request and returns its `data`, failing on errors.
pub async fn graphql(
    addr: SocketAddr,
    query: &str,
    variables: serde_json::Value,
    authorization: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::to_vec(&serde_json::json!({"query": query, "variables": variables}))?;
    let req = Req {
        path: "/graphql",
        body: body.into(),
        authorization: authorization.map(Arc::from),
        if_none_match: None,
        get: None,
    };
    let (status, body) = post(addr, &req).await?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("status {status}: {}", String::from_utf8_lossy(&body)))?;
    if status != 200 || value.get("errors").is_some() {
        anyhow::bail!("status {status}: {value}");
    }
    Ok(value.get("data").cloned().unwrap_or_default())
}

/// How a run offers its requests and when it stops.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Closed loop: each worker sends its next request as soon as the
    /// previous answer is read, for `warmup` then `duration`.
    Closed {
        /// Unmeasured seconds first.
        warmup: Duration,
        /// Measured seconds.
        duration: Duration,
    },
    /// Open loop: request `i` is due at `start + i / rate`, whatever the
    /// answers before it; its latency counts from when it was due, so a
    /// server that falls behind shows its queueing instead of slowing the
    /// offered load down (as wrk2 measures). The workers only carry the
    /// requests: when all are busy, the next one leaves late and its
    /// lateness is counted.
    Open {
        /// Requests offered per second.
        rate: f64,
        /// Unmeasured seconds first.
        warmup: Duration,
        /// Measured seconds.
        duration: Duration,
    },
    /// Closed loop until `total` requests have been sent, measured in
    /// buckets of `bucket` consecutive requests (a rate that falls as the
    /// data grows shows as falling buckets).
    Count {
        /// Requests in all.
        total: u64,
        /// Requests per bucket.
        bucket: u64,
    },
}

/// Runs `workers` workers on `plan`: one result per bucket for
/// [`Plan::Count`], one in all otherwise.
pub async fn run_plan(
    addr: SocketAddr,
    workers: usize,
    plan: Plan,
    make: MakeRequest,
) -> Vec<LoadResult> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..workers.max(1))
        .map(|worker| {
            let make = make.clone();
            let next = next.clone();
            tokio::spawn(async move { worker_loop(addr, worker, start, plan, next, make).await })
        })
        .collect();
    let buckets = match plan {
        Plan::Count { total, bucket } => total.div_ceil(bucket.max(1)) as usize,
        _ => 1,
    };
    let mut merged: Vec<Part> = (0..buckets).map(|_| Part::new()).collect();
    for handle in handles {
        if let Ok(parts) = handle.await {
            for (into, part) in merged.iter_mut().zip(parts) {
                into.merge(part);
            }
        }
    }
    merged
        .into_iter()
        .map(|part| {
            let secs = match plan {
                Plan::Closed { duration, .. } | Plan::Open { duration, .. } => {
                    duration.as_secs_f64()
                }
                Plan::Count { .. } => match (part.first, part.last) {
                    (Some(first), Some(last)) => (last - first).as_secs_f64(),
                    _ => 0.0,
                },
            };
            LoadResult {
                secs,
                ..part.result
            }
        })
        .collect()
}

/// One worker's share of one bucket, with the span it covered.
struct Part {
    result: LoadResult,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Part {
    fn new() -> Self {
        Self {
            result: LoadResult::empty(0.0),
            first: None,
            last: None,
        }
    }

    fn merge(&mut self, other: Part) {
        // A worker's part has no seconds of its own: the span says them.
        self.result.absorb(&other.result);
        self.first = match (self.first, other.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, other.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

impl LoadResult {
    /// No request yet, over `secs` seconds.
    pub fn empty(secs: f64) -> Self {
        Self {
            ok: 0,
            errors: 0,
            body_bytes: 0,
            error_samples: Vec::new(),
            secs,
            histogram: histogram(),
        }
    }
}

/// The next request a worker sends: its number, which bucket it is
/// measured in (`None`: warm-up), and when it is due.
struct Turn {
    seq: u64,
    bucket: Option<usize>,
    due: Option<Instant>,
}

/// The worker's next turn under `plan`, `None` when the run is over.
fn claim(plan: Plan, start: Instant, next: &AtomicU64, own: &mut u64) -> Option<Turn> {
    match plan {
        Plan::Closed { warmup, duration } => {
            let now = Instant::now();
            if now >= start + warmup + duration {
                return None;
            }
            let seq = *own;
            *own += 1;
            Some(Turn {
                seq,
                bucket: (now >= start + warmup).then_some(0),
                due: None,
            })
        }
        Plan::Open {
            rate,
            warmup,
            duration,
        } => {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let due = start + Duration::from_secs_f64(i as f64 / rate.max(1e-9));
            if due >= start + warmup + duration {
                return None;
            }
            Some(Turn {
                seq: i,
                bucket: (due >= start + warmup).then_some(0),
                due: Some(due),
            })
        }
        Plan::Count { total, bucket } => {
            let i = next.fetch_add(1, Ordering::Relaxed);
            (i < total).then(|| Turn {
                seq: i,
                bucket: Some((i / bucket.max(1)) as usize),
                due: None,
            })
        }
    }
}

async fn worker_loop(
    addr: SocketAddr,
    worker: usize,
    start: Instant,
    plan: Plan,
    next: Arc<AtomicU64>,
    make: MakeRequest,
) -> Vec<Part> {
    let buckets = match plan {
        Plan::Count { total, bucket } => total.div_ceil(bucket.max(1)) as usize,
        _ => 1,
    };
    let mut parts: Vec<Part> = (0..buckets).map(|_| Part::new()).collect();
    let mut own: u64 = 0;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let note = |out: &mut LoadResult, text: String| {
        out.errors += 1;
        if out.error_samples.len() < 3 {
            out.error_samples.push(text);
        }
    };
    while let Some(turn) = claim(plan, start, &next, &mut own) {
        if let Some(due) = turn.due {
            tokio::time::sleep_until(due.into()).await;
        }
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    if let Some(b) = turn.bucket {
                        note(&mut parts[b].result, format!("connect: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let req = make(worker, turn.seq);
        let sent = Instant::now();
        let t0 = turn.due.unwrap_or(sent);
        let method = if req.body.is_empty() || req.get.is_some() {
            Method::GET
        } else {
            Method::POST
        };
        let result = send(s, addr, method, &req).await;
        let done = Instant::now();
        if result.is_err() {
            sender = None;
        }
        let Some(b) = turn.bucket else { continue };
        let part = &mut parts[b];
        part.first = Some(part.first.map_or(sent, |f| f.min(sent)));
        part.last = Some(part.last.map_or(done, |l| l.max(done)));
        let out = &mut part.result;
        let _ = out
            .histogram
            .record(((done - t0).as_micros() as u64).clamp(1, 120_000_000));
        match result {
            Ok((200, body)) if !has_errors(&body) => {
                out.ok += 1;
                out.body_bytes += body.len() as u64;
            }
            Ok((304, _)) if req.if_none_match.is_some() => out.ok += 1,
            Ok((status, body)) => {
                let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                note(out, format!("status {status}: {text}"));
            }
            Err(e) => note(out, format!("transport: {e}")),
        }
    }
    parts
}

impl LoadResult {
    /// Adds `other`'s requests, latencies and seconds (consecutive
    /// buckets of one run).
    pub fn absorb(&mut self, other: &LoadResult) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.body_bytes += other.body_bytes;
        for s in &other.error_samples {
            if self.error_samples.len() < 5 && !self.error_samples.contains(s) {
                self.error_samples.push(s.clone());
            }
        }
        let _ = self.histogram.add(&other.histogram);
        self.secs += other.secs;
    }
}
