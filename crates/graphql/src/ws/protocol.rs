//! What both sub-protocols exchange: the client's messages, parsed into
//! types (anything else closes the socket with 4400), the close codes by
//! name, and the server's frames and payloads.

use std::sync::Arc;

use async_graphql::Response;
use axum::extract::ws::Message;
use serde::Deserialize;

use crate::error::Code;

/// The two sub-protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// `graphql-transport-ws`.
    Transport,
    /// Legacy `graphql-ws`.
    Legacy,
}

impl Protocol {
    /// The sub-protocol a `Sec-WebSocket-Protocol` value names.
    pub(super) fn of(name: &str) -> Option<Self> {
        match name {
            "graphql-transport-ws" => Some(Protocol::Transport),
            "graphql-ws" => Some(Protocol::Legacy),
            _ => None,
        }
    }

    /// The keep-alive frame the hub sends.
    pub(super) fn keepalive(self) -> Message {
        text(match self {
            Protocol::Transport => r#"{"type":"ping"}"#,
            Protocol::Legacy => r#"{"type":"ka"}"#,
        })
    }

    /// The `type` of a result frame.
    pub(super) fn result_type(self) -> &'static str {
        match self {
            Protocol::Transport => "next",
            Protocol::Legacy => "data",
        }
    }
}

/// Why the hub closes a socket: the codes of `graphql-transport-ws`
/// (PROTOCOL.md), used for both sub-protocols, and two of RFC 6455.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(super) enum CloseCode {
    /// The client ended the session (legacy `connection_terminate`).
    Normal = 1000,
    /// The database is unavailable: the client may retry shortly.
    TryAgainLater = 1013,
    /// A message that is not one of the protocol's, or too large.
    BadRequest = 4400,
    /// `subscribe` before `connection_ack`.
    Unauthorized = 4401,
    /// Refused or ambiguous credentials, or a token that stopped being
    /// valid.
    Forbidden = 4403,
    /// No `connection_init` in time.
    InitTimeout = 4408,
    /// An operation id already in use on the socket.
    DuplicateId = 4409,
    /// A second `connection_init`, or too many connections for a token.
    TooMany = 4429,
}

impl CloseCode {
    /// The code on the wire.
    pub(super) fn code(self) -> u16 {
        self as u16
    }
}

/// A client message, of either sub-protocol. Unknown fields are ignored,
/// as the protocols allow; a missing or mistyped field is an error.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ClientMessage {
    /// Both: opens the session, with the credentials in its payload.
    ConnectionInit {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    /// `graphql-transport-ws`: answered with `pong`.
    Ping {},
    /// `graphql-transport-ws`: the answer to the hub's `ping`.
    Pong {},
    /// `graphql-transport-ws`: starts an operation.
    Subscribe { id: String, payload: Operation },
    /// Legacy: starts an operation.
    Start { id: String, payload: Operation },
    /// `graphql-transport-ws`: stops an operation.
    Complete { id: String },
    /// Legacy: stops an operation.
    Stop { id: String },
    /// Legacy: ends the session.
    ConnectionTerminate {},
}

impl ClientMessage {
    /// Parses a text frame; `None` for anything that is not a message of
    /// the protocol.
    pub(super) fn parse(raw: &str) -> Option<Self> {
        serde_json::from_str(raw).ok()
    }
}

/// The operation a `subscribe` (legacy `start`) carries.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Operation {
    /// The document.
    pub(super) query: String,
    /// Which of its operations runs (null: the only one).
    #[serde(default)]
    pub(super) operation_name: Option<String>,
    /// The variables (null: none).
    #[serde(default)]
    pub(super) variables: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Why `connection_init` was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Credentials {
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
pub(super) fn credentials(payload: Option<&serde_json::Value>) -> Credentials {
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

/// A `{"errors":[…]}` payload with one coded error (and the id of the
/// request that opened the socket, as over HTTP).
pub(super) fn error_payload(code: Code, message: &str, request_id: Option<&str>) -> Arc<str> {
    let mut extensions = serde_json::json!({ "code": code.as_str() });
    if let Some(id) = request_id {
        extensions["requestId"] = id.into();
    }
    serde_json::json!({ "errors": [{ "message": message, "extensions": extensions }] })
        .to_string()
        .into()
}

/// A serialized response whose errors carry `requestId: id`.
pub(super) fn stamped(payload: &Arc<str>, id: &str) -> Arc<str> {
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
pub(super) fn response_payload(mut response: Response, request_id: Option<&str>) -> Arc<str> {
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

pub(super) fn text(s: &str) -> Message {
    Message::Text(s.to_owned().into())
}

pub(super) fn complete(id_json: &str) -> Message {
    Message::Text(format!(r#"{{"id":{id_json},"type":"complete"}}"#).into())
}

pub(super) fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::{ClientMessage, CloseCode, Credentials, credentials};
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
    fn messages_are_typed_and_anything_else_is_refused() {
        assert!(matches!(
            ClientMessage::parse(r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","variables":null,"extensions":{}}}"#),
            Some(ClientMessage::Subscribe { id, payload }) if id == "1" && payload.query == "{ a }" && payload.variables.is_none()
        ));
        assert!(matches!(
            ClientMessage::parse(r#"{"type":"connection_init"}"#),
            Some(ClientMessage::ConnectionInit { payload: None })
        ));
        assert!(matches!(
            ClientMessage::parse(r#"{"type":"ping","payload":{"x":1}}"#),
            Some(ClientMessage::Ping {})
        ));
        for bad in [
            r#"{"type":"subscribe","id":1,"payload":{"query":"{ a }"}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","operationName":3}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","variables":[1]}}"#,
            r#"{"type":"subscribe","id":"1","payload":"{ a }"}"#,
            r#"{"type":"complete"}"#,
            r#"{"type":"nope"}"#,
            r#"{"id":"1"}"#,
            "not json",
        ] {
            assert!(ClientMessage::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn close_codes_are_the_protocols() {
        assert_eq!(CloseCode::BadRequest.code(), 4400);
        assert_eq!(CloseCode::Unauthorized.code(), 4401);
        assert_eq!(CloseCode::Forbidden.code(), 4403);
        assert_eq!(CloseCode::InitTimeout.code(), 4408);
        assert_eq!(CloseCode::DuplicateId.code(), 4409);
        assert_eq!(CloseCode::TooMany.code(), 4429);
        assert_eq!(CloseCode::TryAgainLater.code(), 1013);
        assert_eq!(CloseCode::Normal.code(), 1000);
    }
}
