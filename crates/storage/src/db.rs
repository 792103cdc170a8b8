//! Connecting to SQLite or PostgreSQL, with pool limits, SQLite pragmas,
//! migrations and a query counter that tests and metrics read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgSslMode};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    ExecResult, QueryResult, Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};

use crate::error::StorageError;
use crate::sqlite_read::SqliteReader;

/// Database settings (`[database]` in `cityhub.toml`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbConfig {
    /// `sqlite://path.db` or `postgres://user@host/db`. On PostgreSQL the
    /// hub names its connections `cityhub` ([`HUB_APPLICATION_NAME`]),
    /// replacing any `application_name` the URL sets.
    pub url: String,
    /// Most pooled connections.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Seconds to wait for a new connection before failing.
    pub connect_timeout_secs: u64,
    /// Seconds a request waits for a pooled connection before failing.
    pub acquire_timeout_secs: u64,
    /// Seconds a statement may run before PostgreSQL cancels it.
    pub statement_timeout_secs: u64,
    /// Apply pending migrations at start-up.
    pub migrate_on_start: bool,
    /// SQLite only: read-only connections that step the hot reads (listings,
    /// activities, their relations) on the calling thread instead of
    /// sqlx's connection threads; 0 turns them off (every read then goes
    /// through the pool). Defaults to the number of CPUs.
    pub sqlite_readers: usize,
    /// SQLite only: how much of the database file every connection maps
    /// into memory (MiB; SQLite caps it at its build's maximum, just under
    /// 2 GiB).
    /// Pages past the mapped part are read with a system call and copied
    /// into the connection's page cache: with 256 MiB mapped, a 730 MB
    /// file of 100,000 activities listed at 0.75 × the rate of 10,000,
    /// 0.93 × with the whole file mapped (BENCHMARKS.md). Address space, not memory: the kernel's page cache
    /// holds the pages, shared by every connection.
    pub sqlite_mmap_mib: u64,
    /// PostgreSQL only: milliseconds between two folds of the kept counts'
    /// pending deltas into their totals ([`crate::StatsRepo::fold`]). Counts
    /// are exact either way; longer lets more deltas accumulate for
    /// `stats` to add up, shorter folds smaller batches more often.
    pub stats_fold_interval_ms: u64,
    /// Seconds between two checks of the query planner's statistics
    /// ([`Db::refresh_planner_statistics`]); 0 never checks. The hub also
    /// checks once when it starts.
    pub analyze_interval_secs: u64,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://cityhub.db".into(),
            max_connections: 16,
            min_connections: 1,
            connect_timeout_secs: 3,
            acquire_timeout_secs: 3,
            statement_timeout_secs: 10,
            migrate_on_start: true,
            sqlite_readers: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8)),
            sqlite_mmap_mib: 2000,
            stats_fold_interval_ms: 1_000,
            analyze_interval_secs: 10,
        }
    }
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_secs", &self.acquire_timeout_secs)
            .field("sqlite_readers", &self.sqlite_readers)
            .finish_non_exhaustive()
    }
}

/// The `application_name` of every PostgreSQL connection the hub opens,
/// whatever the configured URL says. The live-event horizon waits only for
/// the open transactions of connections so named in the hub's database,
/// and the trigger that numbers events refuses any other connection
/// (migration `m20261207_000001_event_horizon_own_writers`, which spells
/// the same name): a transaction elsewhere on the server never holds back
/// delivery.
pub const HUB_APPLICATION_NAME: &str = "cityhub";

/// Names a PostgreSQL connection as the hub's ([`HUB_APPLICATION_NAME`]),
/// replacing any `application_name` of the URL or of `PGAPPNAME`.
fn mark_as_hub(options: PgConnectOptions) -> PgConnectOptions {
    options.application_name(HUB_APPLICATION_NAME)
}

/// Whether `host` is this machine: TLS to a database there protects
/// nothing that leaves it.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Connections to a PostgreSQL server on a loopback address do not
/// negotiate TLS unless `url` (its `sslmode`) or `PGSSLMODE` asks for it.
/// libpq's default, `prefer`, encrypts whenever the server offers TLS,
/// and on loopback that encrypted every statement and row for nothing:
/// about a fifth of the hub's CPU per uncached listing (BENCHMARKS.md).
/// Any other host keeps the default; an explicit `sslmode` always wins.
fn plain_on_loopback(options: PgConnectOptions, url: &str) -> PgConnectOptions {
    let explicit = std::env::var_os("PGSSLMODE").is_some()
        || url::Url::parse(url).is_ok_and(|u| {
            u.query_pairs()
                .any(|(key, _)| key == "sslmode" || key == "ssl-mode")
        });
    if explicit || !is_loopback(options.get_host()) {
        options
    } else {
        options.ssl_mode(PgSslMode::Disable)
    }
}

