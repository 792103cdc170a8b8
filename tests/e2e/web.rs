//! City websites, checked from outside: calendars parsed with the `ical`
//! crate and feeds with `feed-rs` (never with the crates that write them),
//! activity pages and their JSON-LD, and, in a real headless Chromium, the
//! embeddable widget on a page of another origin under a strict CSP, the
//! activity page, and GraphiQL.

use std::collections::{BTreeMap, BTreeSet};

use axum::http::header;
use serde_json::{Value, json};

use crate::both_backends;
use crate::browser::Browser;
use crate::support::{Backend, TestHub};

/// One parsed `VEVENT`: property name → (parameters, value).
type Vevent = BTreeMap<String, (Vec<(String, Vec<String>)>, String)>;

/// Undoes RFC 5545 TEXT escaping (the `ical` crate leaves it in values).
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses a calendar with the independent `ical` crate.
fn parse_calendar(text: &str) -> Vec<Vevent> {
    let mut parser = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()));
    let calendar = parser
        .next()
        .expect("one VCALENDAR")
        .unwrap_or_else(|e| panic!("invalid iCalendar: {e}\n{text}"));
    assert!(parser.next().is_none(), "exactly one VCALENDAR");
    let version = calendar
        .properties
        .iter()
        .find(|p| p.name == "VERSION")
        .and_then(|p| p.value.clone());
    assert_eq!(version.as_deref(), Some("2.0"));
    calendar
        .events
        .into_iter()
        .map(|e| {
            e.properties
                .into_iter()
                .map(|p| {
                    (
                        p.name,
                        (p.params.unwrap_or_default(), p.value.unwrap_or_default()),
                    )
                })
                .collect()
        })
        .collect()
}

fn by_url(events: &[Vevent]) -> BTreeMap<String, Vevent> {
    events
        .iter()
        .map(|e| {
            let url = &e["URL"].1;
            let slug = url.rsplit('/').next().expect("slug").to_owned();
            (slug, e.clone())
        })
        .collect()
}

fn is_date_value(event: &Vevent, name: &str) -> bool {
    event[name]
        .0
        .iter()
        .any(|(k, v)| k == "VALUE" && v.iter().any(|v| v == "DATE"))
}

async fn get(
    hub: &TestHub,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = hub.client.get(format!("{}{path}", hub.base));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    (status, headers, body)
}

fn dataset() -> Vec<toml::Value> {
    let dataset: toml::Value = toml::from_str(cityhub::DATASET).expect("dataset");
    dataset["activities"]
        .as_array()
        .expect("activities")
        .clone()
}

fn compact(date: &str) -> String {
    date.replace('-', "")
}

fn day_after(date: &str) -> String {
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").expect("date");
    d.succ_opt().expect("next").format("%Y%m%d").to_string()
}

