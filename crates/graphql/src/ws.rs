//! GraphQL over WebSocket: `graphql-transport-ws` (the `graphql-ws`
//! library's protocol, PROTOCOL.md) and the legacy `graphql-ws`
//! (`subscriptions-transport-ws`), with our own protocol handler:
//!
//! - close codes of the protocol: 4400 invalid or oversized message, 4401
//!   `subscribe` before `connection_ack`, 4403 refused or ambiguous
//!   credentials (and a token that stopped being valid while the socket is
//!   open, re-checked every `events.token_check_secs`), 4408 no
//!   `connection_init` within `events.init_timeout_secs`, 4409 duplicate
//!   operation id, 4429 a second `connection_init` or too many
//!   connections for one token;
//! - queries and mutations run through the same schema (limits, cost rules)
//!   as over HTTP, at most `events.max_operations_in_flight` at once;
//! - execute once, send many: subscriptions with the same document,
//!   variables and visibility class (anonymous, secretariat, one city)
//!   share one running stream ([`Group`]) whose results are serialized once;
//!   the per-subscriber work is the envelope and the write. A subscription
//!   that replays from `after` runs its own stream;
//! - one task per socket: it reads client messages, and writes queued
//!   frames in batches (one flush per batch). A client that lets more than
//!   `events.max_queued_messages` frames pile up loses the subscription
//!   concerned (`RATE_LIMITED`, resume with the last cursor).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Response, Value, Variables};
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use cityhub_domain::Actor;
use cityhub_events::ConnectionGuard;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::auth::{AuthFailure, Principal, RequestCtx};
use crate::error::Code;
use crate::guard::ClientAddr;
use crate::live::{FELL_BEHIND, StartAt, StreamTap};
use crate::loaders::Loaders;
use crate::schema::HubSchema;
use crate::service::{GraphqlService, client_addr, peer_of};

/// Close reason for refused credentials.
const FORBIDDEN: &str = "Forbidden";
/// Close reason when a token has too many connections.
const TOO_MANY: &str = "Too many connections for this token or address";
/// Close reason when the socket's token stopped being valid.
const TOKEN_ENDED: &str = "Forbidden: the token expired or was revoked";
/// Frames recently sent by a group, kept for subscribers that join while
/// it runs (they read the log head before joining).
const RING: usize = 64;
/// Most frames written before one flush.
const BATCH: usize = 128;

/// The two sub-protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// `graphql-transport-ws`.
    Transport,
    /// Legacy `graphql-ws`.
    Legacy,
}

/// Why `connection_init` was refused.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    /// No token: anonymous.
    None,
    /// One `Authorization` value.
    Token(String),
    /// Two spellings, or a value that is not a string.
    Ambiguous,
}

/// Reads the token from a `connection_init` payload: `authorization` at the
/// top level (any case), or inside `headers`. Two keys of any spelling, or
/// a value that is not a string, is ambiguous (refused, never anonymous).
fn credentials(payload: Option<&serde_json::Value>) -> Credentials {
    fn find(map: &serde_json::Map<String, serde_json::Value>) -> Vec<&serde_json::Value> {
        map.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v)
            .collect()
    }
    let Some(payload) = payload else {
        return Credentials::None;
    };
    let Some(object) = payload.as_object() else {
        return if payload.is_null() {
            Credentials::None
        } else {
            Credentials::Ambiguous
        };
    };
    let mut found = find(object);
    for (k, v) in object {
        if k.eq_ignore_ascii_case("headers") {
            match v.as_object() {
                Some(headers) => found.extend(find(headers)),
                None if v.is_null() => {}
                None => return Credentials::Ambiguous,
            }
        }
    }
    match found.as_slice() {
        [] => Credentials::None,
        [serde_json::Value::String(s)] => Credentials::Token(s.clone()),
        _ => Credentials::Ambiguous,
    }
}

