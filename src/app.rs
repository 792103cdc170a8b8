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
use cityhub_domain::Policy;
use cityhub_graphql::http::{graphiql_asset, graphql_get, graphql_post, jwks, schema_sdl};
use cityhub_graphql::{
    Authenticator, EventBus, GraphqlService, HttpSettings, HubState, Metrics, build_schema,
};
use cityhub_storage::service::HubService;
use cityhub_storage::{Db, StorageError};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::Notify;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;

/// A built hub, ready to serve.
pub struct Hub {
    /// The axum application.
    pub router: Router,
    /// The GraphQL service (schema, database, auth, events).
    pub service: GraphqlService,
    /// Notified to stop background tasks.
    pub stop: Arc<Notify>,
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
    let stop = Arc::new(Notify::new());
    let url = config.database.url.clone();
    events
        .start(Some(url), stop.clone())
        .await
        .context("starting the event bus")?;
    let service = hub_service(db.clone(), config).with_commit_notify(events.waker());
    let schema = build_schema(HubState {
        service,
        auth: auth.clone(),
        settings: config.api.clone(),
        events: events.clone(),
    });
    let wildcard = config.cors.allowed_origins.iter().any(|o| o == "*");
    let settings = HttpSettings {
        body_limit: config.http.body_limit_bytes,
        graphiql: config.http.graphiql,
        ws_allowed_origins: (!wildcard).then(|| config.cors.allowed_origins.clone()),
        ws_keepalive_secs: config.http.ws_keepalive_secs,
        ws_send_timeout_secs: config.http.ws_send_timeout_secs,
        ws_max_write_buffer: config.http.ws_max_write_buffer_bytes,
    };
    let service = GraphqlService::new(schema, auth, db, Arc::new(Metrics::new()), events, settings);
    let router = router(service.clone(), config)?;
    Ok(Hub {
        router,
        service,
        stop,
    })
}

fn cors(config: &Config) -> anyhow::Result<CorsLayer> {
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
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

/// The axum application.
pub fn router(service: GraphqlService, config: &Config) -> anyhow::Result<Router> {
    let app = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphiql/{file}", get(graphiql_asset))
        .route("/schema.graphql", get(schema_sdl))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(service.clone())
        .merge(cityhub_web::router(cityhub_web::WebState {
            service,
            settings: config.web.clone(),
            public_url: config.api.public_url.clone(),
            limits: config.limits.clone(),
        }))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs.max(1)),
        ))
        .layer(cors(config)?)
        .layer(TraceLayer::new_for_http());
    Ok(app)
}

async fn readyz(State(service): State<GraphqlService>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), service.db().ping()).await {
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
    let body = service.metrics().render(
        size,
        idle,
        service.db().query_count(),
        service.events().subscriber_count(),
    );
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

/// Serves `hub` on `listener` until `shutdown` resolves, then lets open
/// connections finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let stop = hub.stop.clone();
    let signalled = Arc::new(Notify::new());
    let signal = signalled.clone();
    let server =
        axum::serve(listener, hub.router.into_make_service()).with_graceful_shutdown(async move {
            shutdown.await;
            signal.notify_waiters();
            stop.notify_waiters();
        });
    let server = tokio::spawn(async move { server.await });
    let mut server = server;
    tokio::select! {
        result = &mut server => return result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        () = signalled.notified() => {}
    }
    match tokio::time::timeout(grace, &mut server).await {
        Ok(result) => result.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        Err(_) => {
            tracing::info!("grace period over; closing remaining connections");
            server.abort();
            Ok(())
        }
    }
}

/// A hub serving in the background on 127.0.0.1 (tests, benchmarks).
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its GraphQL service (database, auth, events).
    pub service: GraphqlService,
    /// Send (or drop) to stop it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The serving task; it ends after `stop`.
    pub task: tokio::task::JoinHandle<()>,
}

/// Builds a hub from `config` and serves it on an ephemeral loopback port
/// until `Running::stop` is sent or dropped (then 1 s of grace).
pub async fn spawn(config: &Config) -> anyhow::Result<Running> {
    let hub = build(config).await?;
    let service = hub.service.clone();
    let listener = bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        config.http.listen_backlog,
    )?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(e) = serve(listener, hub, shutdown, Duration::from_secs(1)).await {
            tracing::error!(error = %e, "the hub stopped with an error");
        }
    });
    Ok(Running {
        addr,
        service,
        stop,
        task,
    })
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
