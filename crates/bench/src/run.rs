//! `cityhub-bench run`: starts (or reaches) the hub, finds what to rotate
//! through, runs the scenarios one after the other and reports each.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cityhub_storage::Db;
use serde_json::json;

use crate::fanout::{self, FanoutOptions};
use crate::generate::{self, GenerateOptions};
use crate::load::{self, MakeRequest, Plan};
use crate::report::{self, ScenarioReport, Usage};
use crate::scenarios::{self, Targets};
use crate::server::{self, Hub};

/// Every scenario, in the order `all` runs them (writers last: they add rows).
pub const ALL: &[&str] = &[
    "listing",
    "listing-get",
    "not-modified",
    "detail",
    "overview",
    "search",
    "dashboard",
    "calendar",
    "feed",
    "stats",
    "stats-two-fields",
    "baseline",
    "abuse-memory",
    "fanout",
    "publish",
    "import",
    "poll",
];

/// What to run and against what.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// A scenario name or `all`.
    pub scenario: String,
    /// A running hub (`http://127.0.0.1:4000`).
    pub url: Option<String>,
    /// The database (to start a hub on, issue tokens and count rows).
    pub database: Option<String>,
    /// Closed-loop workers (default: 32 for reads, one per city for publish).
    pub concurrency: Option<usize>,
    /// Measured seconds per scenario.
    pub duration: Duration,
    /// Unmeasured seconds before each.
    pub warmup: Duration,
    /// The `cityhub` binary to start.
    pub server_bin: Option<PathBuf>,
    /// Run the hub in this process instead.
    pub in_process: bool,
    /// Tiny sizes and short runs, for CI.
    pub smoke: bool,
    /// Fan-out settings.
    pub fanout: FanoutOptions,
    /// Cities publishing at once in `publish`.
    pub publishers: usize,
    /// The hub's response cache on.
    pub cache: bool,
    /// Read scenarios: requests offered per second, open loop (latency
    /// from each request's due time); closed loop when `None`.
    pub rate: Option<f64>,
    /// Publish: publishes in all, measured in buckets, instead of a
    /// measured window.
    pub total: Option<u64>,
    /// Publish with `total`: publishes per bucket.
    pub bucket: Option<u64>,
    /// Import: events in the city's calendar.
    pub events: usize,
    /// Poll: sources connected.
    pub sources: usize,
    /// Poll: how often each source is due.
    pub interval: Duration,
}

struct Ctx {
    options: RunOptions,
    hub: Hub,
    db: Option<Db>,
    backend: String,
    targets: Targets,
    secretariat: Option<Arc<str>>,
    listing_rps: Option<f64>,
    run_id: String,
}

/// Runs the scenarios; returns whether every correctness check passed.
pub async fn run(options: RunOptions) -> anyhow::Result<bool> {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise the open-files limit: {e}");
    }
    let names: Vec<&str> = if options.scenario == "all" {
        ALL.to_vec()
    } else if let Some(n) = ALL.iter().find(|n| **n == options.scenario) {
        vec![*n]
    } else {
        bail!(
            "unknown scenario '{}': one of {} or all",
            options.scenario,
            ALL.join(", ")
        );
    };
    if options.smoke
        && let Some(url) = &options.database
    {
        ensure_smoke_dataset(url).await?;
    }
    let db = match &options.database {
        Some(url) => Some(generate::connect(url, 4).await?),
        None => None,
    };
    let hub = start_hub(&options).await?;
    eprintln!("hub: {} on {}", hub.describe, hub.addr);
    let backend = match &options.database {
        Some(u) if u.starts_with("sqlite") => "sqlite",
        Some(_) => "postgres",
        None => "external",
    }
    .to_owned();
    let targets = scenarios::discover(hub.addr, db.as_ref()).await?;
    // Publishing needs only cities (it may start from no activity).
    let needs_activities = names.iter().any(|n| *n != "publish");
    if targets.city_slugs.is_empty() || (needs_activities && targets.activity_slugs.is_empty()) {
        hub.stop().await;
        bail!(
            "the database has no cities or no published activities: run `cityhub-bench generate` first"
        );
    }
    let secretariat = match &db {
        Some(db) => Some(token(db, &options, None).await?),
        None => None,
    };
    let run_id = format!("{:x}", chrono::Utc::now().timestamp_millis());
    let mut ctx = Ctx {
        options,
        hub,
        db,
        backend,
        targets,
        secretariat,
        listing_rps: None,
        run_id,
    };
    println!("{}", report::header());
    let mut passed = true;
    for name in names {
        let reports = match run_one(&mut ctx, name).await {
            Ok(r) => r,
            Err(e) => {
                let report = ScenarioReport {
                    name: name.to_owned(),
                    backend: ctx.backend.clone(),
                    failures: vec![format!("{e:#}")],
                    ..ScenarioReport::default()
                };
                vec![report]
            }
        };
        for r in reports {
            passed &= r.failures.is_empty();
            println!("{}", report::row(&r));
            println!("RESULT {}", r.json());
        }
    }
    ctx.hub.stop().await;
    Ok(passed)
}

