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

/// Whether `If-None-Match` names `etag` (or `*`). Weak comparison, as RFC
/// 9110 asks for `If-None-Match`.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// An embedded page or asset of a surface (the dashboard, the publishing
/// desk), served under its own `csp`: revalidated each time (`no-cache`,
/// so a new hub's page and files arrive together), never sniffed, sent
/// with no referrer, never framed.
pub fn secured_static(
    content_type: &'static str,
    csp: &'static str,
    body: &'static str,
) -> Response {
    let mut response = axum::body::Body::from(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = "\"abc\"";
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, tag));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}")).expect("header"),
        );
        assert!(not_modified(&h, tag));
        assert!(!not_modified(&h, "\"other\""));
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"y\""));
        assert!(not_modified(&h, tag), "any of several headers");
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, tag));
    }
}
