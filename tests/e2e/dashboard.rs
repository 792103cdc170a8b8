//! `GET /dashboard` from a real hub: the page and its assets under a strict
//! policy, nothing loaded from elsewhere, a first load far under 100 KB, and
//! the statistics query the page sends answered with the seeded counts; in
//! headless Chromium, live updates, resuming after leaving the page, and
//! resuming after the hub restarts under the open page.

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

/// The number of feed items whose slug is `slug`, as a JavaScript expression.
/// The script that is true once the page's connection is live.
const LIVE: &str = "return document.getElementById('connection').dataset.state === 'live';";

/// Publishes `publish` (a mutation taking the title as `$t`) as `token`;
/// returns the new activity's slug.
async fn publish_titled(hub: &TestHub, publish: &str, title: &str, token: &str) -> String {
    hub.ok(publish, json!({ "t": title }), Some(token)).await["publishActivity"]["slug"]
        .as_str()
        .expect("slug")
        .to_owned()
}

fn count_in_feed(slug: &str) -> String {
    format!(r#"document.querySelectorAll('#feed li[data-slug="{slug}"]').length"#)
}

both_backends!(
    dashboard_in_chromium_shows_counts_goes_live_and_resumes,
    |backend: Backend| async move {
        if !crate::browser::axe_available() {
            return;
        }
        let Some(browser) = crate::browser::Browser::start().await else {
            return;
        };
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let total = |data: serde_json::Value| data["stats"]["total"].as_i64().expect("total");
        let seeded = total(hub.ok("{ stats { total } }", json!({}), None).await);
        browser.goto(&format!("{}/dashboard", hub.base)).await;
        // The seeded total shows, and the socket is live.
        browser
            .wait_until(&format!(
                "return document.getElementById('total').textContent.replace(/\\D/g, '') === '{seeded}';"
            ))
            .await;
        browser.wait_until(LIVE).await;
        browser.axe("the dashboard").await;
        let publish = r#"mutation($t: String!) { publishActivity(input: { kind: WORKSHOP, title: $t, startDate: "2026-06-01", fields: [GASTRONOMY] }) { slug } }"#;
        let first = publish_titled(&hub, publish, "Dashboard live one", &lyon).await;
        // It reaches the feed once and the total follows.
        browser
            .wait_until(&format!("return {} === 1;", count_in_feed(&first)))
            .await;
        browser
            .wait_until(&format!(
                "return document.getElementById('total').textContent.replace(/\\D/g, '') === '{}';",
                seeded + 1
            ))
            .await;
        // Leave the page; publish twice; come back: the page resumes from
        // the cursor it kept and shows exactly the events it missed, once.
        browser.goto("about:blank").await;
        let second = publish_titled(&hub, publish, "Dashboard missed two", &lyon).await;
        let third = publish_titled(&hub, publish, "Dashboard missed three", &lyon).await;
        browser.goto(&format!("{}/dashboard", hub.base)).await;
        for slug in [&second, &third] {
            browser
                .wait_until(&format!("return {} === 1;", count_in_feed(slug)))
                .await;
        }
        assert_eq!(
            browser
                .eval(&format!("return {};", count_in_feed(&first)))
                .await,
            json!(0),
            "the event seen before is not replayed"
        );
        browser
            .wait_until(&format!(
                "return document.getElementById('total').textContent.replace(/\\D/g, '') === '{}';",
                seeded + 3
            ))
            .await;
        // Nothing but the hub was asked for anything.
        let hosts = browser.requested_hosts().await;
        let hub_host = hub.base.trim_start_matches("http://").to_owned();
        assert!(hosts.iter().all(|h| *h == hub_host), "{hosts:?}");
        browser.close().await;
    }
);

both_backends!(
    dashboard_in_chromium_resumes_after_the_hub_restarts,
    |backend: Backend| async move {
        let Some(browser) = crate::browser::Browser::start().await else {
            return;
        };
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let total = |data: serde_json::Value| data["stats"]["total"].as_i64().expect("total");
        let seeded = total(hub.ok("{ stats { total } }", json!({}), None).await);
        let shows_total = |n: i64| {
            format!(
                "return document.getElementById('total').textContent.replace(/\\D/g, '') === '{n}';"
            )
        };
        browser.goto(&format!("{}/dashboard", hub.base)).await;
        browser.wait_until(&shows_total(seeded)).await;
        browser.wait_until(LIVE).await;
        let publish = r#"mutation($t: String!) { publishActivity(input: { kind: FESTIVAL, title: $t, startDate: "2026-09-01", fields: [MUSIC] }) { slug } }"#;
        let before = publish_titled(&hub, publish, "Before the restart", &lyon).await;
        browser
            .wait_until(&format!("return {} === 1;", count_in_feed(&before)))
            .await;

        // Stop the hub under the open page; it notices.
        let listen = hub.base.trim_start_matches("http://").to_owned();
        let test_db = hub.test_db.clone();
        hub.stop().await;
        browser
            .wait_until("return document.getElementById('connection').dataset.state !== 'live';")
            .await;
        // Meanwhile another instance on the same database (its own port)
        // publishes twice; the page cannot have seen these.
        let other = TestHub::start_on(backend, test_db.clone(), |_| {}).await;
        let other_lyon = other.token(Some("lyon")).await;
        let mut missed = Vec::new();
        for title in ["Published while down one", "Published while down two"] {
            missed.push(publish_titled(&other, publish, title, &other_lyon).await);
        }
        other.stop().await;

        // The hub again, on its port and database: the page reconnects,
        // resumes from the cursor it kept and shows each missed event once.
        let again = TestHub::start_on(backend, test_db, |c| c.listen = listen).await;
        browser.wait_until(LIVE).await;
        for slug in &missed {
            browser
                .wait_until(&format!("return {} === 1;", count_in_feed(slug)))
                .await;
        }
        browser.wait_until(&shows_total(seeded + 3)).await;
        // Nothing was replayed twice: the event seen before the restart is
        // shown once, and each missed one still once.
        for slug in missed.iter().chain([&before]) {
            assert_eq!(
                browser
                    .eval(&format!("return {};", count_in_feed(slug)))
                    .await,
                json!(1),
                "{slug} shown once"
            );
        }
        // And it is live on the restarted hub: a new publication arrives.
        let again_lyon = again.token(Some("lyon")).await;
        let after = publish_titled(&again, publish, "After the restart", &again_lyon).await;
        browser
            .wait_until(&format!("return {} === 1;", count_in_feed(&after)))
            .await;
        browser.close().await;
    }
);
