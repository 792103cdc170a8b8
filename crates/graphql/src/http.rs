//! GraphQL over HTTP (GET and POST, per the GraphQL-over-HTTP spec),
//! GraphiQL with its own assets, and the SDL. Credentials are resolved here,
//! before execution: a token that fails verification is refused with
//! `UNAUTHENTICATED`, never served as anonymous.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ServerError, Value};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cityhub_domain::ReadScope;

pub use crate::service::{GraphqlService, HttpSettings};

use crate::error::Code;
use crate::guard::ClientAddr;
use crate::loaders::Loaders;
use crate::metrics::Outcome;
use cityhub_app::auth::{Principal, RequestCtx};
use cityhub_app::http::{
    UNAVAILABLE_RETRY_AFTER, client_addr, error_response, peer_of, principal_of,
};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(GRAPHQL_RESPONSE))
}

fn code_of(err: &ServerError) -> Option<&str> {
    match err.extensions.as_ref().and_then(|e| e.get("code")) {
        Some(Value::String(c)) => Some(c.as_str()),
        _ => None,
    }
}

fn is_request_error(err: &ServerError) -> bool {
    matches!(
        err.extensions.as_ref().and_then(|e| e.get("code")),
        Some(Value::String(c)) if c == Code::GraphqlParseFailed.as_str()
            || c == Code::GraphqlValidationFailed.as_str()
            || c == Code::QueryTooDeep.as_str()
            || c == Code::QueryTooComplex.as_str()
    )
}

fn scope_of(principal: Option<&Principal>) -> ReadScope {
    principal.map_or(ReadScope::Public, |p| ReadScope::for_actor(&p.actor))
}

fn method_not_allowed() -> Response {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::GraphqlValidationFailed,
        "mutations and subscriptions are not allowed over GET; use POST (or a WebSocket for subscriptions)",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

/// Adds `ETag` and `Cache-Control` to a `GET` answer.
fn http_cache_headers(response: &mut Response, tag: &str, cache_control: &str) {
    if let Ok(v) = HeaderValue::from_str(tag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(cache_control) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response.headers_mut().insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Accept"),
    );
}

/// [`execute_untraced`] inside a `graphql` span that names the operation
/// (`graphql.operation.name`, `graphql.operation.type`) once it is parsed.
async fn execute(
    svc: &GraphqlService,
    parts: &axum::http::request::Parts,
    request: async_graphql::Request,
) -> Response {
    use tracing::Instrument as _;
    // The request's id again: log lines written here name it in their
    // innermost span too.
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "graphql",
        request_id,
        otel.name = "graphql",
        graphql.operation.name = tracing::field::Empty,
        graphql.operation.type = tracing::field::Empty,
    );
    execute_untraced(svc, parts, request).instrument(span).await
}

/// Names the current `graphql` span after its operation.
fn record_operation(name: Option<&str>, kind: Option<OperationType>) {
    let kind = match kind {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => return,
    };
    // The exporter names the span from these (`query Name`): a span's name
    // cannot change once it started.
    let span = tracing::Span::current();
    span.record("graphql.operation.type", kind);
    if let Some(name) = name {
        span.record("graphql.operation.name", name);
    }
}

