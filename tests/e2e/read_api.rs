//! The read API: seeded facts, filters, orders, pagination, search, errors,
//! HTTP behaviour, DataLoader query counts and federation.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

const ALL: &str = r#"query All($filter: ActivityFilter, $order: ActivityOrder) {
  activities(first: 100, filter: $filter, orderBy: $order) {
    totalCount
    pageInfo { hasNextPage endCursor }
    nodes {
      id slug kind format status title summary description startDate endDate datePrecision
      venue venueCity { slug country } hosts { slug country } participants { slug }
      organizations fields themes objectives updatedAt
      documents { kind title url issuedOn issuedPrecision editors }
      publishedBy { slug }
    }
  }
}"#;

async fn all(hub: &TestHub, filter: Value, order: &str) -> Vec<Value> {
    let data = hub
        .ok(ALL, json!({ "filter": filter, "order": order }), None)
        .await;
    assert_eq!(
        data["activities"]["pageInfo"]["hasNextPage"], false,
        "the dataset fits one page"
    );
    data["activities"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn slugs(nodes: &[Value]) -> BTreeSet<String> {
    nodes
        .iter()
        .filter_map(|n| n["slug"].as_str().map(str::to_owned))
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn by_slug<'a>(nodes: &'a [Value], slug: &str) -> &'a Value {
    nodes
        .iter()
        .find(|n| n["slug"] == slug)
        .unwrap_or_else(|| panic!("no activity {slug}"))
}

both_backends!(
    seeded_facts_come_back_exact,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let data = hub
        .ok("{ network { name foundedYear cityCount countryCount activityCount fields { field cityCount } } }", json!({}), None)
        .await;
        let network = &data["network"];
        assert_eq!(network["name"], "UNESCO Creative Cities Network");
        assert_eq!(network["foundedYear"], 2004);
        let dataset: toml::Value = toml::from_str(cityhub::DATASET).expect("dataset");
        let cities = dataset["cities"].as_array().expect("cities");
        let activities = dataset["activities"].as_array().expect("activities");
        assert_eq!(network["cityCount"], cities.len());
        assert_eq!(network["activityCount"], activities.len());
        let countries: BTreeSet<&str> = cities
            .iter()
            .filter_map(|c| c["country"].as_str())
            .collect();
        assert_eq!(network["countryCount"], countries.len());
        let architecture = network["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .find(|f| f["field"] == "ARCHITECTURE")
            .cloned();
        assert_eq!(architecture.expect("architecture")["cityCount"], 2);

        let nodes = all(&hub, json!({}), "START_DATE_ASC").await;
        // The Shenzhen 2010 conference: exact days, host, communiqué.
        let shenzhen = by_slug(
            &nodes,
            &slug_of(activities, "Shenzhen International Conference 2010"),
        );
        assert_eq!(shenzhen["kind"], "INTERNATIONAL_CONFERENCE");
        assert_eq!(shenzhen["startDate"], "2010-12-07");
        assert_eq!(shenzhen["endDate"], "2010-12-09");
        assert_eq!(shenzhen["datePrecision"], "DAY");
        assert_eq!(
            strings(
                &shenzhen["hosts"]
                    .as_array()
                    .expect("hosts")
                    .iter()
                    .map(|h| h["slug"].clone())
                    .collect()
            ),
            vec!["shenzhen"]
        );
        let kinds: Vec<&str> = shenzhen["documents"]
            .as_array()
            .expect("docs")
            .iter()
            .filter_map(|d| d["kind"].as_str())
            .collect();
        assert!(kinds.contains(&"COMMUNIQUE"), "{shenzhen}");
        // Santa Fe 2008: the publication, its editor and its month.
        let santa_fe = by_slug(
            &nodes,
            &slug_of(activities, "Santa Fe International Conference 2008"),
        );
        assert_eq!(santa_fe["startDate"], "2008-09-28");
        assert_eq!(santa_fe["endDate"], "2008-10-02");
        let publication = santa_fe["documents"]
            .as_array()
            .expect("docs")
            .iter()
            .find(|d| d["kind"] == "PUBLICATION")
            .expect("publication");
        assert_eq!(
            publication["title"],
            "Creative Tourism, A Global Conversation"
        );
        assert_eq!(publication["editors"], json!(["Rebecca Wurzburger"]));
        assert_eq!(publication["issuedOn"], "2009-08-01");
        assert_eq!(publication["issuedPrecision"], "MONTH");
        // Annual meetings known only by year, organized by UNESCO, with the page's objectives.
        let paris = nodes
            .iter()
            .find(|n| {
                n["kind"] == "ANNUAL_MEETING"
                    && n["startDate"] == "2008-01-01"
                    && n["hosts"].as_array().is_some_and(Vec::is_empty)
            })
            .expect("Paris 2008 meeting");
        assert_eq!(paris["datePrecision"], "YEAR");
        assert_eq!(paris["organizations"], json!(["UNESCO"]));
        assert_eq!(paris["objectives"].as_array().map(Vec::len), Some(3));
        assert!(
            paris["publishedBy"].is_null(),
            "network activities have no city publisher"
        );
        // Nothing invented: every seeded activity's dates are as the file says.
        for a in activities {
            let node = by_slug(&nodes, a["slug"].as_str().expect("slug"));
            assert_eq!(
                node["startDate"].as_str(),
                a.get("start_date").and_then(|d| d.as_str()),
                "{}",
                a["slug"]
            );
            assert_eq!(
                node["endDate"].as_str(),
                a.get("end_date").and_then(|d| d.as_str()),
                "{}",
                a["slug"]
            );
            assert_eq!(node["title"].as_str(), a["title"].as_str());
        }
        let city = hub
            .ok(
                r#"{ city(slug: "ostersund") { name country fields memberSince } }"#,
                json!({}),
                None,
            )
            .await;
        assert_eq!(
            city["city"],
            json!({ "name": "Östersund", "country": "SE", "fields": ["GASTRONOMY"], "memberSince": 2010 })
        );
    }
);

fn slug_of(activities: &[toml::Value], title: &str) -> String {
    activities
        .iter()
        .find(|a| a["title"].as_str() == Some(title))
        .and_then(|a| a["slug"].as_str())
        .unwrap_or_else(|| panic!("no seeded activity titled {title}"))
        .to_owned()
}

/// A filter and the rule it should apply, checked against the full listing.
type FilterCase = (Value, Box<dyn Fn(&Value) -> bool>);

/// What a filter should select, computed here from the full listing.
fn expected(nodes: &[Value], keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    slugs(
        &nodes
            .iter()
            .filter(|n| keep(n))
            .cloned()
            .collect::<Vec<_>>(),
    )
}

fn involves(n: &Value, city: &str) -> bool {
    n["venueCity"]["slug"] == city
        || n["hosts"]
            .as_array()
            .is_some_and(|h| h.iter().any(|c| c["slug"] == city))
        || n["participants"]
            .as_array()
            .is_some_and(|h| h.iter().any(|c| c["slug"] == city))
}

fn in_country(n: &Value, country: &str) -> bool {
    n["venueCity"]["country"] == country
        || n["hosts"]
            .as_array()
            .is_some_and(|h| h.iter().any(|c| c["country"] == country))
}

both_backends!(
    every_filter_alone_and_combined,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let everything = all(&hub, json!({}), "START_DATE_DESC").await;
        assert!(everything.len() > 20);
        let cases: Vec<FilterCase> = vec![
            (
                json!({ "kinds": ["ANNUAL_MEETING"] }),
                Box::new(|n: &Value| n["kind"] == "ANNUAL_MEETING"),
            ),
            (
                json!({ "kinds": ["INTERNATIONAL_CONFERENCE", "MEMBER_MEETING"] }),
                Box::new(|n: &Value| {
                    n["kind"] == "INTERNATIONAL_CONFERENCE" || n["kind"] == "MEMBER_MEETING"
                }),
            ),
            (
                json!({ "fields": ["DESIGN"] }),
                Box::new(|n: &Value| strings(&n["fields"]).contains(&"DESIGN".to_owned())),
            ),
            (
                json!({ "cities": ["shenzhen"] }),
                Box::new(|n: &Value| involves(n, "shenzhen")),
            ),
            (
                json!({ "cities": ["santa-fe", "braga"] }),
                Box::new(|n: &Value| involves(n, "santa-fe") || involves(n, "braga")),
            ),
            (
                json!({ "countries": ["CN"] }),
                Box::new(|n: &Value| in_country(n, "CN")),
            ),
            (
                json!({ "from": "2015-01-01" }),
                Box::new(|n: &Value| {
                    n["endDate"]
                        .as_str()
                        .or(n["startDate"].as_str())
                        .is_some_and(|d| d >= "2015-01-01")
                }),
            ),
            (
                json!({ "to": "2010-12-31" }),
                Box::new(|n: &Value| n["startDate"].as_str().is_some_and(|d| d <= "2010-12-31")),
            ),
            (
                json!({ "from": "2010-01-01", "to": "2011-12-31" }),
                Box::new(|n: &Value| {
                    let start = n["startDate"].as_str();
                    let end = n["endDate"].as_str().or(start);
                    start.is_some_and(|s| s <= "2011-12-31")
                        && end.is_some_and(|e| e >= "2010-01-01")
                }),
            ),
            (
                json!({ "formats": ["ONLINE"] }),
                Box::new(|n: &Value| n["format"] == "ONLINE"),
            ),
            (
                json!({ "statuses": ["PUBLISHED"] }),
                Box::new(|n: &Value| n["status"] == "PUBLISHED"),
            ),
            (
                json!({ "themes": ["culture and ai"] }),
                Box::new(|n: &Value| {
                    strings(&n["themes"])
                        .iter()
                        .any(|t| t.eq_ignore_ascii_case("culture and ai"))
                }),
            ),
            (
                json!({ "kinds": ["ANNUAL_MEETING"], "countries": ["FR"], "from": "2009-01-01" }),
                Box::new(|n: &Value| {
                    n["kind"] == "ANNUAL_MEETING"
                        && in_country(n, "FR")
                        && n["endDate"]
                            .as_str()
                            .or(n["startDate"].as_str())
                            .is_some_and(|d| d >= "2009-01-01")
                }),
            ),
        ];
        for (filter, keep) in cases {
            let want = expected(&everything, keep);
            assert!(
                !want.is_empty(),
                "filter {filter} selects nothing in the dataset: the case proves nothing"
            );
            let got = slugs(&all(&hub, filter.clone(), "START_DATE_DESC").await);
            assert_eq!(got, want, "filter {filter}");
            let count = hub
                .ok(
                    "query($f: ActivityFilter) { activities(filter: $f, first: 1) { totalCount } }",
                    json!({ "f": filter }),
                    None,
                )
                .await;
            assert_eq!(
                count["activities"]["totalCount"],
                want.len(),
                "totalCount for {filter}"
            );
        }
        assert!(
            all(&hub, json!({ "statuses": ["DRAFT"] }), "START_DATE_DESC")
                .await
                .is_empty(),
            "anonymous sees no drafts"
        );
    }
);

