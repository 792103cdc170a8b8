//! GraphQL's read caches (issue 9): parsed documents keyed by their text,
//! persisted documents, and — through the application layer's
//! [`ResponseCache`], which the city websites share — whole responses of
//! read-only operations keyed by (document, operation, variables, read
//! scope) and the data version they were computed at. What may be cached
//! ([`cacheable`]), the canonical key ([`response_key`]) and the `ETag`
//! ([`etag`]) of a GraphQL answer are decided here; the response cache's
//! freshness rule (the data version, read after the request arrived) is
//! `cityhub_app::cache`'s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql_value::ConstValue;

use crate::document::selected_operation;
use cityhub_app::cache::{
    Digest32, ResponseCache, ResponseCacheSettings, digest, scope_key, weight,
};
use cityhub_domain::ReadScope;
use cityhub_storage::repo::version::DataVersion;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Cache settings (`[cache]` in `cityhub.toml`). Every cache is bounded
/// in bytes (its entries weighed), never by a count of entries alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Keep whole responses of read-only operations.
    pub enabled: bool,
    /// Most bytes the response cache holds (keys and bodies), city-website
    /// answers (calendars, feeds, pages) included.
    pub max_bytes: usize,
    /// Largest single GraphQL response kept (calendars, feeds and pages
    /// may take up to a quarter of `max_bytes`).
    pub max_entry_bytes: usize,
    /// Most bytes of parsed documents kept (each weighed by an estimate of
    /// its syntax tree). Only documents that parsed, validated and passed
    /// the request guard are kept.
    pub max_document_bytes: usize,
    /// `Cache-Control` of anonymous `GET /graphql` answers.
    pub cache_control: String,
    /// `Cache-Control` of `GET /graphql` answers to a request with a token.
    pub cache_control_private: String,
    /// Accept Apollo persisted queries.
    pub persisted_queries: bool,
    /// Most bytes of persisted documents kept in memory per instance (all
    /// are in the database).
    pub max_persisted_memory_bytes: usize,
    /// Most persisted documents kept in the database; registering one more
    /// drops the oldest (its clients register it again).
    pub max_persisted_stored: u64,
    /// Most bytes of persisted documents kept in the database; registering
    /// past it drops the oldest.
    pub max_persisted_stored_bytes: u64,
    /// Persisted-query registrations one token, or one client address
    /// without a token, may make per minute (over POST and GET alike);
    /// beyond it `RATE_LIMITED`. 0 turns the limit off.
    pub persisted_registrations_per_minute: u32,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 8 * 1024 * 1024,
            max_document_bytes: 64 * 1024 * 1024,
            cache_control: "public, max-age=0, must-revalidate".into(),
            cache_control_private: "private, no-cache".into(),
            persisted_queries: true,
            max_persisted_memory_bytes: 16 * 1024 * 1024,
            max_persisted_stored: 10_000,
            max_persisted_stored_bytes: 64 * 1024 * 1024,
            persisted_registrations_per_minute: 60,
        }
    }
}

impl CacheSettings {
    /// What of these settings bounds the shared response cache.
    pub fn responses(&self) -> ResponseCacheSettings {
        ResponseCacheSettings {
            enabled: self.enabled,
            max_bytes: self.max_bytes,
            max_entry_bytes: self.max_entry_bytes,
        }
    }
}

/// Bytes a parsed document is reckoned to hold per lexical token of its
/// text (measured: a selection of single-letter fields parses to about
/// 120 bytes per token; comments and whitespace are not kept).
const DOCUMENT_BYTES_PER_TOKEN: usize = 160;

/// A parsed document, and whether it has passed the schema's full
/// validation once (then later requests may run it without re-validating
/// its rules, see `http::execute`).
#[derive(Debug)]
pub struct CachedDocument {
    /// The parsed document.
    pub doc: ExecutableDocument,
    /// The SHA-256 of its text (its key in the document cache).
    pub key: Digest32,
    /// Its lexical tokens (the basis of its weight).
    pub tokens: usize,
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

/// Counters of GraphQL's own caches the metrics endpoint shows (the
/// response cache counts its own, `ResponseCache::stats`).
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Parsed documents reused.
    pub document_hits: AtomicU64,
    /// Queries run on the extension-free schema (their document had passed
    /// full validation before).
    pub fast_path: AtomicU64,
    /// Fast-path answers thrown away for an uncoded error, the query then
    /// run again with full validation.
    pub fast_path_retried: AtomicU64,
}

