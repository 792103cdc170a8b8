//! A raw-frame GraphQL-over-WebSocket client, for the tests a client
//! library cannot serve: a conforming client (see `ws`) never sends a
//! malformed, early or duplicate message, does not show close codes or
//! keep-alives, reads ahead of a caller that stops reading, and drops what
//! arrives for an operation it stopped; and the legacy `graphql-ws`
//! protocol has no well-kept Rust client. This one writes each frame as
//! the test says and reports every one it reads.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::TestHub;
use crate::ws::{EVENTS, Event, WAIT, init_payload, open_socket};

/// The two GraphQL-over-WebSocket sub-protocols the hub speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (the `graphql-ws` library's protocol).
    TransportWs,
    /// The legacy `graphql-ws` (Apollo's `subscriptions-transport-ws`).
    LegacyWs,
}

impl Protocol {
    fn header(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }

    fn subscribe(self) -> &'static str {
        match self {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        }
    }

    fn stop(self) -> &'static str {
        match self {
            Protocol::TransportWs => "complete",
            Protocol::LegacyWs => "stop",
        }
    }
}

/// A server message, once protocol chatter (pings, keep-alives) is handled.
#[derive(Debug, Clone)]
pub enum Incoming {
    Ack,
    /// `next` (or legacy `data`): one execution result.
    Next {
        id: String,
        payload: Value,
    },
    /// `error` (graphql-transport-ws): the operation failed before running.
    Error {
        id: String,
        payload: Value,
    },
    Complete {
        id: String,
    },
    /// Legacy `connection_error`.
    ConnectionError(Value),
    /// The socket closed (close frame, end of stream or transport error).
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

impl Incoming {
    pub fn id(&self) -> Option<&str> {
        match self {
            Incoming::Next { id, .. } | Incoming::Error { id, .. } | Incoming::Complete { id } => {
                Some(id)
            }
            _ => None,
        }
    }
}

/// A minimal GraphQL-over-WebSocket client speaking either protocol, one
/// frame at a time.
pub struct RawClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: Protocol,
    /// Messages read while waiting for another operation's.
    pub pending: VecDeque<Incoming>,
    /// Server pings (graphql-transport-ws) or keep-alives (legacy) seen.
    keepalives: usize,
    /// Server pongs seen (answers to our pings).
    pongs: usize,
    /// Round trips made by [`RawClient::synced`].
    syncs: usize,
}

impl RawClient {
    /// Opens the socket (no `connection_init` yet).
    pub async fn open(hub: &TestHub, protocol: Protocol) -> Self {
        Self {
            socket: open_socket(hub, protocol.header()).await,
            protocol,
            pending: VecDeque::new(),
            keepalives: 0,
            pongs: 0,
            syncs: 0,
        }
    }

    /// Sends `connection_init` (with `Bearer <token>` when given) and returns
    /// the server's answer: `Ack`, or how it refused.
    pub async fn init(&mut self, token: Option<&str>) -> Incoming {
        self.send(json!({ "type": "connection_init", "payload": init_payload(token) }))
            .await;
        self.recv().await
    }

    /// Opens, initializes and expects `connection_ack`.
    pub async fn connect(hub: &TestHub, protocol: Protocol, token: Option<&str>) -> Self {
        let mut client = Self::open(hub, protocol).await;
        match client.init(token).await {
            Incoming::Ack => client,
            other => panic!("expected connection_ack, got {other:?}"),
        }
    }

    /// Sends one message as it is.
    pub async fn send(&mut self, message: Value) {
        tokio::time::timeout(
            WAIT,
            self.socket.send(Message::Text(message.to_string().into())),
        )
        .await
        .expect("WebSocket send timed out")
        .expect("WebSocket send");
    }

    /// Starts `activityEvents` as operation `id`.
    pub async fn subscribe(&mut self, id: &str, filter: Value, after: Option<&str>) {
        self.subscribe_query(id, EVENTS, json!({ "filter": filter, "after": after }))
            .await;
    }