/// Runs a request and renders its response: persisted query resolution,
/// the parsed-document cache, then (for token-independent queries) the
/// response cache and, over `GET`, `ETag`/`If-None-Match`.
async fn execute_untraced(
    svc: &GraphqlService,
    parts: &axum::http::request::Parts,
    mut request: async_graphql::Request,
) -> Response {
    // GET (and HEAD, which axum routes to the GET handler) may only read,
    // and only its answers carry an ETag.
    let get = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let headers = &parts.headers;
    let principal = match principal_of(&svc.auth, headers).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let client = peer_of(&parts.extensions)
        .map(|peer| ClientAddr(client_addr(&svc.settings.trusted_proxies, peer, headers)));
    if let Err(response) =
        crate::persisted::resolve(svc, &mut request, principal.as_ref(), client).await
    {
        return response;
    }
    // A document past the token limit is not parsed here: the schema's
    // guard refuses it before its parser runs.
    let document = svc
        .cache
        .document(&request.query, svc.guard.limits().max_tokens)
        .ok()
        .flatten();
    let operation = request.operation_name.clone();
    let selected = document
        .as_deref()
        .and_then(|d| crate::document::selected_operation(d, operation.as_deref()));
    let kind = selected.map(|(_, op)| op.node.ty);
    // A document's only operation may be named without the request naming it.
    let named: Option<&str> = operation.as_deref().or(selected.and_then(|(n, _)| n));
    record_operation(named, kind);
    if get
        && matches!(
            kind,
            Some(OperationType::Mutation | OperationType::Subscription)
        )
    {
        return method_not_allowed();
    }
    let cacheable = document
        .as_deref()
        .is_some_and(|d| crate::cache::cacheable(d, operation.as_deref()));
    let settings = svc.cache.settings();
    let wants_version = cacheable && (get || settings.enabled);
    let version = if wants_version {
        svc.cache.responses().version(&svc.db).await
    } else {
        None
    };
    let key = match (version, &document) {
        (Some(_), Some(doc)) => Some(crate::cache::response_key(
            &request.query,
            doc,
            operation.as_deref(),
            &request.variables,
            scope_of(principal.as_ref()),
        )),
        _ => None,
    };
    let cache_control = if principal.is_some() {
        settings.cache_control_private.as_str()
    } else {
        settings.cache_control.as_str()
    };
    let content_type = if wants_graphql_response(headers) {
        GRAPHQL_RESPONSE
    } else {
        "application/json"
    };
    let tag = match (get, version, &key) {
        (true, Some(v), Some(k)) => Some(crate::cache::etag(v, k)),
        _ => None,
    };
    if let Some(tag) = &tag
        && cityhub_app::http::not_modified(headers, tag)
    {
        svc.cache.responses().count_not_modified();
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        http_cache_headers(&mut response, tag, cache_control);
        return response;
    }
    if let (Some(v), Some(k)) = (version, &key)
        && let Some(body) = svc.cache.responses().get(k, v)
    {
        svc.metrics
            .observe(named, kind, Outcome::Ok, Duration::ZERO);
        let mut response =
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response();
        if let Some(tag) = &tag {
            http_cache_headers(&mut response, tag, cache_control);
        }
        return response;
    }
    let started = Instant::now();
    let fast = match (&svc.fast, &document) {
        (Some(fast), Some(doc))
            if doc.validated()
                && crate::cache::operation_type(doc, operation.as_deref())
                    == Some(OperationType::Query) =>
        {
            Some((fast, doc))
        }
        _ => None,
    };
    let mut response = None;
    if let Some((schema, doc)) = fast {
        if let Err(refused) = svc.guard.admit(
            doc,
            &request.variables,
            operation.as_deref(),
            principal.as_ref(),
            client.as_ref(),
        ) {
            response = Some(async_graphql::Response::from_errors(vec![refused]));
        } else {
            let mut quick = async_graphql::Request::new(request.query.clone())
                .variables(request.variables.clone())
                .data(RequestCtx {
                    principal: principal.clone(),
                })
                .data(Loaders::new(&svc.db));
            quick.operation_name = operation.clone();
            quick.set_parsed_query(ExecutableDocument::clone(doc));
            if let Some(client) = client {
                quick = quick.data(client);
            }
            svc.cache
                .stats
                .fast_path
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let answer = schema.execute(quick).await;
            // An error async-graphql raised itself (a variable of the wrong
            // type, a limit: what full validation would have named) has no
            // code: the query runs again below, fully validated, so every
            // refusal reads exactly as without this path. Queries only, so
            // running twice changes nothing.
            let uncoded = answer.errors.iter().any(|e| code_of(e).is_none());
            if uncoded {
                svc.cache
                    .stats
                    .fast_path_retried
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            } else {
                response = Some(answer);
            }
        }
    }
    let mut response = match response {
        Some(response) => response,
        None => {
            if let Some(doc) = &document {
                request.set_parsed_query(ExecutableDocument::clone(doc));
            }
            let mut request = request
                .data(RequestCtx { principal })
                .data(Loaders::new(&svc.db));
            if let Some(client) = client {
                request = request.data(client);
            }
            let response = svc.schema.execute(request).await;
            // Kept only once it parsed, validated and passed the guard (it
            // ran): a refused document costs nothing afterwards.
            if let Some(doc) = &document
                && !matches!(response.data, Value::Null)
            {
                svc.cache.keep_document(doc);
            }
            response
        }
    };
    // Errors raised before any hook (an unknown operation name, a variable
    // of the wrong type) get their code here.
    let executed = crate::error::assign_missing_codes(&mut response);
    svc.metrics
        .observe(named, kind, Outcome::of(&response), started.elapsed());
    let request_error = !executed && response.errors.iter().any(is_request_error);
    let rate_limited = response
        .errors
        .iter()
        .find(|e| code_of(e) == Some(Code::RateLimited.as_str()));
    let unavailable = response
        .errors
        .iter()
        .any(|e| code_of(e) == Some(Code::ServiceUnavailable.as_str()));
    let mut retry_after = None;
    let status = if let (false, Some(err)) = (executed, rate_limited) {
        retry_after = match err.extensions.as_ref().and_then(|e| e.get("retryAfter")) {
            Some(Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .or(Some(1));
        StatusCode::TOO_MANY_REQUESTS
    } else if unavailable {
        retry_after = UNAVAILABLE_RETRY_AFTER.parse().ok();
        if content_type == GRAPHQL_RESPONSE {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    } else if request_error && content_type == GRAPHQL_RESPONSE {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let ok = response.errors.is_empty();
    match serde_json::to_vec(&response) {
        Ok(body) => {
            let body = Bytes::from(body);
            if ok && let (Some(v), Some(k)) = (version, key) {
                svc.cache.responses().put(k, v, body.clone());
            }
            let mut response =
                (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
            if ok && let Some(tag) = &tag {
                http_cache_headers(&mut response, tag, cache_control);
            }
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a response");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::InternalServerError,
                "internal error",
            )
        }
    }
}

/// Which kind of operation a document would run (`None` if it does not parse).
#[cfg(test)]
fn operation_type(query: &str, name: Option<&str>) -> Option<OperationType> {
    use async_graphql::parser::types::DocumentOperations;
    let doc = async_graphql::parser::parse_query(query).ok()?;
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op.node.ty),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| op.node.ty),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| op.node.ty)
        }
        _ => None,
    }
}