/// The caches of one hub instance's GraphQL service.
pub struct ReadCache {
    settings: CacheSettings,
    documents: moka::sync::Cache<Digest32, Arc<CachedDocument>>,
    persisted: moka::sync::Cache<String, Arc<str>>,
    responses: Arc<ResponseCache>,
    /// Document and fast-path counters.
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
    /// Empty caches with these settings, with a response cache of their
    /// own.
    pub fn new(settings: CacheSettings) -> Self {
        let responses = Arc::new(ResponseCache::new(settings.responses()));
        Self::sharing(settings, responses)
    }

    /// Empty document caches with these settings, keeping responses in
    /// `responses` (the instance's one response cache, which the city
    /// websites share).
    pub fn sharing(settings: CacheSettings, responses: Arc<ResponseCache>) -> Self {
        Self {
            documents: moka::sync::Cache::builder()
                .max_capacity(settings.max_document_bytes as u64)
                .weigher(|_, d: &Arc<CachedDocument>| {
                    weight(
                        64 + std::mem::size_of::<CachedDocument>()
                            + d.tokens.saturating_mul(DOCUMENT_BYTES_PER_TOKEN),
                    )
                })
                .build(),
            persisted: moka::sync::Cache::builder()
                .max_capacity(settings.max_persisted_memory_bytes as u64)
                .weigher(|k: &String, q: &Arc<str>| weight(64 + k.len() + q.len()))
                .build(),
            responses,
            stats: CacheStats::default(),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// The response cache (shared with the city websites).
    pub fn responses(&self) -> &Arc<ResponseCache> {
        &self.responses
    }

    /// The parsed document of `query`: the kept one, or parsed now (not
    /// kept: [`Self::keep_document`] keeps it once it passed validation
    /// and the guard). `Err` carries the guard's refusal of a document of
    /// more than `max_tokens` tokens, decided before parsing; `Ok(None)` a
    /// document that does not parse (execution then reports the error).
    pub fn document(
        &self,
        query: &str,
        max_tokens: usize,
    ) -> Result<Option<Arc<CachedDocument>>, async_graphql::ServerError> {
        let key = digest(query);
        if let Some(doc) = self.documents.get(&key) {
            self.stats.document_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(doc));
        }
        crate::guard::check_size(query, max_tokens)?;
        let tokens = crate::document::count_tokens(query, max_tokens).unwrap_or(max_tokens);
        Ok(async_graphql::parser::parse_query(query).ok().map(|doc| {
            Arc::new(CachedDocument {
                doc,
                key,
                tokens,
                validated: AtomicBool::new(false),
            })
        }))
    }

    /// Keeps `doc`, which a request has just run past validation and the
    /// request guard, so later requests skip parsing (and, for queries,
    /// full validation).
    pub fn keep_document(&self, doc: &Arc<CachedDocument>) {
        doc.mark_validated();
        self.documents.insert(doc.key, doc.clone());
    }

    /// Bytes (as weighed) and entries the document cache holds.
    pub fn document_usage(&self) -> (u64, u64) {
        self.documents.run_pending_tasks();
        (self.documents.weighted_size(), self.documents.entry_count())
    }

    /// The totals for the metrics endpoint (the shared response cache's
    /// included).
    pub fn counts(&self) -> crate::metrics::CacheCounts {
        let (bytes, entries) = self.responses.usage();
        let (document_bytes, document_entries) = self.document_usage();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let shared = &self.responses.stats;
        crate::metrics::CacheCounts {
            hits: get(&shared.hits),
            misses: get(&shared.misses),
            not_modified: get(&shared.not_modified),
            document_hits: get(&self.stats.document_hits),
            version_queries: get(&shared.version_queries),
            fast_path: get(&self.stats.fast_path),
            fast_path_retried: get(&self.stats.fast_path_retried),
            bytes,
            entries,
            document_bytes,
            document_entries,
        }
    }

    /// A persisted document known to this instance.
    pub fn persisted(&self, sha256: &str) -> Option<Arc<str>> {
        self.persisted.get(sha256)
    }

    /// Remembers a persisted document.
    pub fn remember_persisted(&self, sha256: &str, query: &str) {
        self.persisted.insert(sha256.to_owned(), Arc::from(query));
    }
}

/// The response cache key of a request, in canonical form: the operation
/// that runs named as the document names it (given or not), and the
/// variables as execution sees them — defaults filled in, object keys
/// sorted — so variants of one request share one entry.
pub fn response_key(
    query: &str,
    document: &ExecutableDocument,
    operation: Option<&str>,
    variables: &async_graphql::Variables,
    scope: ReadScope,
) -> String {
    let mut resolved: std::collections::BTreeMap<&str, &ConstValue> = variables
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .collect();
    let mut name = operation.unwrap_or_default();
    if let Some((op_name, op)) = selected_operation(document, operation) {
        name = op_name.unwrap_or_default();
        for def in &op.node.variable_definitions {
            if let Some(default) = &def.node.default_value {
                resolved
                    .entry(def.node.name.node.as_str())
                    .or_insert(&default.node);
            }
        }
    }
    let mut key = String::with_capacity(query.len() + 64);
    key.push_str(&scope_key(scope));
    key.push('\u{0}');
    key.push_str(name);
    key.push('\u{0}');
    key.push('{');
    for (i, (name, value)) in resolved.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        canonical_json(&ConstValue::String((*name).to_owned()), &mut key);
        key.push(':');
        canonical_json(value, &mut key);
    }
    key.push('}');
    key.push('\u{0}');
    key.push_str(query);
    key
}

