//! `abuse-memory`: what one anonymous client can make the hub hold. It
//! sends distinct large documents (half a long selection, which the token
//! limit refuses before parsing; half a short query under a long unique
//! comment, which runs), then registers distinct persisted queries, while
//! one probe keeps reading a city's listing. The hub's resident memory is
//! sampled before and after; the probe's latencies show the hub kept
//! serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;

use crate::load::{self, MakeRequest, Req};
use crate::server;

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
pub struct AbuseOptions {
    /// Distinct documents sent.
    pub documents: usize,
    /// Bytes of each document.
    pub document_bytes: usize,
    /// Distinct persisted queries registered.
    pub registrations: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Time the listing probe runs alone before memory is sampled.
    pub warmup: std::time::Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct AbuseResult {
    /// Resident memory before, in MiB (`None` when the hub's process is
    /// not readable, e.g. an external hub).
    pub rss_before_mib: Option<f64>,
    /// Resident memory after, in MiB.
    pub rss_after_mib: Option<f64>,
    /// Peak resident memory over the run, in MiB.
    pub peak_mib: Option<f64>,
    /// Answers by HTTP status to the documents and registrations.
    pub statuses: std::collections::BTreeMap<u16, u64>,
    /// Answers carrying `QUERY_TOO_COMPLEX`.
    pub too_complex: u64,
    /// Answers carrying `RATE_LIMITED`.
    pub rate_limited: u64,
    /// The listing probe's latencies (µs) during the run.
    pub probe: Histogram<u64>,
    /// Probe requests that failed.
    pub probe_errors: u64,
    /// Seconds the run took.
    pub secs: f64,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn body(value: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// Document `i`: an even one a long selection of `name` fields (past any
/// sensible token limit), an odd one `{ network { name } }` under a long
/// comment that makes it unique.
fn document(i: usize, bytes: usize) -> String {
    if i.is_multiple_of(2) {
        let mut q = String::with_capacity(bytes + 32);
        q.push_str("{ network { ");
        while q.len() + 8 < bytes {
            q.push_str("name ");
        }
        q.push_str("} }");
        q
    } else {
        let head = format!("# abuse {i} ");
        let pad = bytes.saturating_sub(head.len() + 32);
        format!("{head}{}\n{{ network {{ name }} }}", "x".repeat(pad))
    }
}

/// Runs the abuse against the hub at `addr` (process `pid`), `listing`
/// probing meanwhile.
pub async fn run(
    addr: SocketAddr,
    pid: Option<String>,
    listing: MakeRequest,
    options: AbuseOptions,
) -> AbuseResult {
    // Where the hub "starts": warmed by the normal traffic the probe sends
    // (its database pages, connections and allocator arenas), so what
    // grows afterwards is what the abuse made it hold.
    let warm_until = Instant::now() + options.warmup;
    let mut seq = 0u64;
    while Instant::now() < warm_until {
        let _ = load::post(addr, &listing(0, seq)).await;
        seq += 1;
    }
    if let Some(p) = &pid {
        server::reset_peak(p);
    }
    let before = pid.as_deref().and_then(server::sample);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let probe_stop = stop.clone();
    let probe = tokio::spawn(async move {
        let mut histogram = load::histogram();
        let mut errors = 0u64;
        let mut seq = 1u64 << 32;
        while !probe_stop.load(Ordering::Relaxed) {
            let req = listing(0, seq);
            seq += 1;
            let sent = Instant::now();
            match load::post(addr, &req).await {
                Ok((200, body)) if !load::has_errors(&body) => {}
                _ => errors += 1,
            }
            let _ = histogram.record(sent.elapsed().as_micros() as u64);
        }
        (histogram, errors)
    });
    let too_complex = Arc::new(AtomicU64::new(0));
    let rate_limited = Arc::new(AtomicU64::new(0));
    let requests = (0..options.documents)
        .map(|i| json_query(&document(i, options.document_bytes), None))
        .chain((0..options.registrations).map(|i| {
            let q = format!("query Registered{i} {{ network {{ name }} }}");
            let hash = cityhub_graphql::persisted::sha256_hex(&q);
            json_query(&q, Some(hash))
        }));
    let statuses: Vec<u16> = futures::stream::iter(requests)
        .map(|payload| {
            let too_complex = too_complex.clone();
            let rate_limited = rate_limited.clone();
            async move {
                let req = Req {
                    path: "/graphql",
                    body: body(&payload),
                    authorization: None,
                    if_none_match: None,
                    get: None,
                };
                match load::post(addr, &req).await {
                    Ok((status, answer)) => {
                        let text = String::from_utf8_lossy(&answer);
                        if text.contains("QUERY_TOO_COMPLEX") {
                            too_complex.fetch_add(1, Ordering::Relaxed);
                        }
                        if text.contains("RATE_LIMITED") {
                            rate_limited.fetch_add(1, Ordering::Relaxed);
                        }
                        status
                    }
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let (probe, probe_errors) = probe.await.unwrap_or_else(|_| (load::histogram(), 1));
    let after = pid.as_deref().and_then(server::sample);
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(s).or_insert(0u64) += 1;
    }
    AbuseResult {
        rss_before_mib: before.map(|s| mib(s.rss_kib)),
        rss_after_mib: after.map(|s| mib(s.rss_kib)),
        peak_mib: after.map(|s| mib(s.peak_rss_kib)),
        statuses: counts,
        too_complex: too_complex.load(Ordering::Relaxed),
        rate_limited: rate_limited.load(Ordering::Relaxed),
        probe,
        probe_errors,
        secs: started.elapsed().as_secs_f64(),
    }
}

fn json_query(query: &str, persisted: Option<String>) -> serde_json::Value {
    match persisted {
        Some(hash) => serde_json::json!({
            "query": query,
            "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } },
        }),
        None => serde_json::json!({ "query": query }),
    }
}
