//! GraphQL over WebSocket: `graphql-transport-ws` (the `graphql-ws`
//! library's protocol, PROTOCOL.md) and the legacy `graphql-ws`
//! (`subscriptions-transport-ws`), with our own protocol handler:
//!
//! - close codes of the protocol ([`protocol::CloseCode`]): 4400 invalid
//!   or oversized message, 4401 `subscribe` before `connection_ack`, 4403
//!   refused or ambiguous credentials (and a token that stopped being valid
//!   while the socket is open, re-checked every `events.token_check_secs`),
//!   4408 no `connection_init` within `events.init_timeout_secs`, 4409
//!   duplicate operation id, 4429 a second `connection_init` or too many
//!   connections for one token, 1013 the database is unavailable;
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
//!
//! Rooms: [`protocol`] (the messages both sub-protocols exchange, typed,
//! and the close codes), [`outbox`] (a socket's queue of frames),
//! [`groups`] (identical subscriptions sharing one stream), [`shape`] (what
//! a document would run), and [`connection`] (one socket's task).

mod connection;
mod groups;
mod outbox;
mod protocol;
mod shape;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};

pub use groups::Groups;

use crate::guard::ClientAddr;
use crate::service::GraphqlService;
use cityhub_app::http::{client_addr, peer_of};
use connection::Connection;
use protocol::Protocol;

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
    let protocol = match ws
        .selected_protocol()
        .and_then(|v| v.to_str().ok())
        .and_then(Protocol::of)
    {
        Some(protocol) => protocol,
        None => {
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
    // The instance's groups, from the router (`app::router` adds them).
    let groups = match parts.extensions.get::<Arc<Groups>>() {
        Some(groups) => groups.clone(),
        None => {
            tracing::warn!(
                "no shared subscription groups on this router: the socket streams alone"
            );
            Arc::default()
        }
    };
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
            let mut connection = Connection::new(svc, groups, protocol, request_id);
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
