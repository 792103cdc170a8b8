//! Wiring: from a [`Config`] to a running hub. `build` connects and
//! assembles the state; `router` is the axum app; `serve` runs it on a
//! listener the caller bound (tests bind port 0) until `shutdown` resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cityhub_app::cache::ResponseCache;
use cityhub_app::rate_limit::{Limit, Limiters};
use cityhub_app::service::HubService;
use cityhub_domain::Policy;
use cityhub_graphql::http::{graphiql_asset, graphql_get, graphql_post, jwks, schema_sdl};
use cityhub_graphql::metrics::Samples;
use cityhub_graphql::{
    Authenticator, EventBus, GraphqlService, HttpSettings, HubState, Metrics, build_fast_schema,
    build_schema, request_guard,
};
use cityhub_storage::repo::stats::Reclaim;
use cityhub_storage::{Db, StatsRepo, StorageError};
use cityhub_web::WebState;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;

/// A built hub, ready to serve.
pub struct Hub {
    /// The axum application.
    pub router: Router,
    /// The operators' routes (`/metrics`, `/healthz`, `/readyz`) when
    /// `http.admin_listen` puts them on a listener of their own (then the
    /// main router has no `/metrics`).
    pub admin: Option<Router>,
    /// The GraphQL service (schema, database, auth, events).
    pub service: GraphqlService,
    /// Cancelled when serving stops: every background task returns.
    pub stop: CancellationToken,
    /// The hub's background tasks (event pump, listener, pruner, rate-limit
    /// sweeper) and connection tasks; empty once `serve` has returned.
    pub tasks: TaskTracker,
}

/// Connects to the database, applying migrations when configured.
pub async fn connect(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(&config.database).await.with_context(|| {
        format!(
            "cannot connect to {}",
            cityhub_storage::db::redact_url(&config.database.url)
        )
    })?;
    Ok(db)
}

/// The write service the configuration describes.
pub fn hub_service(db: Db, config: &Config) -> HubService {
    HubService::new(
        db,
        config.limits.clone(),
        Policy {
            public_read: config.auth.public_read,
        },
    )
}