/// `GET /graphql`: WebSocket upgrade, GraphiQL for browsers, or a query.
pub async fn graphql_get(State(svc): State<GraphqlService>, request: Request) -> Response {
    let (mut parts, _body) = request.into_parts();
    let upgrade = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    if upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return crate::ws::upgrade(svc, &mut parts).await;
    }
    let params: HashMap<String, String> =
        match Query::<HashMap<String, String>>::try_from_uri(&parts.uri) {
            Ok(Query(p)) => p,
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Code::GraphqlParseFailed,
                    "malformed query string",
                );
            }
        };
    let extensions = match params.get("extensions").filter(|v| !v.is_empty()) {
        None => None,
        Some(text) => match serde_json::from_str::<async_graphql::Extensions>(text) {
            Ok(ext) => Some(ext),
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Code::GraphqlParseFailed,
                    "`extensions` is not valid JSON",
                );
            }
        },
    };
    let empty = String::new();
    let query = match params.get("query") {
        Some(q) => Some(q),
        None if extensions.is_some() => Some(&empty),
        None => None,
    };
    let Some(query) = query else {
        let html = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        if html && svc.settings.graphiql {
            return graphiql_page();
        }
        return error_response(
            StatusCode::BAD_REQUEST,
            Code::GraphqlParseFailed,
            "missing `query` parameter",
        );
    };
    let operation_name = params
        .get("operationName")
        .filter(|n| !n.is_empty())
        .cloned();
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(ext) = extensions {
        request.extensions = ext;
    }
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = params.get("variables").filter(|v| !v.is_empty()) {
        match serde_json::from_str::<serde_json::Value>(vars) {
            Ok(value) => request = request.variables(async_graphql::Variables::from_json(value)),
            Err(_) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    Code::GraphqlParseFailed,
                    "`variables` is not valid JSON",
                );
            }
        }
    }
    execute(&svc, &parts, request).await
}

/// `POST /graphql`: a JSON GraphQL request.
pub async fn graphql_post(State(svc): State<GraphqlService>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" && media != GRAPHQL_RESPONSE {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BadUserInput,
            "POST /graphql takes `Content-Type: application/json`",
        );
    }
    let bytes: Bytes = match axum::body::to_bytes(body, svc.settings.body_limit).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::PayloadTooLarge,
                &format!(
                    "the request body is larger than {} bytes",
                    svc.settings.body_limit
                ),
            );
        }
    };
    let request: async_graphql::Request = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::GraphqlParseFailed,
                "the body is not a GraphQL request in JSON ({\"query\": …, \"variables\": …})",
            );
        }
    };
    execute(&svc, &parts, request).await
}

/// The Content-Security-Policy GraphiQL is served under.
pub const GRAPHIQL_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self' ws: wss:; font-src 'self' data:; frame-ancestors 'none'";

fn graphiql_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, GRAPHIQL_CSP),
        ],
        include_str!("../assets/graphiql.html"),
    )
        .into_response()
}

/// `GET /graphiql/{file}`: GraphiQL's own assets, served by the hub.
pub async fn graphiql_asset(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (
            include_bytes!("../assets/graphiql.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "graphiql.min.css" => (
            include_bytes!("../assets/graphiql.min.css"),
            "text/css; charset=utf-8",
        ),
        "react.production.min.js" => (
            include_bytes!("../assets/react.production.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("../assets/react-dom.production.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "init.js" => (
            include_bytes!("../assets/init.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        Body::from(body),
    )
        .into_response()
}

/// `GET /schema.graphql`: the SDL.
pub async fn schema_sdl(State(svc): State<GraphqlService>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        crate::schema::sdl_of(&svc.schema),
    )
        .into_response()
}

/// `GET /.well-known/jwks.json`: the keys that verify the hub's tokens.
pub async fn jwks(State(svc): State<GraphqlService>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=60")],
        axum::Json(svc.auth.jwks()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_operation_types() {
        assert_eq!(
            operation_type("{ network { name } }", None),
            Some(OperationType::Query)
        );
        assert_eq!(
            operation_type("mutation { x }", None),
            Some(OperationType::Mutation)
        );
        assert_eq!(
            operation_type("query A { a } mutation B { b }", Some("B")),
            Some(OperationType::Mutation)
        );
        assert_eq!(operation_type("query A { a } mutation B { b }", None), None);
        assert_eq!(operation_type("{", None), None);
    }
}
