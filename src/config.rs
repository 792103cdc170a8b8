//! One typed configuration: defaults, then `cityhub.toml`, then `CITYHUB_*`
//! environment variables, validated at start-up with a clear message.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use cityhub_auth::AuthConfig;
use cityhub_domain::Limits;
use cityhub_graphql::{ApiSettings, CacheSettings, EventSettings, RateLimitSettings};
use cityhub_storage::DbConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// HTTP server settings (`[http]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Largest request body, in bytes.
    pub body_limit_bytes: usize,
    /// Seconds a request may take before it is answered 408.
    pub request_timeout_secs: u64,
    /// Serve GraphiQL to browsers on `GET /graphql`.
    pub graphiql: bool,
    /// Seconds to let open connections finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
    /// Pending connections the listener queues (the listen backlog).
    pub listen_backlog: u32,
    /// Seconds between keep-alive messages on WebSockets.
    pub ws_keepalive_secs: u64,
    /// Seconds a WebSocket write may block before the client is dropped.
    pub ws_send_timeout_secs: u64,
    /// Bytes buffered for one WebSocket client before it is dropped.
    pub ws_max_write_buffer_bytes: usize,
    /// Seconds a client has to send a request's headers; also the longest
    /// a keep-alive connection may sit idle between requests.
    pub header_read_timeout_secs: u64,
    /// Most connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is
    /// believed when keying anonymous rate limits, and whose `Host` and
    /// `X-Forwarded-Proto` build links when `api.public_url` is empty;
    /// empty: none.
    pub trusted_proxies: Vec<String>,
    /// A second listener for the operators' routes (`/metrics`, `/healthz`,
    /// `/readyz`), e.g. `127.0.0.1:9090`; then `/metrics` is not served on
    /// the public listener. Empty: everything on `listen`.
    pub admin_listen: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 256 * 1024,
            request_timeout_secs: 30,
            graphiql: true,
            shutdown_grace_secs: 10,
            listen_backlog: 4096,
            ws_keepalive_secs: 15,
            ws_send_timeout_secs: 10,
            ws_max_write_buffer_bytes: 256 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 25_000,
            trusted_proxies: Vec::new(),
            admin_listen: String::new(),
        }
    }
}

/// Cross-origin settings (`[cors]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call the API and open WebSockets; `["*"]` is any.
    pub allowed_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["*".into()],
        }
    }
}

/// Logging settings (`[log]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for people, `json` for machines.
    pub format: String,
    /// A `tracing` filter, e.g. `info,cityhub=debug`. `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            filter: "info".into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Database.
    pub database: DbConfig,
    /// Tokens and anonymous access.
    pub auth: AuthConfig,
    /// API limits and network facts.
    pub api: ApiSettings,
    /// Input size limits.
    pub limits: Limits,
    /// Live events.
    pub events: EventSettings,
    /// HTTP server.
    pub http: HttpConfig,
    /// Cross-origin access.
    pub cors: CorsConfig,
    /// Rate limits.
    pub rate_limit: RateLimitSettings,
    /// Logging.
    pub log: LogConfig,
    /// Read caches, HTTP caching and persisted queries.
    pub cache: CacheSettings,
    /// City-website endpoints: calendars, feeds, pages, widget.
    pub web: cityhub_web::WebSettings,
    /// Cities' connected calendars: fetching limits, schedule, safety.
    pub sources: cityhub_sources::SourceSettings,
}

/// The sections whose keys `CITYHUB_<SECTION>_<KEY>` variables reach.
const SECTIONS: &[&str] = &[
    "database",
    "auth",
    "api",
    "limits",
    "events",
    "http",
    "cors",
    "rate_limit",
    "log",
    "cache",
    "web",
    "sources",
];

impl Config {
    /// The defaults, with the standard listen address.
    pub fn defaults() -> Self {
        Self {
            listen: "127.0.0.1:4000".into(),
            ..Self::default()
        }
    }