both_backends!(all_four_orders, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    let fold = |s: &str| {
        s.to_lowercase()
            .replace(['é', 'É'], "e")
            .replace(['ö', 'Ö'], "o")
            .replace('á', "a")
            .replace('ó', "o")
    };
    let desc = all(&hub, json!({}), "START_DATE_DESC").await;
    let keys: Vec<String> = desc
        .iter()
        .map(|n| n["startDate"].as_str().unwrap_or("0000").to_owned())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] >= w[1]),
        "START_DATE_DESC: {keys:?}"
    );
    assert_eq!(
        keys.last().map(String::as_str),
        Some("0000"),
        "undated last"
    );
    let asc = all(&hub, json!({}), "START_DATE_ASC").await;
    let keys: Vec<String> = asc
        .iter()
        .map(|n| n["startDate"].as_str().unwrap_or("0000").to_owned())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "START_DATE_ASC: {keys:?}"
    );
    let titles = all(&hub, json!({}), "TITLE_ASC").await;
    let keys: Vec<String> = titles
        .iter()
        .map(|n| fold(n["title"].as_str().unwrap_or_default()))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "TITLE_ASC: {keys:?}");
    let token = hub.token(Some("lyon")).await;
    let touched = hub
        .ok(r#"mutation { publishActivity(input: { kind: WORKSHOP, title: "Latest change" }) { slug } }"#, json!({}), Some(&token))
        .await;
    let updated = all(&hub, json!({}), "UPDATED_AT_DESC").await;
    assert_eq!(updated[0]["slug"], touched["publishActivity"]["slug"]);
    let keys: Vec<String> = updated
        .iter()
        .map(|n| n["updatedAt"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] >= w[1]),
        "UPDATED_AT_DESC: {keys:?}"
    );
});