/// Generates a tiny network if the smoke database is empty.
async fn ensure_smoke_dataset(url: &str) -> anyhow::Result<()> {
    let db = generate::connect(url, 2).await?;
    db.migrate_up().await?;
    let empty = generate::count_rows(&db, "activities").await? == 0;
    drop(db);
    if empty {
        generate::generate(&GenerateOptions {
            database: url.to_owned(),
            cities: 40,
            activities: 400,
            seed: 1,
            batch: 200,
        })
        .await?;
    }
    Ok(())
}

async fn start_hub(options: &RunOptions) -> anyhow::Result<Hub> {
    if let Some(url) = &options.url {
        return server::external(url).await;
    }
    start_own_hub(options, Vec::new()).await
}

/// Starts a hub of this run's (a child process, or in this process), with
/// `settings` (`CITYHUB_*` variables) beside the bench's own.
async fn start_own_hub(
    options: &RunOptions,
    settings: Vec<(String, String)>,
) -> anyhow::Result<Hub> {
    let Some(database) = &options.database else {
        bail!("give --url of a running hub or --database to start one on");
    };
    if options.in_process || (options.smoke && options.server_bin.is_none()) {
        return server::spawn_in_process(database, options.cache, &settings).await;
    }
    let bin = match &options.server_bin {
        Some(b) => b.clone(),
        None => server::default_server_bin().context(
            "no `cityhub` binary next to this one: build it (cargo build --release -p cityhub -p cityhub-bench), pass --server-bin, or use --in-process",
        )?,
    };
    server::spawn_child(&bin, database, options.cache, &settings).await
}

/// Issues a one-hour token for a city (or the secretariat) on the database.
async fn token(db: &Db, options: &RunOptions, city: Option<&str>) -> anyhow::Result<Arc<str>> {
    let mut config = cityhub::config::Config::defaults();
    if let Some(url) = &options.database {
        config.database.url = url.clone();
    }
    let (token, _) =
        cityhub::ops::issue_token(db, &config, city, Some(3600), Some("cityhub-bench".into()))
            .await?;
    Ok(Arc::from(format!("Bearer {token}")))
}

fn base(ctx: &Ctx, name: &str, concurrency: usize) -> ScenarioReport {
    ScenarioReport {
        name: name.to_owned(),
        backend: ctx.backend.clone(),
        concurrency,
        ..ScenarioReport::default()
    }
}

async fn activities(ctx: &Ctx) -> Option<i64> {
    match &ctx.db {
        Some(db) => generate::count_rows(db, "activities").await.ok(),
        None => None,
    }
}

