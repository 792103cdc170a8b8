//! What a request may ask for, decided before anything executes, over HTTP
//! and WebSocket alike (both run through the schema, so both pass here):
//! aliased root fields, mutations per request, `_entities`
//! representations and their cost, and the rate limits (mutations per
//! token; optionally every anonymous request per client address).
//! The cost of ordinary fields (page size × children, at least 2 per
//! alias of a listing) is async-graphql's complexity, set on each
//! listing field; the recursion and depth limits are the parser's and the
//! validator's.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ServerResult, Variables};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::document::{count_tokens, measure};
use crate::error::Code;
use cityhub_app::auth::RequestCtx;

/// Rate limits (`[rate_limit]` in `cityhub.toml`), per instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Mutations per second one token may run (sustained); 0 turns it off.
    pub mutations_per_sec: u32,
    /// Mutations one token may run in a burst above the sustained rate.
    pub mutation_burst: u32,
    /// Requests per second one client address may make without a token;
    /// 0 (the default) turns it off.
    pub anonymous_per_sec: u32,
    /// Anonymous requests one client address may make in a burst.
    pub anonymous_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            mutations_per_sec: 50,
            mutation_burst: 200,
            anonymous_per_sec: 0,
            anonymous_burst: 100,
        }
    }
}

/// The client's address, as the HTTP layer determined it (the peer, or the
/// first untrusted hop of `X-Forwarded-For` behind a trusted proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The limits a document is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// Most fields (aliases counted) at an operation's root.
    pub max_root_fields: usize,
    /// Most mutation fields in one request.
    pub max_mutations: usize,
    /// Most `_entities` representations in one request.
    pub max_entities: usize,
    /// Highest cost; `_entities` costs its selection per representation.
    pub max_complexity: usize,
    /// Most lexical tokens a document may have, counted before it is
    /// parsed (`api.max_document_tokens`).
    pub max_tokens: usize,
}

/// The name of the operation a request runs, as the request gave it: the
/// guard measures that operation only (stored in the request's data by
/// the guard's `prepare_request` hook).
#[derive(Debug, Clone)]
struct OperationName(Option<String>);

/// The rate limiters of one instance.
pub struct Limiters {
    mutations: Option<DefaultKeyedRateLimiter<String>>,
    anonymous: Option<DefaultKeyedRateLimiter<IpAddr>>,
    registrations: Option<DefaultKeyedRateLimiter<Registrant>>,
    clock: DefaultClock,
    /// Refusals so far, by [`Limit`] (for `cityhub_rate_limited`).
    refused: [std::sync::atomic::AtomicU64; 3],
}

/// Which budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A token's mutations.
    Mutations,
    /// An address's anonymous requests (GraphQL, pages, calendars, feeds).
    Anonymous,
    /// Persisted-query registrations.
    Registrations,
}

impl Limit {
    /// Every budget, in the order of [`Limiters::refusals`].
    pub const ALL: [Limit; 3] = [Limit::Mutations, Limit::Anonymous, Limit::Registrations];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Mutations => "mutations",
            Limit::Anonymous => "anonymous",
            Limit::Registrations => "registrations",
        }
    }
}

/// Who registers a persisted query: a token, or an address without one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Registrant {
    /// A token, by its id.
    Token(String),
    /// A client without a token, by its address.
    Address(IpAddr),
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("mutations", &self.mutations.is_some())
            .field("anonymous", &self.anonymous.is_some())
            .field("registrations", &self.registrations.is_some())
            .finish()
    }
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limiters {
    /// Limiters for `settings`, persisted-query registrations unlimited.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self::with_registrations(settings, 0)
    }

    /// Limiters for `settings`, and at most `registrations_per_minute`
    /// persisted-query registrations per token or client address (0: no
    /// limit).
    pub fn with_registrations(settings: &RateLimitSettings, registrations_per_minute: u32) -> Self {
        Self {
            mutations: quota(settings.mutations_per_sec, settings.mutation_burst)
                .map(RateLimiter::keyed),
            anonymous: quota(settings.anonymous_per_sec, settings.anonymous_burst)
                .map(RateLimiter::keyed),
            registrations: NonZeroU32::new(registrations_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            clock: DefaultClock::default(),
            refused: Default::default(),
        }
    }

    /// Requests refused so far by each budget, in [`Limit::ALL`]'s order.
    pub fn refusals(&self) -> [u64; 3] {
        self.refused
            .each_ref()
            .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether the anonymous per-address limiter is on.
    pub fn limits_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// Takes one anonymous request of `ip`'s budget (city websites' pages,
    /// calendars and feeds share it with GraphQL); `Err(seconds to wait)`
    /// when it is spent. Always `Ok` when the limiter is off.
    pub fn take_anonymous(&self, ip: IpAddr) -> Result<(), u64> {
        match &self.anonymous {
            Some(limiter) => self.take(Limit::Anonymous, limiter, &ip, 1),
            None => Ok(()),
        }
    }

    /// Takes one persisted-query registration of `who`'s budget;
    /// `Err(seconds to wait)` when it is spent.
    pub fn take_registration(&self, who: Registrant) -> Result<(), u64> {
        match &self.registrations {
            Some(limiter) => self.take(Limit::Registrations, limiter, &who, 1),
            None => Ok(()),
        }
    }

    /// Takes `n` cells from `key`'s bucket; `Err(seconds to wait)` if empty.
    fn take<K>(
        &self,
        budget: Limit,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        n: usize,
    ) -> Result<(), u64>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        let n = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let refused = match limiter.check_key_n(key, n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            }
            // More than the burst at once can never pass: wait a second and
            // send fewer (the per-request mutation cap keeps this rare).
            Err(_) => 1,
        };
        let index = Limit::ALL.iter().position(|l| *l == budget).unwrap_or(0);
        self.refused[index].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(refused)
    }

    /// Drops the state of keys whose buckets are full again (bounded memory).
    pub fn retain_recent(&self) {
        if let Some(l) = &self.mutations {
            l.retain_recent();
        }
        if let Some(l) = &self.anonymous {
            l.retain_recent();
        }
        if let Some(l) = &self.registrations {
            l.retain_recent();
        }
    }
}

