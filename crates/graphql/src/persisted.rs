//! Apollo's automatic persisted queries: a request may carry
//! `extensions.persistedQuery { version: 1, sha256Hash }` instead of its
//! document. An unknown hash answers `PERSISTED_QUERY_NOT_FOUND`; the client
//! then sends the document with the hash once, the hub checks the hash and
//! stores the document in the database, where every instance finds it.

use async_graphql::Value;
use axum::http::StatusCode;
use axum::response::Response;
use cityhub_storage::repo::persisted::PersistedQueryRepo;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::Code;
use crate::guard::ClientAddr;
use crate::service::GraphqlService;
use cityhub_app::auth::Principal;
use cityhub_app::http::{error_response, unavailable_response};
use cityhub_app::rate_limit::Registrant;

/// The SHA-256 of a document, in lowercase hex.
pub fn sha256_hex(query: &str) -> String {
    hex::encode(Sha256::digest(query.as_bytes()))
}

/// The answer to an unknown hash, as Apollo clients expect it (status 200,
/// so they retry with the document).
fn not_found() -> Response {
    let body = json!({ "errors": [{
        "message": "PersistedQueryNotFound",
        "extensions": { "code": Code::PersistedQueryNotFound.as_str() }
    }] });
    axum::response::IntoResponse::into_response(axum::Json(body))
}

/// `429 RATE_LIMITED`: too many registrations from one token or address.
fn too_many_registrations(wait: u64) -> Response {
    let mut response = error_response(
        StatusCode::TOO_MANY_REQUESTS,
        Code::RateLimited,
        &format!("too many persisted-query registrations; retry in {wait} s"),
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&wait.to_string()) {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    response
}

/// Resolves the request's persisted query, if it names one: fills in the
/// document from its hash, or registers the document sent with its hash
/// (at most `cache.persisted_registrations_per_minute` per token, or per
/// client address without one). Returns the response to send instead when
/// it cannot.
pub async fn resolve(
    svc: &GraphqlService,
    request: &mut async_graphql::Request,
    principal: Option<&Principal>,
    client: Option<ClientAddr>,
) -> Result<(), Response> {
    let Some(ext) = request.extensions.get("persistedQuery") else {
        return Ok(());
    };
    if !svc.cache.settings().persisted_queries {
        let body = json!({ "errors": [{
            "message": "PersistedQueryNotSupported",
            "extensions": { "code": Code::PersistedQueryNotSupported.as_str() }
        }] });
        return Err(axum::response::IntoResponse::into_response(axum::Json(
            body,
        )));
    }
    let hash = match ext {
        Value::Object(o) => match (o.get("version"), o.get("sha256Hash")) {
            (Some(Value::Number(v)), Some(Value::String(h)))
                if v.as_i64() == Some(1)
                    && h.len() == 64
                    && h.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                h.to_ascii_lowercase()
            }
            _ => String::new(),
        },
        _ => String::new(),
    };
    if hash.is_empty() {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            Code::BadUserInput,
            "extensions.persistedQuery must be { version: 1, sha256Hash: <64 hex digits> }",
        ));
    }
    if request.query.is_empty() {
        if let Some(query) = svc.cache.persisted(&hash) {
            request.query = query.to_string();
            return Ok(());
        }
        return match PersistedQueryRepo::find(svc.db.conn(), &hash).await {
            Ok(Some(query)) => {
                svc.cache.remember_persisted(&hash, &query);
                request.query = query;
                Ok(())
            }
            Ok(None) => Err(not_found()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a persisted query");
                Err(unavailable_response())
            }
        };
    }
    if sha256_hex(&request.query) != hash {
        return Err(error_response(
            StatusCode::BAD_REQUEST,
            Code::BadUserInput,
            "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query",
        ));
    }
    if svc.cache.persisted(&hash).is_none() {
        let who = match (principal, client) {
            (Some(p), _) => Registrant::Token(p.token_id.clone()),
            (None, Some(ClientAddr(ip))) => Registrant::Address(ip),
            (None, None) => Registrant::Address(std::net::Ipv4Addr::UNSPECIFIED.into()),
        };
        if let Err(wait) = svc.guard.limiters().take_registration(who) {
            return Err(too_many_registrations(wait));
        }
        // Only documents within the token limit that parse are kept; the
        // request then runs (and is refused) as any other.
        let max_tokens = svc.guard.limits().max_tokens;
        if !matches!(svc.cache.document(&request.query, max_tokens), Ok(Some(_))) {
            return Ok(());
        }
        let settings = svc.cache.settings();
        let keep = cityhub_storage::repo::persisted::Keep {
            documents: settings.max_persisted_stored,
            bytes: settings.max_persisted_stored_bytes,
        };
        if let Err(e) = PersistedQueryRepo::insert(svc.db.conn(), &hash, &request.query, keep).await
        {
            tracing::warn!(error = %e, "cannot store a persisted query");
            return Ok(());
        }
        svc.cache.remember_persisted(&hash, &request.query);
    }
    Ok(())
}
