//! The test harness: a real hub per test, in-process on port 0, on a fresh
//! SQLite file or a fresh PostgreSQL database (dropped afterwards), talked
//! to over real HTTP.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use cityhub::app;
use cityhub::config::Config;
use cityhub_storage::Db;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Logs go to the test's captured output (shown for failing tests).
fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The request id [`TestHub::post`] sends.
pub const TEST_REQUEST_ID: &str = "e2e-test";

/// Which database a hub runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use (`TEST_POSTGRES_URL` overrides it).
pub fn pg_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Whether PostgreSQL tests run here. Under CI=true an unreachable server
/// fails the suite; elsewhere the tests skip with a printed reason.
pub async fn pg_available() -> bool {
    let reachable = match tokio::time::timeout(
        Duration::from_secs(5),
        sea_orm::Database::connect(pg_admin_url()),
    )
    .await
    {
        Ok(Ok(db)) => {
            let _ = db.close().await;
            true
        }
        _ => false,
    };
    if !reachable {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "PostgreSQL is unreachable at {} and CI=true: PostgreSQL tests must run in CI",
                pg_admin_url()
            );
        }
        // Written to stderr itself, not through `eprintln!`: the test
        // harness hides captured output of passing tests, and a skip must
        // be seen in the run's output.
        let test = std::thread::current()
            .name()
            .unwrap_or("a PostgreSQL test")
            .to_owned();
        let _ = writeln!(
            std::io::stderr().lock(),
            "SKIPPED {test}: PostgreSQL is unreachable at {} (set TEST_POSTGRES_URL; under CI=true this fails)",
            pg_admin_url()
        );
    }
    reachable
}

/// A fresh database: a SQLite file in a temporary directory, or a new
/// PostgreSQL database dropped when this is dropped.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("hub.db").display());
                Self {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let name = format!("cityhub_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(pg_admin_url())
                    .await
                    .expect("connect to PostgreSQL");
                sea_orm::ConnectionTrait::execute_unprepared(
                    &admin,
                    &format!("CREATE DATABASE {name}"),
                )
                .await
                .expect("create database");
                let _ = admin.close().await;
                let base = pg_admin_url();
                let url = format!(
                    "{}/{name}",
                    base.rsplit_once('/').map_or(base.as_str(), |(b, _)| b)
                );
                Self {
                    url,
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Dropped from a plain thread: the test's runtime may be gone.
            let handle = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    if let Ok(admin) = sea_orm::Database::connect(pg_admin_url()).await {
                        let _ = sea_orm::ConnectionTrait::execute_unprepared(
                            &admin,
                            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        )
                        .await;
                        let _ = admin.close().await;
                    }
                });
            });
            let _ = handle.join();
        }
    }
}

/// A running hub.
pub struct TestHub {
    pub backend: Backend,
    pub base: String,
    pub client: reqwest::Client,
    pub db: Db,
    pub config: Config,
    /// The hub's event bus: tests wait on its broadcast for the pump to
    /// have delivered an event.
    pub events: Arc<cityhub_graphql::EventBus>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// The hub's background and connection tasks.
    pub tasks: tokio_util::task::TaskTracker,
    pub test_db: Arc<TestDb>,
    /// Where the operators' routes listen, when `http.admin_listen` is set.
    pub admin_addr: Option<std::net::SocketAddr>,
}