/// The extension that applies [`DocumentLimits`] and the rate limits.
#[derive(Clone)]
pub struct RequestGuard {
    limits: DocumentLimits,
    limiters: Arc<Limiters>,
}

impl RequestGuard {
    /// A guard with these limits and limiters.
    pub fn new(limits: DocumentLimits, limiters: Arc<Limiters>) -> Self {
        Self { limits, limiters }
    }
}

impl ExtensionFactory for RequestGuard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(self.clone())
    }
}

/// A request-level error with a code (and, for `RATE_LIMITED`, the
/// seconds to wait in `extensions.retryAfter`).
pub fn refuse(code: Code, message: String, retry_after: Option<u64>) -> ServerError {
    let mut err = ServerError::new(message, None);
    let ext = err.extensions.get_or_insert_with(Default::default);
    ext.set("code", code.as_str());
    if let Some(secs) = retry_after {
        ext.set("retryAfter", secs);
    }
    err
}

impl RequestGuard {
    /// Decides whether a parsed document may run for this caller: its shape
    /// against the [`DocumentLimits`], then the rate limits. The schema's
    /// parse hook calls it, and so does the fast path of
    /// [`crate::http`], which executes already-validated documents without
    /// extensions.
    pub fn admit(
        &self,
        document: &ExecutableDocument,
        variables: &Variables,
        operation: Option<&str>,
        principal: Option<&cityhub_app::auth::Principal>,
        client: Option<&ClientAddr>,
    ) -> ServerResult<()> {
        let shape = measure(document, variables, operation);
        let l = &self.limits;
        if shape.exhausted {
            return Err(refuse(
                Code::QueryTooComplex,
                "the document spreads its fragments too often to be measured".to_owned(),
                None,
            ));
        }
        if shape.root_fields > l.max_root_fields {
            return Err(refuse(
                Code::QueryTooComplex,
                format!(
                    "an operation selects {} root fields (aliases count); at most {} are allowed",
                    shape.root_fields, l.max_root_fields
                ),
                None,
            ));
        }
        if shape.mutations > l.max_mutations {
            return Err(refuse(
                Code::QueryTooComplex,
                format!(
                    "a request may run at most {} mutations ({} asked)",
                    l.max_mutations, shape.mutations
                ),
                None,
            ));
        }
        if shape.entities > l.max_entities {
            return Err(refuse(
                Code::QueryTooComplex,
                format!(
                    "_entities takes at most {} representations per request ({} given)",
                    l.max_entities, shape.entities
                ),
                None,
            ));
        }
        if shape.entities_cost > l.max_complexity {
            return Err(refuse(
                Code::QueryTooComplex,
                "Query is too complex.".to_owned(),
                None,
            ));
        }
        match principal {
            Some(p) if shape.mutations > 0 => {
                if let Some(limiter) = &self.limiters.mutations
                    && let Err(wait) =
                        self.limiters
                            .take(Limit::Mutations, limiter, &p.token_id, shape.mutations)
                {
                    return Err(refuse(
                        Code::RateLimited,
                        format!("too many mutations for this token; retry in {wait} s"),
                        Some(wait),
                    ));
                }
            }
            Some(_) => {}
            None => {
                if let (Some(limiter), Some(ClientAddr(ip))) = (&self.limiters.anonymous, client)
                    && let Err(wait) = self.limiters.take(Limit::Anonymous, limiter, ip, 1)
                {
                    return Err(refuse(
                        Code::RateLimited,
                        format!("too many requests from this address; retry in {wait} s"),
                        Some(wait),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl RequestGuard {
    /// Refuses a document of more than `max_tokens` lexical tokens, before
    /// it is parsed (`QUERY_TOO_COMPLEX`).
    pub fn check_size(&self, query: &str) -> ServerResult<()> {
        check_size(query, self.limits.max_tokens)
    }

    /// The document limits.
    pub fn limits(&self) -> &DocumentLimits {
        &self.limits
    }

    /// The instance's rate limiters.
    pub fn limiters(&self) -> &Limiters {
        &self.limiters
    }
}

/// Refuses `query` when it has more than `max_tokens` lexical tokens,
/// before it is parsed (`QUERY_TOO_COMPLEX`).
pub fn check_size(query: &str, max_tokens: usize) -> ServerResult<()> {
    match count_tokens(query, max_tokens) {
        Ok(_) => Ok(()),
        Err(_) => Err(refuse(
            Code::QueryTooComplex,
            format!("the document has more than {max_tokens} tokens"),
            None,
        )),
    }
}

#[async_trait::async_trait]
impl Extension for RequestGuard {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        request
            .data
            .insert(OperationName(request.operation_name.clone()));
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        self.check_size(query)?;
        let document = next.run(ctx, query, variables).await?;
        let principal = ctx
            .data_opt::<RequestCtx>()
            .and_then(|r| r.principal.as_ref());
        let operation = ctx.data_opt::<OperationName>().and_then(|o| o.0.as_deref());
        self.admit(
            &document,
            variables,
            operation,
            principal,
            ctx.data_opt::<ClientAddr>(),
        )?;
        Ok(document)
    }
}