/// Upgrades `GET /graphql` to a GraphQL WebSocket.
pub async fn upgrade(svc: GraphqlService, parts: &mut Parts) -> HttpResponse {
    if let (Some(allowed), Some(origin)) = (
        &svc.settings.ws_allowed_origins,
        parts.headers.get(header::ORIGIN),
    ) {
        let origin = origin.to_str().unwrap_or_default();
        if !allowed.iter().any(|a| a == "*" || a == origin) {
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
    }
    let ws = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // Messages a little over the limit still reach us, so we can close
    // with 4400 ourselves; far larger ones fail in the codec.
    let max_message = svc.events.settings().max_message_bytes.max(1024);
    let ws = ws
        .protocols(["graphql-transport-ws", "graphql-ws"])
        // Client messages are small; the read buffer grows for a larger
        // one (up to the limit) and idle sockets keep only 512 bytes.
        .read_buffer_size(512)
        // Frames of one batch gather up to 8 KiB before a write; the
        // flush after the batch sends the rest.
        .write_buffer_size(8 * 1024)
        .max_write_buffer_size(svc.settings.ws_max_write_buffer)
        .max_message_size(max_message.saturating_mul(2))
        .max_frame_size(max_message.saturating_mul(2));
    let protocol = match ws.selected_protocol().and_then(|v| v.to_str().ok()) {
        Some("graphql-transport-ws") => Protocol::Transport,
        Some("graphql-ws") => Protocol::Legacy,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "use the graphql-transport-ws or graphql-ws sub-protocol",
            )
                .into_response();
        }
    };
    // The client's address, for the anonymous rate limit on operations
    // sent over the socket (as over HTTP).
    let client = peer_of(&parts.extensions).map(|peer| {
        ClientAddr(client_addr(
            &svc.settings.trusted_proxies,
            peer,
            &parts.headers,
        ))
    });
    let request_id: Option<Arc<str>> = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(Arc::from);
    ws.on_upgrade(move |socket| {
        // The socket's task is the hub's: it ends (dropping the socket, so
        // clients see the connection go and resume with their cursor) as
        // soon as the hub stops, and `serve` waits for it.
        let lifetime = svc.lifetime.clone();
        // Boxed: the socket's state lives in one allocation. Unboxed, the
        // future below held it twice (in `served` and inside
        // `run_until_cancelled_owned`): 17 KiB per idle socket instead of
        // 8.5 KiB at 10,000 subscribers (BENCHMARKS.md).
        let served = Box::pin(async move {
            let _open = svc.metrics.socket_opened();
            let mut connection = Connection::new(svc, protocol, request_id);
            connection.client = client;
            connection.serve(socket).await;
        });
        async move {
            match lifetime {
                Some((stop, tasks)) => {
                    tasks
                        .track_future(stop.run_until_cancelled_owned(served))
                        .await;
                }
                None => served.await,
            }
        }
    })
}

/// Who may see what: subscriptions of the same class share results.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Visibility {
    Anonymous,
    Secretariat,
    City(cityhub_domain::CityId),
}

impl Visibility {
    fn of(principal: Option<&Principal>) -> Self {
        match principal.map(|p| &p.actor) {
            None | Some(Actor::Anonymous) => Visibility::Anonymous,
            Some(Actor::Secretariat) => Visibility::Secretariat,
            Some(Actor::City { id, .. }) => Visibility::City(*id),
        }
    }
}

/// What makes two subscriptions the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    query: String,
    operation: Option<String>,
    variables: String,
    visibility: Visibility,
}

/// One operation of a socket, as the frames name it.
#[derive(Debug)]
struct OpTag {
    /// The client's id.
    id: String,
    /// The id as a JSON string (quoted, escaped), for envelopes.
    id_json: String,
    /// Distinguishes a reused id from the operation it replaced.
    serial: u64,
}

/// A frame queued for a socket.
enum Out {
    /// One result of an operation (`next` / legacy `data`), serialized.
    Next(Arc<OpTag>, Arc<str>),
    /// The operation is over: `complete`, and it leaves the socket.
    Done(Arc<OpTag>),
}

/// The queue of frames of one socket, shared with the groups and tasks
/// that produce them.
struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    queued: AtomicUsize,
    limit: usize,
    /// Signalled when a full queue gets room again.
    drained: tokio::sync::Notify,
    /// The id of the request that opened the socket, in every error sent.
    request_id: Option<Arc<str>>,
}

impl Outbox {
    /// Queues a result; false when the client is too far behind (then the
    /// caller ends the operation with [`Outbox::lagged`]).
    fn next(&self, tag: &Arc<OpTag>, payload: &Arc<str>) -> bool {
        if self.queued.load(Ordering::Relaxed) >= self.limit {
            return false;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx
            .send(Out::Next(tag.clone(), payload.clone()))
            .is_ok()
    }

    /// Queues a result, waiting while the queue is full (a stream of its
    /// own, e.g. a replay, slows down instead of failing); false once the
    /// socket is gone.
    async fn next_wait(&self, tag: &Arc<OpTag>, payload: &Arc<str>) -> bool {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.next(tag, payload) {
                return true;
            }
            if self.tx.is_closed() {
                return false;
            }
            notified.await;
        }
    }

    /// Ends an operation after a last result (queued whatever the limit).
    fn finish(&self, tag: &Arc<OpTag>, last: Option<Arc<str>>) {
        if let Some(payload) = last {
            self.queued.fetch_add(1, Ordering::Relaxed);
            let _ = self.tx.send(Out::Next(tag.clone(), payload));
        }
        let _ = self.tx.send(Out::Done(tag.clone()));
    }

    /// Ends an operation whose client fell behind.
    fn lagged(&self, tag: &Arc<OpTag>) {
        self.finish(
            tag,
            Some(error_payload(
                Code::RateLimited,
                FELL_BEHIND,
                self.request_id.as_deref(),
            )),
        );
    }
}