/// Builds the hub: database, keys, event bus, schema and router.
pub async fn build(config: &Config) -> anyhow::Result<Hub> {
    let db = connect(config).await?;
    if config.database.migrate_on_start {
        db.migrate_up().await.context("applying migrations")?;
    }
    let auth = Arc::new(
        Authenticator::new(db.clone(), config.auth.clone())
            .await
            .context("loading signing keys")?,
    );
    let events = EventBus::new(db.clone(), config.events.clone());
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let url = config.database.url.clone();
    events
        .start(Some(url), stop.clone(), &tasks)
        .await
        .context("starting the event bus")?;
    spawn_stats_folder(db.clone(), config, stop.clone(), &tasks);
    spawn_statistics_keeper(db.clone(), config, stop.clone(), &tasks);
    spawn_fact_reader(db.clone(), stop.clone(), &tasks);
    let service = hub_service(db.clone(), config).with_commit_notify(events.waker());
    // One response cache and one set of rate limiters per instance, shared
    // by GraphQL and the city websites: an anonymous address has one
    // budget, and both surfaces' answers share one byte budget.
    let responses = Arc::new(ResponseCache::new(config.cache.responses()));
    let limiters = Arc::new(Limiters::with_registrations(
        &config.rate_limit,
        config.cache.persisted_registrations_per_minute,
    ));
    // Forget rate-limit state of idle keys once a minute, until the hub
    // stops (it holds only a weak reference).
    let idle_keys = Arc::downgrade(&limiters);
    let sweeper_stop = stop.clone();
    tasks.spawn(async move {
        let mut job = Periodic::new(
            Duration::from_secs(60),
            sweeper_stop,
            "forgetting idle keys",
        );
        while job.next().await {
            match idle_keys.upgrade() {
                Some(limiters) => limiters.retain_recent(),
                None => break,
            }
        }
    });
    let sources = cityhub_sources::Sources::new(
        service.clone(),
        config.sources.clone(),
        stop.clone(),
        tasks.clone(),
    )
    .context("setting up sources")?;
    if config.sources.scheduler {
        sources.start();
    }
    let metrics = {
        let limiters = limiters.clone();
        let sources = sources.clone();
        Metrics::new()
            .with_delivery_lag(events.delivery_lag().clone())
            .with_sampler(move |samples| {
                samples.rate_limited = Limit::ALL
                    .into_iter()
                    .zip(limiters.refusals())
                    .map(|(limit, refused)| (limit.as_str(), refused))
                    .collect();
                samples.source_runs = sources.run_counts();
            })
    };
    let state = HubState {
        sources,
        service,
        auth: auth.clone(),
        settings: config.api.clone(),
        events: events.clone(),
        limiters: limiters.clone(),
    };
    let guard = request_guard(&config.api, limiters.clone());
    let fast_schema = build_fast_schema(state.clone());
    let schema = build_schema(state);
    let wildcard = config.cors.allowed_origins.iter().any(|o| o == "*");
    let trusted_proxies = config.trusted_proxies()?;
    let web = WebState {
        db: db.clone(),
        auth: auth.clone(),
        responses: responses.clone(),
        limiters,
        trusted_proxies: trusted_proxies.clone(),
        settings: config.web.clone(),
        public_url: config.api.public_url.clone(),
        limits: config.limits.clone(),
    };
    let settings = HttpSettings {
        body_limit: config.http.body_limit_bytes,
        graphiql: config.http.graphiql,
        ws_allowed_origins: (!wildcard).then(|| config.cors.allowed_origins.clone()),
        ws_keepalive_secs: config.http.ws_keepalive_secs,
        ws_send_timeout_secs: config.http.ws_send_timeout_secs,
        ws_max_write_buffer: config.http.ws_max_write_buffer_bytes,
        trusted_proxies,
    };
    let service = GraphqlService::new(schema, auth, db, Arc::new(metrics), events, settings, guard)
        .with_cache(config.cache.clone(), responses)
        .with_fast_path(fast_schema)
        .with_lifetime(stop.clone(), tasks.clone());
    let router = router(service.clone(), web, config)?;
    let admin = (!config.http.admin_listen.is_empty()).then(|| admin_router(service.clone()));
    Ok(Hub {
        router,
        admin,
        service,
        stop,
        tasks,
    })
}

/// A background job run every `every` until the hub stops: its ticks,
/// and its failures logged once each time it starts failing (the database
/// away) and once when it works again.
struct Periodic {
    tick: tokio::time::Interval,
    stop: CancellationToken,
    /// What the job does, for its log lines.
    what: &'static str,
    failing: bool,
}

impl Periodic {
    /// The first tick comes at once.
    fn new(every: Duration, stop: CancellationToken, what: &'static str) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            tick,
            stop,
            what,
            failing: false,
        }
    }

    /// Waits for the next run: false once the hub stops.
    async fn next(&mut self) -> bool {
        tokio::select! {
            () = self.stop.cancelled() => false,
            _ = self.tick.tick() => true,
        }
    }

    /// A run's result, its failure logged (once until it works again).
    fn outcome<T>(&mut self, result: Result<T, StorageError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.failing {
                    tracing::info!(job = self.what, "background job works again");
                    self.failing = false;
                }
                Some(value)
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(job = self.what, error = %e, "background job failed; retrying");
                    self.failing = true;
                }
                None
            }
        }
    }
}

/// Delta rows folded between two vacuums of the tables writers append to
/// (each publish appends a few dozen).
const VACUUM_AFTER_FOLDED_ROWS: u64 = 50_000;

/// Folds between two tries at giving back the deltas' file when its lock
/// was busy (each try may hold readers and writers up to
/// `RECLAIM_LOCK_TIMEOUT`).
const RECLAIM_RETRY_FOLDS: u32 = 10;

