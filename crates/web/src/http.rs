//! What every city-website handler shares: who is asking (the same token
//! check and read policy as GraphQL), the public base URL, error answers
//! with the contract's codes, `ETag`/`If-None-Match` handling and the
//! response cache (the application layer's, shared with GraphQL).

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use cityhub_app::Code;
use cityhub_app::cache::scope_key;
use cityhub_app::http::{
    LocalAddr, client_addr, error_response, not_modified, peer_of, principal_of,
    unavailable_response,
};
use cityhub_domain::{Action, Actor, Denied, Policy};
use cityhub_storage::{ReadScope, StorageError};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::WebState;

/// The reader of a request.
#[derive(Debug, Clone)]
pub struct Reader {
    /// Who it is.
    pub actor: Actor,
    /// What it may see.
    pub scope: ReadScope,
}

impl Reader {
    /// Whether the request carried a (valid) token.
    pub fn has_token(&self) -> bool {
        !matches!(self.actor, Actor::Anonymous)
    }
}

/// Verifies the request's token and applies the read policy, exactly as
/// `POST /graphql` does: a token that fails verification is refused.
pub async fn reader(state: &WebState, headers: &HeaderMap) -> Result<Reader, Response> {
    let principal = principal_of(&state.auth, headers).await?;
    let actor = principal.map_or(Actor::Anonymous, |p| p.actor);
    let policy = Policy {
        public_read: state.auth.config().public_read,
    };
    if let Err(denied) = policy.authorize(&actor, Action::ReadNetwork, None) {
        return Err(match denied {
            Denied::Unauthenticated => error_response(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                "this hub needs a token to read",
            ),
            Denied::Forbidden => error_response(
                StatusCode::FORBIDDEN,
                Code::Forbidden,
                "this token may not read",
            ),
            Denied::Hidden => not_found("not found"),
        });
    }
    let scope = ReadScope::for_actor(&actor);
    Ok(Reader { actor, scope })
}