/// Runs closed-loop load against `hub`, with its CPU and memory over the
/// measured window.
async fn measured(
    hub: &Hub,
    concurrency: usize,
    plan: Plan,
    make: MakeRequest,
    report: &mut ScenarioReport,
) -> Vec<load::LoadResult> {
    let warmup = match plan {
        Plan::Closed { warmup, .. } | Plan::Open { warmup, .. } => warmup,
        Plan::Count { .. } => Duration::ZERO,
    };
    let pid = hub.pid();
    if let Some(p) = &pid {
        server::reset_peak(p);
    }
    let sampler_pid = pid.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep(warmup).await;
        (
            sampler_pid.as_deref().and_then(server::sample),
            server::sample("self"),
            server::machine_busy_secs(),
        )
    });
    let buckets = load::run_plan(hub.addr, concurrency, plan, make).await;
    let mut result = load::LoadResult::empty(0.0);
    for b in &buckets {
        result.absorb(b);
    }
    let (server_before, client_before, machine_before) =
        sampler.await.unwrap_or((None, None, None));
    let server_after = pid.as_deref().and_then(server::sample);
    if let (Some(b), Some(a)) = (machine_before, server::machine_busy_secs()) {
        report.machine_cpu_secs = Some(a - b);
    }
    if let (Some(b), Some(a)) = (server_before, server_after) {
        report.server = Some(Usage::between(b, a));
    }
    if !hub.in_process()
        && let (Some(b), Some(a)) = (client_before, server::sample("self"))
    {
        report.client = Some(Usage::between(b, a));
    }
    if result.errors > 0 {
        report.failures.push(format!(
            "{} of {} requests failed",
            result.errors,
            result.ok + result.errors
        ));
    }
    if result.ok + result.errors == 0 {
        report.failures.push("no request completed".into());
    }
    report.load = Some(result);
    buckets
}

fn read_concurrency(ctx: &Ctx) -> usize {
    // Open loop: enough workers to carry the offered rate through a stall
    // (a request finding them all busy leaves late, and that counts).
    let default = match (ctx.options.smoke, ctx.options.rate) {
        (true, _) => 4,
        (false, Some(_)) => 256,
        (false, None) => 32,
    };
    ctx.options.concurrency.unwrap_or(default)
}

async fn run_one(ctx: &mut Ctx, name: &str) -> anyhow::Result<Vec<ScenarioReport>> {
    let (warmup, duration) = (ctx.options.warmup, ctx.options.duration);
    let c = read_concurrency(ctx);
    let make = match name {
        "listing" => scenarios::listing(&ctx.targets),
        "listing-get" => scenarios::listing_get(&ctx.targets),
        "not-modified" => scenarios::not_modified(ctx.hub.addr, &ctx.targets).await?,
        "detail" => scenarios::detail(&ctx.targets),
        "overview" => scenarios::overview(),
        "search" => scenarios::search(),
        "dashboard" => scenarios::dashboard(ctx.secretariat.clone()),
        "calendar" => scenarios::calendar(&ctx.targets),
        "feed" => scenarios::feed(&ctx.targets),
        "stats" => scenarios::stats(&ctx.targets),
        "stats-two-fields" => scenarios::stats_two_fields(&ctx.targets),
        "baseline" => return baseline(ctx).await,
        "abuse-memory" => return abuse_memory(ctx).await.map(|r| vec![r]),
        "fanout" => return fanout(ctx).await.map(|r| vec![r]),
        "publish" => return publish(ctx).await.map(|r| vec![r]),
        "import" => return import(ctx).await,
        "poll" => return poll(ctx).await.map(|r| vec![r]),
        other => bail!("unknown scenario {other}"),
    };
    let mut report = base(ctx, name, c);
    report.activities = activities(ctx).await;
    let before = cache_counts(ctx.hub.addr).await;
    let plan = match ctx.options.rate {
        Some(rate) => Plan::Open {
            rate,
            warmup,
            duration,
        },
        None => Plan::Closed { warmup, duration },
    };
    if let Some(rate) = ctx.options.rate {
        report.extra.insert("offered_rps".into(), json!(rate));
        report.note = format!("open loop at {rate} req/s");
    }
    measured(&ctx.hub, c, plan, make, &mut report).await;
    let after = cache_counts(ctx.hub.addr).await;
    // Over warm-up and window: the share of cacheable requests answered
    // without executing them.
    let (hits, misses, not_modified) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let served = hits + misses + not_modified;
    if served > 0.0 {
        report.extra.insert(
            "cache_hit_ratio".into(),
            json!(((hits + not_modified) / served * 1000.0).round() / 1000.0),
        );
    }
    report
        .extra
        .insert("cache".into(), json!(ctx.options.cache));
    if let (Some(srv), Some(load)) = (&report.server, &report.load) {
        let n = (load.ok + load.errors).max(1) as f64;
        report.extra.insert(
            "hub_cpu_us_per_request".into(),
            json!((srv.cpu_secs / n * 1e6).round()),
        );
    }
    if ctx.hub.in_process() {
        report.note = "in-process: srv figures include the load generator".into();
    }
    if name == "listing" {
        ctx.listing_rps = report.load.as_ref().map(|l| l.throughput());
    }
    Ok(vec![report])
}

