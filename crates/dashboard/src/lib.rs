//! The live dashboard (`GET /dashboard`): one HTML page, its script and its
//! style sheet, embedded in the binary and served by the hub under a strict
//! Content-Security-Policy. The page speaks `graphql-transport-ws` itself
//! (no library, no CDN, no third-party request): it loads `stats`, watches
//! `activityEvents`, resumes from the last cursor it kept after a lost
//! connection, and reloads the statistics on `CURSOR_EXPIRED`.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy the page and its assets are served under: only the hub's own
/// scripts, styles and connections (WebSocket included, on the same origin);
/// no inline script or style, no frames, no forms posting elsewhere.
pub const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page.
pub const PAGE: &str = include_str!("../assets/dashboard.html");
/// The script.
pub const SCRIPT: &str = include_str!("../assets/dashboard.js");
/// The style sheet.
pub const STYLE: &str = include_str!("../assets/dashboard.css");

/// The dashboard's routes, to merge into the hub's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/dashboard", get(page))
        .route("/dashboard/{file}", get(asset))
}

fn secured(content_type: &'static str, body: &'static str) -> Response {
    cityhub_app::http::secured_static(content_type, DASHBOARD_CSP, body)
}

/// `GET /dashboard`: the page (revalidated each time, so a new hub's
/// page and assets arrive together).
async fn page() -> Response {
    secured("text/html; charset=utf-8", PAGE)
}

/// `GET /dashboard/{file}`: the page's script and style sheet.
async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "dashboard.js" => secured("text/javascript; charset=utf-8", SCRIPT),
        "dashboard.css" => secured("text/css; charset=utf-8", STYLE),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use axum::http::header;
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_under_the_policy() {
        for (path, kind) in [
            ("/dashboard", "text/html"),
            ("/dashboard/dashboard.js", "text/javascript"),
            ("/dashboard/dashboard.css", "text/css"),
        ] {
            let r = get(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert!(
                h[header::CONTENT_TYPE]
                    .to_str()
                    .is_ok_and(|t| t.starts_with(kind))
            );
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], DASHBOARD_CSP);
        }
        assert_eq!(
            get("/dashboard/nope.js").await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_nothing_inline() {
        for text in [PAGE, SCRIPT, STYLE] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
        assert!(!PAGE.contains("<script>") && !PAGE.contains("style="));
        assert!(!PAGE.contains("onclick") && !PAGE.contains("<style"));
        // First load well under 100 KB even before compression.
        assert!(PAGE.len() + SCRIPT.len() + STYLE.len() < 100_000);
    }
}