const PAGE: &str = "query($after: String, $order: ActivityOrder) { activities(first: 4, after: $after, orderBy: $order) { pageInfo { hasNextPage hasPreviousPage endCursor startCursor } edges { cursor node { slug } } } }";

both_backends!(
    walking_pages_returns_each_row_once_even_while_inserting,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let token = hub.token(None).await;
        for order in [
            "START_DATE_DESC",
            "START_DATE_ASC",
            "UPDATED_AT_DESC",
            "TITLE_ASC",
        ] {
            let before = slugs(&all(&hub, json!({}), order).await);
            let mut seen: Vec<String> = Vec::new();
            let mut after: Option<String> = None;
            let mut inserted = 0;
            loop {
                let data = hub
                    .ok(PAGE, json!({ "after": after, "order": order }), None)
                    .await;
                let page = &data["activities"];
                assert_eq!(page["pageInfo"]["hasPreviousPage"], after.is_some());
                for edge in page["edges"].as_array().expect("edges") {
                    seen.push(edge["node"]["slug"].as_str().expect("slug").to_owned());
                }
                // Rows arrive between pages, dated all over the range.
                let year = 2005 + inserted * 3;
                hub.ok(
                "mutation($i: ActivityInput!) { publishActivity(input: $i) { slug } }",
                json!({ "i": { "kind": "FESTIVAL", "title": format!("Inserted {order} {inserted}"), "startDate": format!("{year}-06-01") } }),
                Some(&token),
            )
            .await;
                inserted += 1;
                if page["pageInfo"]["hasNextPage"] == false {
                    break;
                }
                after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
            }
            let unique: BTreeSet<String> = seen.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                seen.len(),
                "{order}: a row came twice: {seen:?}"
            );
            assert!(
                before.is_subset(&unique),
                "{order}: rows present from the start were all seen"
            );
        }
    }
);

