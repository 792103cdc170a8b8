//! A request id on every request: the client's `x-request-id` when it is a
//! plain token, else a new UUID. It is sent back on every response, is a
//! field of the request's tracing span (so every log line of the request
//! names it), and is added to every error of a JSON error answer as
//! `extensions.requestId`, so a client can quote it and an operator find
//! the request's lines.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The header the id travels in, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-given id kept; a longer one is replaced.
const MAX_LEN: usize = 128;

/// The request's id, in the request's extensions for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client-given id is kept: 1 to [`MAX_LEN`] characters among
/// letters, digits and `-_.:`. Anything else (spaces, quotes, control
/// characters, very long values) would make log lines ambiguous and is
/// replaced by a new id.
pub fn is_acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The id of `request`: its `x-request-id` when acceptable, else a new one.
fn id_of(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_acceptable(id))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The middleware: sets the request's id (header and extension), runs the
/// request, then sends the id back and stamps it on JSON errors.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = id_of(&request);
    // Only ASCII letters, digits and `-_.:` (or a UUID): a valid value.
    let value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, value.clone());
    request.extensions_mut().insert(RequestId(id.clone()));
    let response = next.run(request).await;
    let mut response = stamp_errors(response, &id).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
}

/// The span every request's log lines are in, with its id.
pub fn span(request: &axum::http::Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let path = request.uri().path();
    // Spans are named by method and first path segment (`GET /graphql`,
    // `GET /activities`): bounded, unlike the paths themselves.
    let route = path.split('/').nth(1).unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %path,
        request_id = %id,
        otel.name = %format_args!("{} /{route}", request.method()),
        otel.kind = "server",
        http.response.status_code = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, request.headers());
    span
}

/// Records the status on the request's span (for traces) and logs the
/// answer at debug level, as the trace layer's default did.
pub fn record_status(
    response: &axum::http::Response<Body>,
    latency: std::time::Duration,
    span: &tracing::Span,
) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    // Where tower-http's own line was: `tower_http=debug` still shows it.
    tracing::debug!(
        target: "tower_http::trace::on_response",
        status,
        latency_ms = latency.as_millis() as u64,
        "finished processing request"
    );
}

/// Whether a response is JSON whose errors get the id.
fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let media = t.split(';').next().unwrap_or_default().trim();
            media == "application/json" || media == "application/graphql-response+json"
        })
}

/// Adds `extensions.requestId` to every error of a JSON answer carrying a
/// top-level `errors` list (GraphQL answers, and the web endpoints' errors
/// in the same shape). Other responses pass untouched, unread.
async fn stamp_errors(response: Response, id: &str) -> Response {
    if !is_json(&response)
        || response.status() == StatusCode::NOT_MODIFIED
        || response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a response body");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // Cheap test first: an answer without errors is not parsed.
    let has_errors = bytes.windows(8).any(|w| w == b"\"errors\"");
    let stamped = has_errors.then(|| with_request_id(&bytes, id)).flatten();
    let body = match stamped {
        Some(stamped) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(stamped)
        }
        None => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

/// `body` with `extensions.requestId` on each of its top-level errors;
/// `None` when it has none (or is not a JSON object).
fn with_request_id(body: &[u8], id: &str) -> Option<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = value.get_mut("errors")?.as_array_mut()?;
    if errors.is_empty() {
        return None;
    }
    for error in errors {
        let Some(error) = error.as_object_mut() else {
            continue;
        };
        let extensions = error
            .entry("extensions")
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(extensions) = extensions.as_object_mut() {
            extensions.insert("requestId".into(), id.into());
        }
    }
    serde_json::to_vec(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_kept_others_replaced() {
        assert!(is_acceptable("abc-123_x.y:z"));
        assert!(is_acceptable(&"a".repeat(128)));
        assert!(!is_acceptable(&"a".repeat(129)));
        assert!(!is_acceptable(""));
        assert!(!is_acceptable("a b"));
        assert!(!is_acceptable("a\"b"));
        assert!(!is_acceptable("é"));
    }

    #[test]
    fn every_error_gets_the_id_and_data_is_untouched() {
        let body = br#"{"data":{"x":"\"errors\""},"errors":[{"message":"a","extensions":{"code":"NOT_FOUND"}},{"message":"b"}]}"#;
        let stamped: serde_json::Value =
            serde_json::from_slice(&with_request_id(body, "r-1").expect("stamped")).expect("json");
        assert_eq!(stamped["errors"][0]["extensions"]["requestId"], "r-1");
        assert_eq!(stamped["errors"][0]["extensions"]["code"], "NOT_FOUND");
        assert_eq!(stamped["errors"][1]["extensions"]["requestId"], "r-1");
        assert_eq!(stamped["data"]["x"], "\"errors\"");
        assert!(with_request_id(br#"{"data":{"errors":1}}"#, "r").is_none());
        assert!(with_request_id(br#"{"errors":[]}"#, "r").is_none());
    }
}