/// Opens the connection that `LISTEN`s for other instances' commits on
/// PostgreSQL, named as the hub's like the pool's (it never writes, so it
/// never holds back delivery). Like [`PgListener::connect`], it reconnects
/// by itself through a pool of one connection without timeouts.
pub async fn postgres_listener(url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let options = mark_as_hub(plain_on_loopback(url.parse::<PgConnectOptions>()?, url));
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // The pool is this listener's own: nobody closes it.
    listener.ignore_pool_close_event(true);
    Ok(listener)
}

/// Takes the migration lock for the rest of the transaction (the key is
/// "cityhub-migrate" as an integer, constant across releases).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7021986357125410)";

/// Hides the password of a database URL, for logs. A URL that does not
/// parse but has a user part loses all of it.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => match parsed.set_password(Some("***")) {
            Ok(()) => parsed.to_string(),
            Err(()) => "<database url>".to_owned(),
        },
        Ok(_) => url.to_owned(),
        Err(_) => match url.split_once("://") {
            Some((scheme, rest)) if rest.contains('@') => {
                let host = rest.rsplit_once('@').map_or("", |(_, h)| h);
                format!("{scheme}://***@{host}")
            }
            _ => url.to_owned(),
        },
    }
}

/// The file of a SQLite URL; `None` for PostgreSQL and in-memory databases
/// (which other connections could not open).
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    use std::str::FromStr;
    if !url.starts_with("sqlite:") || url.contains("mode=memory") {
        return None;
    }
    let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (path.as_os_str() != ":memory:" && path.exists()).then(|| path.to_path_buf())
}

/// A connection reads run on: the pool ([`Db`], which on SQLite may step
/// the hot reads on its read connections) or a transaction (whose reads
/// must see its own writes, so always through it).
pub trait ReadConnection: ConnectionTrait {
    /// SQLite's read connections, when reads may use them.
    fn sqlite_reader(&self) -> Option<&SqliteReader> {
        None
    }
}

impl ReadConnection for DatabaseConnection {}
impl ReadConnection for sea_orm::DatabaseTransaction {}

impl ReadConnection for Db {
    fn sqlite_reader(&self) -> Option<&SqliteReader> {
        self.reader.as_deref()
    }
}

/// The pool, as a connection: every statement goes through sea-orm.
#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.conn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.conn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.conn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.conn.query_all_raw(stmt).await
    }
}

/// The member cities as of one `cities_version`.
pub(crate) struct CitySnapshot {
    /// The version read before the cities: they are at least this new.
    pub(crate) version: i64,
    pub(crate) cities: std::collections::HashMap<cityhub_domain::CityId, cityhub_domain::City>,
    /// Every city's `(name_key, id)`, in the order of `cities(…)` pages.
    pub(crate) by_name: Vec<(String, cityhub_domain::CityId)>,
}

/// The member cities held in memory by `cities_version`, shared by every
/// clone of a [`Db`]; `repo::city_directory` reads and serves them.
pub struct CityDirectory {
    pub(crate) snapshot: std::sync::RwLock<Arc<CitySnapshot>>,
    /// Held while the cities are read again, so that requests arriving
    /// meanwhile wait for that read instead of each making their own.
    pub(crate) reload: tokio::sync::Mutex<()>,
}

impl CityDirectory {
    pub(crate) fn current(&self) -> Arc<CitySnapshot> {
        Arc::clone(&cityhub_domain::sync::read(&self.snapshot))
    }
}

impl std::fmt::Debug for CityDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.current();
        f.debug_struct("CityDirectory")
            .field("version", &snapshot.version)
            .field("cities", &snapshot.cities.len())
            .finish()
    }
}

impl Default for CityDirectory {
    fn default() -> Self {
        Self {
            snapshot: std::sync::RwLock::new(Arc::new(CitySnapshot {
                // Below any version the database holds (it starts at 0).
                version: -1,
                cities: std::collections::HashMap::new(),
                by_name: Vec::new(),
            })),
            reload: tokio::sync::Mutex::new(()),
        }
    }
}