both_backends!(
    text_search_folds_case_and_accents,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let search = |text: &'static str| {
            let hub = &hub;
            async move { slugs(&all(hub, json!({ "text": text }), "START_DATE_DESC").await) }
        };
        let ostersund = search("ostersund").await;
        assert!(
            !ostersund.is_empty() && ostersund.iter().all(|s| s.contains("ostersund")),
            "{ostersund:?}"
        );
        assert_eq!(search("ÖSTERSUND").await, ostersund);
        // A title word, a theme, a description word, a prefix.
        assert!(
            search("tourism")
                .await
                .iter()
                .any(|s| s.contains("santa-fe"))
        );
        assert!(!search("Culture AI").await.is_empty());
        assert!(
            search("communiqué")
                .await
                .iter()
                .any(|s| s.contains("shenzhen"))
        );
        assert!(
            search("revitaliz")
                .await
                .iter()
                .any(|s| s.contains("beijing"))
        );
        assert!(search("zzzznotaword").await.is_empty());
        assert!(search("\"*)(").await.is_empty(), "operators are not syntax");
        let combined = slugs(
            &all(
                &hub,
                json!({ "text": "conference", "kinds": ["INTERNATIONAL_CONFERENCE"] }),
                "START_DATE_DESC",
            )
            .await,
        );
        assert!(!combined.is_empty());
    }
);