both_backends!(
    calendars_hold_the_seeded_meetings_exactly,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let (status, headers, text) = get(&hub, "/calendar.ics", &[]).await;
        assert_eq!(status, 200, "{text}");
        assert!(
            headers[header::CONTENT_TYPE.as_str()]
                .to_str()
                .expect("ct")
                .starts_with("text/calendar")
        );
        let events = by_url(&parse_calendar(&text));
        let mut expected_day = 0;
        for a in dataset() {
            let slug = a["slug"].as_str().expect("slug");
            let precision = a.get("date_precision").and_then(|p| p.as_str());
            let start = a.get("start_date").map(|d| d.to_string());
            match (start, precision) {
                (Some(start), Some("DAY")) => {
                    expected_day += 1;
                    let e = events
                        .get(slug)
                        .unwrap_or_else(|| panic!("{slug} is missing from the calendar"));
                    let start = start.trim_matches('"').to_owned();
                    let end = a.get("end_date").map_or(start.clone(), |d| {
                        d.to_string().trim_matches('"').to_owned()
                    });
                    assert_eq!(e["DTSTART"].1, compact(&start), "{slug}");
                    assert!(is_date_value(e, "DTSTART"), "{slug}: all-day");
                    assert_eq!(e["DTEND"].1, day_after(&end), "{slug}: exclusive end");
                    assert_eq!(
                        unescape(&e["SUMMARY"].1),
                        a["title"].as_str().expect("title")
                    );
                    assert_eq!(e["STATUS"].1, "CONFIRMED");
                    assert_eq!(e["SEQUENCE"].1, "0");
                    assert!(e["UID"].1.starts_with("activity-"), "{slug}");
                    assert!(e.contains_key("DTSTAMP"));
                    assert!(
                        e["CATEGORIES"]
                            .1
                            .contains(a["kind"].as_str().expect("kind")),
                        "{slug}"
                    );
                }
                _ => assert!(
                    !events.contains_key(slug),
                    "{slug} ({precision:?}) must not be in the default calendar"
                ),
            }
        }
        assert_eq!(events.len(), expected_day, "only day-precise activities");
        assert!(expected_day >= 9, "the seeded meetings with known days");

        // include=approximate: the 2008–2014 year-only meetings appear as the
        // whole year they are known by, marked, with no invented day.
        let (_, _, text) = get(&hub, "/calendar.ics?include=approximate", &[]).await;
        let events = by_url(&parse_calendar(&text));
        let seoul = &events["annual-meeting-2011-seoul"];
        assert_eq!(seoul["DTSTART"].1, "20110101");
        assert_eq!(seoul["DTEND"].1, "20120101");
        assert!(is_date_value(seoul, "DTSTART"));
        assert!(
            unescape(&seoul["SUMMARY"].1).contains("2011, exact dates not known"),
            "{:?}",
            seoul["SUMMARY"]
        );
        assert_eq!(seoul["X-CITYHUB-DATE-PRECISION"].1, "YEAR");
        assert_eq!(seoul["TRANSP"].1, "TRANSPARENT");
        assert!(!events.contains_key("member-meetings-online"), "undated");

        // One city, and a filter.
        let (_, _, text) = get(&hub, "/cities/seoul/calendar.ics", &[]).await;
        let seoul_events = by_url(&parse_calendar(&text));
        assert_eq!(
            seoul_events.keys().collect::<Vec<_>>(),
            vec!["seoul-international-conference-2011"]
        );
        let (_, _, text) = get(&hub, "/calendar.ics?kind=INTERNATIONAL_CONFERENCE", &[]).await;
        let conferences = by_url(&parse_calendar(&text));
        assert!(conferences.len() >= 3);
        assert!(
            conferences
                .values()
                .all(|e| e["CATEGORIES"].1.contains("INTERNATIONAL_CONFERENCE"))
        );
        let (_, _, text) = get(&hub, "/calendar.ics?from=2020-01-01&to=2024-12-31", &[]).await;
        let recent = by_url(&parse_calendar(&text));
        assert_eq!(
            recent.keys().collect::<BTreeSet<_>>(),
            ["annual-meeting-2022-santos", "annual-meeting-2024-braga"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<BTreeSet<_>>()
                .iter()
                .collect()
        );
    }
);

both_backends!(
    etags_change_exactly_when_the_data_does,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let token = hub.token(Some("kanazawa")).await;
        for path in [
            "/calendar.ics",
            "/cities/kanazawa/calendar.ics",
            "/feeds/activities.atom",
            "/cities/kanazawa/feed.atom",
            "/activities/annual-meeting-2015-kanazawa",
            "/embed.js",
        ] {
            let (status, headers, body) = get(&hub, path, &[]).await;
            assert_eq!(status, 200, "{path}");
            let etag = headers[header::ETAG.as_str()]
                .to_str()
                .expect("etag")
                .to_owned();
            assert!(
                headers.contains_key(header::CACHE_CONTROL.as_str()),
                "{path}"
            );
            let (again, _, _) = get(&hub, path, &[]).await;
            assert_eq!(again, 200);
            let (status, headers, empty) =
                get(&hub, path, &[("If-None-Match", etag.as_str())]).await;
            assert_eq!(status, 304, "{path}");
            assert!(empty.is_empty());
            assert_eq!(headers[header::ETAG.as_str()].to_str().expect("etag"), etag);
            let (status, _, body2) = get(&hub, path, &[("If-None-Match", "\"other\"")]).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(body, body2, "{path}: stable body");
        }
        // A change to Kanazawa's meeting changes every answer that shows it.
        let paths = [
            "/calendar.ics",
            "/cities/kanazawa/calendar.ics",
            "/feeds/activities.atom",
            "/cities/kanazawa/feed.atom",
            "/activities/annual-meeting-2015-kanazawa",
        ];
        let mut before = Vec::new();
        for path in paths {
            let (_, headers, _) = get(&hub, path, &[]).await;
            before.push(
                headers[header::ETAG.as_str()]
                    .to_str()
                    .expect("etag")
                    .to_owned(),
            );
        }
        let (_, unrelated, _) = get(&hub, "/cities/seoul/calendar.ics", &[]).await;
        let unrelated = unrelated[header::ETAG.as_str()]
            .to_str()
            .expect("etag")
            .to_owned();
        let id = hub
            .ok(
                r#"{ activity(slug: "annual-meeting-2015-kanazawa") { id } }"#,
                json!({}),
                None,
            )
            .await["activity"]["id"]
            .clone();
        hub.ok(
            "mutation($id: ID!) { updateActivity(id: $id, patch: { summary: \"Ninth annual meeting, in Kanazawa.\" }) { version } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
        for (path, old) in paths.iter().zip(&before) {
            let (status, headers, _) = get(&hub, path, &[("If-None-Match", old.as_str())]).await;
            assert_eq!(status, 200, "{path} changed");
            assert_ne!(headers[header::ETAG.as_str()].to_str().expect("etag"), old);
        }
        let (status, _, _) = get(
            &hub,
            "/cities/seoul/calendar.ics",
            &[("If-None-Match", unrelated.as_str())],
        )
        .await;
        assert_eq!(status, 304, "Seoul's calendar did not change");
        let (_, _, text) = get(&hub, "/cities/kanazawa/calendar.ics", &[]).await;
        let events = by_url(&parse_calendar(&text));
        assert_eq!(events["annual-meeting-2015-kanazawa"]["SEQUENCE"].1, "1");
    }
);

