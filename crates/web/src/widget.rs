//! `GET /embed.js`: the embeddable widget (`assets/embed.js`), served with
//! an ETag of its content and a long-lived but revalidated cache.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use cityhub_app::http::not_modified;

use crate::http::etag_of;

/// The widget's source.
pub const EMBED_JS: &str = include_str!("../assets/embed.js");

static EMBED_ETAG: LazyLock<String> = LazyLock::new(|| etag_of(EMBED_JS.as_bytes()));

/// `GET /embed.js`.
pub async fn embed_js(headers: HeaderMap) -> Response {
    let etag = EMBED_ETAG.as_str();
    let mut response = if not_modified(&headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            EMBED_JS,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600, stale-while-revalidate=86400"),
    );
    // Any page may embed it, including from a sandboxed or opaque origin.
    h.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widget_is_small() {
        // Under 10 KB gzipped is the promise; the raw source is under it too.
        assert!(
            EMBED_JS.len() < 10 * 1024,
            "embed.js is {} bytes",
            EMBED_JS.len()
        );
    }
}