both_backends!(
    not_found_and_bad_input_have_contract_codes,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.api.max_complexity = 300;
            c.api.max_depth = 6;
        })
        .await;
        let none = hub
            .ok(
                r#"{ activity(slug: "no-such-thing") { id } city(slug: "atlantis") { id } }"#,
                json!({}),
                None,
            )
            .await;
        assert!(none["activity"].is_null() && none["city"].is_null());
        let e = hub
            .fails(
                "{ activities(first: 101) { totalCount } }",
                json!({}),
                None,
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(e["extensions"]["field"], "first");
        hub.fails(
            "{ activities(first: -1) { totalCount } }",
            json!({}),
            None,
            "BAD_USER_INPUT",
        )
        .await;
        let e = hub
            .fails(
                r#"{ activities(after: "garbage!") { totalCount } }"#,
                json!({}),
                None,
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(e["extensions"]["field"], "after");
        let cursor = hub
            .ok(
                "{ activities(first: 1) { pageInfo { endCursor } } }",
                json!({}),
                None,
            )
            .await["activities"]["pageInfo"]["endCursor"]
            .clone();
        hub.fails(
            "query($c: String) { activities(after: $c, orderBy: TITLE_ASC) { totalCount } }",
            json!({ "c": cursor }),
            None,
            "BAD_USER_INPUT",
        )
        .await;
        hub.fails(
            r#"{ city(slug: "lyon", id: "1") { id } }"#,
            json!({}),
            None,
            "BAD_USER_INPUT",
        )
        .await;
        hub.fails(
            r#"{ activity(id: "abc") { id } }"#,
            json!({}),
            None,
            "BAD_USER_INPUT",
        )
        .await;
        hub.fails(
            r#"{ activities(filter: { from: "2014-13-45" }) { totalCount } }"#,
            json!({}),
            None,
            "GRAPHQL_VALIDATION_FAILED",
        )
        .await;
        hub.fails(
            r#"query($f: ActivityFilter) { activities(filter: $f) { totalCount } }"#,
            json!({ "f": { "from": "yesterday" } }),
            None,
            "GRAPHQL_VALIDATION_FAILED",
        )
        .await;
        hub.fails(
            r#"{ activities(filter: { from: "2015-01-01", to: "2014-01-01" }) { totalCount } }"#,
            json!({}),
            None,
            "BAD_USER_INPUT",
        )
        .await;
        hub.fails("{ activities { ", json!({}), None, "GRAPHQL_PARSE_FAILED")
            .await;
        hub.fails(
            "{ noSuchField }",
            json!({}),
            None,
            "GRAPHQL_VALIDATION_FAILED",
        )
        .await;
        hub.fails(
        "{ activities(first: 1) { nodes { hosts { activities(first: 1) { nodes { hosts { activities(first: 1) { nodes { id } } } } } } } } }",
        json!({}),
        None,
        "QUERY_TOO_DEEP",
    )
    .await;
        hub.fails(
            "{ activities(first: 100) { nodes { id title hosts { name } } } }",
            json!({}),
            None,
            "QUERY_TOO_COMPLEX",
        )
        .await;
        let long = "x".repeat(300);
        hub.fails(
            "query($t: String) { activities(filter: { text: $t }) { totalCount } }",
            json!({ "t": long }),
            None,
            "BAD_USER_INPUT",
        )
        .await;
        // Still healthy afterwards.
        let health = hub
            .client
            .get(format!("{}/healthz", hub.base))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
        hub.ok("{ network { name } }", json!({}), None).await;
    }
);

