//! Error answers given before or instead of execution, in the GraphQL
//! response shape, shared by the HTTP handlers and persisted queries.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Code;

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
pub(crate) const UNAVAILABLE_RETRY_AFTER: &str = "2";

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