/// The hub's read-cache counters (hits, misses, 304s) from `/metrics`.
async fn cache_counts(addr: std::net::SocketAddr) -> (f64, f64, f64) {
    let Ok((200, body)) = load::get(addr, "/metrics").await else {
        return (0.0, 0.0, 0.0);
    };
    let text = String::from_utf8_lossy(&body);
    let find = |outcome: &str| {
        let prefix = format!("cityhub_read_cache_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (find("hit"), find("miss"), find("not_modified"))
}

/// The listing through a plain axum handler, and the hub's figure over it.
async fn baseline(ctx: &mut Ctx) -> anyhow::Result<Vec<ScenarioReport>> {
    let Some(database) = ctx.options.database.clone() else {
        bail!("baseline needs --database (it queries the database itself)");
    };
    let mut out = Vec::new();
    if ctx.listing_rps.is_none() {
        out.extend(Box::pin(run_one(ctx, "listing")).await?);
    }
    let c = read_concurrency(ctx);
    let plain = if ctx.hub.in_process() {
        let addr = crate::baseline::spawn_in_process(&database).await?;
        Hub {
            addr,
            process: server::HubProcess::External,
            describe: "in-process baseline".into(),
        }
    } else {
        server::spawn_baseline_child(&database).await?
    };
    let mut report = base(ctx, "baseline", c);
    report.activities = activities(ctx).await;
    measured(
        &plain,
        c,
        Plan::Closed {
            warmup: ctx.options.warmup,
            duration: ctx.options.duration,
        },
        scenarios::listing(&ctx.targets),
        &mut report,
    )
    .await;
    plain.stop().await;
    if let (Some(graphql), Some(load)) = (ctx.listing_rps, &report.load) {
        let ratio = graphql / load.throughput().max(1e-9);
        report.extra.insert(
            "graphql_listing_rps".into(),
            json!((graphql * 10.0).round() / 10.0),
        );
        report.extra.insert(
            "graphql_over_baseline".into(),
            json!((ratio * 1000.0).round() / 1000.0),
        );
        report.note = format!("GraphQL listing / baseline = {ratio:.2}");
    }
    out.push(report);
    Ok(out)
}

/// A city's calendar imported, re-run unchanged, re-stamped and with 1 %
/// changed (`import.rs`).
async fn import(ctx: &mut Ctx) -> anyhow::Result<Vec<ScenarioReport>> {
    let (Some(db), Some(secretariat)) = (ctx.db.clone(), ctx.secretariat.clone()) else {
        bail!("import needs --database (to issue a token and count the rows it writes)");
    };
    let Some(city) = ctx.targets.city_slugs.first().cloned() else {
        bail!("import needs a city");
    };
    let mut reports = crate::import::run(crate::import::ImportRun {
        hub: ctx.hub.addr,
        db: &db,
        secretariat: &secretariat,
        city: &city,
        run_id: &ctx.run_id,
        events: ctx.options.events,
        backend: &ctx.backend,
    })
    .await?;
    let activities = activities(ctx).await;
    for report in &mut reports {
        report.activities = activities;
        if ctx.hub.in_process() {
            report.note = format!("in-process: {}", report.note);
        }
    }
    Ok(reports)
}

/// Connected calendars polled on the hub's schedule (`poll.rs`), by a
/// second hub of this run's with its scheduler on.
async fn poll(ctx: &mut Ctx) -> anyhow::Result<ScenarioReport> {
    let Some(secretariat) = ctx.secretariat.clone() else {
        bail!("poll needs --database (to issue a token)");
    };
    if ctx.options.url.is_some() {
        bail!("poll starts a hub of its own with its scheduler on: give --database, not --url");
    }
    let options = ctx.options.clone();
    let start = move |settings: Vec<(String, String)>| -> crate::poll::HubFuture {
        let options = options.clone();
        Box::pin(async move { start_own_hub(&options, settings).await })
    };
    let mut report = crate::poll::run(crate::poll::PollRun {
        start: &start,
        secretariat: &secretariat,
        cities: &ctx.targets.city_slugs,
        sources: ctx.options.sources,
        interval: ctx.options.interval,
        idle: ctx
            .options
            .warmup
            .max(Duration::from_secs(if ctx.options.smoke { 1 } else { 5 })),
        // A smoke run's window holds at least two intervals, so runs end in it.
        window: if ctx.options.smoke {
            ctx.options.duration.max(ctx.options.interval * 2)
        } else {
            ctx.options.duration
        },
        run_id: &ctx.run_id,
        backend: &ctx.backend,
    })
    .await?;
    report.activities = activities(ctx).await;
    Ok(report)
}

/// Cities publishing at once (`--concurrency` in flight, rotating over
/// `--publishers` cities, each with its own token), for the measured window
/// or, with `--total`, until that many were sent, measured per `--bucket`;
/// then every acknowledged row must be there.
async fn publish(ctx: &mut Ctx) -> anyhow::Result<ScenarioReport> {
    let Some(db) = ctx.db.clone() else {
        bail!("publish needs --database (to issue city tokens and count durable rows)");
    };
    let publishers = ctx
        .options
        .publishers
        .min(ctx.targets.city_slugs.len())
        .max(1);
    let mut tokens = Vec::with_capacity(publishers);
    for slug in ctx.targets.city_slugs.iter().take(publishers) {
        tokens.push((slug.clone(), token(&db, &ctx.options, Some(slug)).await?));
    }
    let c = ctx.options.concurrency.unwrap_or(publishers);
    let marker = format!("Bench publish {}", ctx.run_id);
    let mut report = base(ctx, "publish", c);
    let before = activities(ctx).await;
    // No warm-up: every acknowledged publish is counted against the rows.
    let plan = match ctx.options.total {
        Some(total) => Plan::Count {
            total,
            bucket: ctx.options.bucket.unwrap_or((total / 10).max(1)),
        },
        None => Plan::Closed {
            warmup: Duration::ZERO,
            duration: ctx.options.duration,
        },
    };
    let buckets = measured(
        &ctx.hub,
        c,
        plan,
        scenarios::publish(tokens, marker.clone()),
        &mut report,
    )
    .await;
    report.activities = activities(ctx).await;
    if let Plan::Count { bucket, .. } = plan {
        let from = before.unwrap_or(0);
        let rows: Vec<_> = buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                json!({
                    "from": from + i as i64 * bucket as i64,
                    "requests": b.ok + b.errors,
                    "rps": (b.throughput() * 10.0).round() / 10.0,
                    "p50_ms": (b.ms(0.50) * 1000.0).round() / 1000.0,
                    "p99_ms": (b.ms(0.99) * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        for row in &rows {
            eprintln!("  bucket {row}");
        }
        if let (Some(first), Some(last)) = (buckets.first(), buckets.last()) {
            report.extra.insert(
                "last_over_first".into(),
                json!((last.throughput() / first.throughput().max(1e-9) * 1000.0).round() / 1000.0),
            );
            report.extra.insert(
                "worst_bucket_p99_ms".into(),
                json!(buckets.iter().map(|b| b.ms(0.99)).fold(0.0, f64::max)),
            );
        }
        report.extra.insert("buckets".into(), json!(rows));
    }
    let durable = count_titled(&db, &marker).await?;
    let ok = report.load.as_ref().map_or(0, |l| l.ok) as i64;
    let errors = report.load.as_ref().map_or(0, |l| l.errors) as i64;
    report.extra.insert("cities".into(), json!(publishers));
    report.extra.insert("acknowledged".into(), json!(ok));
    report.extra.insert("durable_rows".into(), json!(durable));
    report
        .extra
        .insert("lost".into(), json!((ok - durable).max(0)));
    if durable < ok {
        report.failures.push(format!(
            "{} acknowledged publishes are not in the database",
            ok - durable
        ));
    }
    if durable > ok + errors {
        report
            .failures
            .push(format!("{durable} rows for {ok} acknowledged publishes"));
    }
    report.note = format!("{publishers} cities; {ok} acknowledged, {durable} durable rows");
    if let Some(ratio) = report.extra.get("last_over_first") {
        report
            .note
            .push_str(&format!("; last/first bucket {ratio}"));
    }
    Ok(report)
}

async fn count_titled(db: &Db, marker: &str) -> anyhow::Result<i64> {
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .conn()
        .query_one_raw(Statement::from_sql_and_values(
            db.backend(),
            match db.backend() {
                sea_orm::DatabaseBackend::Postgres => {
                    "SELECT COUNT(*) AS n FROM activities WHERE title LIKE $1"
                }
                _ => "SELECT COUNT(*) AS n FROM activities WHERE title LIKE ?",
            },
            [format!("{marker} %").into()],
        ))
        .await?
        .context("COUNT returned no row")?;
    Ok(row.try_get::<i64>("", "n")?)
}

/// Distinct large anonymous documents, then persisted-query registrations,
/// with a listing probe: the hub's memory before and after.
async fn abuse_memory(ctx: &mut Ctx) -> anyhow::Result<ScenarioReport> {
    let options = if ctx.options.smoke {
        crate::abuse::AbuseOptions {
            documents: 20,
            document_bytes: 250 * 1024,
            registrations: 200,
            concurrency: 4,
            warmup: Duration::from_millis(500),
        }
    } else {
        crate::abuse::AbuseOptions {
            documents: 1_000,
            document_bytes: 250 * 1024,
            registrations: 10_000,
            concurrency: ctx.options.concurrency.unwrap_or(8),
            warmup: ctx.options.warmup.max(Duration::from_secs(3)),
        }
    };
    let mut report = base(ctx, "abuse-memory", options.concurrency);
    report.activities = activities(ctx).await;
    let result = crate::abuse::run(
        ctx.hub.addr,
        ctx.hub.pid(),
        scenarios::listing(&ctx.targets),
        options,
    )
    .await;
    let growth = match (result.rss_before_mib, result.rss_after_mib) {
        (Some(b), Some(a)) => Some(a - b),
        _ => None,
    };
    let round1 = |x: f64| (x * 10.0).round() / 10.0;
    report
        .extra
        .insert("documents".into(), json!(options.documents));
    report
        .extra
        .insert("document_bytes".into(), json!(options.document_bytes));
    report
        .extra
        .insert("registrations".into(), json!(options.registrations));
    report.extra.insert(
        "rss_before_mib".into(),
        json!(result.rss_before_mib.map(round1)),
    );
    report.extra.insert(
        "rss_after_mib".into(),
        json!(result.rss_after_mib.map(round1)),
    );
    report
        .extra
        .insert("peak_rss_mib".into(), json!(result.peak_mib.map(round1)));
    report
        .extra
        .insert("rss_growth_mib".into(), json!(growth.map(round1)));
    report.extra.insert(
        "statuses".into(),
        json!(
            result
                .statuses
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<std::collections::BTreeMap<_, _>>()
        ),
    );
    report
        .extra
        .insert("too_complex".into(), json!(result.too_complex));
    report
        .extra
        .insert("rate_limited".into(), json!(result.rate_limited));
    let probe_ms = |q: f64| round1(result.probe.value_at_quantile(q) as f64 / 1000.0);
    report
        .extra
        .insert("probe_requests".into(), json!(result.probe.len()));
    report
        .extra
        .insert("probe_p50_ms".into(), json!(probe_ms(0.5)));
    report
        .extra
        .insert("probe_p99_ms".into(), json!(probe_ms(0.99)));
    report
        .extra
        .insert("secs".into(), json!(round1(result.secs)));
    if result.probe_errors > 0 {
        report.failures.push(format!(
            "{} listing probes failed during the abuse",
            result.probe_errors
        ));
    }
    if result.probe.is_empty() {
        report
            .failures
            .push("the listing probe never answered".into());
    }
    if result.statuses.contains_key(&0) {
        report
            .failures
            .push("the hub dropped connections during the abuse".into());
    }
    report.note = match growth {
        Some(g) => format!(
            "resident memory {:+.1} MiB; listing p99 {} ms during the run",
            g,
            probe_ms(0.99)
        ),
        None => "resident memory not readable (external hub)".into(),
    };
    if ctx.hub.in_process() {
        report
            .note
            .push_str(" (in-process: memory includes the load generator)");
    }
    Ok(report)
}

/// A write transaction in the `postgres` database of the server `url`
/// points to (it takes a transaction id and holds it until rolled back).
async fn foreign_write(
    url: &str,
) -> anyhow::Result<(sea_orm::DatabaseTransaction, sea_orm::DatabaseConnection)> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if !url.starts_with("postgres") {
        bail!("--foreign-write needs a PostgreSQL --database");
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let other = if query.is_empty() {
        format!("{server}/postgres")
    } else {
        format!("{server}/postgres?{query}")
    };
    let conn = sea_orm::Database::connect(&other).await?;
    let txn = conn.begin().await?;
    txn.execute_unprepared("CREATE TEMP TABLE cityhub_bench_foreign_write (i int)")
        .await?;
    Ok((txn, conn))
}

/// Subscribers, a ramp, publishes at a rate, deliveries counted.
async fn fanout(ctx: &mut Ctx) -> anyhow::Result<ScenarioReport> {
    let Some(token) = ctx.secretariat.clone() else {
        bail!("fanout needs --database (to issue the publishing token)");
    };
    let options = ctx.options.fanout.clone();
    let mut report = base(ctx, "fanout", options.subscribers);
    report.activities = activities(ctx).await;
    let pid = ctx.hub.pid();
    let before = pid.as_deref().and_then(server::sample);
    if let Some(p) = &pid {
        server::reset_peak(p);
    }
    let client_before = server::sample("self");
    let machine_before = server::machine_busy_secs();
    let foreign = match (&ctx.options.database, options.foreign_write) {
        (Some(url), true) => Some(foreign_write(url).await?),
        _ => None,
    };
    let with_subscribers = std::sync::Mutex::new(None);
    let pid_for_sample = pid.clone();
    let result = fanout::run(ctx.hub.addr, &options, token, &ctx.run_id, async || {
        // Let allocations settle before reading memory with everyone in.
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(mut slot) = with_subscribers.lock() {
            *slot = pid_for_sample.as_deref().and_then(server::sample);
        }
    })
    .await?;
    if let Some((txn, conn)) = foreign {
        txn.rollback().await?;
        conn.close().await?;
        report.extra.insert("foreign_write".into(), json!(true));
        report
            .note
            .push_str("a write transaction held open in the postgres database; ");
    }
    let after = pid.as_deref().and_then(server::sample);
    if let (Some(b), Some(a)) = (machine_before, server::machine_busy_secs()) {
        report.machine_cpu_secs = Some(a - b);
    }
    let with_subscribers = with_subscribers.lock().ok().and_then(|s| *s);
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let e = &mut report.extra;
    e.insert("subscribers".into(), json!(options.subscribers));
    e.insert("selections".into(), json!(options.selections));
    e.insert("connected".into(), json!(result.connected));
    e.insert("connect_failures".into(), json!(result.connect_failures));
    e.insert("ramp_rate".into(), json!(options.ramp_rate));
    e.insert("ramp_s".into(), json!(r3(result.ramp_secs)));
    e.insert("connect_p50_ms".into(), json!(r3(ms(&result.connect, 0.5))));
    e.insert(
        "connect_p99_ms".into(),
        json!(r3(ms(&result.connect, 0.99))),
    );
    e.insert(
        "connect_max_ms".into(),
        json!(r3(result.connect.max() as f64 / 1000.0)),
    );
    e.insert("publishes".into(), json!(options.publishes));
    e.insert("publish_rate".into(), json!(options.rate));
    e.insert("published".into(), json!(result.published));
    e.insert("publish_errors".into(), json!(result.publish_errors));
    e.insert(
        "publish_p99_ms".into(),
        json!(r3(ms(&result.publish_latency, 0.99))),
    );
    e.insert("delivered".into(), json!(result.delivered));
    e.insert(
        "delivery_p50_ms".into(),
        json!(r3(ms(&result.delivery, 0.5))),
    );
    e.insert(
        "delivery_p90_ms".into(),
        json!(r3(ms(&result.delivery, 0.9))),
    );
    e.insert(
        "delivery_p99_ms".into(),
        json!(r3(ms(&result.delivery, 0.99))),
    );
    e.insert(
        "delivery_max_ms".into(),
        json!(r3(result.delivery.max() as f64 / 1000.0)),
    );
    e.insert(
        "delivery_from_occurred_p99_ms".into(),
        json!(r3(ms(&result.delivery_from_occurred, 0.99))),
    );
    e.insert("missing".into(), json!(result.missing));
    e.insert("duplicates".into(), json!(result.duplicates));
    e.insert("dropped".into(), json!(result.dropped));
    let mut per_sub = None;
    if let (Some(b), Some(w)) = (before, with_subscribers) {
        let kib = (w.rss_kib as f64 - b.rss_kib as f64) / result.connected.max(1) as f64;
        per_sub = Some(kib);
        e.insert(
            "rss_before_mib".into(),
            json!(r3(b.rss_kib as f64 / 1024.0)),
        );
        e.insert(
            "rss_with_subscribers_mib".into(),
            json!(r3(w.rss_kib as f64 / 1024.0)),
        );
        e.insert("server_kib_per_subscriber".into(), json!(r3(kib)));
    }
    if let (Some(b), Some(a)) = (before, after) {
        report.server = Some(Usage::between(b, a));
    }
    if !ctx.hub.in_process()
        && let (Some(b), Some(a)) = (client_before, server::sample("self"))
    {
        report.client = Some(Usage::between(b, a));
    }
    if result.connect_failures > 0 {
        report
            .failures
            .push(format!("{} connections failed", result.connect_failures));
    }
    if result.missing > 0 || result.duplicates > 0 {
        report.failures.push(format!(
            "{} missing and {} duplicate deliveries",
            result.missing, result.duplicates
        ));
    }
    if result.dropped > 0 {
        report
            .failures
            .push(format!("{} subscriptions dropped", result.dropped));
    }
    if result.publish_errors > 0 {
        report
            .failures
            .push(format!("{} publishes failed", result.publish_errors));
    }
    report.note = format!(
        "{} subs: connect p99 {:.1} ms; {}; delivery p99 {:.1} ms (max {:.1}); missing {}, dup {}",
        result.connected,
        ms(&result.connect, 0.99),
        per_sub.map_or("mem n/a".to_owned(), |k| format!("{k:.1} KiB/sub")),
        ms(&result.delivery, 0.99),
        result.delivery.max() as f64 / 1000.0,
        result.missing,
        result.duplicates
    );
    Ok(report)
}