impl TestHub {
    /// A hub on a fresh database, migrated and seeded with the network's dataset.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// A hub with a configuration tweak.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let test_db = Arc::new(TestDb::new(backend).await);
        let hub = Self::start_on(backend, test_db, tweak).await;
        cityhub::ops::seed(&hub.db, &hub.config)
            .await
            .expect("seed");
        hub
    }

    /// Another hub (an instance) on an existing database.
    pub async fn start_on(
        backend: Backend,
        test_db: Arc<TestDb>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        init_tracing();
        let mut config = Config::defaults();
        config.listen = "127.0.0.1:0".into();
        config.database.url = test_db.url.clone();
        config.database.max_connections = 8;
        config.events.poll_interval_ms = 200;
        tweak(&mut config);
        // On the port `tweak` chose (a restart in place), else any free one.
        let addr = config
            .listen
            .parse()
            .expect("a socket address to listen on");
        let running = app::spawn_at(&config, addr).await.expect("start hub");
        let db = running.service.db().clone();
        let events = running.service.events().clone();
        let base = format!("http://{}", running.addr);
        Self {
            admin_addr: running.admin_addr,
            backend,
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            db,
            config,
            events,
            shutdown: Some(running.stop),
            server: Some(running.task),
            tasks: running.tasks,
            test_db,
        }
    }

    /// The GraphQL endpoint.
    pub fn url(&self) -> String {
        format!("{}/graphql", self.base)
    }

    /// The WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("{}/graphql", self.base.replacen("http://", "ws://", 1))
    }

    /// POSTs a GraphQL request; returns the status and the JSON body.
    pub async fn post(&self, query: &str, variables: Value, token: Option<&str>) -> (u16, Value) {
        // One request id for every request of the harness, so answers of
        // two requests compare equal (errors carry it as
        // `extensions.requestId`).
        let mut request = self
            .client
            .post(self.url())
            .header("x-request-id", TEST_REQUEST_ID)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// One counter of `cityhub_read_cache_total` from `/metrics` (0 when
    /// the outcome was never counted).
    pub async fn read_cache_count(&self, outcome: &str) -> u64 {
        let prefix = format!("cityhub_read_cache_total{{outcome=\"{outcome}\"}}");
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    }

    /// A GraphQL request expected to succeed: returns `data`.
    pub async fn ok(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let (status, body) = self.post(query, variables, token).await;
        assert_eq!(status, 200, "status for {query}: {body}");
        assert!(
            body.get("errors").is_none(),
            "unexpected errors for {query}: {body}"
        );
        body["data"].clone()
    }

    /// A GraphQL request expected to fail with `code`: returns the first error.
    pub async fn fails(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
        code: &str,
    ) -> Value {
        let (_, body) = self.post(query, variables, token).await;
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("expected {code} for {query}, got {body}"));
        let first = errors.first().cloned().unwrap_or(Value::Null);
        assert_eq!(first["extensions"]["code"], code, "for {query}: {body}");
        first
    }

    /// Issues a token for a city (or the secretariat with `None`).
    pub async fn token(&self, city: Option<&str>) -> String {
        cityhub::ops::issue_token(
            &self.db,
            &self.config,
            city,
            Some(3600),
            Some("test".into()),
        )
        .await
        .expect("issue token")
        .0
    }

    /// Stops the server and waits (with a generous deadline) until it has
    /// returned: by then every task of [`TestHub::tasks`] has ended.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(60), server)
                .await
                .expect("the hub stops")
                .expect("the serving task ends without panicking");
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs an async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let body = $body;
                body($crate::support::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !$crate::support::pg_available().await {
                    return;
                }
                let body = $body;
                body($crate::support::Backend::Postgres).await;
            }
        }
    };
}

/// Runs the real `cityhub` binary on `db_url`, in a fresh directory:
/// whether it succeeded, its standard output and its standard error.
pub fn cityhub_cli(db_url: &str, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cityhub"))
        .args(args)
        .current_dir(dir.path())
        .env("CITYHUB_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cityhub");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`cityhub_cli`] off the async runtime, expected to succeed: its
/// standard output and error together.
pub async fn cityhub_ok(db_url: &str, args: &[&str]) -> String {
    let url = db_url.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        cityhub_cli(&url, &refs)
    })
    .await
    .expect("join");
    assert!(ok, "{out}{err}");
    format!("{out}{err}")
}

/// What `cityhub demo` printed on its standard output, up to its last
/// line (the secretariat token).
pub struct DemoBanner {
    lines: Vec<String>,
}

impl DemoBanner {
    /// The last word of the line that holds `label` (a URL or a token).
    pub fn value(&self, label: &str) -> String {
        self.lines
            .iter()
            .find(|l| l.contains(label))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {label} in {:?}", self.lines))
    }
}

/// Reads the banner of a `cityhub demo` started with a piped standard
/// output, then keeps draining it, so the demo never writes into a closed
/// pipe.
pub async fn demo_banner(child: &mut std::process::Child) -> DemoBanner {
    use std::io::{BufRead, BufReader};
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        let mut reader = BufReader::new(stdout).lines();
        for line in reader.by_ref().map_while(Result::ok) {
            let done = line.contains("Secretariat token");
            lines.push(line);
            if done {
                break;
            }
        }
        std::thread::spawn(move || reader.for_each(drop));
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("demo printed in time")
        .expect("join");
    DemoBanner { lines }
}

/// Polls `check` until it yields `Some`, and returns that. For what no event
/// announces (a socket's teardown, a session PostgreSQL opens, a database
/// coming back): `within` is a deadline for what must happen, never a
/// measure of how fast it happens; past it, the test fails naming `what`
/// and the last state `check` saw.
pub async fn eventually<T, S, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    S: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let last = match check().await {
            Ok(found) => return found,
            Err(last) => last,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}; last seen: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many steps `migrate down` takes to undo `name` and every migration
/// after it, counted from the migrator's own list, so a test that rolls
/// back to a migration stays right as migrations are added.
pub fn steps_to_undo(name: &str) -> u32 {
    use cityhub_migrations::MigratorTrait;
    let names: Vec<String> = cityhub_migrations::Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let at = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no migration named {name} in {names:?}"));
    u32::try_from(names.len() - at).expect("few migrations")
}
