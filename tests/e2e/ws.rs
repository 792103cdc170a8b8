//! The tests' GraphQL-over-WebSocket client, for consuming subscriptions as
//! an ordinary client does: `graphql-ws-client` speaking
//! `graphql-transport-ws` over a tokio-tungstenite socket opened at the
//! hub's `/graphql`, the token sent in `connection_init` as
//! `{"authorization": "Bearer <token>"}`. Tests that need to send what a
//! conforming client never sends, or to see close codes and keep-alives,
//! use `ws_raw` instead.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use graphql_ws_client::graphql::GraphqlOperation;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::TestHub;

/// The longest any single wait may take: a broken build fails, never hangs.
pub const WAIT: Duration = Duration::from_secs(10);

/// The `activityEvents` subscription most tests run, with the fields
/// clients rely on; its variables are `filter` and `after`.
pub const EVENTS: &str = "subscription Events($filter: ActivityFilter, $after: String) { \
  activityEvents(filter: $filter, after: $after) { \
    cursor type occurredAt activity { slug title } actor { slug } } }";

/// The sub-protocol graphql-ws-client speaks.
const SUB_PROTOCOL: &str = "graphql-transport-ws";

/// Results a subscription may hold before the client stops reading its
/// socket. graphql-ws-client reads one socket for all of a connection's
/// operations and waits while any one's buffer is full, so a test that
/// reads one subscription to its end before the next needs room for all of
/// them.
const BUFFER: usize = 4096;

/// Opens a WebSocket to the hub's endpoint with `Sec-WebSocket-Protocol`
/// set to `protocol`, and checks that the hub selected it.
pub async fn open_socket(
    hub: &TestHub,
    protocol: &'static str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    open_socket_at(&hub.ws_url(), protocol).await
}

/// [`open_socket`] at a WebSocket URL (a hub the test did not start in
/// process).
pub async fn open_socket_at(
    ws_url: &str,
    protocol: &'static str,
) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let mut request = ws_url.into_client_request().expect("ws request");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(protocol));
    let (socket, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("WebSocket handshake timed out")
        .expect("WebSocket handshake");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(protocol),
        "the hub selects the requested sub-protocol"
    );
    socket
}

/// The `connection_init` payload carrying `token`, as clients send it.
pub fn init_payload(token: Option<&str>) -> Value {
    match token {
        Some(t) => json!({ "authorization": format!("Bearer {t}") }),
        None => json!({}),
    }
}

/// One delivered `ActivityEvent` (the fields [`EVENTS`] selects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub cursor: String,
    pub kind: String,
    pub occurred_at: String,
    pub slug: String,
    pub title: String,
    pub actor: Option<String>,
}

impl Event {
    /// Reads an `activityEvents` result (`payload.data.activityEvents`).
    pub fn parse(value: &Value) -> Self {
        let text = |v: &Value| {
            v.as_str()
                .unwrap_or_else(|| panic!("expected a string in {value}"))
                .to_owned()
        };
        Self {
            cursor: text(&value["cursor"]),
            kind: text(&value["type"]),
            occurred_at: text(&value["occurredAt"]),
            slug: text(&value["activity"]["slug"]),
            title: text(&value["activity"]["title"]),
            actor: value["actor"]["slug"].as_str().map(str::to_owned),
        }
    }

    /// The event of an execution result, which must carry no errors.
    pub fn of_payload(payload: &Value) -> Self {
        assert!(
            payload.get("errors").is_none(),
            "unexpected errors: {payload}"
        );
        Self::parse(&payload["data"]["activityEvents"])
    }
}

/// tokio-tungstenite's socket as graphql-ws-client's `Connection`. The
/// crate's own `tungstenite-0.26` feature cannot be used (in 0.12 and 0.13
/// it compiles against tungstenite 0.27), and its later features would
/// bring another tungstenite; its `Connection` trait is the documented way
/// to plug in a socket.
struct Socket(WebSocketStream<MaybeTlsStream<TcpStream>>);

impl graphql_ws_client::Connection for Socket {
    async fn receive(&mut self) -> Option<graphql_ws_client::Message> {
        use graphql_ws_client::Message as Frame;
        loop {
            return match self.0.next().await? {
                Ok(Message::Text(text)) => Some(Frame::Text(text.as_str().to_owned())),
                Ok(Message::Ping(_)) => Some(Frame::Ping),
                Ok(Message::Pong(_)) => Some(Frame::Pong),
                Ok(Message::Close(frame)) => Some(Frame::Close {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()),
                }),
                Ok(Message::Binary(_) | Message::Frame(_)) => continue,
                // The socket is gone: the client ends its operations.
                Err(_) => None,
            };
        }
    }

    async fn send(
        &mut self,
        message: graphql_ws_client::Message,
    ) -> Result<(), graphql_ws_client::Error> {
        use graphql_ws_client::Message as Frame;
        let frame = match message {
            Frame::Text(text) => Message::Text(text.into()),
            Frame::Close { code, reason } => Message::Close(code.map(|code| CloseFrame {
                code: code.into(),
                reason: reason.unwrap_or_default().into(),
            })),
            Frame::Ping => Message::Ping(Bytes::new()),
            Frame::Pong => Message::Pong(Bytes::new()),
        };
        self.0
            .send(frame)
            .await
            .map_err(|e| graphql_ws_client::Error::Send(e.to_string()))
    }
}

