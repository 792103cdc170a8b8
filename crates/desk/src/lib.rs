//! The publishing desk (`GET /publish`): the web application a member
//! city's communication officers publish from, without writing GraphQL.
//! One page, its script modules, its strings (one module per language) and
//! its style sheet, embedded in the binary and served by the hub under a
//! strict Content-Security-Policy. The desk speaks only the public GraphQL
//! API (`POST /graphql`) with the city's bearer token, as every client does:
//! there is no endpoint of its own besides its files.
//!
//! The policy enforces Trusted Types: no script of the page can hand a
//! string to an HTML sink (`innerHTML`, `outerHTML`, `insertAdjacentHTML`,
//! `document.write`) except through the one named policy `desk-preview`,
//! which only parses the hub's own Markdown rendering (`markdownPreview`)
//! into an inert document that the desk then copies element by element
//! from an allow-list.

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy the desk and its assets are served under: only the hub's own
/// scripts, styles and connections; no inline script or style, no frames,
/// no form posting anywhere, and Trusted Types enforced with one policy.
pub const DESK_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types desk-preview";

/// The page (a shell: every string comes from the language modules).
pub const PAGE: &str = include_str!("../assets/desk.html");

/// The desk's files under `/publish/`: name, content type, body.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "desk.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/desk.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/dom.js"),
    ),
    (
        "form.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/form.js"),
    ),
    (
        "strings-en.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/strings-en.js"),
    ),
    (
        "strings-fr.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/strings-fr.js"),
    ),
    (
        "desk.css",
        "text/css; charset=utf-8",
        include_str!("../assets/desk.css"),
    ),
];

/// The desk's routes, to merge into the hub's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/publish", get(page))
        .route("/publish/{file}", get(asset))
}

fn secured(content_type: &'static str, body: &'static str) -> Response {
    cityhub_app::http::secured_static(content_type, DESK_CSP, body)
}

/// `GET /publish`: the page.
async fn page() -> Response {
    secured("text/html; charset=utf-8", PAGE)
}

/// `GET /publish/{file}`: one of [`ASSETS`].
async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => secured(kind, body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::header;
    use std::collections::BTreeSet;
    use std::io::Write;

    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        routes::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    fn body_of(name: &str) -> &'static str {
        ASSETS
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, body)| *body)
            .unwrap_or_else(|| panic!("no asset {name}"))
    }

    #[tokio::test]
    async fn serves_the_page_and_its_files_under_the_policy() {
        let mut paths = vec![("/publish".to_owned(), "text/html")];
        for (name, kind, _) in ASSETS {
            paths.push((format!("/publish/{name}"), kind));
        }
        for (path, kind) in paths {
            let r = get(&path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let h = r.headers();
            assert!(
                h[header::CONTENT_TYPE]
                    .to_str()
                    .is_ok_and(|t| t.starts_with(kind.split(';').next().unwrap_or(kind))),
                "{path}"
            );
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], DESK_CSP);
            assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        }
        assert_eq!(
            get("/publish/nope.js").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/publish/..%2Fdesk.js").await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn nothing_from_elsewhere_nothing_inline_no_html_sinks() {
        assert!(!PAGE.contains("<script>") && !PAGE.contains("style="));
        assert!(!PAGE.contains("onclick") && !PAGE.contains("<style"));
        for text in std::iter::once(PAGE).chain(ASSETS.iter().map(|(_, _, body)| *body)) {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
            // Data never reaches an HTML sink; Trusted Types enforce it in
            // the browser, and the source says it too.
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!text.contains(sink), "{sink} in the desk");
            }
        }
    }

    #[test]
    fn the_first_load_is_within_budget_gzipped() {
        let mut total = PAGE.len();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(PAGE.as_bytes()).expect("gzip");
        for (_, _, body) in ASSETS {
            total += body.len();
            gz.write_all(body.as_bytes()).expect("gzip");
        }
        let gzipped = gz.finish().expect("gzip").len();
        // The budget is 150 KB gzipped; the desk stays under it
        // even uncompressed, since the hub serves it as is.
        assert!(gzipped < 150_000, "{gzipped} bytes gzipped");
        assert!(total < 150_000, "{total} bytes uncompressed");
    }

    /// The keys of a strings module: every `key:` at the start of a line
    /// inside its exported object.
    fn keys(module: &str) -> BTreeSet<String> {
        module
            .lines()
            .filter_map(|line| {
                let line = line.trim_start();
                let (key, _) = line.split_once(':')?;
                let key = key.trim().trim_matches('"');
                (!key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .then(|| key.to_owned())
            })
            .collect()
    }

    #[test]
    fn english_and_french_say_the_same_things() {
        let en = keys(body_of("strings-en.js"));
        let fr = keys(body_of("strings-fr.js"));
        assert!(en.len() > 100, "{} strings", en.len());
        let only_en: Vec<_> = en.difference(&fr).collect();
        let only_fr: Vec<_> = fr.difference(&en).collect();
        assert!(
            only_en.is_empty() && only_fr.is_empty(),
            "English only: {only_en:?}; French only: {only_fr:?}"
        );
    }

    #[test]
    fn every_string_the_scripts_use_exists() {
        let en = keys(body_of("strings-en.js"));
        for script in ["desk.js", "form.js", "dom.js", "api.js"] {
            let text = body_of(script);
            // Calls look like t("key") or t("key", {...}), `t` a name of its own.
            for (at, _) in text.match_indices("t(\"") {
                let before = text[..at].chars().next_back();
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                let rest = &text[at + 3..];
                let Some((key, _)) = rest.split_once('"') else {
                    continue;
                };
                assert!(en.contains(key), "{script} uses the unknown string {key}");
            }
        }
    }
}