both_backends!(
    feeds_parse_newest_change_first,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let (status, headers, text) = get(&hub, "/feeds/activities.atom", &[]).await;
        assert_eq!(status, 200);
        assert!(
            headers[header::CONTENT_TYPE.as_str()]
                .to_str()
                .expect("ct")
                .starts_with("application/atom+xml")
        );
        let feed = feed_rs::parser::parse(text.as_bytes()).expect("a valid Atom feed");
        assert_eq!(feed.feed_type, feed_rs::model::FeedType::Atom);
        assert_eq!(feed.entries.len(), dataset().len(), "every seeded activity");
        let updated: Vec<_> = feed
            .entries
            .iter()
            .map(|e| e.updated.expect("updated"))
            .collect();
        assert!(
            updated.windows(2).all(|w| w[0] >= w[1]),
            "newest change first"
        );
        for entry in &feed.entries {
            assert!(entry.id.starts_with("urn:cityhub:activity:"));
            assert!(entry.links[0].href.contains("/activities/"));
            assert!(entry.title.is_some());
            assert!(!entry.authors.is_empty());
        }
        // A change moves the entry to the top; a cancellation is marked.
        let token = hub.token(Some("braga")).await;
        let id = hub
            .ok(
                r#"{ activity(slug: "annual-meeting-2024-braga") { id } }"#,
                json!({}),
                None,
            )
            .await["activity"]["id"]
            .clone();
        hub.ok(
            "mutation($id: ID!) { cancelActivity(id: $id, reason: \"test\") { status } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
        let (_, _, text) = get(&hub, "/cities/braga/feed.atom", &[]).await;
        let feed = feed_rs::parser::parse(text.as_bytes()).expect("valid");
        let first = &feed.entries[0];
        assert!(
            first.links[0]
                .href
                .ends_with("/activities/annual-meeting-2024-braga")
        );
        assert_eq!(
            first.title.as_ref().expect("title").content,
            "Cancelled: Annual Meeting 2024 (Braga)".replace(
                "Annual Meeting 2024 (Braga)",
                dataset()
                    .iter()
                    .find(|a| a["slug"].as_str() == Some("annual-meeting-2024-braga"))
                    .and_then(|a| a["title"].as_str())
                    .expect("title")
            )
        );
        let (_, _, text) = get(&hub, "/cities/braga/calendar.ics", &[]).await;
        let events = by_url(&parse_calendar(&text));
        assert_eq!(events["annual-meeting-2024-braga"]["STATUS"].1, "CANCELLED");
        // Filters apply to feeds too.
        let (_, _, text) = get(&hub, "/feeds/activities.atom?field=MUSIC", &[]).await;
        let feed = feed_rs::parser::parse(text.as_bytes()).expect("valid");
        assert!(!feed.entries.is_empty());
        assert!(
            feed.entries
                .iter()
                .all(|e| e.categories.iter().any(|c| c.term == "MUSIC"))
        );
    }
);