/// On PostgreSQL, folds the kept counts' pending deltas into their totals
/// every `database.stats_fold_interval_ms` until the hub stops (counts are
/// exact at every moment; folding keeps what `stats` adds up small), and
/// vacuums the deltas and pending notes every [`VACUUM_AFTER_FOLDED_ROWS`]
/// rows, so the fold's work follows what was written since, not all that
/// ever was, whether or not autovacuum runs. A failed fold (the database
/// away) is logged and tried again next time.
fn spawn_stats_folder(db: Db, config: &Config, stop: CancellationToken, tasks: &TaskTracker) {
    if db.backend() != sea_orm::DatabaseBackend::Postgres {
        return;
    }
    let every = Duration::from_millis(config.database.stats_fold_interval_ms);
    tasks.spawn(async move {
        let mut job = Periodic::new(every, stop, "folding the kept counts");
        // Rows folded since the churn tables were last vacuumed; the first
        // fold is followed by a vacuum, which gives back the file of deltas
        // that piled up while no instance folded.
        let mut since_vacuum: u64 = VACUUM_AFTER_FOLDED_ROWS;
        // Folds before the vacuum is tried again, when the deltas' file
        // was to be given back and its lock was busy.
        let mut retry_in: Option<u32> = None;
        while job.next().await {
            let Some(moved) = job.outcome(StatsRepo::fold(db.conn()).await) else {
                continue;
            };
            tracing::trace!(moved, "kept count deltas folded");
            since_vacuum += moved;
            let retry_due = match &mut retry_in {
                Some(0) => true,
                Some(n) => {
                    *n -= 1;
                    false
                }
                None => false,
            };
            if since_vacuum >= VACUUM_AFTER_FOLDED_ROWS || retry_due {
                since_vacuum = 0;
                retry_in = match StatsRepo::vacuum_churn(db.conn()).await {
                    Ok(Reclaim::Busy) => Some(RECLAIM_RETRY_FOLDS),
                    Ok(Reclaim::NotNeeded | Reclaim::GivenBack) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "vacuuming the kept counts' deltas failed");
                        None
                    }
                };
            }
        }
    });
}

/// Keeps the query planner's statistics current
/// ([`Db::refresh_planner_statistics`]): once at start, then every
/// `database.analyze_interval_secs` (never when 0). A failed check (the
/// database away) is logged and tried again next time.
fn spawn_statistics_keeper(db: Db, config: &Config, stop: CancellationToken, tasks: &TaskTracker) {
    let secs = config.database.analyze_interval_secs;
    if secs == 0 {
        return;
    }
    tasks.spawn(async move {
        let mut job = Periodic::new(
            Duration::from_secs(secs),
            stop,
            "checking the planner statistics",
        );
        while job.next().await {
            if let Some(tables) = job.outcome(db.refresh_planner_statistics().await)
                && !tables.is_empty()
            {
                tracing::info!(tables = %tables.join(", "), "planner statistics refreshed");
            }
        }
    });
}

/// How often the first read of the facts `stats` counts in memory is
/// tried again while the database is away.
const FACT_READ_RETRY: Duration = Duration::from_secs(5);

/// Reads every activity's facts into memory once at start
/// ([`StatsRepo::read_facts`]), so that a dashboard's first `stats` on two
/// dimensions does not wait for it (2.8 s at 100,000 activities on
/// PostgreSQL, BENCHMARKS.md); tried again while it fails.
fn spawn_fact_reader(db: Db, stop: CancellationToken, tasks: &TaskTracker) {
    tasks.spawn(async move {
        let mut job = Periodic::new(FACT_READ_RETRY, stop, "reading the facts stats counts");
        while job.next().await {
            if job.outcome(StatsRepo::read_facts(&db).await).is_some() {
                tracing::info!(
                    activities = db.facts().activities(),
                    "the facts stats counts are in memory"
                );
                break;
            }
        }
    });
}