both_backends!(
    http_follows_graphql_over_http,
    |backend: Backend| async move {
        let hub = TestHub::start_with(backend, |c| c.http.body_limit_bytes = 4096).await;
        let get = hub
            .client
            .get(hub.url())
            .query(&[("query", "{ network { name } }")])
            .send()
            .await
            .expect("get");
        assert_eq!(get.status(), 200);
        let body: Value = get.json().await.expect("json");
        assert_eq!(
            body["data"]["network"]["name"],
            "UNESCO Creative Cities Network"
        );
        let get_mutation = hub
            .client
            .get(hub.url())
            .query(&[("query", "mutation { revokeToken(id: \"x\") }")])
            .send()
            .await
            .expect("get");
        assert_eq!(get_mutation.status(), 405);
        let form = hub
            .client
            .post(hub.url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("query=x")
            .send()
            .await
            .expect("post");
        assert_eq!(form.status(), 415);
        let malformed = hub
            .client
            .post(hub.url())
            .header("content-type", "application/json")
            .body("{\"query\": ")
            .send()
            .await
            .expect("post");
        assert_eq!(malformed.status(), 400);
        let big = json!({ "query": format!("{{ network {{ name }} }} #{}", "x".repeat(5000)) });
        let large = hub
            .client
            .post(hub.url())
            .json(&big)
            .send()
            .await
            .expect("post");
        assert_eq!(large.status(), 413);
        let body: Value = large.json().await.expect("json");
        assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
        let strict = hub
            .client
            .post(hub.url())
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": "{ nope" }))
            .send()
            .await
            .expect("post");
        assert_eq!(strict.status(), 400);
        assert!(
            strict.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .starts_with("application/graphql-response+json")
        );
        let bad_token = hub
            .post("{ network { name } }", json!({}), Some("not-a-jwt"))
            .await;
        assert_eq!(bad_token.0, 401);
        assert_eq!(
            bad_token.1["errors"][0]["extensions"]["code"],
            "UNAUTHENTICATED"
        );

        let page = hub
            .client
            .get(hub.url())
            .header("accept", "text/html")
            .send()
            .await
            .expect("graphiql");
        assert_eq!(page.status(), 200);
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap_or_default()
                .contains("script-src 'self'")
        );
        let html = page.text().await.expect("html");
        assert!(
            html.contains("/graphiql/graphiql.min.js")
                && !html.contains("unpkg")
                && !html.contains("cdn")
        );
        for asset in [
            "graphiql.min.js",
            "graphiql.min.css",
            "react.production.min.js",
            "react-dom.production.min.js",
            "init.js",
        ] {
            let r = hub
                .client
                .get(format!("{}/graphiql/{asset}", hub.base))
                .send()
                .await
                .expect("asset");
            assert_eq!(r.status(), 200, "{asset}");
        }
        let sdl = hub
            .client
            .get(format!("{}/schema.graphql", hub.base))
            .send()
            .await
            .expect("sdl")
            .text()
            .await
            .expect("text");
        assert_eq!(sdl, cityhub_graphql::sdl());
        let ready = hub
            .client
            .get(format!("{}/readyz", hub.base))
            .send()
            .await
            .expect("readyz");
        assert_eq!(ready.status(), 200);
        let preflight = hub
            .client
            .request(reqwest::Method::OPTIONS, hub.url())
            .header("origin", "https://www.lyon.fr")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
            .await
            .expect("preflight");
        assert!(preflight.status().is_success());
        assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
        let metrics = hub.metrics().await;
        assert!(
            metrics
                .contains("cityhub_graphql_requests_total{operation=\"anonymous\",outcome=\"ok\"}"),
            "{metrics}"
        );
        assert!(metrics.contains("cityhub_db_pool_connections"));
    }
);

both_backends!(
    a_page_costs_a_constant_number_of_queries,
    |backend: Backend| async move {
        // The event pump also queries the database: keep it from polling, and
        // let it deliver the writes below before counting.
        let hub = TestHub::start_with(backend, |c| c.events.poll_interval_ms = 3_600_000).await;
        let mut live = hub.events.subscribe();
        let token = hub.token(None).await;
        let cities = ["lyon", "seoul", "kobe", "braga", "dakar"];
        for i in 0..100 {
            hub.ok(
            "mutation($i: ActivityInput!) { publishActivity(input: $i) { id } }",
            json!({ "i": {
                "kind": "WORKSHOP", "title": format!("Workshop {i}"), "startDate": "2026-05-01",
                "venueCity": cities[i % 5], "coHosts": [cities[(i + 1) % 5], cities[(i + 2) % 5]],
                "documents": [{ "kind": "PROGRAMME", "title": "Programme", "url": "https://example.org/p.pdf" }]
            } }),
            Some(&token),
        )
        .await;
        }
        let lyon = hub.token(Some("lyon")).await;
        let ids = hub
            .ok(
                "{ activities(first: 100, filter: { kinds: [WORKSHOP] }) { nodes { id } } }",
                json!({}),
                None,
            )
            .await;
        for node in ids["activities"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .take(30)
        {
            hub.ok(
                "mutation($id: ID!) { joinActivity(id: $id) { id } }",
                json!({ "id": node["id"] }),
                Some(&lyon),
            )
            .await;
        }
        // Wait until the pump has broadcast the newest event: from then on
        // it runs at most a few more statements (a read woken by the last
        // commits; on PostgreSQL the last NOTIFY and the read its echo
        // wakes), each of which can inflate at most one measurement below.
        let head = cityhub_storage::repo::events::EventLog::head(hub.db.conn())
            .await
            .expect("the log's head");
        tokio::time::timeout(std::time::Duration::from_secs(120), async {
            loop {
                match live.recv().await {
                    Ok(event) if event.record.seq >= head => return,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        panic!("the event bus closed")
                    }
                }
            }
        })
        .await
        .expect("the pump delivers the writes");
        drop(live);
        let mut costs = Vec::new();
        for n in [10, 100] {
            // The cheapest of several runs: stray statements of the pump only
            // add to a run, and cannot reach every one. Each run's document
            // differs (an alias), so none is answered from the cache.
            let mut cheapest = u64::MAX;
            for run in 0..4 {
                let query = format!(
                    "query($n: Int) {{ activities(first: $n, filter: {{ kinds: [WORKSHOP] }}) {{ \
                     run{run}: totalCount nodes {{ title venueCity {{ name }} hosts {{ name }} \
                     participants {{ name }} documents {{ title }} publishedBy {{ name }} }} }} }}"
                );
                let before = hub.db.query_count();
                let data = hub.ok(&query, json!({ "n": n }), None).await;
                cheapest = cheapest.min(hub.db.query_count() - before);
                assert_eq!(
                    data["activities"]["nodes"].as_array().map(Vec::len),
                    Some(n)
                );
            }
            costs.push(cheapest);
        }
        assert_eq!(
            costs[0], costs[1],
            "queries for 10 rows vs 100 rows: {costs:?}"
        );
        assert!(
            costs[1] <= 8,
            "a page with every relation costs {} queries",
            costs[1]
        );
    }
);

both_backends!(federation_entities_resolve, |backend: Backend| async move {
    let hub = TestHub::start(backend).await;
    let sdl = hub.ok("{ _service { sdl } }", json!({}), None).await;
    let sdl = sdl["_service"]["sdl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        sdl.contains("type City implements Node @key(fields: \"id\")")
            && sdl.contains("type Activity implements Node @key(fields: \"id\")"),
        "{sdl}"
    );
    let lyon = hub
        .ok(r#"{ city(slug: "lyon") { id } }"#, json!({}), None)
        .await;
    let id = lyon["city"]["id"].clone();
    let entities = hub
        .ok(
            "query($r: [_Any!]!) { _entities(representations: $r) { ... on City { slug country } } }",
            json!({ "r": [{ "__typename": "City", "id": id }] }),
            None,
        )
        .await;
    assert_eq!(
        entities["_entities"][0],
        json!({ "slug": "lyon", "country": "FR" })
    );
});

/// graphql-js's `getIntrospectionQuery()` as GraphiQL sends it (the type
/// reference nests `ofType` nine levels deep).
const INTROSPECTION: &str = include_str!("../../crates/graphql/src/testdata/introspection.graphql");

both_backends!(
    graphiql_introspection_fits_the_default_limits,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let data = hub.ok(INTROSPECTION, json!({}), None).await;
        assert_eq!(data["__schema"]["subscriptionType"]["name"], "Subscription");
        let types = data["__schema"]["types"].as_array().expect("types");
        assert!(
            types
                .iter()
                .any(|t| t["name"] == "Activity" && t["description"].is_string())
        );
    }
);

both_backends!(
    a_listing_reads_the_description_when_its_nodes_ask_for_it,
    |backend: Backend| async move {
        // Listings whose nodes select no `description` leave it unread; one
        // that selects it, through `nodes` or `edges.node`, on every page
        // path (a city by start date or by update, search, the network),
        // must return the activity's own.
        let hub = TestHub::start(backend).await;
        let token = hub.token(Some("lyon")).await;
        let description = "A workshop on **paper** and print, in Lyon.\n\nOpen to all.";
        hub.ok(
            "mutation($d: String) { publishActivity(input: { kind: WORKSHOP, title: \"Paper and print\", description: $d, startDate: \"2026-05-04\" }) { slug } }",
            json!({ "d": description }),
            Some(&token),
        )
        .await;
        let detail = |slug: String| {
            let hub = &hub;
            async move {
                hub.ok(
                    "query($s: String) { activity(slug: $s) { description } }",
                    json!({ "s": slug }),
                    None,
                )
                .await["activity"]["description"]
                    .clone()
            }
        };
        let filters = [
            json!({ "cities": ["lyon"] }),
            json!({ "cities": ["lyon"], "text": "paper" }),
            json!({ "text": "paper" }),
            json!({}),
        ];
        let mut seen = 0;
        for filter in &filters {
            for order in ["START_DATE_DESC", "UPDATED_AT_DESC"] {
                for shape in [
                    "nodes { slug description }",
                    "edges { node { slug description } }",
                ] {
                    let data = hub
                        .ok(
                            &format!("query($f: ActivityFilter, $o: ActivityOrder) {{ activities(first: 100, filter: $f, orderBy: $o) {{ {shape} }} }}"),
                            json!({ "f": filter, "o": order }),
                            None,
                        )
                        .await;
                    let list = &data["activities"];
                    let nodes: Vec<Value> = match list["nodes"].as_array() {
                        Some(nodes) => nodes.clone(),
                        None => list["edges"]
                            .as_array()
                            .map(|e| e.iter().map(|e| e["node"].clone()).collect())
                            .unwrap_or_default(),
                    };
                    assert!(!nodes.is_empty(), "{filter} {order} {shape}: no node");
                    for node in &nodes {
                        let slug = node["slug"].as_str().unwrap_or_default().to_owned();
                        assert_eq!(
                            node["description"],
                            detail(slug.clone()).await,
                            "{filter} {order} {shape}: {slug}"
                        );
                        if node["description"] == description {
                            seen += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(seen, filters.len() * 4, "the new activity on every path");
    }
);