/// A GraphQL request (`subscribe`'s payload); results stay JSON.
#[derive(Debug, Serialize)]
pub struct Operation {
    query: String,
    variables: Value,
}

impl GraphqlOperation for Operation {
    type Response = Value;
    type Error = serde_json::Error;

    fn decode(&self, data: Value) -> Result<Value, serde_json::Error> {
        Ok(data)
    }
}

/// A connected, acknowledged graphql-ws-client; its connection actor runs
/// on a task of its own.
pub struct WsClient {
    client: graphql_ws_client::Client,
    actor: JoinHandle<()>,
}

impl WsClient {
    /// Opens a socket and initializes it with `token`; the hub must
    /// acknowledge.
    pub async fn connect(hub: &TestHub, token: Option<&str>) -> Self {
        Self::connect_at(&hub.ws_url(), token).await
    }

    /// [`WsClient::connect`] at a WebSocket URL.
    pub async fn connect_at(ws_url: &str, token: Option<&str>) -> Self {
        let socket = open_socket_at(ws_url, SUB_PROTOCOL).await;
        let builder = graphql_ws_client::Client::build(Socket(socket))
            .payload(init_payload(token))
            .expect("connection_init payload")
            .subscription_buffer_size(BUFFER);
        let (client, actor) = tokio::time::timeout(WAIT, builder.build())
            .await
            .expect("no connection_ack within 10 s")
            .expect("connection_ack");
        Self {
            client,
            actor: tokio::spawn(actor.into_future()),
        }
    }

    /// Starts `query` (a subscription, query or mutation) with `variables`.
    pub async fn subscribe(&self, query: &str, variables: Value) -> Subscription {
        let operation = Operation {
            query: query.to_owned(),
            variables,
        };
        let inner = tokio::time::timeout(WAIT, self.client.subscribe(operation))
            .await
            .expect("subscribe timed out")
            .expect("subscribe");
        Subscription { inner }
    }

    /// Starts [`EVENTS`] with `filter` and `after`.
    pub async fn events(&self, filter: Value, after: Option<&str>) -> Subscription {
        self.subscribe(EVENTS, json!({ "filter": filter, "after": after }))
            .await
    }

    /// A round trip through the hub's task for this socket, instead of a
    /// sleep: the client sends its operations in order on one socket, and
    /// the hub handles a socket's messages one after the other, so once it
    /// has answered this query every operation started before is registered
    /// (a subscription counts as a subscriber and has read where it starts,
    /// so events committed from now on reach it) or refused.
    pub async fn synced(&self) {
        let mut round_trip = self.subscribe("{ __typename }", json!({})).await;
        let answer = round_trip.payload().await;
        assert_eq!(answer["data"]["__typename"], "Query", "{answer}");
        round_trip.completed().await;
    }

    /// Closes the socket as a client going away does, and waits until the
    /// close frame is sent.
    pub async fn close(self) {
        self.client.close(1000, "done").await;
        tokio::time::timeout(WAIT, self.actor)
            .await
            .expect("the client did not close within 10 s")
            .expect("the connection actor");
    }
}

/// The results of one operation of a [`WsClient`].
pub struct Subscription {
    inner: graphql_ws_client::Subscription<Operation>,
}

impl Subscription {
    /// The next execution result within `limit`, `None` if there is none
    /// by then. An operation that completes instead fails the test.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Value> {
        match tokio::time::timeout(limit, self.inner.next()).await {
            Err(_) => None,
            Ok(Some(Ok(payload))) => Some(payload),
            Ok(Some(Err(e))) => panic!("the client failed: {e}"),
            Ok(None) => panic!("the operation completed (or its socket closed) early"),
        }
    }

    /// The next execution result, within [`WAIT`].
    pub async fn payload(&mut self) -> Value {
        self.next_within(WAIT)
            .await
            .expect("no result from the hub within 10 s")
    }

    /// Expects the operation to complete, within [`WAIT`].
    pub async fn completed(&mut self) {
        match tokio::time::timeout(WAIT, self.inner.next()).await {
            Ok(None) => {}
            Ok(Some(other)) => panic!("expected completion, got {other:?}"),
            Err(_) => panic!("the operation did not complete within 10 s"),
        }
    }

    /// The next event.
    pub async fn event(&mut self) -> Event {
        Event::of_payload(&self.payload().await)
    }

    /// The next `n` events.
    pub async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.event().await);
        }
        out
    }

    /// Events up to and including the one about `slug` of type `kind`.
    pub async fn events_until(&mut self, kind: &str, slug: &str) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            let event = self.event().await;
            let last = event.kind == kind && event.slug == slug;
            out.push(event);
            if last {
                return out;
            }
            assert!(out.len() < 1000, "runaway stream");
        }
    }

    /// Expects the operation to fail with `code`, then complete; returns
    /// the error.
    pub async fn error(&mut self, code: &str) -> Value {
        let payload = self.payload().await;
        let error = payload["errors"][0].clone();
        assert_eq!(error["extensions"]["code"], code, "{payload}");
        self.completed().await;
        error
    }
}
