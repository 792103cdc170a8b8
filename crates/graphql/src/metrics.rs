//! Prometheus metrics: GraphQL requests by operation and outcome, their
//! latency by operation and type, the database pool and query count, open
//! sockets, live subscribers and how late their events leave, rate-limit
//! refusals, the read caches, and cities' calendar runs. Every name is
//! listed in `docs/metrics.md` (a test holds both to each other).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a GraphQL request ended, as counted in `cityhub_graphql_requests`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered without errors.
    Ok,
    /// Answered with at least one error.
    Error,
}

impl Outcome {
    /// The outcome of an executed response.
    pub fn of(response: &async_graphql::Response) -> Self {
        if response.errors.is_empty() {
            Self::Ok
        } else {
            Self::Error
        }
    }
}

/// Labels of a GraphQL request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The operation name (sanitized; `anonymous` when absent, `other` past the cap).
    pub operation: String,
    /// `ok` or `error`.
    pub outcome: String,
}

/// Labels of a GraphQL request's latency.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// The operation name, as in [`RequestLabels`].
    pub operation: String,
    /// `query`, `mutation`, `subscription`, or `unknown` (not parsed).
    pub r#type: String,
}

/// Labels of a rate-limit refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// `mutations`, `anonymous` or `registrations`.
    pub limit: String,
}

/// Labels of a calendar run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// The status the run ended with (`OK`, `NOT_MODIFIED`, `PARTIAL`,
    /// `FAILED`).
    pub status: String,
}

/// What [`Metrics::render`] samples from the rest of the hub.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Open database connections.
    pub pool_size: u32,
    /// Idle database connections.
    pub pool_idle: usize,
    /// SQL statements run so far.
    pub queries: u64,
    /// Active subscriptions.
    pub subscribers: usize,
    /// Refusals so far per budget (`Limiters::refusals`).
    pub rate_limited: Vec<(&'static str, u64)>,
    /// Calendar runs so far per final status.
    pub source_runs: Vec<(String, u64)>,
}

/// Reads samples at rendering time.
type Sampler = Box<dyn Fn(&mut Samples) + Send + Sync>;

/// The most distinct operation names kept as labels.
const MAX_OPERATIONS: usize = 200;

/// Every metric of the hub.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    sockets: Gauge,
    rate_limited: Family<LimitLabels, Counter>,
    source_runs: Family<RunLabels, Counter>,
    pool_size: Gauge,
    pool_idle: Gauge,
    queries: Counter<u64, AtomicU64>,
    subscribers: Gauge,
    operations: Mutex<HashSet<String>>,
    samplers: Vec<Sampler>,
    cache: Family<CacheLabels, Counter>,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    document_bytes: Gauge,
    document_entries: Gauge,
}

/// Labels of a read-cache outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit`, `miss`, `not_modified`, `document_hit` or `version_query`.
    pub outcome: String,
}