    /// Loads defaults, then `path` (if it exists), then the environment.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let env = Env::prefixed("CITYHUB_")
            .filter(|key| {
                let key = key.as_str().to_ascii_lowercase();
                key == "listen" || SECTIONS.iter().any(|s| key.starts_with(&format!("{s}_")))
            })
            .map(|key| {
                let key = key.as_str().to_ascii_lowercase();
                SECTIONS
                    .iter()
                    .find_map(|s| {
                        key.strip_prefix(&format!("{s}_"))
                            .map(|rest| format!("{s}.{rest}"))
                    })
                    .unwrap_or(key)
                    .into()
            });
        let config: Config = Figment::from(Serialized::defaults(Self::defaults()))
            .merge(Toml::file(path))
            .merge(env)
            .extract()
            .with_context(|| {
                format!(
                    "invalid configuration (from {} and CITYHUB_* variables)",
                    path.display()
                )
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!(
                "database.url must start with sqlite: or postgres:// (got {})",
                cityhub_storage::db::redact_url(url)
            );
        }
        if self.http.body_limit_bytes < 1024 {
            bail!("http.body_limit_bytes must be at least 1024");
        }
        if self.web.calendar_max_events == 0 || self.web.feed_max_entries == 0 {
            bail!("web.calendar_max_events and web.feed_max_entries must be at least 1");
        }
        let public_url = &self.api.public_url;
        if !(public_url.is_empty()
            || public_url.starts_with("http://")
            || public_url.starts_with("https://"))
        {
            bail!("api.public_url must start with http:// or https:// (or be empty)");
        }
        if self.api.max_page_size == 0 {
            bail!("api.max_page_size must be at least 1");
        }
        if self.cache.max_document_bytes == 0
            || self.cache.max_persisted_memory_bytes == 0
            || self.cache.max_persisted_stored == 0
            || self.cache.max_persisted_stored_bytes == 0
        {
            bail!(
                "cache.max_document_bytes, cache.max_persisted_memory_bytes, cache.max_persisted_stored and cache.max_persisted_stored_bytes must be positive"
            );
        }
        if self.api.max_document_tokens < 100 {
            bail!(
                "api.max_document_tokens must be at least 100 (GraphiQL's introspection query has about 300 tokens)"
            );
        }
        if !matches!(self.log.format.as_str(), "pretty" | "json") {
            bail!("log.format must be `pretty` or `json`");
        }
        if self.auth.leeway_secs > 300 {
            bail!("auth.leeway_secs must be at most 300 (seconds, not minutes)");
        }
        if let Some(kek) = &self.auth.key_encryption_key_file {
            if kek.trim().is_empty() {
                bail!("auth.key_encryption_key_file must name a file (or be unset)");
            }
            if self.auth.key_file.is_some() {
                bail!(
                    "auth.key_encryption_key_file seals keys stored in the database, but auth.key_file keeps them in that file instead: set one or the other"
                );
            }
        }
        if self.http.header_read_timeout_secs == 0 || self.http.max_connections == 0 {
            bail!("http.header_read_timeout_secs and http.max_connections must be positive");
        }
        self.trusted_proxies()?;
        self.sources.validate()?;
        if self.events.buffer == 0 || self.events.max_subscriptions_per_connection == 0 {
            bail!("events.buffer and events.max_subscriptions_per_connection must be positive");
        }
        if self.events.max_operations_in_flight == 0
            || self.events.max_queued_messages == 0
            || self.events.max_message_bytes < 1024
            || self.events.replay_page == 0
        {
            bail!(
                "events.max_operations_in_flight, max_queued_messages and replay_page must be positive, max_message_bytes at least 1024"
            );
        }
        Ok(())
    }

    /// `http.trusted_proxies`, parsed (a bare address is a /32 or /128).
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.http
            .trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| {
                        format!("http.trusted_proxies: '{p}' is not an address or CIDR range")
                    })
            })
            .collect()
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen.parse().with_context(|| {
            format!(
                "listen must be an address like 127.0.0.1:4000 (got {})",
                self.listen
            )
        })
    }
}
