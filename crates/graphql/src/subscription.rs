//! Live activity events. Every event flows through the durable log: one
//! pump per instance reads new events in sequence order (woken by local
//! commits, by PostgreSQL `NOTIFY` from any instance, and by a periodic
//! poll that covers lost notifications), loads each event's activity and
//! relations once, and broadcasts it to every subscriber of the instance.
//! A subscriber with `after` first replays the log, then switches to the
//! broadcast, dropping what it already delivered: no gap, no duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use async_graphql::{Context, Object, Result, Subscription};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cityhub_domain::{Action, Activity, ActivityStatus, Actor, City, CityId, Document, text};
use cityhub_storage::repo::events::{EventLog, EventRecord, NOTIFY_CHANNEL};
use cityhub_storage::{ActivityFilter, ActivityRepo, CityRepo, Db, StorageError};
use futures::Stream;
use sea_orm::TransactionTrait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

use crate::auth::AuthFailure;
use crate::enums::ActivityEventType;
use crate::error::{Code, ResultExt, bad_input, coded, denied};
use crate::inputs::ActivityFilterInput;
use crate::objects::activity::ActivityObject;
use crate::objects::city::CityObject;
use crate::scalars::DateTime;
use crate::state::{actor, hub};

/// Event settings (`[events]` in `cityhub.toml`).
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
    /// Seconds between re-checks of a subscriber's token (expiry, revocation).
    pub token_check_secs: u64,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            retention_secs: 7 * 24 * 3600,
            buffer: 4096,
            poll_interval_ms: 1000,
            max_subscriptions_per_connection: 20,
            max_connections_per_token: 1000,
            token_check_secs: 5,
        }
    }
}

/// What an activity is related to, loaded once per event for every subscriber.
#[derive(Debug, Default)]
pub struct Related {
    /// Hosts, venue city, publisher, participants and actor, by id.
    pub cities: HashMap<CityId, City>,
    /// Participant ids, in order.
    pub participants: Vec<CityId>,
    /// Documents, in order.
    pub documents: Vec<Document>,
}

/// One event, ready to deliver.
#[derive(Debug)]
pub struct LiveEvent {
    /// The log record.
    pub record: EventRecord,
    /// The activity as it is now (including a deleted one).
    pub activity: Option<Activity>,
    /// Its relations.
    pub related: Arc<Related>,
}