/// A `{"errors":[…]}` payload with one coded error (and the id of the
/// request that opened the socket, as over HTTP).
fn error_payload(code: Code, message: &str, request_id: Option<&str>) -> Arc<str> {
    let mut extensions = serde_json::json!({ "code": code.as_str() });
    if let Some(id) = request_id {
        extensions["requestId"] = id.into();
    }
    serde_json::json!({ "errors": [{ "message": message, "extensions": extensions }] })
        .to_string()
        .into()
}

/// A subscriber of a group.
struct Member {
    key: u64,
    out: Arc<Outbox>,
    tag: Arc<OpTag>,
    /// Results of events up to this sequence are not for it.
    floor: i64,
}

#[derive(Default)]
struct GroupInner {
    members: Vec<Member>,
    /// Recent results with their event's sequence.
    ring: VecDeque<(i64, Arc<str>)>,
    /// Every result of an event after this sequence is in `ring` or not
    /// yet distributed.
    covers_from: i64,
    closed: bool,
}

/// Identical subscriptions sharing one stream.
struct Group {
    key: GroupKey,
    tap: Arc<StreamTap>,
    inner: Mutex<GroupInner>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

/// The groups of one instance (kept on its event bus).
#[derive(Default)]
pub struct Groups {
    map: Mutex<HashMap<GroupKey, Arc<Group>>>,
    next_member: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Group {
    /// Hands one result to every member past its floor.
    fn distribute(&self, seq: i64, payload: Arc<str>, has_errors: bool) {
        let mut inner = lock(&self.inner);
        let mut behind = Vec::new();
        for (i, m) in inner.members.iter().enumerate() {
            if seq <= m.floor {
                continue;
            }
            // Errors name each member's own request (rare: results are
            // shared as they are otherwise).
            let delivered = match (has_errors, m.out.request_id.as_deref()) {
                (true, Some(id)) => m.out.next(&m.tag, &stamped(&payload, id)),
                _ => m.out.next(&m.tag, &payload),
            };
            if !delivered {
                behind.push(i);
            }
        }
        for i in behind.into_iter().rev() {
            let m = inner.members.swap_remove(i);
            m.out.lagged(&m.tag);
        }
        if seq != i64::MAX {
            if inner.ring.len() == RING
                && let Some((old, _)) = inner.ring.pop_front()
            {
                inner.covers_from = old;
            }
            inner.ring.push_back((seq, payload));
        }
    }
}

impl Groups {
    /// Adds a subscriber whose client saw the log at `head`; `false` when
    /// the group is too far ahead (the caller runs a stream of its own).
    fn join(&self, group: &Group, member: Member, head: i64) -> Result<(), Member> {
        let mut inner = lock(&group.inner);
        if inner.closed || head < inner.covers_from {
            return Err(member);
        }
        for (seq, payload) in &inner.ring {
            if *seq > head && !member.out.next(&member.tag, payload) {
                member.out.lagged(&member.tag);
                return Ok(());
            }
        }
        inner.members.push(Member {
            floor: head,
            ..member
        });
        Ok(())
    }

    /// Removes a subscriber; the last one stops the group.
    fn leave(&self, key: &GroupKey, member: u64) {
        let mut map = lock(&self.map);
        let Some(group) = map.get(key).cloned() else {
            return;
        };
        let mut inner = lock(&group.inner);
        inner.members.retain(|m| m.key != member);
        if inner.members.is_empty() && !inner.closed {
            inner.closed = true;
            map.remove(key);
            if let Some(task) = lock(&group.task).take() {
                task.abort();
            }
        }
    }

    /// Ends a group whose stream ended: every member gets `last` (if any)
    /// and completes.
    fn end(&self, group: &Arc<Group>) {
        let mut map = lock(&self.map);
        if map.get(&group.key).is_some_and(|g| Arc::ptr_eq(g, group)) {
            map.remove(&group.key);
        }
        let mut inner = lock(&group.inner);
        inner.closed = true;
        for m in inner.members.drain(..) {
            m.out.finish(&m.tag, None);
        }
    }
}

/// Runs a group's stream, sharing each serialized result.
async fn run_group(
    groups: Arc<Groups>,
    group: Arc<Group>,
    mut stream: futures::stream::BoxStream<'static, Response>,
) {
    while let Some(response) = stream.next().await {
        let seq = group.tap.yielded.load(Ordering::SeqCst);
        let payload: Arc<str> = match serde_json::to_string(&response) {
            Ok(s) => s.into(),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a subscription result");
                continue;
            }
        };
        let fatal = seq == i64::MAX;
        group.distribute(seq, payload, !response.errors.is_empty());
        if fatal {
            break;
        }
    }
    groups.end(&group);
}

/// A subscription's place: in a group, or its own stream.
enum Running {
    Member {
        groups: Arc<Groups>,
        key: GroupKey,
        member: u64,
    },
    Task(tokio::task::AbortHandle),
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Running::Member {
                groups,
                key,
                member,
            } => groups.leave(key, *member),
            Running::Task(handle) => handle.abort(),
        }
    }
}