    /// Starts `query` as operation `id`.
    pub async fn subscribe_query(&mut self, id: &str, query: &str, variables: Value) {
        let kind = self.protocol.subscribe();
        self.send(json!({
            "id": id,
            "type": kind,
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    /// A round trip through the hub's task for this socket: it handles a
    /// socket's messages one after the other, so once it has answered this
    /// query every operation sent before is registered (a subscription
    /// counts as a subscriber and has read where it starts, so events
    /// committed from now on reach it) or refused, and every `stop` sent
    /// before has ended its operation. Other operations' messages read
    /// meanwhile are kept for later.
    pub async fn synced(&mut self) {
        self.syncs += 1;
        let id = format!("sync-{}", self.syncs);
        self.subscribe_query(&id, "{ __typename }", json!({})).await;
        loop {
            match self.recv_for(&id, WAIT).await {
                Some(Incoming::Next { .. }) => {}
                Some(Incoming::Complete { .. }) => return,
                other => panic!("no answer to the round trip {id}: {other:?}"),
            }
        }
    }

    /// Stops operation `id`.
    pub async fn stop(&mut self, id: &str) {
        let kind = self.protocol.stop();
        self.send(json!({ "id": id, "type": kind })).await;
    }

    /// The next server message within `limit`, answering pings on the way.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return None,
                Ok(frame) => frame,
            };
            let text = match frame {
                None => {
                    return Some(Incoming::Closed {
                        code: None,
                        reason: "end of stream".into(),
                    });
                }
                Some(Err(e)) => {
                    return Some(Incoming::Closed {
                        code: None,
                        reason: e.to_string(),
                    });
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Incoming::Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    });
                }
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
            };
            let message: Value = serde_json::from_str(text.as_str())
                .unwrap_or_else(|e| panic!("the hub sent invalid JSON ({e}): {text}"));
            let id = || message["id"].as_str().unwrap_or_default().to_owned();
            let incoming = match message["type"].as_str().unwrap_or_default() {
                "ping" => {
                    self.keepalives += 1;
                    self.send(json!({ "type": "pong" })).await;
                    continue;
                }
                "ka" => {
                    self.keepalives += 1;
                    continue;
                }
                "pong" => {
                    self.pongs += 1;
                    continue;
                }
                "connection_ack" => Incoming::Ack,
                "next" | "data" => Incoming::Next {
                    id: id(),
                    payload: message["payload"].clone(),
                },
                "error" => Incoming::Error {
                    id: id(),
                    payload: message["payload"].clone(),
                },
                "complete" => Incoming::Complete { id: id() },
                "connection_error" => Incoming::ConnectionError(message["payload"].clone()),
                other => panic!("unexpected message type {other}: {message}"),
            };
            return Some(incoming);
        }
    }

    /// Closes the socket as a client going away does.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.socket.close(None)).await;
    }

    /// Reads until `seen` grows, keeping other messages for later.
    async fn read_until(&mut self, seen: fn(&Self) -> usize, what: &str) {
        let before = seen(self);
        let deadline = Instant::now() + WAIT;
        while seen(self) == before {
            assert!(Instant::now() < deadline, "no {what} within 10 s");
            if let Some(message) = self.recv_within(Duration::from_millis(50)).await {
                assert!(
                    !matches!(message, Incoming::Closed { .. }),
                    "closed while waiting for a {what}: {message:?}"
                );
                self.pending.push_back(message);
            }
        }
    }

    /// Waits for the server's next keep-alive (answering a ping with pong).
    pub async fn keepalive(&mut self) {
        self.read_until(|c| c.keepalives, "keep-alive").await;
    }

    /// Waits for the server's next pong.
    pub async fn pong(&mut self) {
        self.read_until(|c| c.pongs, "pong").await;
    }

    /// The next server message, within [`WAIT`].
    pub async fn recv(&mut self) -> Incoming {
        self.recv_within(WAIT)
            .await
            .expect("no message from the hub within 10 s")
    }

    /// The next message for operation `id` (or about the whole connection),
    /// keeping other operations' messages for later.
    pub async fn recv_for(&mut self, id: &str, limit: Duration) -> Option<Incoming> {
        if let Some(i) = self.pending.iter().position(|m| m.id() == Some(id)) {
            return self.pending.remove(i);
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.recv_within(left).await?;
            match message.id() {
                Some(other) if other != id => self.pending.push_back(message),
                _ => return Some(message),
            }
        }
    }

    /// The next event of operation `id`, within [`WAIT`].
    pub async fn event(&mut self, id: &str) -> Event {
        match self.recv_for(id, WAIT).await {
            Some(Incoming::Next { payload, .. }) => Event::of_payload(&payload),
            Some(other) => panic!("expected an event for {id}, got {other:?}"),
            None => panic!("no event for {id} within 10 s"),
        }
    }

    /// Expects operation `id` to fail with `code`, then complete; returns
    /// the error.
    pub async fn error(&mut self, id: &str, code: &str) -> Value {
        let error = match self.recv_for(id, WAIT).await {
            Some(Incoming::Next { payload, .. }) => payload["errors"][0].clone(),
            Some(Incoming::Error { payload, .. }) => payload[0].clone(),
            other => panic!("expected an error for {id}, got {other:?}"),
        };
        assert_eq!(error["extensions"]["code"], code, "error for {id}: {error}");
        match self.recv_for(id, WAIT).await {
            Some(Incoming::Complete { .. }) => {}
            other => panic!("expected {id} to complete after its error, got {other:?}"),
        }
        error
    }

    /// Reads until the socket closes; returns the close code and reason.
    pub async fn closed_with(&mut self) -> (Option<u16>, String) {
        loop {
            match self.recv_within(WAIT).await {
                Some(Incoming::Closed { code, reason }) => return (code, reason),
                Some(_) => {}
                None => panic!("the socket stayed open"),
            }
        }
    }
}

/// Expects a refused `connection_init` on graphql-transport-ws: close code
/// 4403 with a reason.
pub fn expect_refused(answer: Incoming, context: &str) {
    match answer {
        Incoming::Closed {
            code: Some(4403),
            reason,
        } => assert!(!reason.is_empty(), "{context}: a reason is given"),
        other => panic!("{context}: expected a 4403 close, got {other:?}"),
    }
}
