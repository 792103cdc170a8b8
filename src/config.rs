//! One typed configuration: defaults, then `cityhub.toml`, then `CITYHUB_*`
//! environment variables, validated at start-up with a clear message.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use cityhub_app::RateLimitSettings;
use cityhub_auth::AuthConfig;
use cityhub_domain::Limits;
use cityhub_graphql::{ApiSettings, CacheSettings, EventSettings};
use cityhub_storage::DbConfig;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
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

/// Traces over OpenTelemetry's OTLP (`[otel]`): off unless `endpoint` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtelConfig {
    /// The OTLP/HTTP address of a collector or agent near the hub, e.g.
    /// `http://otel-collector:4318` (plain HTTP: the collector forwards
    /// with TLS). Spans go to `<endpoint>/v1/traces`; a URL that already
    /// ends in `/v1/traces` is used as it is. Empty: no traces are exported.
    pub endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0; a request that carries a
    /// W3C `traceparent` follows its caller's sampling decision.
    pub sample_ratio: f64,
    /// Seconds an export to the collector may take before it is dropped.
    pub export_timeout_secs: u64,
}

impl Default for OtelConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            service_name: "cityhub".into(),
            sample_ratio: 1.0,
            export_timeout_secs: 10,
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
    /// Traces exported over OTLP.
    pub otel: OtelConfig,
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
    "otel",
    "cache",
    "web",
    "sources",
];

/// Every environment variable the configuration reads starts with this.
pub const ENV_PREFIX: &str = "CITYHUB_";

/// The variable that names the configuration file (read by the command
/// line, not by [`Config::load`]).
pub const CONFIG_FILE_VARIABLE: &str = "CITYHUB_CONFIG";

/// The suffix of a variable naming a file that holds a setting's value.
pub const FILE_SUFFIX: &str = "_FILE";

/// The dotted setting (`database.url`) a `CITYHUB_*` variable
/// (`CITYHUB_DATABASE_URL`) sets, if it has the shape of one; whether the
/// setting exists is [`Config::has_setting`]'s answer.
pub fn setting_of(variable: &str) -> Option<String> {
    let key = variable.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
    if key == "listen" {
        return Some(key);
    }
    SECTIONS.iter().find_map(|section| {
        key.strip_prefix(&format!("{section}_"))
            .filter(|rest| !rest.is_empty())
            .map(|rest| format!("{section}.{rest}"))
    })
}

/// A setting whose value a `CITYHUB_<SETTING>_FILE` variable reads from a
/// file.
#[derive(Clone, PartialEq, Eq)]
pub struct FileSetting {
    /// The variable, e.g. `CITYHUB_DATABASE_URL_FILE`.
    pub variable: String,
    /// The dotted setting it sets, e.g. `database.url`.
    pub setting: String,
    /// The file's content, without its trailing line break.
    pub value: String,
}

impl std::fmt::Debug for FileSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The value is a secret (a database URL with its password).
        f.debug_struct("FileSetting")
            .field("variable", &self.variable)
            .field("setting", &self.setting)
            .finish_non_exhaustive()
    }
}

