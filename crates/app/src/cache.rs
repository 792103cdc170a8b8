//! The hub's response cache (issue 9), shared by every surface that answers
//! reads: whole GraphQL responses of read-only operations and the city
//! websites' calendars, feeds and pages, each keyed by what identifies it
//! (its reader's [`ReadScope`] first, [`scope_key`]) and the data version
//! it was computed at. The binary hands both surfaces one instance, so
//! they share one byte budget and one version gate.
//!
//! Never stale: the data version ([`VersionRepo::current`]) moves in the
//! same transaction as every change a read can see, and every request reads
//! it *after* it arrived — one query serves all requests that arrived
//! before it was sent ([`VersionGate`]), so a busy hub runs one version
//! query per database round trip, not one per request. A response is served
//! from the cache only if it was computed at the version current now, so a
//! change committed by any instance (or a CLI) before the request arrived
//! is always seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use cityhub_domain::ReadScope;
use cityhub_domain::sync::lock;
use cityhub_storage::Db;
use cityhub_storage::repo::version::{DataVersion, VersionRepo};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// What bounds the response cache (from `[cache]` in `cityhub.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCacheSettings {
    /// Keep whole responses.
    pub enabled: bool,
    /// Most bytes the cache holds (keys and bodies).
    pub max_bytes: usize,
    /// Largest single untagged response kept (tagged ones — calendars,
    /// feeds and pages — may take up to a quarter of `max_bytes`).
    pub max_entry_bytes: usize,
}

/// A cache key: the SHA-256 of what identifies the entry, so a key costs
/// 32 bytes whatever the size of the document or request it names.
pub type Digest32 = [u8; 32];

/// The SHA-256 of `text`.
pub fn digest(text: &str) -> Digest32 {
    Sha256::digest(text.as_bytes()).into()
}

/// A weight for moka (which counts in `u32`), saturating.
pub fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The response cache's key prefix of a reader's [`ReadScope`] (`a`,
/// `c{id}`, `s`): what a response may contain depends on the scope only
/// (queries naming the token itself are never cached).
pub fn scope_key(scope: ReadScope) -> String {
    match scope {
        ReadScope::Public => "a".to_owned(),
        ReadScope::City(id) => format!("c{id}"),
        ReadScope::All => "s".to_owned(),
    }
}

/// One cached response.
struct Entry {
    version: DataVersion,
    body: Bytes,
    /// The response's `ETag`, when its owner keeps one beside the body
    /// (the city-website answers tag their bodies by content).
    tag: Option<Arc<str>>,
}

/// Counters the metrics endpoint shows.
#[derive(Debug, Default)]
pub struct ResponseStats {
    /// Responses served from the cache.
    pub hits: AtomicU64,
    /// Cacheable requests that were executed.
    pub misses: AtomicU64,
    /// `304 Not Modified` answers.
    pub not_modified: AtomicU64,
    /// Data version queries run.
    pub version_queries: AtomicU64,
}

/// The response cache of one hub instance.
pub struct ResponseCache {
    settings: ResponseCacheSettings,
    responses: moka::sync::Cache<Digest32, Arc<Entry>>,
    gate: VersionGate,
    /// Hit, miss, `304` and version-query counters.
    pub stats: ResponseStats,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// An empty cache with these settings.
    pub fn new(settings: ResponseCacheSettings) -> Self {
        Self {
            responses: moka::sync::Cache::builder()
                .max_capacity(settings.max_bytes as u64)
                .weigher(|_, e: &Arc<Entry>| {
                    weight(96 + e.body.len() + e.tag.as_deref().map_or(0, str::len))
                })
                .build(),
            gate: VersionGate::new(),
            stats: ResponseStats::default(),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ResponseCacheSettings {
        &self.settings
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
        let found = match self.responses.get(&digest(key)) {
            Some(e) if e.version == version => Some((e.body.clone(), e.tag.clone())),
            _ => None,
        };
        match &found {
            Some(_) => self.stats.hits.fetch_add(1, Ordering::Relaxed),
            None => self.stats.misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    /// Keeps `body` as the response of `key` at `version`; the cache drops
    /// entries (least often and least recently used first) past `max_bytes`.
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
        // City-website answers (tagged) may be as large as a quarter of the
        // cache: a large calendar is rendered once per data version, not
        // on every request.
        let largest = if tag.is_some() {
            self.settings
                .max_entry_bytes
                .max(self.settings.max_bytes / 4)
        } else {
            self.settings.max_entry_bytes
        };
        if !self.settings.enabled || body.len() > largest {
            return;
        }
        self.responses
            .insert(digest(&key), Arc::new(Entry { version, body, tag }));
    }

    /// Records a `304 Not Modified` answer.
    pub fn count_not_modified(&self) {
        self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes (as weighed) and entries the cache holds.
    pub fn usage(&self) -> (usize, usize) {
        self.responses.run_pending_tasks();
        (
            usize::try_from(self.responses.weighted_size()).unwrap_or(usize::MAX),
            usize::try_from(self.responses.entry_count()).unwrap_or(usize::MAX),
        )
    }
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

    async fn current(&self, db: &Db, stats: &ResponseStats) -> Option<DataVersion> {
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

    fn settings(max_bytes: usize) -> ResponseCacheSettings {
        ResponseCacheSettings {
            enabled: true,
            max_bytes,
            max_entry_bytes: 8 * 1024 * 1024,
        }
    }

    #[test]
    fn responses_are_bounded_by_weight_and_versioned() {
        let cache = ResponseCache::new(settings(100_000));
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
        for i in 0..1_000 {
            cache.put(format!("k{i}"), v1, Bytes::from(vec![b'x'; 4_000]));
        }
        let (bytes, entries) = cache.usage();
        assert!(bytes <= 100_000, "{bytes} bytes in {entries} entries");
        assert!(entries < 1_000, "{entries}");
    }

    #[test]
    fn tagged_answers_keep_their_tag_and_may_be_a_quarter_of_the_cache() {
        let cache = ResponseCache::new(ResponseCacheSettings {
            max_entry_bytes: 1_000,
            ..settings(40_000)
        });
        let v = DataVersion {
            events: 1,
            events_count: 0,
            cities: 0,
        };
        cache.put("big".into(), v, Bytes::from(vec![b'x'; 5_000]));
        assert!(cache.get("big", v).is_none(), "untagged: max_entry_bytes");
        let tag: Arc<str> = Arc::from("\"t\"");
        cache.put_tagged("big".into(), v, Bytes::from(vec![b'x'; 5_000]), Some(tag));
        let (body, tag) = cache.get_tagged("big", v).expect("kept");
        assert_eq!((body.len(), tag.as_deref()), (5_000, Some("\"t\"")));
        cache.put_tagged(
            "huge".into(),
            v,
            Bytes::from(vec![b'x'; 10_001]),
            Some(Arc::from("\"u\"")),
        );
        assert!(
            cache.get("huge", v).is_none(),
            "past a quarter of max_bytes"
        );
    }

    #[test]
    fn scope_keys_differ_by_scope() {
        use cityhub_domain::CityId;
        let keys = [
            scope_key(ReadScope::Public),
            scope_key(ReadScope::City(CityId(1))),
            scope_key(ReadScope::City(CityId(12))),
            scope_key(ReadScope::All),
        ];
        assert_eq!(keys, ["a", "c1", "c12", "s"]);
    }
}