both_backends!(
    drafts_only_with_their_token_and_bad_input_is_refused,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        hub.ok(
            "mutation { publishActivity(draft: true, input: { kind: WORKSHOP, title: \"Secret workshop\", startDate: \"2027-03-02\", slug: \"secret-workshop\" }) { slug status } }",
            json!({}),
            Some(&lyon),
        )
        .await;
        let has_draft = |text: &str| text.contains("Secret workshop");
        let (_, _, anonymous) = get(&hub, "/cities/lyon/calendar.ics", &[]).await;
        assert!(!has_draft(&anonymous));
        let bearer = format!("Bearer {lyon}");
        let (status, headers, own) = get(
            &hub,
            "/cities/lyon/calendar.ics",
            &[("Authorization", bearer.as_str())],
        )
        .await;
        assert_eq!(status, 200);
        assert!(has_draft(&own));
        assert!(
            headers[header::CACHE_CONTROL.as_str()]
                .to_str()
                .expect("cc")
                .contains("private")
        );
        let events = by_url(&parse_calendar(&own));
        assert_eq!(events["secret-workshop"]["STATUS"].1, "TENTATIVE");
        let other = format!("Bearer {seoul}");
        let (_, _, theirs) = get(
            &hub,
            "/cities/lyon/calendar.ics",
            &[("Authorization", other.as_str())],
        )
        .await;
        assert!(!has_draft(&theirs));
        let (_, _, feed) = get(
            &hub,
            "/feeds/activities.atom",
            &[("Authorization", bearer.as_str())],
        )
        .await;
        assert!(has_draft(&feed));
        let (_, _, feed) = get(&hub, "/feeds/activities.atom", &[]).await;
        assert!(!has_draft(&feed));
        let (status, _, _) = get(&hub, "/activities/secret-workshop", &[]).await;
        assert_eq!(status, 404);
        let (status, _, page) = get(
            &hub,
            "/activities/secret-workshop",
            &[("Authorization", bearer.as_str())],
        )
        .await;
        assert_eq!(status, 200);
        assert!(page.contains("Draft: not published"));

        // A bad token is refused, never served as anonymous.
        let (status, _, body) =
            get(&hub, "/calendar.ics", &[("Authorization", "Bearer nope")]).await;
        assert_eq!(status, 401);
        assert_eq!(
            serde_json::from_str::<Value>(&body).expect("json")["errors"][0]["extensions"]["code"],
            "UNAUTHENTICATED"
        );
        for (path, field) in [
            ("/calendar.ics?field=music", "query.field"),
            ("/calendar.ics?fields=MUSIC", "query.fields"),
            ("/feeds/activities.atom?from=2014-13-40", "query.from"),
            ("/calendar.ics?from=2020-01-01&to=2019-01-01", "query.to"),
            ("/calendar.ics?include=everything", "query.include"),
        ] {
            let (status, _, body) = get(&hub, path, &[]).await;
            assert_eq!(status, 400, "{path}");
            let body: Value = serde_json::from_str(&body).expect("json");
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
                "{path}"
            );
            assert_eq!(body["errors"][0]["extensions"]["field"], field, "{path}");
        }
        let (status, _, _) = get(&hub, "/cities/atlantis/calendar.ics", &[]).await;
        assert_eq!(status, 404);
        let (status, _, _) = get(&hub, "/activities/no-such-activity", &[]).await;
        assert_eq!(status, 404);
    }
);

/// The page's embedded JSON-LD, the JSON-LD alone, and `Activity.jsonLd`
/// are one and the same; Markdown cannot inject HTML or script links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_page_json_ld_and_safe_markdown() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| {
        c.api.public_url = "https://hub.example.org".into();
    })
    .await;
    let (status, headers, html) = get(&hub, "/activities/annual-meeting-2011-seoul", &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers[header::CONTENT_SECURITY_POLICY.as_str()]
            .to_str()
            .expect("csp")
            .contains("default-src 'none'")
    );
    let start = html
        .find("<script type=\"application/ld+json\">")
        .expect("JSON-LD")
        + 35;
    let end = start + html[start..].find("</script>").expect("end");
    let embedded: Value = serde_json::from_str(&html[start..end]).expect("JSON-LD parses");
    assert_eq!(embedded["@type"], "Event");
    assert_eq!(
        embedded["startDate"], "2011",
        "a year-only date stays a year"
    );
    assert!(embedded.get("endDate").is_none());
    assert_eq!(
        embedded["url"],
        "https://hub.example.org/activities/annual-meeting-2011-seoul"
    );
    assert_eq!(embedded["eventStatus"], "https://schema.org/EventScheduled");
    assert_eq!(
        embedded["eventAttendanceMode"],
        "https://schema.org/OfflineEventAttendanceMode"
    );
    assert_eq!(embedded["location"]["address"]["addressCountry"], "KR");
    assert_eq!(embedded["organizer"][0]["name"], "Seoul");
    assert!(
        html.contains("<time datetime=\"2011\">2011 (exact dates not known)</time>"),
        "{html}"
    );
    let (status, headers, alone) = get(
        &hub,
        "/activities/annual-meeting-2011-seoul",
        &[("Accept", "application/ld+json")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        headers[header::CONTENT_TYPE.as_str()]
            .to_str()
            .expect("ct")
            .starts_with("application/ld+json")
    );
    assert_eq!(
        serde_json::from_str::<Value>(&alone).expect("json"),
        embedded
    );
    let data = hub
        .ok(
            r#"{ activity(slug: "annual-meeting-2011-seoul") { jsonLd } }"#,
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        data["activity"]["jsonLd"], embedded,
        "GraphQL says the same"
    );

    // A day-precise, multi-day meeting.
    let (_, _, alone) = get(
        &hub,
        "/activities/annual-meeting-2015-kanazawa",
        &[("Accept", "application/ld+json")],
    )
    .await;
    let ld: Value = serde_json::from_str(&alone).expect("json");
    assert_eq!(ld["startDate"], "2015-05-25");
    assert_eq!(ld["endDate"], "2015-05-28");

    // Hostile Markdown.
    let lyon = hub.token(Some("lyon")).await;
    hub.ok(
        "mutation($d: String) { publishActivity(input: { kind: WORKSHOP, title: \"Hostile <b>title</b>\", slug: \"hostile\", startDate: \"2027-01-05\", description: $d }) { slug } }",
        json!({ "d": "Hello <script>alert(1)</script>\n\n[click](javascript:alert(2)) [ok](https://lyon.example/x)\n\n![pixel](https://tracker.example/p.png)\n\n</script><img src=x onerror=alert(3)>" }),
        Some(&lyon),
    )
    .await;
    let (_, _, html) = get(&hub, "/activities/hostile", &[]).await;
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the JSON-LD block: {html}"
    );
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("href=\"javascript:"), "{html}");
    assert!(
        lower.contains("href=\"#\">click</a>"),
        "the unsafe link is neutralised: {html}"
    );
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<b>title"), "{html}");
    assert!(html.contains("href=\"https://lyon.example/x\""), "{html}");
    let start = html
        .find("<script type=\"application/ld+json\">")
        .expect("JSON-LD")
        + 35;
    let end = start + html[start..].find("</script>").expect("end");
    let ld: Value = serde_json::from_str(&html[start..end]).expect("JSON-LD still parses");
    assert!(ld["description"].is_null() || ld["description"].as_str().is_some());
    assert_eq!(ld["name"], "Hostile <b>title</b>");
}

