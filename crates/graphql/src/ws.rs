//! Subscriptions over WebSocket: `graphql-transport-ws` and the legacy
//! `graphql-ws`. The token comes from `connection_init`; a refused one
//! closes the socket with 4403 (not async-graphql's 1002, which clients
//! read as a protocol fault). Buffers are small and bounded; a client that
//! cannot keep up is dropped and resumes with its last cursor.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{WebSocket as GqlWebSocket, WebSocketProtocols, WsMessage};
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt, future};

use crate::auth::Principal;
use crate::http::GraphqlService;
use crate::loaders::Loaders;
use crate::state::RequestCtx;
use crate::subscription::WsConnection;

/// Close reason for a refused `connection_init`.
const FORBIDDEN: &str = "Forbidden";
/// Close reason when a token has too many connections.
const TOO_MANY: &str = "Too many connections for this token";

/// Reads the token from a `connection_init` payload: `authorization` at the
/// top level (any case), or inside `headers`.
fn token_from_payload(payload: &serde_json::Value) -> Option<String> {
    fn find(map: &serde_json::Map<String, serde_json::Value>) -> Option<&str> {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.as_str())
    }
    let object = payload.as_object()?;
    let value = find(object).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("headers"))
            .and_then(|(_, v)| v.as_object())
            .and_then(find)
    })?;
    Some(value.to_owned())
}

/// Upgrades `GET /graphql` to a subscription WebSocket.
pub async fn upgrade(svc: GraphqlService, parts: &mut Parts) -> Response {
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
    let ws = ws
        .protocols(["graphql-transport-ws", "graphql-ws"])
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(svc.settings.ws_max_write_buffer)
        .max_message_size(svc.settings.body_limit)
        .max_frame_size(svc.settings.body_limit);
    let protocol = ws
        .selected_protocol()
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<WebSocketProtocols>().ok());
    let Some(protocol) = protocol else {
        return (
            StatusCode::BAD_REQUEST,
            "use the graphql-transport-ws or graphql-ws sub-protocol",
        )
            .into_response();
    };
    ws.on_upgrade(move |socket| serve(svc, socket, protocol))
}

async fn serve(svc: GraphqlService, socket: WebSocket, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|m| future::ready(m.is_ok()))
        .filter_map(|m| {
            future::ready(match m {
                Ok(Message::Text(t)) => Some(axum::body::Bytes::from(t)),
                Ok(Message::Binary(b)) => Some(b),
                _ => None,
            })
        });
    let auth = svc.auth.clone();
    let events = svc.events.clone();
    let db = svc.db.clone();
    let public_read = svc.public_read;
    let messages = GqlWebSocket::new(svc.schema.clone(), input, protocol).on_connection_init(
        move |payload| async move {
            let token = token_from_payload(&payload);
            let principal: Option<Principal> = match &token {
                Some(header) => match auth.authenticate(Some(header)).await {
                    Ok(p) => p,
                    Err(_) => return Err(async_graphql::Error::new(FORBIDDEN)),
                },
                None if public_read => None,
                None => return Err(async_graphql::Error::new(FORBIDDEN)),
            };
            let slot = match &principal {
                Some(p) => Some(Arc::new(
                    events
                        .open_connection(&p.token_id)
                        .ok_or_else(|| async_graphql::Error::new(TOO_MANY))?,
                )),
                None => None,
            };
            let raw = token
                .as_deref()
                .and_then(|h| cityhub_auth::bearer(h).ok())
                .map(str::to_owned);
            let loaders = Loaders::new(&db);
            loaders.cities.enable_all_cache(false);
            loaders.participants.enable_all_cache(false);
            loaders.documents.enable_all_cache(false);
            let mut data = Data::default();
            data.insert(RequestCtx { principal });
            data.insert(WsConnection {
                token: raw,
                slot,
                ..WsConnection::default()
            });
            data.insert(loaders);
            Ok(data)
        },
    );
    let keepalive = match protocol {
        WebSocketProtocols::GraphQLWS => r#"{"type":"ping"}"#,
        WebSocketProtocols::SubscriptionsTransportWS => r#"{"type":"ka"}"#,
    };
    let mut ticker =
        tokio::time::interval(Duration::from_secs(svc.settings.ws_keepalive_secs.max(1)));
    ticker.tick().await;
    let send_timeout = Duration::from_secs(svc.settings.ws_send_timeout_secs.max(1));
    futures::pin_mut!(messages);
    loop {
        let outgoing = tokio::select! {
            next = messages.next() => match next {
                Some(WsMessage::Text(text)) => Message::Text(text.into()),
                Some(WsMessage::Close(code, reason)) => {
                    let code = match (code, reason.as_str()) {
                        (1002, FORBIDDEN) => 4403,
                        (1002, TOO_MANY) => 4429,
                        (code, _) => code,
                    };
                    let _ = tokio::time::timeout(send_timeout, sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() })))).await;
                    return;
                }
                None => {
                    let _ = tokio::time::timeout(send_timeout, sink.send(Message::Close(None))).await;
                    return;
                }
            },
            _ = ticker.tick() => Message::Text(keepalive.into()),
        };
        match tokio::time::timeout(send_timeout, sink.send(outgoing)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("dropping a WebSocket client too slow to read");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::token_from_payload;
    use serde_json::json;

    #[test]
    fn finds_the_token_in_either_form() {
        assert_eq!(
            token_from_payload(&json!({"Authorization": "Bearer a"})),
            Some("Bearer a".into())
        );
        assert_eq!(
            token_from_payload(&json!({"headers": {"authorization": "Bearer b"}})),
            Some("Bearer b".into())
        );
        assert_eq!(token_from_payload(&json!({})), None);
        assert_eq!(token_from_payload(&json!(null)), None);
    }
}
