//! Read caches (issue 9): parsed documents keyed by their text, and whole
//! responses of read-only operations keyed by (document, operation,
//! variables, visibility) and the data version they were computed at.
//!
//! Never stale: the data version ([`VersionRepo::current`]) moves in the
//! same transaction as every change a read can see, and every request reads
//! it *after* it arrived — one query serves all requests that arrived
//! before it was sent ([`VersionGate`]), so a busy hub runs one version
//! query per database round trip, not one per request. A response is served
//! from the cache only if it was computed at the version current now, so a
//! change committed by any instance (or a CLI) before the request arrived
//! is always seen.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use axum::body::Bytes;
use cityhub_storage::Db;
use cityhub_storage::repo::version::{DataVersion, VersionRepo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// Cache settings (`[cache]` in `cityhub.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Keep whole responses of read-only operations.
    pub enabled: bool,
    /// Most bytes the response cache holds (keys and bodies).
    pub max_bytes: usize,
    /// Largest single response kept.
    pub max_entry_bytes: usize,
    /// Most parsed documents kept (keyed by their text).
    pub max_documents: usize,
    /// `Cache-Control` of anonymous `GET /graphql` answers.
    pub cache_control: String,
    /// `Cache-Control` of `GET /graphql` answers to a request with a token.
    pub cache_control_private: String,
    /// Accept Apollo persisted queries.
    pub persisted_queries: bool,
    /// Most persisted documents kept in memory (all are in the database).
    pub max_persisted_in_memory: usize,
    /// Most persisted documents kept in the database; registering one more
    /// drops the oldest (its clients register it again).
    pub max_persisted_stored: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            max_documents: 1_000,
            cache_control: "public, max-age=0, must-revalidate".into(),
            cache_control_private: "private, no-cache".into(),
            persisted_queries: true,
            max_persisted_in_memory: 10_000,
            max_persisted_stored: 10_000,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn capacity(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n.max(1)).unwrap_or(NonZeroUsize::MIN)
}

/// Who a response was computed for: what it may contain depends on this
/// only (queries naming the token itself are never cached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// No token.
    Anonymous,
    /// A city's token.
    City(cityhub_domain::CityId),
    /// The secretariat's token.
    Secretariat,
}

/// A parsed document, and whether it has passed the schema's full
/// validation once (then later requests may run it without re-validating
/// its rules, see `http::execute`).
#[derive(Debug)]
pub struct CachedDocument {
    /// The parsed document.
    pub doc: ExecutableDocument,
    validated: AtomicBool,
}

impl CachedDocument {
    /// Whether a request with this document passed full validation.
    pub fn validated(&self) -> bool {
        self.validated.load(Ordering::Relaxed)
    }

    /// Records that a request with this document passed full validation.
    pub fn mark_validated(&self) {
        self.validated.store(true, Ordering::Relaxed);
    }
}

impl std::ops::Deref for CachedDocument {
    type Target = ExecutableDocument;

    fn deref(&self) -> &ExecutableDocument {
        &self.doc
    }
}

impl Visibility {
    /// What `actor` may see.
    pub fn of(actor: &cityhub_domain::Actor) -> Self {
        match actor {
            cityhub_domain::Actor::Anonymous => Visibility::Anonymous,
            cityhub_domain::Actor::City { id, .. } => Visibility::City(*id),
            cityhub_domain::Actor::Secretariat => Visibility::Secretariat,
        }
    }

    /// A short key prefix (`a`, `c{id}`, `s`).
    pub fn key(self) -> String {
        match self {
            Visibility::Anonymous => "a".to_owned(),
            Visibility::City(id) => format!("c{id}"),
            Visibility::Secretariat => "s".to_owned(),
        }
    }
}

/// One cached response.
struct Entry {
    version: DataVersion,
    body: Bytes,
    /// The response's `ETag`, when its owner keeps one beside the body
    /// (the city-website answers tag their bodies by content).
    tag: Option<Arc<str>>,
    size: usize,
}