/// The hub's public base URL, without a trailing slash: `api.public_url`,
/// else the request's `Host` (and `X-Forwarded-Proto`, default `http`).
pub fn base_url(state: &WebState, headers: &HeaderMap) -> String {
    if !state.public_url.is_empty() {
        return state.public_url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// Applies the per-address limit on anonymous requests (`rate_limit.
/// anonymous_per_sec`, shared with GraphQL) to the city-website endpoints:
/// beyond it, `429 RATE_LIMITED` with `Retry-After`. Requests with a token
/// pass (their token is checked by the handler).
pub async fn limit_anonymous(
    axum::extract::State(state): axum::extract::State<WebState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limiters = &state.limiters;
    if limiters.limits_anonymous() && !request.headers().contains_key(header::AUTHORIZATION) {
        let peer = peer_of(request.extensions());
        let ip = peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |peer| {
            client_addr(&state.trusted_proxies, peer, request.headers())
        });
        if let Err(wait) = limiters.take_anonymous(ip) {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                Code::RateLimited,
                &format!("too many requests from this address; retry in {wait} s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return response;
        }
    }
    next.run(request).await
}

/// Pins the origin links are built from: `api.public_url` when set (then
/// nothing changes here); else the `Host` and `X-Forwarded-Proto` that a
/// trusted proxy (`http.trusted_proxies`) passed on; else the address the
/// hub was reached at. A client's own `Host` or `X-Forwarded-*` never
/// decides the links of pages, feeds and calendars (what a shared cache
/// in front of the hub would then serve to everyone).
pub async fn pin_origin(
    axum::extract::State(state): axum::extract::State<WebState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.public_url.is_empty() {
        let trusted = peer_of(request.extensions())
            .is_some_and(|peer| state.trusted_proxies.iter().any(|net| net.contains(&peer)));
        if !trusted {
            let local = request
                .extensions()
                .get::<LocalAddr>()
                .map(|l| l.0.to_string());
            let headers = request.headers_mut();
            headers.remove("x-forwarded-proto");
            headers.remove("x-forwarded-host");
            match local.and_then(|l| HeaderValue::from_str(&l).ok()) {
                Some(host) => {
                    headers.insert(header::HOST, host);
                }
                None => {
                    headers.remove(header::HOST);
                }
            }
        }
    }
    next.run(request).await
}

/// `400 BAD_USER_INPUT` naming the offending parameter.
pub fn bad_input(field: &str, message: &str) -> Response {
    let body = json!({ "errors": [{
        "message": format!("{field}: {message}"),
        "extensions": { "code": Code::BadUserInput.as_str(), "field": field },
    }] });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// `404 NOT_FOUND`.
pub fn not_found(message: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, Code::NotFound, message)
}

/// A storage failure: 503 with `retryable` when the database is
/// unreachable, else 500 with an error id; the cause is logged here once.
pub fn storage_failure(err: &StorageError) -> Response {
    match err {
        StorageError::Unavailable(_) => {
            tracing::warn!(error = %err, "web read: database unavailable");
            unavailable_response()
        }
        _ => internal_failure("web read failed", err),
    }
}

/// 500 `INTERNAL_SERVER_ERROR` with an error id; the cause is logged here.
pub fn internal_failure(context: &str, err: &dyn std::error::Error) -> Response {
    let id = uuid_like();
    tracing::error!(error = %err, error_id = %id, "{context}");
    let body = json!({ "errors": [{
        "message": format!("internal error (id {id})"),
        "extensions": { "code": Code::InternalServerError.as_str(), "errorId": id },
    }] });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

/// The strong `ETag` of a body: a SHA-256 prefix, base64url.
pub fn etag_of(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
    )
}

/// Where a city-website answer is kept in the hub's response cache: who
/// may see it (visibility), the base URL its links use, the representation
/// (`variant`), the request's path and its query in canonical form
/// ([`crate::params::WebQuery::canonical`]: parameter order, repeats and
/// spelled-out defaults do not make another entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey(String);

impl CacheKey {
    /// The key of the answer to `uri` for `reader`, linking to `base`.
    pub fn new(reader: &Reader, base: &str, variant: &str, uri: &Uri) -> Self {
        // A query the parser refuses is never answered from the cache (its
        // error is not kept): its raw form is key enough.
        let canonical = match uri.query() {
            None | Some("") => String::new(),
            Some(q) => {
                match crate::params::parse(Some(q), &cityhub_domain::Limits::default(), usize::MAX)
                {
                    Ok(parsed) => parsed.canonical(reader.scope),
                    Err(_) => format!("raw:{q}"),
                }
            }
        };
        let path = format!("{}?{canonical}", uri.path());
        let path = path.as_str();
        let vis = scope_key(reader.scope);
        let mut key =
            String::with_capacity(16 + vis.len() + base.len() + variant.len() + path.len());
        key.push_str("web\u{0}");
        key.push_str(&vis);
        key.push('\u{0}');
        key.push_str(base);
        key.push('\u{0}');
        key.push_str(variant);
        key.push('\u{0}');
        key.push_str(path);
        Self(key)
    }
}

/// How an answer is sent: its content type and extra headers.
#[derive(Debug, Clone, Copy)]
pub struct Representation {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Headers beside the caching ones (e.g. the page's CSP), names in
    /// lower case.
    pub extra: &'static [(&'static str, &'static str)],
}

/// Answers from the hub's response cache when it holds this key's body at
/// the current data version, else renders it (and keeps it). The version is
/// read after the request arrived ([`cityhub_app::cache::ResponseCache::version`],
/// the one GraphQL's answers are cached under too), so a change committed
/// before the request is always seen; `If-None-Match` is answered 304 from
/// the kept `ETag` without rendering. `cache.enabled = false` renders every
/// time. Errors (`Err` from `render`) are never kept.
pub async fn answer<F>(
    state: &WebState,
    reader: &Reader,
    request: &HeaderMap,
    key: CacheKey,
    representation: Representation,
    render: F,
) -> Response
where
    F: Future<Output = Result<Vec<u8>, Response>>,
{
    let cache = &state.responses;
    let version = if cache.settings().enabled {
        cache.version(&state.db).await
    } else {
        None
    };
    if let Some(v) = version
        && let Some((body, Some(tag))) = cache.get_tagged(&key.0, v)
    {
        return respond(
            state,
            reader.has_token(),
            request,
            representation,
            body,
            &tag,
        );
    }
    let body = match render.await {
        Ok(body) => Bytes::from(body),
        Err(response) => return response,
    };
    let tag: Arc<str> = Arc::from(etag_of(&body));
    if let Some(v) = version {
        cache.put_tagged(key.0, v, body.clone(), Some(tag.clone()));
    }
    respond(
        state,
        reader.has_token(),
        request,
        representation,
        body,
        &tag,
    )
}

/// A cacheable answer: `ETag`, `Cache-Control`, `Vary`, and 304 when the
/// client already has this body.
fn respond(
    state: &WebState,
    reader_has_token: bool,
    request: &HeaderMap,
    representation: Representation,
    body: Bytes,
    etag: &str,
) -> Response {
    let cache_control = if reader_has_token {
        &state.settings.private_cache_control
    } else {
        &state.settings.cache_control
    };
    let mut response = if not_modified(request, etag) {
        state.responses.count_not_modified();
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(representation.content_type),
        );
        r
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(cache_control) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Authorization, Accept"),
    );
    for (name, value) in representation.extra {
        headers.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    response
}
