//! The instance's event bus: the pump that reads the log and broadcasts,
//! the PostgreSQL listener that wakes it, the pruner, and the counters of
//! subscribers and per-token connections.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;
use tracing::Instrument as _;

use cityhub_storage::repo::events::{EventLog, NOTIFY_CHANNEL};
use cityhub_storage::{Db, StorageError};
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::live::{LiveEvent, load_live};

/// Event and WebSocket settings (`[events]` in `cityhub.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventSettings {
    /// How long events are kept for resuming, in seconds.
    pub retention_secs: u64,
    /// Events buffered per instance for subscribers; a subscriber that falls
    /// further behind is closed and resumes with its cursor.
    pub buffer: usize,
    /// Milliseconds between polls of the log when no notification came.
    pub poll_interval_ms: u64,
    /// Most subscriptions on one WebSocket connection.
    pub max_subscriptions_per_connection: usize,
    /// Most WebSocket connections open with one token.
    pub max_connections_per_token: usize,
    /// Most WebSocket connections open without a token from one client
    /// address (the same subscription and replay bounds apply to them).
    pub max_anonymous_sockets_per_address: usize,
    /// Seconds between re-checks of a socket's token (expiry, revocation,
    /// key retirement, city removed); with `auth.revocation_cache_secs`,
    /// the longest a revoked token keeps a socket open.
    pub token_check_secs: u64,
    /// Seconds a new WebSocket has to send `connection_init` (else 4408).
    pub init_timeout_secs: u64,
    /// Largest WebSocket message accepted, in bytes (else 4400).
    pub max_message_bytes: usize,
    /// Most queries and mutations running at once on one WebSocket; more
    /// are answered `RATE_LIMITED`.
    pub max_operations_in_flight: usize,
    /// Messages queued for one WebSocket client; a subscription whose
    /// client falls further behind ends with `RATE_LIMITED` and resumes
    /// with its last cursor.
    pub max_queued_messages: usize,
    /// Events read per page when replaying from `after`.
    pub replay_page: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 24 * 3600,
            buffer: 4096,
            poll_interval_ms: 1000,
            max_subscriptions_per_connection: 20,
            max_connections_per_token: 1000,
            max_anonymous_sockets_per_address: 100,
            token_check_secs: 3,
            init_timeout_secs: 10,
            max_message_bytes: 64 * 1024,
            max_operations_in_flight: 8,
            max_queued_messages: 1024,
            replay_page: 200,
        }
    }
}