/// The instance's event fan-out.
pub struct EventBus {
    db: Db,
    settings: EventSettings,
    sender: broadcast::Sender<Arc<LiveEvent>>,
    wake: Arc<Notify>,
    delivered: AtomicI64,
    subscribers: AtomicUsize,
    connections: std::sync::Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Loads activities and relations for a batch of log records (a constant
/// number of queries per batch).
pub async fn load_live(
    db: &Db,
    records: Vec<EventRecord>,
) -> Result<Vec<Arc<LiveEvent>>, StorageError> {
    let conn = db.conn();
    let mut ids: Vec<i64> = records.iter().map(|r| r.activity_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let activities = ActivityRepo::find_by_ids_unscoped(conn, &ids).await?;
    let mut participants = ActivityRepo::participants_of(conn, &ids).await?;
    let mut documents = ActivityRepo::documents_of(conn, &ids).await?;
    let mut city_ids: Vec<CityId> = Vec::new();
    for a in activities.values() {
        city_ids.extend(a.hosts.iter().copied());
        city_ids.extend(a.venue_city_id);
        city_ids.extend(a.published_by);
    }
    for p in participants.values() {
        city_ids.extend(p.iter().copied());
    }
    city_ids.extend(records.iter().filter_map(|r| r.actor_city_id));
    city_ids.sort_unstable();
    city_ids.dedup();
    let cities = CityRepo::find_by_ids(conn, &city_ids).await?;
    let mut related: HashMap<i64, Arc<Related>> = HashMap::new();
    for id in &ids {
        let p = participants.remove(id).unwrap_or_default();
        let d = documents.remove(id).unwrap_or_default();
        let mut own = HashMap::new();
        if let Some(a) = activities.get(id) {
            for c in a
                .hosts
                .iter()
                .chain(a.venue_city_id.iter())
                .chain(a.published_by.iter())
                .chain(p.iter())
            {
                if let Some(city) = cities.get(c) {
                    own.insert(*c, city.clone());
                }
            }
        }
        related.insert(
            *id,
            Arc::new(Related {
                cities: own,
                participants: p,
                documents: d,
            }),
        );
    }
    Ok(records
        .into_iter()
        .map(|record| {
            let mut rel = related
                .get(&record.activity_id)
                .cloned()
                .unwrap_or_default();
            if let Some(actor) = record.actor_city_id.and_then(|c| cities.get(&c))
                && !rel.cities.contains_key(&actor.id)
            {
                let mut copy = Related {
                    cities: rel.cities.clone(),
                    participants: rel.participants.clone(),
                    documents: rel.documents.clone(),
                };
                copy.cities.insert(actor.id, actor.clone());
                rel = Arc::new(copy);
            }
            Arc::new(LiveEvent {
                activity: activities.get(&record.activity_id).cloned(),
                related: rel,
                record,
            })
        })
        .collect())
}

impl EventBus {
    /// A bus over `db`; call [`EventBus::start`] to run its tasks.
    pub fn new(db: Db, settings: EventSettings) -> Arc<Self> {
        let (sender, _) = broadcast::channel(settings.buffer.max(16));
        Arc::new(Self {
            db,
            settings,
            sender,
            wake: Arc::new(Notify::new()),
            delivered: AtomicI64::new(0),
            subscribers: AtomicUsize::new(0),
            connections: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The notifier that wakes the pump (hand it to the write service).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// The settings.
    pub fn settings(&self) -> &EventSettings {
        &self.settings
    }

    /// Active subscriptions on this instance.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Starts the pump, the PostgreSQL listener and the pruner; they stop
    /// when `shutdown` is notified.
    pub async fn start(
        self: &Arc<Self>,
        database_url: Option<String>,
        shutdown: Arc<Notify>,
    ) -> Result<(), StorageError> {
        let head = EventLog::head(self.db.conn()).await?;
        self.delivered.store(head, Ordering::SeqCst);
        let pump = self.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { pump.pump(stop).await });
        if let Some(url) = database_url.filter(|u| u.starts_with("postgres")) {
            let listener = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move { listener.listen(url, stop).await });
        }
        let pruner = self.clone();
        tokio::spawn(async move { pruner.prune_loop(shutdown).await });
        Ok(())
    }

    async fn pump(self: Arc<Self>, shutdown: Arc<Notify>) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        loop {
            tokio::select! {
                () = shutdown.notified() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
            loop {
                let last = self.delivered.load(Ordering::SeqCst);
                // Batches stay well under the broadcast buffer, and the pump
                // yields between them, so a catch-up burst never overruns
                // subscribers that keep up.
                let chunk = (self.settings.buffer as u64 / 4).clamp(1, 500);
                let batch = match EventLog::after(self.db.conn(), last, chunk).await {
                    Ok(b) => b,
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
                    if let Some(last) = batch.last() {
                        self.delivered.store(last.seq, Ordering::SeqCst);
                    }
                    if !full {
                        break;
                    }
                    continue;
                }
                let events = match load_live(&self.db, batch).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "event pump could not load activities; retrying");
                        break;
                    }
                };
                for event in events {
                    self.delivered.store(event.record.seq, Ordering::SeqCst);
                    // No receivers is fine: nobody is watching right now.
                    let _ = self.sender.send(event);
                }
                if !full {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
    }

    async fn listen(self: Arc<Self>, url: String, shutdown: Arc<Notify>) {
        use sea_orm::sqlx::postgres::PgListener;
        loop {
            let connected = async {
                let mut listener = PgListener::connect(&url).await?;
                listener.listen(NOTIFY_CHANNEL).await?;
                Ok::<_, sea_orm::sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                () = shutdown.notified() => return,
                r = connected => match r {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener cannot connect; retrying in 1s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                },
            };
            tracing::info!("event listener connected");
            // Whatever was committed while we were away is read from the log.
            self.wake.notify_one();
            loop {
                tokio::select! {
                    () = shutdown.notified() => return,
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
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn prune_loop(self: Arc<Self>, shutdown: Arc<Notify>) {
        loop {
            tokio::select! {
                () = shutdown.notified() => return,
                () = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            if let Err(e) = self.prune().await {
                tracing::warn!(error = %e, "pruning the event log failed");
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
        let mut map = self.connections.lock().ok()?;
        let n = map.entry(jti.to_owned()).or_default();
        if *n >= self.settings.max_connections_per_token {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard {
            bus: self.clone(),
            jti: jti.to_owned(),
        })
    }
}

/// Holds a token's connection slot until dropped.
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

/// Per-connection data of a WebSocket: its raw token (re-checked while
/// subscriptions run), its subscription count, and its token slot.
#[derive(Clone, Default)]
pub struct WsConnection {
    /// The token given in `connection_init`.
    pub token: Option<String>,
    /// Active subscriptions on the connection.
    pub subscriptions: Arc<AtomicUsize>,
    /// The token's connection slot.
    pub slot: Option<Arc<ConnectionGuard>>,
}

struct SubscriptionGuard {
    bus: Arc<EventBus>,
    on_connection: Option<Arc<AtomicUsize>>,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.bus.subscribers.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = &self.on_connection {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Why a subscriber that fell behind the instance's buffer was closed.
const FELL_BEHIND: &str = "this subscriber fell too far behind and was closed; resubscribe with `after` set to the last cursor received";

/// Why a subscription of a token that stopped being valid ended.
const TOKEN_ENDED: &str = "the token expired or was revoked";

/// Encodes a log sequence as an opaque cursor.
pub fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("ev:{seq}"))
}

/// Decodes an event cursor.
pub fn decode_cursor(text: &str) -> Option<i64> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
    raw.strip_prefix("ev:")?
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}

/// Whether `actor` may see event `record`.
fn visible(actor: &Actor, record: &EventRecord) -> bool {
    match actor {
        Actor::Secretariat => true,
        _ if record.status != ActivityStatus::Draft => true,
        Actor::City { id, .. } => record.published_by == Some(*id),
        Actor::Anonymous => false,
    }
}

/// Whether the event's activity matches the filter, in memory.
fn matches(filter: &ActivityFilter, event: &LiveEvent) -> bool {
    let Some(a) = &event.activity else {
        return false;
    };
    if let Some(statuses) = &filter.statuses
        && !statuses.contains(&event.record.status)
    {
        return false;
    }
    if !filter.kinds.is_empty() && !filter.kinds.contains(&a.kind) {
        return false;
    }
    if !filter.formats.is_empty() && !filter.formats.contains(&a.format) {
        return false;
    }
    if !filter.fields.is_empty() && !a.fields.iter().any(|f| filter.fields.contains(f)) {
        return false;
    }
    if !filter.themes.is_empty() {
        let wanted: Vec<String> = filter.themes.iter().map(|t| text::fold(t.trim())).collect();
        if !a
            .themes
            .iter()
            .any(|t| wanted.contains(&text::fold(t.trim())))
        {
            return false;
        }
    }
    let cities = &event.related.cities;
    let slug = |id: &CityId| cities.get(id).map(|c| c.slug.as_str());
    if !filter.cities.is_empty() {
        let involved = a
            .hosts
            .iter()
            .chain(a.venue_city_id.iter())
            .chain(event.related.participants.iter());
        if !involved
            .filter_map(slug)
            .any(|s| filter.cities.iter().any(|f| f == s))
        {
            return false;
        }
    }
    if !filter.countries.is_empty() {
        let wanted: Vec<String> = filter
            .countries
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let located = a
            .hosts
            .iter()
            .chain(a.venue_city_id.iter())
            .filter_map(|id| cities.get(id));
        if !located.into_iter().any(|c| wanted.contains(&c.country)) {
            return false;
        }
    }
    let start = a.start_date;
    let end = a.end_date.or(start);
    if let Some(from) = filter.from
        && end.is_none_or(|e| e < from)
    {
        return false;
    }
    if let Some(to) = filter.to
        && start.is_none_or(|s| s > to)
    {
        return false;
    }
    if let Some(query) = &filter.text {
        let terms = text::search_terms(query, 16);
        let doc = text::search_document(
            std::iter::once(a.title.as_str())
                .chain(a.summary.as_deref())
                .chain(a.description.as_deref())
                .chain(a.themes.iter().map(String::as_str)),
        );
        let words: Vec<&str> = doc.split(' ').collect();
        if terms.is_empty()
            || !terms
                .iter()
                .all(|t| words.iter().any(|w| w.starts_with(t.as_str())))
        {
            return false;
        }
    }
    true
}

/// Something that happened to an activity.
pub struct ActivityEvent(Arc<LiveEvent>);

/// Something that happened to an activity, from the durable event log.
#[Object]
impl ActivityEvent {
    /// Opaque position in the event log; pass it as `after` to resume right after this event.
    async fn cursor(&self) -> String {
        encode_cursor(self.0.record.seq)
    }

    /// What happened.
    #[graphql(name = "type")]
    async fn event_type(&self) -> ActivityEventType {
        self.0.record.event_type.into()
    }

    /// When it happened.
    async fn occurred_at(&self) -> DateTime {
        DateTime(self.0.record.occurred_at)
    }

    /// The activity, as it is now.
    async fn activity(&self) -> Result<ActivityObject> {
        match &self.0.activity {
            Some(a) => Ok(ActivityObject::live(a.clone(), self.0.related.clone())),
            None => Err(coded(Code::NotFound, "the activity of this event is gone")),
        }
    }

    /// The city that acted; null for the secretariat.
    async fn actor(&self) -> Option<CityObject> {
        self.0
            .record
            .actor_city_id
            .and_then(|id| self.0.related.cities.get(&id).cloned())
            .map(CityObject)
    }
}

/// The root of live updates.
#[derive(Default)]
pub struct SubscriptionRoot;

/// The root of live updates, over WebSocket.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Activity events matching the filter, as they are committed. Durable: with `after` (an event's `cursor`), every matching event after it is replayed in order, then the stream goes on live, with no gap and no duplicate; an `after` older than the log keeps is `CURSOR_EXPIRED`. Without `after`: new events only. `filter.statuses` applies to the activity's status after the event and defaults to every status; drafts' events reach only their own city and the secretariat.
    async fn activity_events(
        &self,
        ctx: &Context<'_>,
        filter: Option<ActivityFilterInput>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<ActivityEvent>> + use<>> {
        let h = hub(ctx);
        let actor = actor(ctx).clone();
        h.service
            .policy()
            .authorize(&actor, Action::ReadNetwork, None)
            .map_err(denied)?;
        let bus = h.events.clone();
        let auth = h.auth.clone();
        let input = filter.unwrap_or_default();
        let statuses_given = input.statuses.is_some();
        let mut filter = input.into_filter("filter", h.service.limits())?;
        if !statuses_given {
            filter.statuses = None;
        }
        let conn = ctx.data_opt::<WsConnection>().cloned().unwrap_or_default();
        // A token revoked or expired since `connection_init` starts nothing
        // more on its socket (a replay would otherwise run before the
        // periodic check ends it).
        if let Some(token) = &conn.token {
            match auth.verify(token).await {
                Ok(_) => {}
                Err(AuthFailure::Invalid(_)) => {
                    return Err(coded(Code::Unauthenticated, TOKEN_ENDED));
                }
                Err(AuthFailure::Storage(e)) => return Err(crate::error::storage(e)),
            }
        }
        let start = match &after {
            Some(text) => {
                let seq = decode_cursor(text)
                    .ok_or_else(|| bad_input("after", "is not an event cursor of this hub"))?;
                let db = h.service.db().conn();
                if seq < EventLog::pruned_through(db).await.api()? {
                    return Err(coded(
                        Code::CursorExpired,
                        "this cursor is older than the event log keeps; reload and subscribe without `after`",
                    ));
                }
                if seq > EventLog::head(db).await.api()? {
                    return Err(bad_input("after", "is ahead of the event log"));
                }
                Some(seq)
            }
            None => None,
        };
        let mut receiver = bus.sender.subscribe();
        let db = h.service.db().clone();
        // Without `after`, only events committed from now on: the pump may
        // still be broadcasting older ones. The head is read after
        // subscribing, so nothing committed later can be missed; and before
        // the subscription is counted, so the count means "receiving".
        let floor = match start {
            Some(seq) => seq,
            None => EventLog::head(db.conn()).await.api()?,
        };
        let active = conn.subscriptions.fetch_add(1, Ordering::Relaxed) + 1;
        bus.subscribers.fetch_add(1, Ordering::Relaxed);
        let guard = SubscriptionGuard {
            bus: bus.clone(),
            on_connection: Some(conn.subscriptions.clone()),
        };
        if active > bus.settings.max_subscriptions_per_connection {
            drop(guard);
            return Err(coded(
                Code::RateLimited,
                format!(
                    "at most {} subscriptions per connection",
                    bus.settings.max_subscriptions_per_connection
                ),
            ));
        }
        let check_every = Duration::from_secs(bus.settings.token_check_secs.max(1));
        Ok(async_stream::stream! {
            let _guard = guard;
            let mut last = floor;
            if let Some(from) = start {
                let mut cursor = from;
                loop {
                    let batch = match EventLog::after(db.conn(), cursor, 500).await {
                        Ok(b) => b,
                        Err(e) => { yield Err(crate::error::storage(e)); return; }
                    };
                    if batch.is_empty() { break; }
                    cursor = batch.last().map_or(cursor, |r| r.seq);
                    let events = match load_live(&db, batch).await {
                        Ok(e) => e,
                        Err(e) => { yield Err(crate::error::storage(e)); return; }
                    };
                    for event in events {
                        last = event.record.seq;
                        if visible(&actor, &event.record) && matches(&filter, &event) {
                            yield Ok(ActivityEvent(event));
                        }
                    }
                }
            }
            let mut next_check = tokio::time::Instant::now() + check_every;
            let mut lagged = false;
            loop {
                tokio::select! {
                    received = receiver.recv() => match received {
                        Ok(event) => {
                            // Overwritten events this subscriber already had
                            // (replayed, or older than its start) are no loss:
                            // a burst of them must not close it.
                            if std::mem::take(&mut lagged) && event.record.seq > last + 1 {
                                match EventLog::after(db.conn(), last, 1).await {
                                    Ok(next) if next.first().is_none_or(|r| r.seq >= event.record.seq) => {}
                                    Ok(_) => {
                                        yield Err(coded(Code::RateLimited, FELL_BEHIND));
                                        return;
                                    }
                                    Err(e) => { yield Err(crate::error::storage(e)); return; }
                                }
                            }
                            if event.record.seq <= last { continue; }
                            last = event.record.seq;
                            if visible(&actor, &event.record) && matches(&filter, &event) {
                                yield Ok(ActivityEvent(event));
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => lagged = true,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep_until(next_check) => {
                        next_check = tokio::time::Instant::now() + check_every;
                        // An outage is not a revocation: only a refused token
                        // ends the stream; a failed check is retried next time.
                        if let Some(token) = &conn.token
                            && matches!(auth.verify(token).await, Err(AuthFailure::Invalid(_))) {
                                yield Err(coded(Code::Unauthenticated, TOKEN_ENDED));
                                return;
                            }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cityhub_domain::ActivityEventType as DomainEventType;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("nope"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("ev:-1")), None);
    }

    #[test]
    fn drafts_reach_only_their_city_and_the_secretariat() {
        let record = EventRecord {
            seq: 1,
            activity_id: 1,
            event_type: DomainEventType::Published,
            occurred_at: chrono::Utc::now(),
            actor_city_id: Some(7),
            status: ActivityStatus::Draft,
            published_by: Some(7),
        };
        assert!(visible(&Actor::Secretariat, &record));
        assert!(visible(
            &Actor::City {
                id: 7,
                slug: "a".into()
            },
            &record
        ));
        assert!(!visible(
            &Actor::City {
                id: 8,
                slug: "b".into()
            },
            &record
        ));
        assert!(!visible(&Actor::Anonymous, &record));
        let public = EventRecord {
            status: ActivityStatus::Published,
            ..record
        };
        assert!(visible(&Actor::Anonymous, &public));
    }
}
