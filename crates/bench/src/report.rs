//! Reporting: one human table row per scenario and one machine line
//! (`RESULT {json}`) with every figure.

use serde_json::{Map, Value, json};

use crate::load::LoadResult;
use crate::server::ProcSample;

/// CPU and memory of a process over a measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU seconds used in the window.
    pub cpu_secs: f64,
    /// Resident memory at the end, MiB.
    pub rss_mib: f64,
    /// Peak resident memory in the window (or since start), MiB.
    pub peak_rss_mib: f64,
}

impl Usage {
    /// The usage between two samples.
    pub fn between(before: ProcSample, after: ProcSample) -> Self {
        Self {
            cpu_secs: (after.cpu_secs - before.cpu_secs).max(0.0),
            rss_mib: after.rss_kib as f64 / 1024.0,
            peak_rss_mib: after.peak_rss_kib as f64 / 1024.0,
        }
    }
}

/// One scenario's figures.
#[derive(Debug, Default)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// `sqlite` or `postgres` (or `external`).
    pub backend: String,
    /// Activities in the database, when known.
    pub activities: Option<i64>,
    /// Workers.
    pub concurrency: usize,
    /// The load figures, for closed-loop scenarios.
    pub load: Option<LoadResult>,
    /// The hub's CPU and memory over the window.
    pub server: Option<Usage>,
    /// This process's CPU and memory over the window.
    pub client: Option<Usage>,
    /// Busy CPU seconds of the whole machine over the window.
    pub machine_cpu_secs: Option<f64>,
    /// Scenario-specific figures.
    pub extra: Map<String, Value>,
    /// Correctness failures (errors, lost rows, missing deliveries…).
    pub failures: Vec<String>,
    /// A short note for the table.
    pub note: String,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl ScenarioReport {
    /// The machine line's JSON.
    pub fn json(&self) -> Value {
        let mut out = Map::new();
        out.insert("scenario".into(), json!(self.name));
        out.insert("backend".into(), json!(self.backend));
        out.insert("activities".into(), json!(self.activities));
        out.insert("concurrency".into(), json!(self.concurrency));
        if let Some(l) = &self.load {
            out.insert("seconds".into(), json!(round(l.secs, 2)));
            out.insert("requests".into(), json!(l.ok + l.errors));
            out.insert("ok".into(), json!(l.ok));
            out.insert("errors".into(), json!(l.errors));
            out.insert("rps".into(), json!(round(l.throughput(), 1)));
            out.insert("p50_ms".into(), json!(round(l.ms(0.50), 3)));
            out.insert("p90_ms".into(), json!(round(l.ms(0.90), 3)));
            out.insert("p99_ms".into(), json!(round(l.ms(0.99), 3)));
            out.insert("max_ms".into(), json!(round(l.max_ms(), 3)));
            if l.ok > 0 {
                out.insert(
                    "bytes_per_answer".into(),
                    json!(round(l.body_bytes as f64 / l.ok as f64, 1)),
                );
            }
            if !l.error_samples.is_empty() {
                out.insert("error_samples".into(), json!(l.error_samples));
            }
        }
        if let Some(s) = &self.server {
            out.insert("server_cpu_s".into(), json!(round(s.cpu_secs, 2)));
            out.insert("server_rss_mib".into(), json!(round(s.rss_mib, 1)));
            out.insert(
                "server_peak_rss_mib".into(),
                json!(round(s.peak_rss_mib, 1)),
            );
        }
        if let Some(c) = &self.client {
            out.insert("bench_cpu_s".into(), json!(round(c.cpu_secs, 2)));
        }
        if let Some(m) = self.machine_cpu_secs {
            out.insert("machine_cpu_s".into(), json!(round(m, 2)));
            let ours =
                self.server.map_or(0.0, |s| s.cpu_secs) + self.client.map_or(0.0, |c| c.cpu_secs);
            out.insert("other_cpu_s".into(), json!(round((m - ours).max(0.0), 2)));
        }
        for (k, v) in &self.extra {
            out.insert(k.clone(), v.clone());
        }
        out.insert("failures".into(), json!(self.failures));
        Value::Object(out)
    }
}

/// The table's header.
pub fn header() -> String {
    format!(
        "{:<10} {:<8} {:>8} {:>4} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>8}  {}",
        "scenario",
        "backend",
        "acts",
        "c",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errs",
        "srv cpu s",
        "srv MiB",
        "bench s",
        "notes"
    )
}

/// The scenario's table row.
pub fn row(r: &ScenarioReport) -> String {
    let dash = || "-".to_owned();
    let (rps, p50, p90, p99, max, errs) = match &r.load {
        Some(l) => (
            format!("{:.0}", l.throughput()),
            format!("{:.2}", l.ms(0.50)),
            format!("{:.2}", l.ms(0.90)),
            format!("{:.2}", l.ms(0.99)),
            format!("{:.1}", l.max_ms()),
            l.errors.to_string(),
        ),
        None => (dash(), dash(), dash(), dash(), dash(), dash()),
    };
    let (cpu, mem) = match &r.server {
        Some(s) => (
            format!("{:.1}", s.cpu_secs),
            format!("{:.0}", s.peak_rss_mib),
        ),
        None => (dash(), dash()),
    };
    let bench = r
        .client
        .map(|c| format!("{:.1}", c.cpu_secs))
        .unwrap_or_else(dash);
    let mut notes = r.note.clone();
    if let Some(m) = r.machine_cpu_secs {
        let ours = r.server.map_or(0.0, |s| s.cpu_secs) + r.client.map_or(0.0, |c| c.cpu_secs);
        if m - ours > 1.0 {
            notes = format!("[other processes used {:.1} CPU s] {notes}", m - ours);
        }
    }
    if !r.failures.is_empty() {
        notes = format!("FAILED: {} {notes}", r.failures.join("; "));
    }
    format!(
        "{:<10} {:<8} {:>8} {:>4} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>8}  {}",
        r.name,
        r.backend,
        r.activities.map(|a| a.to_string()).unwrap_or_else(dash),
        r.concurrency,
        rps,
        p50,
        p90,
        p99,
        max,
        errs,
        cpu,
        mem,
        bench,
        notes
    )
}
