//! Prometheus metrics: GraphQL requests by operation and outcome, their
//! latency, the database pool and query count, and live subscribers.

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

/// The most distinct operation names kept as labels.
const MAX_OPERATIONS: usize = 200;

/// Every metric of the hub.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    pool_size: Gauge,
    pool_idle: Gauge,
    queries: Counter<u64, AtomicU64>,
    subscribers: Gauge,
    operations: Mutex<HashSet<String>>,
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
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "graphql_request_duration_seconds",
            "GraphQL request latency",
            latency.clone(),
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
            pool_size,
            pool_idle,
            queries,
            subscribers,
            operations: Mutex::new(HashSet::new()),
        }
    }

    /// Records one GraphQL request: its operation name, outcome and
    /// duration.
    pub fn observe(&self, operation: Option<&str>, outcome: Outcome, took: Duration) {
        let seconds = took.as_secs_f64();
        let name = match operation {
            None => "anonymous".to_owned(),
            Some(op)
                if op.len() <= 64 && op.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                let mut known = match self.operations.lock() {
                    Ok(k) => k,
                    Err(p) => p.into_inner(),
                };
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
        self.requests
            .get_or_create(&RequestLabels {
                operation: name,
                outcome,
            })
            .inc();
        self.latency.observe(seconds);
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
    pub fn render(
        &self,
        pool_size: u32,
        pool_idle: usize,
        queries: u64,
        subscribers: usize,
    ) -> String {
        self.pool_size.set(i64::from(pool_size));
        self.pool_idle
            .set(i64::try_from(pool_idle).unwrap_or(i64::MAX));
        let seen = self.queries.get();
        if queries > seen {
            self.queries.inc_by(queries - seen);
        }
        self.subscribers
            .set(i64::try_from(subscribers).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