/// Writes `value` as JSON with every object's keys sorted.
fn canonical_json(value: &ConstValue, out: &mut String) {
    match value {
        ConstValue::Object(map) => {
            let mut fields: Vec<_> = map.iter().collect();
            fields.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (name, value)) in fields.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(&ConstValue::String(name.to_string()), out);
                out.push(':');
                canonical_json(value, out);
            }
            out.push('}');
        }
        ConstValue::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
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

/// The operation a request runs, if the document names one unambiguously.
pub fn operation_type(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    selected(doc, name).map(|(ty, _)| ty)
}

fn selected<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<(OperationType, &'a SelectionSet)> {
    let (_, op) = selected_operation(doc, name)?;
    Some((op.node.ty, &op.node.selection_set.node))
}

/// Root fields whose answer depends on the token itself, not only on its
/// visibility: never cached.
/// `sources` and `source` answer each city its own sources only.
const PER_TOKEN_FIELDS: &[&str] = &["viewer", "tokens", "sources", "source"];

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
        assert_eq!(tag, etag(v, "k"));
        assert_ne!(etag(DataVersion { events: 8, ..v }, "k"), tag);
        assert_ne!(etag(v, "other"), tag);
    }

    #[test]
    fn documents_are_kept_only_when_told_and_bounded_by_weight() {
        let cache = ReadCache::new(CacheSettings {
            max_document_bytes: 200_000,
            ..CacheSettings::default()
        });
        let q = "{ network { name } }";
        let doc = cache.document(q, 100).expect("small").expect("parses");
        assert!(!doc.validated());
        assert_eq!(cache.document_usage().1, 0, "parsing keeps nothing");
        cache.keep_document(&doc);
        assert!(
            cache
                .document(q, 100)
                .expect("small")
                .expect("kept")
                .validated()
        );
        assert!(cache.document("{ a b c d }", 3).is_err(), "too many tokens");
        for i in 0..2_000 {
            let q = format!("{{ network {{ name }} a{i}: network {{ name }} }}");
            let d = cache.document(&q, 100).expect("small").expect("parses");
            cache.keep_document(&d);
        }
        let (bytes, entries) = cache.document_usage();
        assert!(bytes <= 200_000, "{bytes} bytes in {entries} entries");
    }
}