/// Whether an operation streams events or answers once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    /// A subscription: counted against `max_subscriptions_per_connection`.
    Subscription,
    /// A query or mutation: counted against `max_operations_in_flight`.
    Single,
}

/// An operation running on the socket.
struct Op {
    serial: u64,
    kind: OpKind,
    _running: Option<Running>,
    _counted: Option<cityhub_events::SubscriberGuard>,
}

/// What a socket holds between messages.
struct Connection {
    svc: GraphqlService,
    protocol: Protocol,
    /// `connection_init` accepted.
    acked: bool,
    principal: Option<Principal>,
    /// Where the socket comes from (for anonymous rate limits).
    client: Option<ClientAddr>,
    token: Option<String>,
    _slot: Option<ConnectionGuard>,
    ops: HashMap<String, Op>,
    serial: u64,
    out: Arc<Outbox>,
    rx: mpsc::UnboundedReceiver<Out>,
}

/// What to do after a step.
enum Step {
    Continue,
    Close(u16, String),
}

impl Connection {
    fn new(svc: GraphqlService, protocol: Protocol, request_id: Option<Arc<str>>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = svc.events.settings().max_queued_messages.max(1);
        Self {
            svc,
            protocol,
            acked: false,
            principal: None,
            client: None,
            token: None,
            _slot: None,
            ops: HashMap::new(),
            serial: 0,
            out: Arc::new(Outbox {
                tx,
                queued: AtomicUsize::new(0),
                limit,
                drained: tokio::sync::Notify::new(),
                request_id,
            }),
            rx,
        }
    }