/// A tiny site on another origin, serving `pages` (path → (CSP, HTML)) and
/// a script that records CSP violations.
async fn other_origin(pages: Vec<(&'static str, String)>, csp: String) -> String {
    use axum::response::IntoResponse;
    let mut app = axum::Router::new().route(
        "/watch.js",
        axum::routing::get(|| async {
            (
                [(header::CONTENT_TYPE, "text/javascript")],
                "window.__violations = []; document.addEventListener('securitypolicyviolation', function (e) { window.__violations.push(e.violatedDirective + ' ' + e.blockedURI); });",
            )
        }),
    );
    for (path, html) in pages {
        let csp = csp.clone();
        app = app.route(
            path,
            axum::routing::get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                        (header::CONTENT_SECURITY_POLICY, csp),
                    ],
                    html,
                )
                    .into_response()
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The widget, embedded by a page of another origin under a strict CSP
/// that allows only the hub, shows the city's seeded activities in a
/// shadow root, with no request to any other host; when the hub cannot be
/// reached, it leaves a plain link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_on_another_origin_in_chromium() {
    if !crate::browser::axe_available() {
        return;
    }
    let Some(browser) = Browser::start().await else {
        return;
    };
    let hub = TestHub::start(Backend::Sqlite).await;
    let csp = format!(
        "default-src 'none'; script-src 'self' {hub}; connect-src {hub}",
        hub = hub.base
    );
    // A port with nothing listening: the hub is "unreachable" from there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let page = |extra: &str| {
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><title>Seoul</title><script src=\"/watch.js\"></script></head>\
             <body><h1>Seoul's site</h1><p>Our network activities:</p>\
             <a href=\"{hub}/cities/seoul/calendar.ics\" data-cityhub-fallback>Seoul's activities</a>\
             <script src=\"{hub}/embed.js\" data-city=\"seoul\" data-limit=\"10\" data-from=\"2008-01-01\"{extra}></script>\
             </body></html>",
            hub = hub.base
        )
    };
    let site = other_origin(
        vec![
            ("/", page("")),
            ("/down", page(&format!(" data-hub=\"{dead}\""))),
            ("/fr", page(" data-lang=\"fr\"")),
            ("/es", page(" data-lang=\"es-ES\"")),
        ],
        csp,
    )
    .await;
    browser.goto(&format!("{site}/")).await;
    let titles = browser
        .wait_until(
            "const h = document.querySelector('.cityhub-widget');
             if (!h || !h.shadowRoot) return null;
             const items = [...h.shadowRoot.querySelectorAll('li')];
             return items.map(li => [li.querySelector('a').textContent, li.querySelector('a').href,
                                     (li.querySelector('time') || {}).textContent || '']);",
        )
        .await;
    let titles: Vec<(String, String, String)> = serde_json::from_value(titles).expect("rows");
    // Seoul's seeded activities, oldest first: the 2011 annual meeting
    // (known by year only) and the 2011 international conference.
    let expected: Vec<toml::Value> = dataset()
        .into_iter()
        .filter(|a| {
            a.get("hosts")
                .and_then(|h| h.as_array())
                .is_some_and(|h| h.iter().any(|c| c.as_str() == Some("seoul")))
        })
        .collect();
    assert_eq!(titles.len(), expected.len(), "{titles:?}");
    for a in &expected {
        let slug = a["slug"].as_str().expect("slug");
        let row = titles
            .iter()
            .find(|(_, href, _)| href.ends_with(&format!("/activities/{slug}")))
            .unwrap_or_else(|| panic!("{slug} missing from the widget: {titles:?}"));
        assert_eq!(row.0, a["title"].as_str().expect("title"));
        assert!(row.1.starts_with(&hub.base), "links to the hub's page");
        if a["date_precision"].as_str() == Some("YEAR") {
            assert_eq!(row.2, "2011", "year-only stays a year");
        } else {
            assert_eq!(row.2, "November 16, 2011");
        }
    }
    let ready = browser
        .eval("return document.querySelector('script[data-city]').dataset.cityhubState;")
        .await;
    assert_eq!(ready, json!("ready"));
    browser.axe("a city's page with the widget").await;
    let fallback_hidden = browser
        .eval("return document.querySelector('[data-cityhub-fallback]').hidden;")
        .await;
    assert_eq!(fallback_hidden, json!(true));
    // Styles are isolated: the host's h2 rule does not reach the widget's.
    let list_role = browser
        .eval("return document.querySelector('.cityhub-widget').shadowRoot.querySelector('ul') !== null;")
        .await;
    assert_eq!(list_role, json!(true));
    let violations = browser.eval("return window.__violations;").await;
    assert_eq!(
        violations,
        json!([]),
        "no CSP violation under a strict host policy"
    );
    // The host page themes it with custom properties (they cross the
    // shadow boundary) and may style its parts.
    let themed = browser
        .eval(
            "const h = document.querySelector('.cityhub-widget');
             h.style.setProperty('--cityhub-link-color', 'rgb(1, 2, 3)');
             document.body.style.setProperty('--cityhub-background', 'rgb(4, 5, 6)');
             const r = h.shadowRoot;
             return [getComputedStyle(r.querySelector('li a')).color,
                     getComputedStyle(r.querySelector('section')).backgroundColor,
                     r.querySelectorAll('[part~=item]').length,
                     r.querySelector('[part~=title]').textContent];",
        )
        .await;
    assert_eq!(themed[0], "rgb(1, 2, 3)", "{themed}");
    assert_eq!(themed[1], "rgb(4, 5, 6)", "{themed}");
    assert_eq!(themed[2], json!(titles.len()));
    assert_eq!(themed[3], "Activities of Seoul");
    let hub_host = hub.base.trim_start_matches("http://").to_owned();
    let site_host = site.trim_start_matches("http://").to_owned();
    let mut allowed = vec![hub_host.clone(), site_host.clone()];
    allowed.sort();
    assert_eq!(
        browser.requested_hosts().await,
        allowed,
        "no third-party request"
    );

    // In French and Spanish (`data-lang`): its own strings and the dates.
    for (path, heading, more, date) in [
        (
            "/fr",
            "Activités de Seoul",
            "S’abonner au calendrier",
            "16 novembre 2011",
        ),
        (
            "/es",
            "Actividades de Seoul",
            "Suscribirse al calendario",
            "16 de noviembre de 2011",
        ),
    ] {
        browser.goto(&format!("{site}{path}")).await;
        let shown = browser
            .wait_until(
                "const h = document.querySelector('.cityhub-widget');
                 if (!h || !h.shadowRoot) return null;
                 const r = h.shadowRoot;
                 return [r.querySelector('h2').textContent, r.querySelector('.more').textContent,
                         [...r.querySelectorAll('time')].map(t => t.textContent),
                         r.querySelector('section').lang];",
            )
            .await;
        assert_eq!(shown[0], heading, "{path}: {shown}");
        assert_eq!(shown[1], more, "{path}: {shown}");
        assert!(
            shown[2]
                .as_array()
                .is_some_and(|d| d.iter().any(|t| t == date)),
            "{path}: {shown}"
        );
        assert!(shown[3].as_str().is_some_and(|l| l.starts_with(&path[1..])));
    }

    // The hub unreachable (as the widget sees it): the plain link stays.
    browser.goto(&format!("{site}/down")).await;
    let state = browser
        .wait_until(
            "const s = document.querySelector('script[data-city]');
             const a = document.querySelector('[data-cityhub-fallback]');
             return s.dataset.cityhubState ? [a.hidden, !!document.querySelector('.cityhub-widget'), s.dataset.cityhubState] : null;",
        )
        .await;
    assert_eq!(state[2], json!("unreachable"));
    assert_eq!(state[0], json!(false), "the fallback link stays visible");
    assert_eq!(state[1], json!(false), "no widget");
    browser.close().await;
}

