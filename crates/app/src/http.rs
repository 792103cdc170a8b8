//! What every HTTP surface (GraphQL over HTTP and WebSocket, the web pages
//! and feeds) reads from a request and answers the same way: who is asking
//! (the `Authorization` header through the [`Authenticator`]), from which
//! address, and the error answers in the contract's shape, the 503 of an
//! unreachable database among them.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{AuthFailure, Authenticator, Principal};
use crate::code::Code;

/// A response carrying one error with a code, in the GraphQL shape.
pub fn error_response(status: StatusCode, code: Code, message: &str) -> Response {
    let body =
        json!({ "errors": [{ "message": message, "extensions": { "code": code.as_str() } }] });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Seconds a client is told to wait before retrying while the database is
/// unreachable.
pub const UNAVAILABLE_RETRY_AFTER: &str = "2";

/// `503 SERVICE_UNAVAILABLE` with `extensions.retryable` and `Retry-After`.
pub fn unavailable_response() -> Response {
    let body = json!({ "errors": [{
        "message": "the database is unavailable; retry shortly",
        "extensions": { "code": Code::ServiceUnavailable.as_str(), "retryable": true },
    }] });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER)],
        axum::Json(body),
    )
        .into_response()
}

/// Resolves the request's `Authorization` header.
pub async fn principal_of(
    auth: &Authenticator,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Response> {
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        // Two credentials: which one speaks is ambiguous, so neither does.
        return Err(error_response(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "more than one Authorization header",
        ));
    }
    let header = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) => Some(s),
            Err(_) => {
                return Err(error_response(
                    StatusCode::UNAUTHORIZED,
                    Code::Unauthenticated,
                    "invalid token",
                ));
            }
        },
    };
    match auth.authenticate(header).await {
        Ok(p) => Ok(p),
        Err(AuthFailure::Invalid(reason)) => {
            tracing::debug!(%reason, "token refused");
            Err(error_response(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "invalid token",
            ))
        }
        Err(AuthFailure::Storage(e)) => {
            tracing::warn!(error = %e, "cannot check a token: database unavailable");
            Err(unavailable_response())
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` hop that is not itself trusted.
pub fn client_addr(trusted: &[ipnet::IpNet], peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// The local address a request's connection was accepted on (the serve
/// loop adds it to every request's extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub std::net::SocketAddr);

/// The peer address of the connection a request came on, if known.
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}
