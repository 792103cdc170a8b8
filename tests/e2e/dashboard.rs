//! `GET /dashboard` from a real hub: the page and its assets under a strict
//! policy, nothing loaded from elsewhere, a first load far under 100 KB, and
//! the statistics query the page sends answered with the seeded counts.

use serde_json::json;

use crate::both_backends;
use crate::support::{Backend, TestHub};

/// The page's statistics query, as its script sends it.
fn page_stats_query() -> String {
    let script = cityhub_dashboard::SCRIPT;
    let start = script
        .find("query Stats(")
        .expect("stats query in the script");
    let end = script[start..].find('`').expect("end of the query") + start;
    script[start..end].to_owned()
}

both_backends!(
    dashboard_page_is_served_whole_and_its_stats_query_works,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let page = hub
            .client
            .get(format!("{}/dashboard", hub.base))
            .header("Accept", "text/html")
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), 200);
        let csp = page.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_owned();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        let html = page.text().await.expect("html");
        assert!(
            html.contains("<main") && html.contains("aria-live"),
            "landmarks and live region"
        );
        let mut first_load = html.len();
        for asset in ["/dashboard/dashboard.js", "/dashboard/dashboard.css"] {
            assert!(html.contains(asset), "the page links {asset}");
            let response = hub
                .client
                .get(format!("{}{asset}", hub.base))
                .send()
                .await
                .expect("asset");
            assert_eq!(response.status(), 200, "{asset}");
            assert_eq!(
                response.headers()["content-security-policy"].to_str().ok(),
                Some(csp.as_str())
            );
            first_load += response.bytes().await.expect("body").len();
        }
        let (status, stats) = hub
            .post(&page_stats_query(), json!({"filter": {}}), None)
            .await;
        assert_eq!(status, 200, "{stats}");
        first_load += stats.to_string().len();
        // The budget is 100 KB gzipped; the first load is under it uncompressed.
        assert!(first_load < 100_000, "first load {first_load} bytes");
        let network = hub
            .ok("{ network { activityCount } }", json!({}), None)
            .await;
        assert_eq!(
            stats["data"]["stats"]["total"], network["network"]["activityCount"],
            "{stats}"
        );
        assert!(stats["data"]["stats"]["total"].as_i64() > Some(0));
        let missing = hub
            .client
            .get(format!("{}/dashboard/other.js", hub.base))
            .send()
            .await
            .expect("404");
        assert_eq!(missing.status(), 404);
    }
);