/// The activity page renders in Chromium and its JSON-LD parses there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_page_in_chromium() {
    if !crate::browser::axe_available() {
        return;
    }
    let Some(browser) = Browser::start().await else {
        return;
    };
    let hub = TestHub::start(Backend::Sqlite).await;
    browser
        .goto(&format!(
            "{}/activities/annual-meeting-2015-kanazawa",
            hub.base
        ))
        .await;
    let h1 = browser.wait_for("h1").await.text().await.expect("h1");
    let title = dataset()
        .into_iter()
        .find(|a| a["slug"].as_str() == Some("annual-meeting-2015-kanazawa"))
        .and_then(|a| a["title"].as_str().map(str::to_owned))
        .expect("title");
    assert_eq!(h1, title);
    browser.axe("an activity page").await;
    let ld = browser
        .eval("return JSON.parse(document.querySelector('script[type=\"application/ld+json\"]').textContent);")
        .await;
    assert_eq!(ld["@type"], "Event");
    assert_eq!(ld["startDate"], "2015-05-25");
    assert_eq!(ld["name"], title.as_str());
    let when = browser
        .eval("return document.querySelector('time').getAttribute('datetime');")
        .await;
    assert_eq!(when, "2015-05-25");
    let hub_host = hub.base.trim_start_matches("http://").to_owned();
    assert_eq!(browser.requested_hosts().await, vec![hub_host]);
    browser.close().await;
}