/// A connected database: the pool, its backend, and what the hub counts.
#[derive(Clone)]
pub struct Db {
    conn: DatabaseConnection,
    queries: Arc<AtomicU64>,
    /// SQLite allows one writer at a time; writers queue here instead of
    /// failing with `SQLITE_BUSY` when a read transaction tries to upgrade.
    write_lock: Option<Arc<Mutex<()>>>,
    /// SQLite's read connections for the hot reads (`sqlite_read.rs`).
    reader: Option<Arc<SqliteReader>>,
    /// The member cities in memory, by `cities_version`.
    cities: Arc<CityDirectory>,
    /// Every live activity's countable facts in memory, from the event log.
    facts: Arc<crate::repo::fact_index::FactIndex>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Connects with the configured pool limits. SQLite files are created if
    /// missing and put in WAL mode.
    pub async fn connect(config: &DbConfig) -> Result<Self, StorageError> {
        let mut options = ConnectOptions::new(config.url.clone());
        let sqlite = config.url.starts_with("sqlite:");
        options
            .max_connections(config.max_connections.max(1))
            .min_connections(config.min_connections)
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .acquire_timeout(Duration::from_secs(config.acquire_timeout_secs))
            .idle_timeout(Duration::from_secs(300))
            .sqlx_logging(false);
        if sqlite {
            let mmap_bytes = config.sqlite_mmap_mib.saturating_mul(1 << 20).to_string();
            options.map_sqlx_sqlite_opts(move |o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // Reads map the file and keep a 32 MiB page cache per
                    // connection: the listing query ran 3.5× faster so
                    // (BENCHMARKS.md).
                    .pragma("mmap_size", mmap_bytes.clone())
                    .pragma("cache_size", "-32000")
                    // Statement journals (a statement inside a write
                    // transaction that may have to undo itself) stay in
                    // memory instead of a temporary file: a publish wrote
                    // its changed pages there first (BENCHMARKS.md, live).
                    .pragma("temp_store", "memory")
            });
        } else {
            let timeout_ms = config.statement_timeout_secs * 1000;
            let url = config.url.clone();
            options.map_sqlx_postgres_opts(move |o| {
                let o = plain_on_loopback(o, &url);
                mark_as_hub(o.options([("statement_timeout", timeout_ms.to_string())]))
            });
        }
        let queries = Arc::new(AtomicU64::new(0));
        let mut conn = Database::connect(options).await?;
        let counter = queries.clone();
        conn.set_metric_callback(move |info| {
            counter.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(target: "cityhub::sql", elapsed_us = info.elapsed.as_micros() as u64, failed = info.failed, sql = %info.statement.sql);
        });
        let reader = match sqlite_file(&config.url) {
            Some(path) if config.sqlite_readers > 0 => Some(Arc::new(SqliteReader::open(
                &path,
                config.sqlite_readers,
                config.sqlite_mmap_mib,
                Duration::from_secs(config.statement_timeout_secs.max(1)),
                queries.clone(),
            )?)),
            _ => None,
        };
        Ok(Self {
            conn,
            queries,
            write_lock: sqlite.then(|| Arc::new(Mutex::new(()))),
            reader,
            cities: Arc::default(),
            facts: Arc::default(),
        })
    }

    /// The member cities held in memory (shared by every clone of this
    /// pool).
    pub fn cities(&self) -> &CityDirectory {
        &self.cities
    }

    /// The facts of live activities in memory, which answer `stats` once
    /// read (every filter but text, themes and dates).
    pub fn facts(&self) -> &crate::repo::fact_index::FactIndex {
        &self.facts
    }

    /// The connection pool.
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Which database this is.
    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// How many SQL statements this pool has run since it was opened.
    pub fn query_count(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Open and idle connections of the pool.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self.backend() {
            DatabaseBackend::Postgres => {
                let pool = self.conn.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DatabaseBackend::Sqlite => {
                let pool = self.conn.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        }
    }

    /// Serializes writers on SQLite; a no-op guard on PostgreSQL.
    pub async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Brings the query planner's statistics up to date on the tables that
    /// changed much since they were last taken, and returns those tables.
    ///
    /// A plan is only as good as the statistics it was made from, and
    /// nothing refreshes them by itself: SQLite never does, and a
    /// PostgreSQL server may run without autovacuum. Statistics taken
    /// while a table was small (a new network, a file analyzed empty) made
    /// the planner scan whole tables where a key would do, so that
    /// publishing slowed as the network grew (BENCHMARKS.md).
    ///
    /// - SQLite: `PRAGMA optimize` over every table, which analyzes (with
    ///   its own bounded sample) each one whose size changed tenfold since
    ///   its statistics, or that has an index without any. Connections
    ///   load statistics with the schema, so when it analyzed anything a
    ///   view is created and dropped again: every connection, the read
    ///   connections too, then reloads them before its next statement.
    /// - PostgreSQL: `ANALYZE` of each table of the hub's schema that has
    ///   changed more rows since its last analysis than it held then (plus
    ///   50): plans go wrong when a table's size is off by a factor, not
    ///   by a tenth, so this analyzes a table each time it doubles, and
    ///   the large analyses stay rare (autovacuum's default, a tenth of
    ///   the table, took 13 analyses of 1.8 s each, an eighth of the
    ///   server's CPU, while 100,000 activities were published).
    ///   Where autovacuum runs, it has usually analyzed first and nothing
    ///   is left to do. Cached plans of the tables analyzed are made again.
    pub async fn refresh_planner_statistics(&self) -> Result<Vec<String>, StorageError> {
        match self.backend() {
            DatabaseBackend::Sqlite => self.refresh_sqlite_statistics().await,
            DatabaseBackend::Postgres => self.refresh_postgres_statistics().await,
            _ => Ok(Vec::new()),
        }
    }

    async fn refresh_sqlite_statistics(&self) -> Result<Vec<String>, StorageError> {
        // 0x10000: look at every table, not only those this connection
        // queried; 0x02: analyze; 0x01: only say what would be done.
        const CHECK: &str = "PRAGMA optimize(0x10003)";
        // The same, done, each analysis within SQLite's default limit (0x10).
        const ANALYZE: &str = "PRAGMA optimize(0x10012)";
        // A schema change, so that every connection reloads the schema,
        // and the statistics with it.
        const CREATE: &str = "CREATE VIEW IF NOT EXISTS cityhub_planner_statistics AS SELECT 1";
        const DROP: &str = "DROP VIEW IF EXISTS cityhub_planner_statistics";
        let _writer = self.write_guard().await;
        // One transaction, so one connection: it sees its own changes.
        let txn = self.conn.begin().await?;
        let due = txn
            .query_all_raw(Statement::from_string(DatabaseBackend::Sqlite, CHECK))
            .await?;
        let tables = due
            .iter()
            .map(|row| {
                let line: String = row.try_get_by_index(0)?;
                Ok(line.trim_start_matches("ANALYZE ").replace('"', ""))
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        if !tables.is_empty() {
            for statement in [ANALYZE, CREATE, DROP] {
                txn.execute_unprepared(statement).await?;
            }
        }
        txn.commit().await?;
        Ok(tables)
    }

    async fn refresh_postgres_statistics(&self) -> Result<Vec<String>, StorageError> {
        const DUE: &str = "SELECT format('%I.%I', s.schemaname, s.relname) AS name \
             FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
             WHERE s.schemaname = current_schema() \
               AND s.n_mod_since_analyze > 50 + GREATEST(c.reltuples, 0) \
             ORDER BY 1";
        let due = self
            .conn
            .query_all_raw(Statement::from_string(DatabaseBackend::Postgres, DUE))
            .await?;
        let tables = due
            .iter()
            .map(|row| row.try_get::<String>("", "name"))
            .collect::<Result<Vec<_>, DbErr>>()?;
        if !tables.is_empty() {
            // Names quoted by `format('%I')`; a table another session is
            // analyzing is skipped rather than waited for.
            self.conn
                .execute_unprepared(&format!("ANALYZE (SKIP_LOCKED) {}", tables.join(", ")))
                .await?;
        }
        Ok(tables)
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.conn
            .execute_unprepared("SELECT 1")
            .await
            .map(|_| ())
            .map_err(StorageError::from)
    }

    /// Applies every pending migration. On PostgreSQL the whole run is one
    /// transaction holding an advisory lock, so instances that start at
    /// once on one database migrate once: the others wait for the lock,
    /// then find nothing pending.
    pub async fn migrate_up(&self) -> Result<(), DbErr> {
        if self.conn.get_database_backend() != DatabaseBackend::Postgres {
            return cityhub_migrations::Migrator::up(&self.conn, None).await;
        }
        let txn = self.conn.begin().await?;
        txn.execute_unprepared(MIGRATION_LOCK).await?;
        cityhub_migrations::Migrator::up(&txn, None).await?;
        txn.commit().await
    }

    /// Rolls back the last `steps` migrations (all of them for `None`),
    /// under the same lock as [`Db::migrate_up`].
    pub async fn migrate_down(&self, steps: Option<u32>) -> Result<(), DbErr> {
        if self.conn.get_database_backend() != DatabaseBackend::Postgres {
            return cityhub_migrations::Migrator::down(&self.conn, steps).await;
        }
        let txn = self.conn.begin().await?;
        txn.execute_unprepared(MIGRATION_LOCK).await?;
        cityhub_migrations::Migrator::down(&txn, steps).await?;
        txn.commit().await
    }

    /// Each migration's name and whether it is applied.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, DbErr> {
        let applied: Vec<String> = cityhub_migrations::Migrator::get_applied_migrations(&self.conn)
            .await?
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        Ok(cityhub_migrations::Migrator::migrations()
            .iter()
            .map(|m| {
                let name = m.name().to_owned();
                let done = applied.contains(&name);
                (name, done)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{is_loopback, redact_url};

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "localhost",
            "LOCALHOST",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "db.example.org",
            "10.0.0.5",
            "192.168.1.2",
            "/var/run/postgresql",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        // A raw `@` in the password leaks none of it.
        assert_eq!(
            redact_url("postgres://u:se@cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