/// The settings `CITYHUB_<SETTING>_FILE` variables among `vars` give, read
/// from their files: Docker and Kubernetes secrets are files, so a database
/// URL with its password need not be in the environment
/// (`CITYHUB_DATABASE_URL_FILE=/run/secrets/database_url`). The file's
/// content is the value, without its trailing line break. A variable whose
/// own name is a setting (`CITYHUB_AUTH_KEY_FILE` is `auth.key_file`, a
/// path) keeps that meaning. Setting both `CITYHUB_X` and `CITYHUB_X_FILE`,
/// or naming a file that cannot be read, is an error naming the variable
/// (never the content).
pub fn file_settings(vars: &[(String, String)]) -> anyhow::Result<Vec<FileSetting>> {
    let known = Config::known_settings();
    let mut settings = Vec::new();
    for (variable, path) in vars {
        let Some(base) = variable.strip_suffix(FILE_SUFFIX) else {
            continue;
        };
        if setting_of(variable).is_some_and(|own| known.has(&own)) {
            continue;
        }
        let Some(setting) = setting_of(base).filter(|s| known.has(s)) else {
            continue;
        };
        if vars.iter().any(|(other, _)| other == base) {
            bail!("{base} and {variable} are both set: set one or the other");
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{variable}: cannot read {path}"))?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_owned();
        settings.push(FileSetting {
            variable: variable.clone(),
            setting,
            value,
        });
    }
    Ok(settings)
}

/// The `CITYHUB_*` variables among `vars` that set nothing: neither a
/// setting, nor a file of one, nor `CITYHUB_CONFIG`. `cityhub serve` warns
/// about each (a typo would otherwise be ignored silently) and `cityhub
/// config` refuses them.
pub fn unknown_variables(vars: &[(String, String)]) -> Vec<String> {
    let known = Config::known_settings();
    let sets_something = |variable: &str| {
        setting_of(variable).is_some_and(|s| known.has(&s))
            || variable
                .strip_suffix(FILE_SUFFIX)
                .and_then(setting_of)
                .is_some_and(|s| known.has(&s))
    };
    vars.iter()
        .map(|(variable, _)| variable)
        .filter(|v| v.starts_with(ENV_PREFIX) && v.as_str() != CONFIG_FILE_VARIABLE)
        .filter(|v| !sets_something(v))
        .cloned()
        .collect()
}

/// Every setting's dotted name, read from the configuration's own shape.
pub struct KnownSettings(serde_json::Value);

impl KnownSettings {
    /// Whether `setting` (`database.url`) is a setting.
    pub fn has(&self, setting: &str) -> bool {
        let mut node = &self.0;
        for part in setting.split('.') {
            match node.get(part) {
                Some(child) => node = child,
                None => return false,
            }
        }
        true
    }
}

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
        Self::load_from(path, std::env::vars())
    }

    /// Loads defaults, then `path` (if it exists), then `vars` (the
    /// process's environment, for [`Config::load`]): `CITYHUB_LISTEN`,
    /// `CITYHUB_<SECTION>_<KEY>`, and `CITYHUB_<SETTING>_FILE` naming a file
    /// that holds a setting's value (see [`file_settings`]).
    pub fn load_from(
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        let from_files = file_settings(&vars)?;
        let mut env = figment::value::Dict::new();
        for (name, value) in &vars {
            if from_files.iter().any(|f| &f.variable == name) {
                continue;
            }
            if let Some(key) = setting_of(name) {
                // Values are read as `Env` reads them: `true`, `5`, `["a"]`
                // are typed, anything else is text.
                let parsed = match value.parse::<figment::value::Value>() {
                    Ok(parsed) => parsed,
                    Err(never) => match never {},
                };
                env.insert(key, parsed);
            }
        }
        let mut figment =
            Figment::from(Serialized::defaults(Self::defaults())).merge(Toml::file(path));
        for (key, value) in env {
            figment = figment.merge(Serialized::default(&key, value));
        }
        for file in &from_files {
            figment = figment.merge(Serialized::default(&file.setting, &file.value));
        }
        let config: Config = figment.extract().with_context(|| {
            format!(
                "invalid configuration (from {} and CITYHUB_* variables)",
                path.display()
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Every setting there is (the defaults, serialized: unset options are
    /// there too, as nulls).
    pub fn known_settings() -> KnownSettings {
        KnownSettings(serde_json::to_value(Self::defaults()).unwrap_or_default())
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
        if !(10..=60_000).contains(&self.database.stats_fold_interval_ms) {
            bail!("database.stats_fold_interval_ms must be between 10 and 60000");
        }
        if self.database.analyze_interval_secs > 86_400 {
            bail!("database.analyze_interval_secs must be between 0 (never) and 86400");
        }
        let otel = &self.otel;
        if !(otel.endpoint.is_empty() || otel.endpoint.starts_with("http://")) {
            bail!(
                "otel.endpoint must be an http:// address of a collector or agent near the hub (or be empty)"
            );
        }
        if !(0.0..=1.0).contains(&otel.sample_ratio) {
            bail!("otel.sample_ratio must be between 0.0 and 1.0");
        }
        if !(1..=300).contains(&otel.export_timeout_secs) {
            bail!("otel.export_timeout_secs must be between 1 and 300");
        }
        if otel.service_name.trim().is_empty() {
            bail!("otel.service_name must not be empty");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_name_settings_by_section() {
        assert_eq!(setting_of("CITYHUB_LISTEN").as_deref(), Some("listen"));
        assert_eq!(
            setting_of("CITYHUB_DATABASE_URL").as_deref(),
            Some("database.url")
        );
        assert_eq!(
            setting_of("CITYHUB_RATE_LIMIT_MUTATION_BURST").as_deref(),
            Some("rate_limit.mutation_burst")
        );
        assert_eq!(setting_of("CITYHUB_NOPE_X"), None);
        assert_eq!(setting_of("OTHER_LISTEN"), None);
        let known = Config::known_settings();
        assert!(known.has("database.url"));
        assert!(known.has("auth.key_file"), "unset options are settings too");
        assert!(!known.has("database.url_file"));
    }

    #[test]
    fn file_variables_read_values_but_leave_path_settings_alone() {
        let dir = std::env::temp_dir().join(format!("cityhub-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("url");
        std::fs::write(&file, "postgres://u:p@h/db\r\n").expect("write");
        let path = file.display().to_string();
        let found = file_settings(&vars(&[
            ("CITYHUB_DATABASE_URL_FILE", &path),
            ("CITYHUB_AUTH_KEY_FILE", "/keys.json"),
            ("CITYHUB_AUTH_KEY_ENCRYPTION_KEY_FILE", "/kek"),
        ]))
        .expect("read");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].setting, "database.url");
        assert_eq!(found[0].value, "postgres://u:p@h/db");
        assert!(!format!("{found:?}").contains("u:p"), "Debug hides values");
        let both = file_settings(&vars(&[
            ("CITYHUB_DATABASE_URL_FILE", &path),
            ("CITYHUB_DATABASE_URL", "sqlite://x.db"),
        ]));
        assert!(both.is_err());
        let config = Config::load_from(
            &dir.join("absent.toml"),
            vars(&[("CITYHUB_DATABASE_URL_FILE", &path)]),
        )
        .expect("load");
        assert_eq!(config.database.url, "postgres://u:p@h/db");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn variables_that_set_nothing_are_named() {
        let unknown = unknown_variables(&vars(&[
            ("CITYHUB_CONFIG", "cityhub.toml"),
            ("CITYHUB_LISTEN", "0.0.0.0:4000"),
            ("CITYHUB_DATABASE_URL_FILE", "/run/secrets/url"),
            ("CITYHUB_AUTH_KEY_ENCRYPTION_KEY_FILE", "/run/secrets/kek"),
            ("CITYHUB_DATABSE_URL", "x"),
            ("CITYHUB_HTTP_NOPE", "x"),
            ("PATH", "/bin"),
        ]));
        assert_eq!(unknown, ["CITYHUB_DATABSE_URL", "CITYHUB_HTTP_NOPE"]);
    }
}