fn cors(config: &Config) -> anyhow::Result<CorsLayer> {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            crate::request_id::REQUEST_ID_HEADER,
        ])
        .expose_headers([crate::request_id::REQUEST_ID_HEADER])
        .max_age(Duration::from_secs(600));
    if config.cors.allowed_origins.iter().any(|o| o == "*") {
        return Ok(layer.allow_origin(Any));
    }
    let origins = config
        .cors
        .allowed_origins
        .iter()
        .map(|o| {
            HeaderValue::from_str(o)
                .with_context(|| format!("cors.allowed_origins: '{o}' is not a valid origin"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(layer.allow_origin(AllowOrigin::list(origins)))
}

/// The operators' routes, served on `http.admin_listen` when it is set.
pub fn admin_router(service: GraphqlService) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(service)
}

/// Serves `admin` on `listener` until `stop` is cancelled, as a task of
/// `tasks` (the hub's shutdown waits for it).
pub fn serve_admin(
    listener: TcpListener,
    admin: Router,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(async move {
        let app = admin.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "the admin listener stopped with an error");
        }
    });
}

/// The axum application: GraphQL, the dashboard and the desk on `service`,
/// the city websites on `web` (which shares `service`'s authenticator,
/// response cache and rate limiters).
pub fn router(service: GraphqlService, web: WebState, config: &Config) -> anyhow::Result<Router> {
    let mut app = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        // One set of shared subscription streams per instance (`ws::Groups`).
        .layer(axum::Extension(Arc::new(
            cityhub_graphql::ws::Groups::default(),
        )))
        .route("/graphiql/{file}", get(graphiql_asset))
        .route("/schema.graphql", get(schema_sdl))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if config.http.admin_listen.is_empty() {
        app = app.route("/metrics", get(metrics));
    }
    let app = app
        .merge(cityhub_dashboard::routes())
        .merge(cityhub_desk::routes())
        .with_state(service)
        .merge(cityhub_web::router(web))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs.max(1)),
        ))
        .layer(cors(config)?)
        // Inside the request id's middleware: the span carries the id.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(crate::request_id::span)
                .on_response(crate::request_id::record_status),
        )
        .layer(axum::middleware::from_fn(crate::request_id::middleware));
    Ok(app)
}