/// GraphiQL loads from the hub alone (no CDN) and runs its default query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_loads_and_runs_a_query_in_chromium() {
    if !crate::browser::axe_available() {
        return;
    }
    let Some(browser) = Browser::start().await else {
        return;
    };
    let hub = TestHub::start(Backend::Sqlite).await;
    browser.goto(&format!("{}/graphql", hub.base)).await;
    browser.wait_for(".graphiql-execute-button").await;
    browser
        .eval("document.querySelector('.graphiql-execute-button').click(); return true;")
        .await;
    let text = browser
        .wait_until(
            "const cm = document.querySelector('.graphiql-response .CodeMirror');
             const t = cm && cm.CodeMirror ? cm.CodeMirror.getValue() : '';
             return t.includes('activityCount') ? t : null;",
        )
        .await;
    let text = text.as_str().unwrap_or_default().to_owned();
    assert!(
        text.contains("UNESCO Creative Cities Network"),
        "the response panel shows the network: {text}"
    );
    browser.axe("GraphiQL").await;
    let hub_host = hub.base.trim_start_matches("http://").to_owned();
    assert_eq!(
        browser.requested_hosts().await,
        vec![hub_host],
        "every request went to the hub itself"
    );
    browser.close().await;
}

/// `web.calendar_max_events` and `web.feed_max_entries` bound the answers
/// (the latest by start date, the latest changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calendar_and_feed_sizes_are_bounded_by_config() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| {
        c.web.calendar_max_events = 2;
        c.web.feed_max_entries = 3;
    })
    .await;
    let (_, _, text) = get(&hub, "/calendar.ics", &[]).await;
    let events = by_url(&parse_calendar(&text));
    assert_eq!(
        events.keys().collect::<Vec<_>>(),
        vec![
            "annual-meeting-2024-braga",
            "annual-meeting-2025-enghien-les-bains"
        ],
        "the two latest by start date"
    );
    let (_, _, text) = get(&hub, "/feeds/activities.atom", &[]).await;
    let feed = feed_rs::parser::parse(text.as_bytes()).expect("valid");
    assert_eq!(feed.entries.len(), 3);
}

/// The `[web]` limits and `api.public_url` are checked at start-up.
#[test]
fn web_settings_are_validated() {
    let mut config = cityhub::config::Config::defaults();
    assert!(config.validate().is_ok());
    config.web.feed_max_entries = 0;
    assert!(config.validate().is_err());
    let mut config = cityhub::config::Config::defaults();
    config.web.calendar_max_events = 0;
    assert!(config.validate().is_err());
    let mut config = cityhub::config::Config::defaults();
    config.api.public_url = "hub.example.org".into();
    assert!(config.validate().is_err());
    config.api.public_url = "https://hub.example.org".into();
    assert!(config.validate().is_ok());
}

/// The read cache's hit and 304 counters from `/metrics`.
async fn cache_hits(hub: &TestHub) -> (u64, u64) {
    (
        hub.read_cache_count("hit").await,
        hub.read_cache_count("not_modified").await,
    )
}