    async fn serve(mut self, mut socket: WebSocket) {
        let settings = self.svc.events.settings().clone();
        let send_timeout = Duration::from_secs(self.svc.settings.ws_send_timeout_secs.max(1));
        let keepalive_every = Duration::from_secs(self.svc.settings.ws_keepalive_secs.max(1));
        let check_every = Duration::from_secs(settings.token_check_secs.max(1));
        let init_deadline =
            tokio::time::Instant::now() + Duration::from_secs(settings.init_timeout_secs.max(1));
        let mut keepalive = tokio::time::Instant::now() + keepalive_every;
        let mut check = tokio::time::Instant::now() + check_every;
        let max_bytes = settings.max_message_bytes;
        let mut batch: Vec<Message> = Vec::new();
        let step = loop {
            let step = tokio::select! {
                biased;
                incoming = socket.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > max_bytes {
                            Step::Close(4400, "Message too large".into())
                        } else {
                            // Boxed: the handler's futures (token checks,
                            // queries) take room only while they run, not
                            // in every idle socket's task.
                            Box::pin(self.on_message(text.as_str(), &mut batch)).await
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        if bytes.len() > max_bytes {
                            Step::Close(4400, "Message too large".into())
                        } else {
                            match std::str::from_utf8(&bytes) {
                                Ok(text) => Box::pin(self.on_message(text, &mut batch)).await,
                                Err(_) => Step::Close(4400, "Invalid message received".into()),
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => Step::Continue,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "WebSocket read failed");
                        Step::Close(4400, "Invalid message received".into())
                    }
                },
                frame = self.rx.recv() => {
                    if let Some(frame) = frame {
                        self.render(frame, &mut batch);
                        while batch.len() < BATCH {
                            match self.rx.try_recv() {
                                Ok(frame) => self.render(frame, &mut batch),
                                Err(_) => break,
                            }
                        }
                    }
                    Step::Continue
                }
                () = tokio::time::sleep_until(init_deadline), if !self.acked => {
                    Step::Close(4408, "Connection initialisation timeout".into())
                }
                () = tokio::time::sleep_until(keepalive), if self.acked => {
                    keepalive = tokio::time::Instant::now() + keepalive_every;
                    batch.push(text(match self.protocol {
                        Protocol::Transport => r#"{"type":"ping"}"#,
                        Protocol::Legacy => r#"{"type":"ka"}"#,
                    }));
                    Step::Continue
                }
                () = tokio::time::sleep_until(check), if self.token.is_some() => {
                    check = tokio::time::Instant::now() + check_every;
                    Box::pin(self.recheck()).await
                }
            };
            if !batch.is_empty() {
                let written = tokio::time::timeout(send_timeout, async {
                    for message in batch.drain(..) {
                        socket.feed(message).await?;
                    }
                    socket.flush().await
                })
                .await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        tracing::info!("dropping a WebSocket client too slow to read");
                        return;
                    }
                }
            }
            if let Step::Close(code, reason) = step {
                break (code, reason);
            }
        };
        // Nothing started on this socket runs on once it closes.
        self.ops.clear();
        let (code, reason) = step;
        let _ = tokio::time::timeout(
            send_timeout,
            socket.send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))),
        )
        .await;
    }

    /// Renders a queued frame (unless its operation has ended).
    fn render(&mut self, frame: Out, batch: &mut Vec<Message>) {
        match frame {
            Out::Next(tag, payload) => {
                if self.out.queued.fetch_sub(1, Ordering::Relaxed) >= self.out.limit {
                    self.out.drained.notify_waiters();
                }
                if self
                    .ops
                    .get(&tag.id)
                    .is_some_and(|op| op.serial == tag.serial)
                {
                    let kind = match self.protocol {
                        Protocol::Transport => "next",
                        Protocol::Legacy => "data",
                    };
                    batch.push(text(&format!(
                        r#"{{"id":{},"type":"{kind}","payload":{payload}}}"#,
                        tag.id_json
                    )));
                }
            }
            Out::Done(tag) => {
                if self
                    .ops
                    .get(&tag.id)
                    .is_some_and(|op| op.serial == tag.serial)
                {
                    self.ops.remove(&tag.id);
                    batch.push(complete(&tag.id_json));
                }
            }
        }
    }

    /// Re-checks the socket's token like an HTTP request's.
    async fn recheck(&mut self) -> Step {
        let Some(token) = &self.token else {
            return Step::Continue;
        };
        match self.svc.auth.verify(token).await {
            Ok(_) => Step::Continue,
            Err(AuthFailure::Invalid(reason)) => {
                tracing::debug!(%reason, "closing a WebSocket whose token is no longer valid");
                Step::Close(4403, TOKEN_ENDED.into())
            }
            // An outage is not a revocation: checked again next time.
            Err(AuthFailure::Storage(e)) => {
                tracing::warn!(error = %e, "cannot re-check a WebSocket token");
                Step::Continue
            }
        }
    }

    async fn on_message(&mut self, raw: &str, batch: &mut Vec<Message>) -> Step {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(raw) else {
            return Step::Close(4400, "Invalid message received".into());
        };
        let kind = message.get("type").and_then(|t| t.as_str()).unwrap_or("");
        match (self.protocol, kind) {
            (_, "connection_init") => self.on_init(message.get("payload"), batch).await,
            (Protocol::Transport, "ping") => {
                batch.push(text(r#"{"type":"pong"}"#));
                Step::Continue
            }
            (Protocol::Transport, "pong") => Step::Continue,
            (Protocol::Transport, "subscribe") | (Protocol::Legacy, "start") => {
                self.on_subscribe(&message, batch).await
            }
            (Protocol::Transport, "complete") | (Protocol::Legacy, "stop") => {
                let Some(id) = message.get("id").and_then(|i| i.as_str()) else {
                    return Step::Close(4400, "Invalid message received".into());
                };
                if self.ops.remove(id).is_some() && self.protocol == Protocol::Legacy {
                    batch.push(complete(&json_string(id)));
                }
                Step::Continue
            }
            (Protocol::Legacy, "connection_terminate") => Step::Close(1000, "Normal".into()),
            _ => Step::Close(4400, "Invalid message received".into()),
        }
    }

    async fn on_init(
        &mut self,
        payload: Option<&serde_json::Value>,
        batch: &mut Vec<Message>,
    ) -> Step {
        if self.acked {
            return Step::Close(4429, "Too many initialisation requests".into());
        }
        let refuse = |this: &Self, batch: &mut Vec<Message>, code: u16, reason: &str| {
            if this.protocol == Protocol::Legacy {
                batch.push(text(
                    &serde_json::json!({ "type": "connection_error", "payload": { "message": reason } })
                        .to_string(),
                ));
            }
            Step::Close(code, reason.to_owned())
        };
        let header = match credentials(payload) {
            Credentials::None if self.svc.public_read => None,
            Credentials::None | Credentials::Ambiguous => {
                return refuse(self, batch, 4403, FORBIDDEN);
            }
            Credentials::Token(t) => Some(t),
        };
        let principal = match self.svc.auth.authenticate(header.as_deref()).await {
            Ok(p) => p,
            Err(AuthFailure::Invalid(_)) => return refuse(self, batch, 4403, FORBIDDEN),
            Err(AuthFailure::Storage(e)) => {
                tracing::warn!(error = %e, "cannot check a WebSocket token");
                return refuse(
                    self,
                    batch,
                    1013,
                    "The database is unavailable; retry shortly",
                );
            }
        };
        let slot = match (&principal, self.client) {
            (Some(p), _) => self.svc.events.open_connection(&p.token_id),
            (None, Some(ClientAddr(ip))) => self.svc.events.open_anonymous_connection(ip),
            (None, None) => self
                .svc
                .events
                .open_anonymous_connection(std::net::Ipv4Addr::UNSPECIFIED.into()),
        };
        match slot {
            Some(slot) => self._slot = Some(slot),
            None => return refuse(self, batch, 4429, TOO_MANY),
        }
        self.token = header
            .as_deref()
            .and_then(|h| cityhub_auth::bearer(h).ok())
            .map(str::to_owned);
        self.principal = principal;
        self.acked = true;
        batch.push(text(r#"{"type":"connection_ack"}"#));
        Step::Continue
    }

    async fn on_subscribe(
        &mut self,
        message: &serde_json::Value,
        batch: &mut Vec<Message>,
    ) -> Step {
        if !self.acked {
            return Step::Close(4401, "Unauthorized".into());
        }
        let (Some(id), Some(payload)) = (
            message.get("id").and_then(|i| i.as_str()),
            message.get("payload").and_then(|p| p.as_object()),
        ) else {
            return Step::Close(4400, "Invalid message received".into());
        };
        let Some(query) = payload.get("query").and_then(|q| q.as_str()) else {
            return Step::Close(4400, "Invalid message received".into());
        };
        if self.ops.contains_key(id) {
            return Step::Close(4409, format!("Subscriber for {id} already exists"));
        }
        let operation = match payload.get("operationName") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            None | Some(serde_json::Value::Null) => None,
            Some(_) => return Step::Close(4400, "Invalid message received".into()),
        };
        let variables = match payload.get("variables") {
            Some(v @ serde_json::Value::Object(_)) => v.clone(),
            None | Some(serde_json::Value::Null) => serde_json::json!({}),
            Some(_) => return Step::Close(4400, "Invalid message received".into()),
        };
        // Nothing runs for a token that stopped being valid.
        if let Some(token) = &self.token {
            match self.svc.auth.verify(token).await {
                Ok(_) => {}
                Err(AuthFailure::Invalid(_)) => return Step::Close(4403, TOKEN_ENDED.into()),
                Err(AuthFailure::Storage(e)) => {
                    tracing::warn!(error = %e, "cannot re-check a WebSocket token");
                }
            }
        }
        self.serial += 1;
        let tag = Arc::new(OpTag {
            id: id.to_owned(),
            id_json: json_string(id),
            serial: self.serial,
        });
        let shape = Shape::of(
            query,
            operation.as_deref(),
            &variables,
            self.svc.guard.limits().max_tokens,
        );
        let settings = self.svc.events.settings().clone();
        if shape.subscription {
            let active = self
                .ops
                .values()
                .filter(|o| o.kind == OpKind::Subscription)
                .count();
            if active >= settings.max_subscriptions_per_connection {
                let message = format!(
                    "at most {} subscriptions per connection",
                    settings.max_subscriptions_per_connection
                );
                self.refuse_op(&tag, OpKind::Subscription, Code::RateLimited, &message);
                return Step::Continue;
            }
        } else {
            let running = self
                .ops
                .values()
                .filter(|o| o.kind == OpKind::Single)
                .count();
            if running >= settings.max_operations_in_flight {
                let message = format!(
                    "at most {} operations may run at once on one connection",
                    settings.max_operations_in_flight
                );
                self.refuse_op(&tag, OpKind::Single, Code::RateLimited, &message);
                return Step::Continue;
            }
        }
        let mut request = async_graphql::Request::new(query)
            .variables(Variables::from_json(variables.clone()))
            .data(RequestCtx {
                principal: self.principal.clone(),
            });
        if let Some(client) = self.client {
            request = request.data(client);
        }
        let request = match operation.clone() {
            Some(name) => request.operation_name(name),
            None => request,
        };
        if shape.subscription {
            let head = match self.svc.events.head().await {
                Ok(h) => h,
                Err(e) => {
                    let err = crate::error::storage(e);
                    let payload = response_payload(
                        Response::from_errors(vec![
                            err.into_server_error(async_graphql::Pos::default()),
                        ]),
                        self.out.request_id.as_deref(),
                    );
                    self.refuse_payload(&tag, OpKind::Subscription, payload);
                    return Step::Continue;
                }
            };
            let counted = self.svc.events.track_subscriber();
            let running = if shape.shareable {
                let key = GroupKey {
                    query: query.to_owned(),
                    operation,
                    variables: variables.to_string(),
                    visibility: Visibility::of(self.principal.as_ref()),
                };
                self.join_group(key, request, &tag, head)
            } else {
                self.own_stream(request, &tag, head)
            };
            self.ops.insert(
                id.to_owned(),
                Op {
                    serial: tag.serial,
                    kind: OpKind::Subscription,
                    _running: Some(running),
                    _counted: Some(counted),
                },
            );
        } else {
            let schema = self.svc.schema.clone();
            let out = self.out.clone();
            let request = request.data(Loaders::new(&self.svc.db));
            let op_tag = tag.clone();
            let handle = tokio::spawn(async move {
                let response = execute(&schema, request).await;
                let payload = response_payload(response, out.request_id.as_deref());
                out.finish(&op_tag, Some(payload));
            });
            self.ops.insert(
                id.to_owned(),
                Op {
                    serial: tag.serial,
                    kind: OpKind::Single,
                    _running: Some(Running::Task(handle.abort_handle())),
                    _counted: None,
                },
            );
        }
        let _ = batch;
        Step::Continue
    }

    /// Answers an operation with one error and completes it.
    fn refuse_op(&mut self, tag: &Arc<OpTag>, kind: OpKind, code: Code, message: &str) {
        let payload = error_payload(code, message, self.out.request_id.as_deref());
        self.refuse_payload(tag, kind, payload);
    }

    fn refuse_payload(&mut self, tag: &Arc<OpTag>, kind: OpKind, payload: Arc<str>) {
        self.ops.insert(
            tag.id.clone(),
            Op {
                serial: tag.serial,
                kind,
                _running: None,
                _counted: None,
            },
        );
        self.out.finish(tag, Some(payload));
    }

    /// Joins (or starts) the group of identical subscriptions.
    fn join_group(
        &self,
        key: GroupKey,
        request: async_graphql::Request,
        tag: &Arc<OpTag>,
        head: i64,
    ) -> Running {
        let groups = self.svc.events.shared::<Groups>();
        let member_key = groups.next_member.fetch_add(1, Ordering::Relaxed);
        let member = Member {
            key: member_key,
            out: self.out.clone(),
            tag: tag.clone(),
            floor: head,
        };
        let mut map = lock(&groups.map);
        if let Some(group) = map.get(&key).cloned() {
            match groups.join(&group, member, head) {
                Ok(()) => {
                    drop(map);
                    return Running::Member {
                        groups,
                        key,
                        member: member_key,
                    };
                }
                Err(_) => {
                    drop(map);
                    // The group ran ahead of this client's start: a stream
                    // of its own replays the gap from the log.
                    return self.own_stream(request, tag, head);
                }
            }
        }
        let tap = Arc::new(StreamTap::default());
        let group = Arc::new(Group {
            key: key.clone(),
            tap: tap.clone(),
            inner: Mutex::new(GroupInner {
                members: vec![member],
                ring: VecDeque::new(),
                covers_from: head,
                closed: false,
            }),
            task: Mutex::new(None),
        });
        let loaders = Loaders::new(&self.svc.db);
        loaders.cities.enable_all_cache(false);
        loaders.participants.enable_all_cache(false);
        loaders.documents.enable_all_cache(false);
        let request = request.data(loaders).data(StartAt(head)).data(tap);
        let stream = self.svc.schema.execute_stream(request);
        let handle = tokio::spawn(run_group(groups.clone(), group.clone(), stream));
        *lock(&group.task) = Some(handle.abort_handle());
        map.insert(key.clone(), group);
        drop(map);
        Running::Member {
            groups,
            key,
            member: member_key,
        }
    }

    /// A subscription with a stream of its own (it replays from `after`).
    fn own_stream(&self, request: async_graphql::Request, tag: &Arc<OpTag>, head: i64) -> Running {
        let loaders = Loaders::new(&self.svc.db);
        loaders.cities.enable_all_cache(false);
        loaders.participants.enable_all_cache(false);
        loaders.documents.enable_all_cache(false);
        let tap = Arc::new(StreamTap::default());
        let request = request.data(loaders).data(StartAt(head)).data(tap.clone());
        let mut stream = self.svc.schema.execute_stream(request);
        let out = self.out.clone();
        let tag = tag.clone();
        let handle = tokio::spawn(async move {
            while let Some(response) = stream.next().await {
                let payload = response_payload(response, out.request_id.as_deref());
                if tap.yielded.load(Ordering::SeqCst) == i64::MAX {
                    out.finish(&tag, Some(payload));
                    return;
                }
                // A stream of its own falls behind only on the bus (its
                // resolver then ends it with RATE_LIMITED).
                if !out.next_wait(&tag, &payload).await {
                    return;
                }
            }
            out.finish(&tag, None);
        });
        Running::Task(handle.abort_handle())
    }
}

/// Runs a query or mutation through the schema (the limits and cost rules
/// of HTTP apply); errors raised before execution get their code.
async fn execute(schema: &HubSchema, request: async_graphql::Request) -> Response {
    let mut response = schema.execute(request).await;
    crate::error::assign_missing_codes(&mut response);
    response
}

/// A serialized response whose errors carry `requestId: id`.
fn stamped(payload: &Arc<str>, id: &str) -> Arc<str> {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(payload) else {
        return payload.clone();
    };
    if let Some(errors) = value.get_mut("errors").and_then(|e| e.as_array_mut()) {
        for error in errors {
            if let Some(error) = error.as_object_mut() {
                let extensions = error
                    .entry("extensions")
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let Some(extensions) = extensions.as_object_mut() {
                    extensions.insert("requestId".into(), id.into());
                }
            }
        }
    }
    value.to_string().into()
}

/// A response as a payload, its errors stamped with the id of the request
/// that opened the socket.
fn response_payload(mut response: Response, request_id: Option<&str>) -> Arc<str> {
    if let Some(id) = request_id {
        for error in &mut response.errors {
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("requestId", id);
        }
    }
    match serde_json::to_string(&response) {
        Ok(s) => s.into(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a response");
            error_payload(Code::InternalServerError, "internal error", request_id)
        }
    }
}

fn text(s: &str) -> Message {
    Message::Text(s.to_owned().into())
}

fn complete(id_json: &str) -> Message {
    Message::Text(format!(r#"{{"id":{id_json},"type":"complete"}}"#).into())
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// What a document would run.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    /// A subscription operation.
    subscription: bool,
    /// It can share a group: no root field replays from `after`.
    shareable: bool,
}

impl Shape {
    /// The shape of `query`; a document past `max_tokens` is not parsed
    /// here (the schema's guard then refuses it).
    fn of(
        query: &str,
        operation: Option<&str>,
        variables: &serde_json::Value,
        max_tokens: usize,
    ) -> Self {
        let none = Shape {
            subscription: false,
            shareable: false,
        };
        if crate::document::count_tokens(query, max_tokens).is_err() {
            return none;
        }
        let Ok(doc) = async_graphql::parser::parse_query(query) else {
            return none;
        };
        let op = match (&doc.operations, operation) {
            (DocumentOperations::Single(op), _) => op,
            (DocumentOperations::Multiple(ops), Some(name)) => match ops.get(name) {
                Some(op) => op,
                None => return none,
            },
            (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
                match ops.values().next() {
                    Some(op) => op,
                    None => return none,
                }
            }
            _ => return none,
        };
        if op.node.ty != OperationType::Subscription {
            return none;
        }
        let defaults: HashMap<&str, Value> = op
            .node
            .variable_definitions
            .iter()
            .filter_map(|d| {
                d.node
                    .default_value
                    .as_ref()
                    .map(|v| (d.node.name.node.as_str(), v.node.clone()))
            })
            .collect();
        let shareable = op.node.selection_set.node.items.iter().all(|item| {
            let Selection::Field(field) = &item.node else {
                return false;
            };
            field.node.arguments.iter().all(|(name, value)| {
                if name.node.as_str() != "after" {
                    return true;
                }
                let resolved = value.node.clone().into_const_with(|var| {
                    Ok::<_, ()>(match variables.get(var.as_str()).filter(|v| !v.is_null()) {
                        Some(v) => Value::from_json(v.clone()).unwrap_or(Value::Null),
                        None => defaults.get(var.as_str()).cloned().unwrap_or(Value::Null),
                    })
                });
                matches!(resolved, Ok(Value::Null))
            })
        });
        Shape {
            subscription: true,
            shareable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Credentials, Shape, credentials};
    use serde_json::json;

    #[test]
    fn finds_the_token_in_either_form() {
        assert_eq!(
            credentials(Some(&json!({"Authorization": "Bearer a"}))),
            Credentials::Token("Bearer a".into())
        );
        assert_eq!(
            credentials(Some(&json!({"headers": {"authorization": "Bearer b"}}))),
            Credentials::Token("Bearer b".into())
        );
        assert_eq!(credentials(Some(&json!({}))), Credentials::None);
        assert_eq!(credentials(Some(&json!(null))), Credentials::None);
        assert_eq!(credentials(None), Credentials::None);
    }

    #[test]
    fn ambiguous_credentials_are_refused() {
        for payload in [
            json!({"Authorization": 1, "authorization": "Bearer x"}),
            json!({"authorization": "Bearer a", "headers": {"Authorization": "Bearer b"}}),
            json!({"authorization": 1}),
            json!({"authorization": {"token": "x"}}),
            json!({"authorization": null}),
            json!({"headers": "x"}),
            json!("Bearer x"),
        ] {
            assert_eq!(
                credentials(Some(&payload)),
                Credentials::Ambiguous,
                "{payload}"
            );
        }
    }

    #[test]
    fn only_live_subscriptions_share() {
        let q = "subscription($a: String) { activityEvents(after: $a) { cursor } }";
        assert_eq!(
            Shape::of(q, None, &json!({}), 1_000),
            Shape {
                subscription: true,
                shareable: true
            }
        );
        assert!(!Shape::of(q, None, &json!({"a": "x"}), 1_000).shareable);
        assert!(
            !Shape::of(
                r#"subscription { activityEvents(after: "x") { cursor } }"#,
                None,
                &json!({}),
                1_000
            )
            .shareable
        );
        assert!(
            Shape::of(
                "subscription { activityEvents { cursor } }",
                None,
                &json!({}),
                1_000
            )
            .shareable
        );
        assert!(!Shape::of("{ network { name } }", None, &json!({}), 1_000).subscription);
        assert!(!Shape::of("subscription {", None, &json!({}), 1_000).subscription);
    }
}