async fn readyz(State(service): State<GraphqlService>) -> Response {
    match tokio::time::timeout(Duration::from_millis(900), service.db().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready").into_response(),
        Ok(Err(StorageError::Unavailable(e))) => {
            tracing::warn!(error = %e, "not ready: database unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: database check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database check failed").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database check timed out").into_response(),
    }
}

async fn metrics(State(service): State<GraphqlService>) -> Response {
    let (size, idle) = service.db().pool_stats();
    service.metrics().set_cache(service.cache().counts());
    let body = service.metrics().render(Samples {
        pool_size: size,
        pool_idle: idle,
        queries: service.db().query_count(),
        subscribers: service.events().subscriber_count(),
        ..Samples::default()
    });
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Binds `addr` with a large listen backlog (tokio's default queues too few
/// connections for a burst of WebSocket clients).
pub fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Connection settings of the HTTP server (from `[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time a client has to send a request's headers, and the longest a
    /// keep-alive connection waits idle for its next request.
    pub header_read_timeout: Duration,
    /// Most connections served at once; further ones wait in the backlog.
    pub max_connections: usize,
    /// Time open connections get to finish after the shutdown signal.
    pub grace: Duration,
}

impl ServeOptions {
    /// The options `config` sets.
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(config.http.header_read_timeout_secs),
            max_connections: config.http.max_connections,
            grace: Duration::from_secs(config.http.shutdown_grace_secs),
        }
    }
}

/// Serves `hub` on `listener` until `shutdown` resolves, then cancels the
/// hub's background tasks and lets open connections finish for at most
/// `options.grace`; connections still open then are closed. Returns once
/// every task of `hub.tasks` has ended.
///
/// hyper serves each connection (axum's `serve` has no timer): a client
/// that does not send its headers within `header_read_timeout` (or keeps a
/// connection idle that long) is disconnected, and at most
/// `max_connections` are served at once. The peer address reaches handlers
/// as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt;

    let stop = hub.stop.clone();
    let tasks = hub.tasks.clone();
    // Cancelled when the grace period is over: connections still open end.
    let cut = CancellationToken::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(options.header_read_timeout))
        .enable_connect_protocol();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        // hyper's header timer starts once it reads; a client that connects
        // and sends nothing would otherwise hold its slot forever (the
        // HTTP/1-or-2 detection waits for a first byte without a timer).
        let timeout = options.header_read_timeout;
        let first_byte = async move {
            let mut byte = [0u8; 1];
            match tokio::time::timeout(timeout, stream.peek(&mut byte)).await {
                Ok(Ok(n)) if n > 0 => Some(stream),
                _ => None,
            }
        };
        let service = hub.router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                if let Some(local) = local {
                    req.extensions_mut()
                        .insert(cityhub_app::http::LocalAddr(local));
                }
                req.map(axum::body::Body::new)
            },
        );
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let cut = cut.clone();
        tasks.spawn(async move {
            let Some(stream) = cut.run_until_cancelled(first_byte).await.flatten() else {
                tracing::debug!(%peer, "closing a connection that sent nothing");
                drop(permit);
                return;
            };
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            if let Some(Err(e)) = cut
                .run_until_cancelled(watcher.watch(conn.into_owned()))
                .await
            {
                tracing::trace!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    stop.cancel();
    let deadline = tokio::time::Instant::now() + options.grace;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("grace period over; closing remaining connections");
    }
    cut.cancel();
    tasks.close();
    // Every task returns at its next poll once cancelled; this wait is
    // only a guard against one that does not.
    if tokio::time::timeout(STRAGGLER_WAIT, tasks.wait())
        .await
        .is_err()
    {
        tracing::error!(
            left = tasks.len(),
            "background tasks still running after shutdown"
        );
    }
    Ok(())
}

/// How long `serve` waits, past the grace period, for cancelled tasks.
const STRAGGLER_WAIT: Duration = Duration::from_secs(1);

/// A hub serving in the background on 127.0.0.1 (tests, benchmarks).
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its operators' routes listen, when `http.admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// Its GraphQL service (database, auth, events).
    pub service: GraphqlService,
    /// Send (or drop) to stop it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The serving task; it ends after `stop`, once every task of `tasks`
    /// has ended.
    pub task: tokio::task::JoinHandle<()>,
    /// The hub's background and connection tasks.
    pub tasks: TaskTracker,
}

/// Builds a hub from `config` and serves it on an ephemeral loopback port
/// until `Running::stop` is sent or dropped (then 1 s of grace).
pub async fn spawn(config: &Config) -> anyhow::Result<Running> {
    spawn_at(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// [`spawn`] on `addr` (tests restart a hub on the port it had, under its
/// open clients).
pub async fn spawn_at(config: &Config, addr: SocketAddr) -> anyhow::Result<Running> {
    let mut hub = build(config).await?;
    let service = hub.service.clone();
    let tasks = hub.tasks.clone();
    let listener = bind(addr, config.http.listen_backlog)?;
    let addr = listener.local_addr()?;
    let admin_addr = start_admin(&mut hub, config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServeOptions {
        grace: Duration::from_secs(1),
        ..ServeOptions::from_config(config)
    };
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = serve(listener, hub, shutdown, options).await {
            tracing::error!(error = %e, "the hub stopped with an error");
        }
    });
    Ok(Running {
        addr,
        admin_addr,
        service,
        stop,
        task,
        tasks,
    })
}

/// Binds `http.admin_listen` and serves the hub's operators' routes there
/// (until the hub stops), when it is set; returns the bound address.
pub fn start_admin(hub: &mut Hub, config: &Config) -> anyhow::Result<Option<SocketAddr>> {
    let Some(admin) = hub.admin.take() else {
        return Ok(None);
    };
    let addr: SocketAddr = config.http.admin_listen.parse().with_context(|| {
        format!(
            "http.admin_listen must be an address like 127.0.0.1:9090 (got {})",
            config.http.admin_listen
        )
    })?;
    let listener = bind(addr, 128).with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    serve_admin(listener, admin, hub.stop.clone(), &hub.tasks);
    tracing::info!(addr = %bound, "operators' routes (/metrics, /healthz, /readyz) serving");
    Ok(Some(bound))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