both_backends!(
    cached_answers_change_right_after_each_mutation,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| c.cache.enabled = true).await;
        let lyon = hub.token(Some("lyon")).await;
        let calendar = "/cities/lyon/calendar.ics";
        let feed = "/cities/lyon/feed.atom";
        // Repeated requests are answered from the cache, 304s too.
        let (_, headers, first) = get(&hub, calendar, &[]).await;
        let etag = headers[header::ETAG.as_str()]
            .to_str()
            .expect("etag")
            .to_owned();
        let (hits, not_modified) = cache_hits(&hub).await;
        let (_, _, again) = get(&hub, calendar, &[]).await;
        assert_eq!(again, first);
        let (status, _, _) = get(&hub, calendar, &[("If-None-Match", etag.as_str())]).await;
        assert_eq!(status, 304);
        let (hits_after, not_modified_after) = cache_hits(&hub).await;
        assert_eq!(hits_after, hits + 2, "both answered from the cache");
        assert_eq!(not_modified_after, not_modified + 1);
        get(&hub, feed, &[]).await;

        // Publish: in the calendar and the feed as soon as the mutation returns.
        let data = hub
            .ok(
                r#"mutation { publishActivity(input: { kind: FESTIVAL, title: "Cached festival", startDate: "2026-10-02", venueCity: "lyon", fields: [MEDIA_ARTS] }) { id slug } }"#,
                json!({}),
                Some(&lyon),
            )
            .await;
        let id = data["publishActivity"]["id"].clone();
        let slug = data["publishActivity"]["slug"]
            .as_str()
            .expect("slug")
            .to_owned();
        let (status, _, text) = get(&hub, calendar, &[("If-None-Match", etag.as_str())]).await;
        assert_eq!(status, 200, "the old ETag no longer matches");
        let events = by_url(&parse_calendar(&text));
        assert_eq!(events[&slug]["SUMMARY"].1, "Cached festival");
        let (_, _, text) = get(&hub, feed, &[]).await;
        let parsed = feed_rs::parser::parse(text.as_bytes()).expect("feed");
        assert_eq!(
            parsed.entries[0].title.as_ref().map(|t| t.content.as_str()),
            Some("Cached festival"),
            "newest first"
        );
        let page = format!("/activities/{slug}");
        let (_, _, html) = get(&hub, &page, &[]).await;
        assert!(html.contains("Cached festival"));

        // Update: the new title, at once.
        hub.ok(
            r#"mutation($id: ID!) { updateActivity(id: $id, patch: { title: "Cached festival, renamed" }) { version } }"#,
            json!({ "id": id }),
            Some(&lyon),
        )
        .await;
        let (_, _, text) = get(&hub, calendar, &[]).await;
        let events = by_url(&parse_calendar(&text));
        assert_eq!(events[&slug]["SUMMARY"].1, "Cached festival\\, renamed");
        assert_eq!(events[&slug]["SEQUENCE"].1, "1");
        let (_, _, html) = get(&hub, &page, &[]).await;
        assert!(html.contains("Cached festival, renamed"));

        // Cancel: cancelled at once, in the calendar and the feed.
        hub.ok(
            r#"mutation($id: ID!) { cancelActivity(id: $id, reason: "Rain") { status } }"#,
            json!({ "id": id }),
            Some(&lyon),
        )
        .await;
        let (_, _, text) = get(&hub, calendar, &[]).await;
        let events = by_url(&parse_calendar(&text));
        assert_eq!(events[&slug]["STATUS"].1, "CANCELLED");
        let (_, _, text) = get(&hub, feed, &[]).await;
        let parsed = feed_rs::parser::parse(text.as_bytes()).expect("feed");
        assert_eq!(
            parsed.entries[0].title.as_ref().map(|t| t.content.as_str()),
            Some("Cancelled: Cached festival, renamed")
        );
        let (_, _, ld) = get(&hub, &page, &[("Accept", "application/ld+json")]).await;
        let ld: Value = serde_json::from_str(&ld).expect("json-ld");
        assert_eq!(ld["eventStatus"], "https://schema.org/EventCancelled");
        // A draft: the anonymous answer (kept) never shows it; Lyon's own
        // answer, kept apart, does.
        let draft = hub
            .ok(
                r#"mutation { publishActivity(input: { kind: WORKSHOP, title: "Cached draft", startDate: "2026-11-03", venueCity: "lyon" }, draft: true) { slug } }"#,
                json!({}),
                Some(&lyon),
            )
            .await["publishActivity"]["slug"]
            .as_str()
            .expect("slug")
            .to_owned();
        let bearer = format!("Bearer {lyon}");
        for _ in 0..2 {
            let (_, _, text) = get(&hub, calendar, &[]).await;
            assert!(!by_url(&parse_calendar(&text)).contains_key(&draft));
            let (_, headers, text) =
                get(&hub, calendar, &[("Authorization", bearer.as_str())]).await;
            assert!(by_url(&parse_calendar(&text)).contains_key(&draft));
            assert!(
                headers[header::CACHE_CONTROL.as_str()]
                    .to_str()
                    .expect("cache-control")
                    .contains("private")
            );
        }
    }
);