struct Responses {
    map: lru::LruCache<String, Entry>,
    bytes: usize,
}

/// Counters the metrics endpoint shows.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Responses served from the cache.
    pub hits: AtomicU64,
    /// Cacheable requests that were executed.
    pub misses: AtomicU64,
    /// `304 Not Modified` answers.
    pub not_modified: AtomicU64,
    /// Parsed documents reused.
    pub document_hits: AtomicU64,
    /// Data version queries run.
    pub version_queries: AtomicU64,
    /// Queries run on the extension-free schema (their document had passed
    /// full validation before).
    pub fast_path: AtomicU64,
    /// Fast-path answers thrown away for an uncoded error, the query then
    /// run again with full validation.
    pub fast_path_retried: AtomicU64,
}

/// The caches of one hub instance.
pub struct ReadCache {
    settings: CacheSettings,
    documents: Mutex<lru::LruCache<String, Arc<CachedDocument>>>,
    responses: Mutex<Responses>,
    persisted: Mutex<lru::LruCache<String, Arc<str>>>,
    gate: VersionGate,
    /// Hit, miss and version-query counters.
    pub stats: CacheStats,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ReadCache {
    /// Empty caches with these settings.
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            documents: Mutex::new(lru::LruCache::new(capacity(settings.max_documents))),
            responses: Mutex::new(Responses {
                map: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            persisted: Mutex::new(lru::LruCache::new(capacity(
                settings.max_persisted_in_memory,
            ))),
            gate: VersionGate::new(),
            stats: CacheStats::default(),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// The parsed document of `query`, from the cache or parsed now
    /// (`None` if it does not parse: execution then reports the error).
    pub fn document(&self, query: &str) -> Option<Arc<CachedDocument>> {
        if let Some(doc) = lock(&self.documents).get(query) {
            self.stats.document_hits.fetch_add(1, Ordering::Relaxed);
            return Some(doc.clone());
        }
        let doc = Arc::new(CachedDocument {
            doc: async_graphql::parser::parse_query(query).ok()?,
            validated: AtomicBool::new(false),
        });
        lock(&self.documents).put(query.to_owned(), doc.clone());
        Some(doc)
    }

    /// The current data version, read after this call began (`None` if the
    /// database could not say: then nothing is served from the cache).
    pub async fn version(&self, db: &Db) -> Option<DataVersion> {
        self.gate.current(db, &self.stats).await
    }

    /// The cached response of `key` if it was computed at `version`.
    pub fn get(&self, key: &str, version: DataVersion) -> Option<Bytes> {
        self.get_tagged(key, version).map(|(body, _)| body)
    }

    /// The cached response of `key` and the tag kept with it, if it was
    /// computed at `version`.
    pub fn get_tagged(&self, key: &str, version: DataVersion) -> Option<(Bytes, Option<Arc<str>>)> {
        if !self.settings.enabled {
            return None;
        }
        let mut responses = lock(&self.responses);
        let found = match responses.map.get(key) {
            Some(e) if e.version == version => Some((e.body.clone(), e.tag.clone())),
            _ => None,
        };
        drop(responses);
        match &found {
            Some(_) => self.stats.hits.fetch_add(1, Ordering::Relaxed),
            None => self.stats.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Keeps `body` as the response of `key` at `version`, evicting the
    /// least recently used entries past `max_bytes`.
    pub fn put(&self, key: String, version: DataVersion, body: Bytes) {
        self.put_tagged(key, version, body, None);
    }

    /// Keeps `body` and its `tag` as the response of `key` at `version`
    /// (see [`Self::put`]).
    pub fn put_tagged(
        &self,
        key: String,
        version: DataVersion,
        body: Bytes,
        tag: Option<Arc<str>>,
    ) {
        let size = key.len() + body.len() + tag.as_deref().map_or(0, str::len) + 64;
        if !self.settings.enabled
            || body.len() > self.settings.max_entry_bytes
            || size > self.settings.max_bytes
        {
            return;
        }
        let mut r = lock(&self.responses);
        if let Some(old) = r.map.put(
            key,
            Entry {
                version,
                body,
                tag,
                size,
            },
        ) {
            r.bytes -= old.size;
        }
        r.bytes += size;
        while r.bytes > self.settings.max_bytes {
            match r.map.pop_lru() {
                Some((_, e)) => r.bytes -= e.size,
                None => break,
            }
        }
    }

    /// The totals for the metrics endpoint.
    pub fn counts(&self) -> crate::metrics::CacheCounts {
        let (bytes, entries) = self.usage();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::metrics::CacheCounts {
            hits: get(&self.stats.hits),
            misses: get(&self.stats.misses),
            not_modified: get(&self.stats.not_modified),
            document_hits: get(&self.stats.document_hits),
            version_queries: get(&self.stats.version_queries),
            fast_path: get(&self.stats.fast_path),
            fast_path_retried: get(&self.stats.fast_path_retried),
            bytes,
            entries,
        }
    }

    /// Bytes and entries the response cache holds.
    pub fn usage(&self) -> (usize, usize) {
        let r = lock(&self.responses);
        (r.bytes, r.map.len())
    }

    /// A persisted document known to this instance.
    pub fn persisted(&self, sha256: &str) -> Option<Arc<str>> {
        lock(&self.persisted).get(sha256).cloned()
    }

    /// Remembers a persisted document.
    pub fn remember_persisted(&self, sha256: &str, query: &str) {
        lock(&self.persisted).put(sha256.to_owned(), Arc::from(query));
    }
}

/// The response cache key of a request.
pub fn response_key(
    query: &str,
    operation: Option<&str>,
    variables: &async_graphql::Variables,
    visibility: Visibility,
) -> String {
    let vars = serde_json::to_string(variables).unwrap_or_default();
    let vis = visibility.key();
    let mut key = String::with_capacity(query.len() + vars.len() + 32);
    key.push_str(&vis);
    key.push('\u{0}');
    key.push_str(operation.unwrap_or_default());
    key.push('\u{0}');
    key.push_str(&vars);
    key.push('\u{0}');
    key.push_str(query);
    key
}

/// The strong `ETag` of a response: the data version and the request key.
pub fn etag(version: DataVersion, key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut tag = format!(
        "\"v{}.{}.{}-",
        version.events, version.events_count, version.cities
    );
    for b in &digest[..8] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether an `If-None-Match` header value names `tag`.
pub fn matches_etag(if_none_match: &str, tag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == tag)
}

/// The operation a request runs, if the document names one unambiguously.
pub fn operation_type(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    selected(doc, name).map(|(ty, _)| ty)
}

fn selected<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<(OperationType, &'a SelectionSet)> {
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        _ => return None,
    };
    Some((op.node.ty, &op.node.selection_set.node))
}

/// Root fields whose answer depends on the token itself, not only on its
/// visibility: never cached.
const PER_TOKEN_FIELDS: &[&str] = &["viewer", "tokens"];

/// Whether the response of this operation may be cached: a query none of
/// whose root fields (through fragments too) depends on the token itself.
pub fn cacheable(doc: &ExecutableDocument, name: Option<&str>) -> bool {
    match selected(doc, name) {
        Some((OperationType::Query, set)) => root_cacheable(doc, set, 0),
        _ => false,
    }
}

fn root_cacheable(doc: &ExecutableDocument, set: &SelectionSet, depth: usize) -> bool {
    if depth > 8 {
        return false;
    }
    set.items.iter().all(|item| match &item.node {
        Selection::Field(f) => !PER_TOKEN_FIELDS.contains(&f.node.name.node.as_str()),
        Selection::InlineFragment(f) => root_cacheable(doc, &f.node.selection_set.node, depth + 1),
        Selection::FragmentSpread(s) => doc
            .fragments
            .get(&s.node.fragment_name.node)
            .is_some_and(|f| root_cacheable(doc, &f.node.selection_set.node, depth + 1)),
    })
}

/// Reads the data version so that each caller gets a value read by a query
/// sent after the caller arrived, while sharing queries between callers: a
/// caller waits for the next query to start after it came (one at most in
/// flight). The query runs in its own task, so a cancelled request never
/// leaves the gate waiting.
struct VersionGate {
    state: Arc<Mutex<GateState>>,
    done: watch::Sender<(u64, Option<DataVersion>)>,
}

#[derive(Default)]
struct GateState {
    started: u64,
    inflight: bool,
}

impl VersionGate {
    fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(GateState::default())),
            done: watch::Sender::new((0, None)),
        }
    }

    async fn current(&self, db: &Db, stats: &CacheStats) -> Option<DataVersion> {
        let mut rx = self.done.subscribe();
        let needed = lock(&self.state).started + 1;
        loop {
            {
                let seen = *rx.borrow_and_update();
                if seen.0 >= needed {
                    return seen.1;
                }
            }
            {
                let mut st = lock(&self.state);
                if !st.inflight {
                    st.inflight = true;
                    st.started += 1;
                    let generation = st.started;
                    drop(st);
                    stats.version_queries.fetch_add(1, Ordering::Relaxed);
                    let db = db.clone();
                    let state = self.state.clone();
                    let done = self.done.clone();
                    tokio::spawn(async move {
                        let version = match VersionRepo::current(db.conn()).await {
                            Ok(v) => Some(v),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot read the data version; not caching");
                                None
                            }
                        };
                        lock(&state).inflight = false;
                        done.send_modify(|d| {
                            if generation > d.0 {
                                *d = (generation, version);
                            }
                        });
                    });
                }
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(q: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(q).expect("parses")
    }

    #[test]
    fn only_token_independent_queries_are_cacheable() {
        assert!(cacheable(&doc("{ activities { totalCount } }"), None));
        assert!(!cacheable(&doc("{ viewer { role } }"), None));
        assert!(!cacheable(&doc("{ network { name } tokens { id } }"), None));
        assert!(!cacheable(
            &doc("{ ... on Query { viewer { role } } }"),
            None
        ));
        assert!(!cacheable(
            &doc("query { ...F } fragment F on Query { tokens { id } }"),
            None
        ));
        assert!(cacheable(
            &doc("query { ...F } fragment F on Query { network { name } }"),
            None
        ));
        assert!(!cacheable(&doc("mutation { x }"), None));
        assert!(cacheable(&doc("query A { a } mutation B { b }"), Some("A")));
        assert!(!cacheable(&doc("query A { a } mutation B { b }"), None));
    }

    #[test]
    fn etags_match_exactly() {
        let v = DataVersion {
            events: 7,
            events_count: 0,
            cities: 2,
        };
        let tag = etag(v, "k");
        assert!(matches_etag(&tag, &tag));
        assert!(matches_etag(&format!("\"x\", W/{tag}"), &tag));
        assert!(!matches_etag(
            &etag(DataVersion { events: 8, ..v }, "k"),
            &tag
        ));
        assert!(!matches_etag(&etag(v, "other"), &tag));
    }

    #[test]
    fn responses_are_bounded_and_versioned() {
        let cache = ReadCache::new(CacheSettings {
            max_bytes: 1_000,
            ..CacheSettings::default()
        });
        let v1 = DataVersion {
            events: 1,
            events_count: 0,
            cities: 0,
        };
        let v2 = DataVersion {
            events: 2,
            events_count: 0,
            cities: 0,
        };
        cache.put("a".into(), v1, Bytes::from(vec![b'x'; 400]));
        assert!(cache.get("a", v1).is_some());
        assert!(cache.get("a", v2).is_none(), "another version never hits");
        cache.put("b".into(), v1, Bytes::from(vec![b'x'; 400]));
        cache.put("c".into(), v1, Bytes::from(vec![b'x'; 400]));
        let (bytes, entries) = cache.usage();
        assert!(bytes <= 1_000 && entries == 2, "{bytes} {entries}");
        assert!(cache.get("a", v1).is_none(), "the least recently used went");
    }
}
