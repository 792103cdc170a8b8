//! What every GraphQL transport shares: [`GraphqlService`] (the schema and
//! what serving it needs, the state of the HTTP and WebSocket handlers),
//! the transports' settings and the client's address.

use std::sync::Arc;

use cityhub_events::EventBus;
use cityhub_storage::Db;

use crate::cache::{CacheSettings, ReadCache};
use crate::guard::RequestGuard;
use crate::metrics::Metrics;
use crate::schema::HubSchema;
use cityhub_app::auth::Authenticator;
use cityhub_app::cache::ResponseCache;

/// HTTP settings the GraphQL handlers need.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Serve GraphiQL to browsers.
    pub graphiql: bool,
    /// Origins allowed to open WebSockets (`None`: any).
    pub ws_allowed_origins: Option<Vec<String>>,
    /// Seconds between server keep-alive messages on WebSockets.
    pub ws_keepalive_secs: u64,
    /// Seconds a WebSocket write may block before the client is dropped as too slow.
    pub ws_send_timeout_secs: u64,
    /// Bytes a WebSocket may buffer for a client before it is dropped as too slow.
    pub ws_max_write_buffer: usize,
    /// Proxies whose `X-Forwarded-For` is believed (for the client address
    /// that anonymous rate limits key on).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// What the GraphQL handlers share.
#[derive(Clone)]
pub struct GraphqlService {
    pub(crate) schema: HubSchema,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) db: Db,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) events: Arc<EventBus>,
    pub(crate) settings: HttpSettings,
    pub(crate) public_read: bool,
    pub(crate) cache: Arc<ReadCache>,
    /// The request guard the schema installs, for what runs before the
    /// schema: the fast path, the document cache's size check, and the
    /// rate limits of persisted-query registrations and city-website pages.
    pub(crate) guard: RequestGuard,
    /// The extension-free schema, for queries whose document passed full
    /// validation once (the guard runs before it).
    pub(crate) fast: Option<HubSchema>,
    /// The hub's shutdown token and task tracker: WebSocket tasks end when
    /// the hub stops (see `ws`).
    pub(crate) lifetime: Option<(
        tokio_util::sync::CancellationToken,
        tokio_util::task::TaskTracker,
    )>,
}

impl GraphqlService {
    /// Bundles the schema and what serving it needs.
    pub fn new(
        schema: HubSchema,
        auth: Arc<Authenticator>,
        db: Db,
        metrics: Arc<Metrics>,
        events: Arc<EventBus>,
        settings: HttpSettings,
        guard: RequestGuard,
    ) -> Self {
        let public_read = auth.config().public_read;
        Self {
            guard,
            schema,
            auth,
            db,
            metrics,
            events,
            settings,
            public_read,
            cache: Arc::new(ReadCache::new(CacheSettings::default())),
            fast: None,
            lifetime: None,
        }
    }

    /// Ends every WebSocket connection's task when `stop` is cancelled, and
    /// tracks them on `tasks` (so the hub's shutdown waits for them).
    #[must_use]
    pub fn with_lifetime(
        mut self,
        stop: tokio_util::sync::CancellationToken,
        tasks: tokio_util::task::TaskTracker,
    ) -> Self {
        self.lifetime = Some((stop, tasks));
        self
    }

    /// Runs queries whose document already passed full validation on
    /// `schema` (built by [`crate::build_fast_schema`] from the same state),
    /// with the request guard applied first.
    #[must_use]
    pub fn with_fast_path(mut self, schema: HubSchema) -> Self {
        self.fast = Some(schema);
        self
    }

    /// The HTTP settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The request guard (document limits and the instance's rate limiters).
    pub fn guard(&self) -> &RequestGuard {
        &self.guard
    }

    /// Replaces the read caches with empty ones under `settings`, keeping
    /// responses in `responses` (the instance's one response cache, which
    /// the city websites share).
    #[must_use]
    pub fn with_cache(mut self, settings: CacheSettings, responses: Arc<ResponseCache>) -> Self {
        self.cache = Arc::new(ReadCache::sharing(settings, responses));
        self
    }

    /// The read caches (documents, responses, persisted queries).
    pub fn cache(&self) -> &ReadCache {
        &self.cache
    }

    /// The schema.
    pub fn schema(&self) -> &HubSchema {
        &self.schema
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The event bus.
    pub fn events(&self) -> &Arc<EventBus> {
        &self.events
    }

    /// The authenticator.
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }
}