/// What the read caches counted, for [`Metrics::set_cache`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCounts {
    /// Responses served from the cache.
    pub hits: u64,
    /// Cacheable requests executed.
    pub misses: u64,
    /// 304 answers.
    pub not_modified: u64,
    /// Parsed documents reused.
    pub document_hits: u64,
    /// Data version queries run.
    pub version_queries: u64,
    /// Queries run without re-validating an already validated document.
    pub fast_path: u64,
    /// Of those, answers discarded and recomputed with full validation.
    pub fast_path_retried: u64,
    /// Bytes the response cache holds.
    pub bytes: usize,
    /// Entries the response cache holds.
    pub entries: usize,
    /// Bytes (as weighed) the parsed-document cache holds.
    pub document_bytes: u64,
    /// Documents the parsed-document cache holds.
    pub document_entries: u64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cityhub");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "graphql_requests",
            "GraphQL requests by operation and outcome",
            requests.clone(),
        );
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "graphql_request_duration_seconds",
            "GraphQL request latency by operation name and type",
            latency.clone(),
        );
        let sockets = Gauge::default();
        registry.register("websockets", "Open WebSocket connections", sockets.clone());
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by budget",
            rate_limited.clone(),
        );
        let source_runs = Family::<RunLabels, Counter>::default();
        // Every status from the start: a rate over a series that appears
        // only with its first run would miss that run.
        for status in ["OK", "NOT_MODIFIED", "PARTIAL", "FAILED"] {
            let _ = source_runs.get_or_create(&RunLabels {
                status: status.to_owned(),
            });
        }
        registry.register(
            "source_runs",
            "Runs of cities' connected calendars, by final status",
            source_runs.clone(),
        );
        let pool_size = Gauge::default();
        registry.register(
            "db_pool_connections",
            "Open database connections",
            pool_size.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            pool_idle.clone(),
        );
        let queries = Counter::<u64, AtomicU64>::default();
        registry.register("db_queries", "SQL statements run", queries.clone());
        let subscribers = Gauge::default();
        registry.register(
            "subscribers",
            "Active activityEvents subscriptions",
            subscribers.clone(),
        );
        let cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "read_cache",
            "Read cache outcomes (hit, miss, not_modified, document_hit, version_query)",
            cache.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "read_cache_bytes",
            "Bytes held by the response cache",
            cache_bytes.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "read_cache_entries",
            "Responses held by the response cache",
            cache_entries.clone(),
        );
        let document_bytes = Gauge::default();
        registry.register(
            "document_cache_bytes",
            "Bytes (as weighed) held by the parsed-document cache",
            document_bytes.clone(),
        );
        let document_entries = Gauge::default();
        registry.register(
            "document_cache_entries",
            "Documents held by the parsed-document cache (only validated ones)",
            document_entries.clone(),
        );
        Self {
            cache,
            cache_bytes,
            cache_entries,
            document_bytes,
            document_entries,
            registry,
            requests,
            latency,
            sockets,
            rate_limited,
            source_runs,
            pool_size,
            pool_idle,
            queries,
            subscribers,
            operations: Mutex::new(HashSet::new()),
            samplers: Vec::new(),
        }
    }

    /// Registers the event bus's delivery lag histogram
    /// (`cityhub_event_delivery_lag_seconds`).
    #[must_use]
    pub fn with_delivery_lag(mut self, lag: Histogram) -> Self {
        self.registry.register(
            "event_delivery_lag_seconds",
            "From an event's commit to its hand-over to this instance's subscribers",
            lag,
        );
        self
    }

    /// Adds what `sample` reads (from parts of the hub this crate does not
    /// know, such as cities' calendars) to every rendering.
    #[must_use]
    pub fn with_sampler(mut self, sample: impl Fn(&mut Samples) + Send + Sync + 'static) -> Self {
        self.samplers.push(Box::new(sample));
        self
    }

    /// Counts an open WebSocket until the guard is dropped.
    pub fn socket_opened(&self) -> SocketGuard {
        self.sockets.inc();
        SocketGuard(self.sockets.clone())
    }

    /// Records one GraphQL request: its operation name and type, outcome
    /// and duration.
    pub fn observe(
        &self,
        operation: Option<&str>,
        kind: Option<async_graphql::parser::types::OperationType>,
        outcome: Outcome,
        took: Duration,
    ) {
        use async_graphql::parser::types::OperationType;
        let seconds = took.as_secs_f64();
        let name = match operation {
            None => "anonymous".to_owned(),
            Some(op)
                if op.len() <= 64 && op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let mut known = cityhub_domain::sync::lock(&self.operations);
                if known.contains(op) || known.len() < MAX_OPERATIONS {
                    known.insert(op.to_owned());
                    op.to_owned()
                } else {
                    "other".to_owned()
                }
            }
            Some(_) => "other".to_owned(),
        };
        let outcome = match outcome {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        }
        .to_owned();
        let kind = match kind {
            Some(OperationType::Query) => "query",
            Some(OperationType::Mutation) => "mutation",
            Some(OperationType::Subscription) => "subscription",
            None => "unknown",
        };
        self.latency
            .get_or_create(&LatencyLabels {
                operation: name.clone(),
                r#type: kind.to_owned(),
            })
            .observe(seconds);
        self.requests
            .get_or_create(&RequestLabels {
                operation: name,
                outcome,
            })
            .inc();
    }

    /// Brings the read-cache metrics up to these totals.
    pub fn set_cache(&self, counts: CacheCounts) {
        for (outcome, total) in [
            ("hit", counts.hits),
            ("miss", counts.misses),
            ("not_modified", counts.not_modified),
            ("document_hit", counts.document_hits),
            ("version_query", counts.version_queries),
            ("fast_path", counts.fast_path),
            ("fast_path_retried", counts.fast_path_retried),
        ] {
            let counter = self.cache.get_or_create(&CacheLabels {
                outcome: outcome.to_owned(),
            });
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
        self.cache_bytes
            .set(i64::try_from(counts.bytes).unwrap_or(i64::MAX));
        self.cache_entries
            .set(i64::try_from(counts.entries).unwrap_or(i64::MAX));
        self.document_bytes
            .set(i64::try_from(counts.document_bytes).unwrap_or(i64::MAX));
        self.document_entries
            .set(i64::try_from(counts.document_entries).unwrap_or(i64::MAX));
    }

    /// Renders the text exposition, after refreshing the sampled gauges.
    pub fn render(&self, mut samples: Samples) -> String {
        for sample in &self.samplers {
            sample(&mut samples);
        }
        self.pool_size.set(i64::from(samples.pool_size));
        self.pool_idle
            .set(i64::try_from(samples.pool_idle).unwrap_or(i64::MAX));
        let seen = self.queries.get();
        if samples.queries > seen {
            self.queries.inc_by(samples.queries - seen);
        }
        self.subscribers
            .set(i64::try_from(samples.subscribers).unwrap_or(i64::MAX));
        for (limit, total) in &samples.rate_limited {
            let counter = self.rate_limited.get_or_create(&LimitLabels {
                limit: (*limit).to_owned(),
            });
            catch_up(&counter, *total);
        }
        for (status, total) in &samples.source_runs {
            let counter = self.source_runs.get_or_create(&RunLabels {
                status: status.clone(),
            });
            catch_up(&counter, *total);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Brings a counter up to a total sampled elsewhere.
fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// An open WebSocket, counted in `cityhub_websockets` until dropped.
#[derive(Debug)]
pub struct SocketGuard(Gauge);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
