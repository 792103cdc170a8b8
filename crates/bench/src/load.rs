//! The closed-loop load generator: `C` workers, each on its own keep-alive
//! HTTP/1.1 connection, send the next request as soon as the previous
//! answer is read, for a warm-up and then a measured window. Latencies go
//! into one HDR histogram per worker, merged at the end.

use std::net::SocketAddr;
use std::sync::Arc;
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

/// Runs `concurrency` closed-loop workers for `warmup` then `duration`.
pub async fn run(
    addr: SocketAddr,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    make: MakeRequest,
) -> LoadResult {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|worker| {
            let make = make.clone();
            tokio::spawn(async move { worker_loop(addr, worker, measure_from, end, make).await })
        })
        .collect();
    let mut result = LoadResult {
        ok: 0,
        errors: 0,
        error_samples: Vec::new(),
        secs: duration.as_secs_f64(),
        histogram: histogram(),
    };
    for w in workers {
        if let Ok(part) = w.await {
            result.ok += part.ok;
            result.errors += part.errors;
            for s in part.error_samples {
                if result.error_samples.len() < 5 && !result.error_samples.contains(&s) {
                    result.error_samples.push(s);
                }
            }
            let _ = result.histogram.add(&part.histogram);
        }
    }
    result
}

async fn worker_loop(
    addr: SocketAddr,
    worker: usize,
    measure_from: Instant,
    end: Instant,
    make: MakeRequest,
) -> LoadResult {
    let mut out = LoadResult {
        ok: 0,
        errors: 0,
        error_samples: Vec::new(),
        secs: 0.0,
        histogram: histogram(),
    };
    let mut seq: u64 = 0;
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let note = |out: &mut LoadResult, text: String| {
        out.errors += 1;
        if out.error_samples.len() < 3 {
            out.error_samples.push(text);
        }
    };
    while Instant::now() < end {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    if Instant::now() >= measure_from {
                        note(&mut out, format!("connect: {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let req = make(worker, seq);
        seq += 1;
        let t0 = Instant::now();
        let method = if req.body.is_empty() || req.get.is_some() {
            Method::GET
        } else {
            Method::POST
        };
        let result = send(s, addr, method, &req).await;
        let elapsed = t0.elapsed();
        let measured = t0 >= measure_from;
        if measured {
            let _ = out
                .histogram
                .record((elapsed.as_micros() as u64).clamp(1, 120_000_000));
        }
        match result {
            Ok((200, body)) if !has_errors(&body) => {
                if measured {
                    out.ok += 1;
                }
            }
            Ok((304, _)) if req.if_none_match.is_some() => {
                if measured {
                    out.ok += 1;
                }
            }
            Ok((status, body)) => {
                if measured {
                    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                    note(&mut out, format!("status {status}: {text}"));
                }
            }
            Err(e) => {
                if measured {
                    note(&mut out, format!("transport: {e}"));
                }
                sender = None;
            }
        }
    }
    out
}