/// The instance's event fan-out.
pub struct EventBus {
    db: Db,
    settings: EventSettings,
    sender: broadcast::Sender<Arc<LiveEvent>>,
    /// Wakes the pump.
    wake: Arc<Notify>,
    /// Local commits (PostgreSQL: announced to the other instances by a
    /// task, outside the writers' transactions; elsewhere: `wake` itself).
    committed: Arc<Notify>,
    delivered: AtomicI64,
    subscribers: AtomicUsize,
    connections: std::sync::Mutex<HashMap<String, usize>>,
    shared: std::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// The last head read: when it started, and what it found.
    head: tokio::sync::Mutex<(Option<std::time::Instant>, i64)>,
    /// Seconds from an event's commit to its hand-over to subscribers.
    delivery_lag: prometheus_client::metrics::histogram::Histogram,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus over `db`; call [`EventBus::start`] to run its tasks.
    pub fn new(db: Db, settings: EventSettings) -> Arc<Self> {
        let (sender, _) = broadcast::channel(settings.buffer.max(16));
        let wake = Arc::new(Notify::new());
        let committed = if db.backend() == sea_orm::DatabaseBackend::Postgres {
            Arc::new(Notify::new())
        } else {
            wake.clone()
        };
        Arc::new(Self {
            db,
            settings,
            sender,
            wake,
            committed,
            delivered: AtomicI64::new(0),
            subscribers: AtomicUsize::new(0),
            delivery_lag: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16),
            ),
            connections: std::sync::Mutex::new(HashMap::new()),
            shared: std::sync::Mutex::new(HashMap::new()),
            head: tokio::sync::Mutex::new((None, 0)),
        })
    }

    /// The notifier the write service wakes after each commit: it wakes
    /// the pump (and, on PostgreSQL, the other instances).
    pub fn waker(&self) -> Arc<Notify> {
        self.committed.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }

    /// The database the log lives in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The one `T` of this bus, created on first use: state that the
    /// transports keep per instance (e.g. groups of shared subscriptions).
    pub fn shared<T: Any + Send + Sync + Default>(&self) -> Arc<T> {
        let mut map = match self.shared.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(T::default()));
        match entry.clone().downcast::<T>() {
            Ok(t) => t,
            Err(_) => {
                let fresh = Arc::new(T::default());
                *entry = fresh.clone();
                fresh
            }
        }
    }

    /// The log head as of now (at least every event committed before the
    /// call). Callers arriving together share one query: a read that
    /// started after a caller arrived answers it too, so a burst of
    /// subscribers costs one query per query time, not one each.
    pub async fn head(&self) -> Result<i64, StorageError> {
        let arrived = std::time::Instant::now();
        let mut last = self.head.lock().await;
        if let (Some(started), seq) = *last
            && started > arrived
        {
            return Ok(seq);
        }
        let started = std::time::Instant::now();
        let seq = EventLog::head(self.db.conn()).await?;
        *last = (Some(started), seq);
        Ok(seq)
    }

    /// How late events reach this instance's subscribers: seconds from
    /// the event's time in the log to its hand-over (for the metrics).
    pub fn delivery_lag(&self) -> &prometheus_client::metrics::histogram::Histogram {
        &self.delivery_lag
    }

    /// Active subscriptions on this instance.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Counts one subscription until the guard is dropped.
    pub fn track_subscriber(self: &Arc<Self>) -> SubscriberGuard {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        SubscriberGuard { bus: self.clone() }
    }

    /// A receiver of every event broadcast from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }

    /// Starts the pump, the PostgreSQL listener, the announcer and the
    /// pruner on `tasks`; each returns as soon as `shutdown` is cancelled (a
    /// cancellation is never missed, unlike a `Notify` wake-up sent while a
    /// task is busy).
    pub async fn start(
        self: &Arc<Self>,
        database_url: Option<String>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(), StorageError> {
        let head = EventLog::final_head(self.db.conn()).await?;
        self.delivered.store(head, Ordering::SeqCst);
        let pump = self.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move { pump.pump(stop).await });
        if let Some(url) = database_url.filter(|u| u.starts_with("postgres")) {
            let listener = self.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move { listener.listen(url, stop).await });
        }
        if !Arc::ptr_eq(&self.committed, &self.wake) {
            let announcer = self.clone();
            let stop = shutdown.clone();
            tasks.spawn(async move { announcer.announce(stop).await });
        }
        let pruner = self.clone();
        tasks.spawn(async move { pruner.prune_loop(shutdown).await });
        Ok(())
    }

    /// Wakes the pump on each local commit and tells the other instances
    /// (one `NOTIFY` per burst of commits: wake-ups coalesce meanwhile).
    async fn announce(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.committed.notified() => {}
            }
            self.wake.notify_one();
            if let Err(e) = EventLog::announce(self.db.conn()).await {
                // Other instances still poll the log.
                tracing::warn!(error = %e, "could not announce committed events");
            }
        }
    }

    async fn pump(self: Arc<Self>, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        // While committed events wait above the read horizon (PostgreSQL:
        // an older transaction is still open), the log is read again soon,
        // backing off from 1 ms to 64 ms.
        let mut retry: Option<Duration> = None;
        let mut last = self.delivered.load(Ordering::SeqCst);
        loop {
            let wait = retry.map_or(poll, |r| r.min(poll));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            let mut pending = false;
            loop {
                // Batches stay well under the broadcast buffer, and the pump
                // yields between them, so a catch-up burst never overruns
                // subscribers that keep up.
                let chunk = (self.settings.buffer as u64 / 4).clamp(1, 500);
                let batch = match EventLog::read(self.db.conn(), last, chunk).await {
                    Ok((b, waiting)) => {
                        pending = waiting;
                        b
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event pump could not read the log; retrying");
                        break;
                    }
                };
                if batch.is_empty() {
                    break;
                }
                let full = batch.len() as u64 == chunk;
                if self.sender.receiver_count() == 0 {
                    // Nobody is watching: new subscribers start from the
                    // head and resumers replay from the log, so there is
                    // nothing to load or send.
                    if let Some(r) = batch.last() {
                        last = r.seq;
                        self.delivered.store(last, Ordering::SeqCst);
                    }
                    if !full {
                        break;
                    }
                    continue;
                }
                let span = tracing::info_span!(
                    "deliver",
                    events = batch.len(),
                    from_seq = batch.first().map_or(0, |r| r.seq),
                    to_seq = batch.last().map_or(0, |r| r.seq),
                    subscribers = self.sender.receiver_count(),
                );
                let events = match load_live(&self.db, batch).instrument(span.clone()).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "event pump could not load activities; retrying");
                        break;
                    }
                };
                let now = chrono::Utc::now();
                let delivering = span.enter();
                for event in events {
                    last = event.record.seq;
                    self.delivered.store(last, Ordering::SeqCst);
                    let lag = (now - event.record.occurred_at)
                        .num_microseconds()
                        .unwrap_or(0);
                    self.delivery_lag.observe(lag.max(0) as f64 / 1e6);
                    // No receivers is fine: nobody is watching right now.
                    let _ = self.sender.send(event);
                }
                drop(delivering);
                if !full {
                    break;
                }
                tokio::task::yield_now().await;
            }
            retry = pending.then(|| {
                retry.map_or(Duration::from_millis(1), |r| {
                    (r * 2).min(Duration::from_millis(64))
                })
            });
        }
    }

    async fn listen(self: Arc<Self>, url: String, shutdown: CancellationToken) {
        loop {
            let connected = async {
                let mut listener = cityhub_storage::db::postgres_listener(&url).await?;
                listener.listen(NOTIFY_CHANNEL).await?;
                Ok::<_, sea_orm::sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                () = shutdown.cancelled() => return,
                r = connected => match r {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener cannot connect; retrying in 1s");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        continue;
                    }
                },
            };
            tracing::info!("event listener connected");
            // Whatever was committed while we were away is read from the log.
            self.wake.notify_one();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    n = listener.try_recv() => match n {
                        Ok(Some(_)) => self.wake.notify_one(),
                        Ok(None) => {
                            tracing::warn!("event listener connection lost; reconnecting");
                            self.wake.notify_one();
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "event listener failed; reconnecting");
                            break;
                        }
                    },
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    async fn prune_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.prune() => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "pruning the event log failed");
                    }
                }
            }
        }
    }

    /// Deletes events older than the retention.
    pub async fn prune(&self) -> Result<u64, StorageError> {
        let retention = i64::try_from(self.settings.retention_secs)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1_000_000);
        let cutoff = cityhub_storage::time::now_micros().saturating_sub(retention);
        let _guard = self.db.write_guard().await;
        let txn = self.db.conn().begin().await?;
        let n = EventLog::prune(&txn, cutoff).await?;
        txn.commit().await?;
        if n > 0 {
            tracing::info!(pruned = n, "pruned the event log");
        }
        Ok(n)
    }

    /// Registers a WebSocket connection of token `jti`; `None` when the
    /// token already has the most connections allowed.
    pub fn open_connection(self: &Arc<Self>, jti: &str) -> Option<ConnectionGuard> {
        self.open_slot(format!("t:{jti}"), self.settings.max_connections_per_token)
    }

    /// Registers a WebSocket connection without a token from `address`;
    /// `None` when that address already has the most such connections.
    pub fn open_anonymous_connection(
        self: &Arc<Self>,
        address: std::net::IpAddr,
    ) -> Option<ConnectionGuard> {
        self.open_slot(
            format!("a:{address}"),
            self.settings.max_anonymous_sockets_per_address,
        )
    }

    fn open_slot(self: &Arc<Self>, key: String, most: usize) -> Option<ConnectionGuard> {
        let mut map = self.connections.lock().ok()?;
        let n = map.entry(key.clone()).or_default();
        if *n >= most {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            bus: self.clone(),
            jti: key,
        })
    }
}

/// Holds a connection slot (a token's, or an anonymous address's) until
/// dropped.
pub struct ConnectionGuard {
    bus: Arc<EventBus>,
    jti: String,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.bus.connections.lock()
            && let Some(n) = map.get_mut(&self.jti)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.jti);
            }
        }
    }
}

/// Counts one active subscription until dropped.
pub struct SubscriberGuard {
    bus: Arc<EventBus>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.bus.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
