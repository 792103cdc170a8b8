//! One socket's task: it reads client messages and writes queued frames
//! in batches (one flush per batch); queries and mutations run through the
//! same schema (limits, cost rules) as over HTTP, at most
//! `events.max_operations_in_flight` at once.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::{Response, Variables};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use cityhub_domain::ReadScope;
use cityhub_events::ConnectionGuard;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::error::Code;
use crate::guard::ClientAddr;
use crate::live::{StartAt, StreamTap};
use crate::loaders::Loaders;
use crate::schema::HubSchema;
use crate::service::GraphqlService;
use cityhub_app::auth::{AuthFailure, Principal, RequestCtx};

use super::groups::{Group, GroupInner, GroupKey, Groups, Member, lock, run_group};
use super::outbox::{OpTag, Out, Outbox};
use super::protocol::{
    ClientMessage, CloseCode, Credentials, Operation, Protocol, complete, credentials,
    error_payload, json_string, response_payload, text,
};
use super::shape::Shape;

/// Close reason for refused credentials.
const FORBIDDEN: &str = "Forbidden";
/// Close reason when a token has too many connections.
const TOO_MANY: &str = "Too many connections for this token or address";
/// Close reason when the socket's token stopped being valid.
const TOKEN_ENDED: &str = "Forbidden: the token expired or was revoked";
/// Close reason for anything that is not a message of the protocol.
const INVALID: &str = "Invalid message received";
/// Most frames written before one flush.
const BATCH: usize = 128;

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
pub(super) struct Connection {
    svc: GraphqlService,
    /// This instance's shared subscription streams.
    groups: Arc<Groups>,
    protocol: Protocol,
    /// `connection_init` accepted.
    acked: bool,
    principal: Option<Principal>,
    /// Where the socket comes from (for anonymous rate limits).
    pub(super) client: Option<ClientAddr>,
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
    Close(CloseCode, String),
}

impl Connection {
    pub(super) fn new(
        svc: GraphqlService,
        groups: Arc<Groups>,
        protocol: Protocol,
        request_id: Option<Arc<str>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = svc.events.settings().max_queued_messages.max(1);
        Self {
            svc,
            groups,
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

    pub(super) async fn serve(mut self, mut socket: WebSocket) {
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
                            Step::Close(CloseCode::BadRequest, "Message too large".into())
                        } else {
                            // Boxed: the handler's futures (token checks,
                            // queries) take room only while they run, not
                            // in every idle socket's task.
                            Box::pin(self.on_message(text.as_str(), &mut batch)).await
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        if bytes.len() > max_bytes {
                            Step::Close(CloseCode::BadRequest, "Message too large".into())
                        } else {
                            match std::str::from_utf8(&bytes) {
                                Ok(text) => Box::pin(self.on_message(text, &mut batch)).await,
                                Err(_) => Step::Close(CloseCode::BadRequest, INVALID.into()),
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => Step::Continue,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "WebSocket read failed");
                        Step::Close(CloseCode::BadRequest, INVALID.into())
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
                    Step::Close(CloseCode::InitTimeout, "Connection initialisation timeout".into())
                }
                () = tokio::time::sleep_until(keepalive), if self.acked => {
                    keepalive = tokio::time::Instant::now() + keepalive_every;
                    batch.push(self.protocol.keepalive());
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
                code: code.code(),
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
                    let kind = self.protocol.result_type();
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
                Step::Close(CloseCode::Forbidden, TOKEN_ENDED.into())
            }
            // An outage is not a revocation: checked again next time.
            Err(AuthFailure::Storage(e)) => {
                tracing::warn!(error = %e, "cannot re-check a WebSocket token");
                Step::Continue
            }
        }
    }

    async fn on_message(&mut self, raw: &str, batch: &mut Vec<Message>) -> Step {
        let Some(message) = ClientMessage::parse(raw) else {
            return Step::Close(CloseCode::BadRequest, INVALID.into());
        };
        match (self.protocol, message) {
            (_, ClientMessage::ConnectionInit { payload }) => {
                self.on_init(payload.as_ref(), batch).await
            }
            (Protocol::Transport, ClientMessage::Ping {}) => {
                batch.push(text(r#"{"type":"pong"}"#));
                Step::Continue
            }
            (Protocol::Transport, ClientMessage::Pong {}) => Step::Continue,
            (Protocol::Transport, ClientMessage::Subscribe { id, payload })
            | (Protocol::Legacy, ClientMessage::Start { id, payload }) => {
                self.on_subscribe(id, payload).await
            }
            (Protocol::Transport, ClientMessage::Complete { id })
            | (Protocol::Legacy, ClientMessage::Stop { id }) => {
                if self.ops.remove(&id).is_some() && self.protocol == Protocol::Legacy {
                    batch.push(complete(&json_string(&id)));
                }
                Step::Continue
            }
            (Protocol::Legacy, ClientMessage::ConnectionTerminate {}) => {
                Step::Close(CloseCode::Normal, "Normal".into())
            }
            // A message of the other sub-protocol.
            _ => Step::Close(CloseCode::BadRequest, INVALID.into()),
        }
    }

    async fn on_init(
        &mut self,
        payload: Option<&serde_json::Value>,
        batch: &mut Vec<Message>,
    ) -> Step {
        if self.acked {
            return Step::Close(
                CloseCode::TooMany,
                "Too many initialisation requests".into(),
            );
        }
        let refuse = |this: &Self, batch: &mut Vec<Message>, code: CloseCode, reason: &str| {
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
                return refuse(self, batch, CloseCode::Forbidden, FORBIDDEN);
            }
            Credentials::Token(t) => Some(t),
        };
        let principal = match self.svc.auth.authenticate(header.as_deref()).await {
            Ok(p) => p,
            Err(AuthFailure::Invalid(_)) => {
                return refuse(self, batch, CloseCode::Forbidden, FORBIDDEN);
            }
            Err(AuthFailure::Storage(e)) => {
                tracing::warn!(error = %e, "cannot check a WebSocket token");
                return refuse(
                    self,
                    batch,
                    CloseCode::TryAgainLater,
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
            None => return refuse(self, batch, CloseCode::TooMany, TOO_MANY),
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

    async fn on_subscribe(&mut self, id: String, payload: Operation) -> Step {
        if !self.acked {
            return Step::Close(CloseCode::Unauthorized, "Unauthorized".into());
        }
        if self.ops.contains_key(&id) {
            return Step::Close(
                CloseCode::DuplicateId,
                format!("Subscriber for {id} already exists"),
            );
        }
        let Operation {
            query,
            operation_name: operation,
            variables,
        } = payload;
        let variables = serde_json::Value::Object(variables.unwrap_or_default());
        let query = query.as_str();
        let id = id.as_str();
        // Nothing runs for a token that stopped being valid.
        if let Some(token) = &self.token {
            match self.svc.auth.verify(token).await {
                Ok(_) => {}
                Err(AuthFailure::Invalid(_)) => {
                    return Step::Close(CloseCode::Forbidden, TOKEN_ENDED.into());
                }
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
                    scope: self
                        .principal
                        .as_ref()
                        .map_or(ReadScope::Public, |p| ReadScope::for_actor(&p.actor)),
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
        let groups = self.groups.clone();
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
