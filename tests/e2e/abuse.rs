//! The second hardening round, tried as an attacker would, over plain HTTP
//! and WebSocket: memory no anonymous client can fill (documents bounded in
//! tokens before parsing, caches bounded in bytes and holding only what
//! ran, persisted-query registrations rate-limited and their rows bounded
//! in bytes), a cost guard the document cannot steer (variable defaults,
//! several operations), anonymous sockets counted per address, city-website
//! pages under the anonymous limit, canonical cache keys, an admin listener
//! for `/metrics`, GraphiQL unframeable, and links no client's `Host` sets.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};
use crate::ws_raw::{Incoming, Protocol, RawClient};

/// A gauge or counter of `/metrics` (0 when absent).
async fn metric(hub: &TestHub, name: &str) -> f64 {
    hub.metrics()
        .await
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

/// Every activity `token` may see, drafts included.
async fn activity_count(hub: &TestHub, token: &str) -> i64 {
    let q = "{ activities(first: 0, filter: { statuses: [DRAFT, PUBLISHED, CANCELLED] }) { totalCount } }";
    hub.ok(q, json!({}), Some(token)).await["activities"]["totalCount"]
        .as_i64()
        .expect("count")
}

both_backends!(
    documents_past_the_token_limit_are_refused_before_parsing,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| c.api.max_document_tokens = 2_000).await;
        // 2,001 tokens and more: refused, whatever the rest would be.
        let long = format!("{{ network {{ {} }} }}", "name ".repeat(2_000));
        let (_, body) = hub.post(&long, json!({}), None).await;
        assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
        // Comments and whitespace are not tokens: a long comment passes.
        let commented = format!("# {}\n{{ network {{ name }} }}", "x".repeat(200_000));
        let data = hub.ok(&commented, json!({}), None).await;
        assert_eq!(data["network"]["name"], "UNESCO Creative Cities Network");
        // Over a WebSocket too.
        let mut ws = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        ws.subscribe_query("big", &long, json!({})).await;
        let error = ws.error("big", "QUERY_TOO_COMPLEX").await;
        assert!(error.is_object() || error.is_array(), "{error}");
        hub.stop().await;
    }
);

both_backends!(
    only_documents_that_ran_are_kept_and_by_weight,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| c.cache.max_document_bytes = 256 * 1024).await;
        // Documents that fail validation or the guard cost nothing after.
        for i in 0..20 {
            let (_, body) = hub
                .post(&format!("{{ nope{i} {{ name }} }}"), json!({}), None)
                .await;
            assert_eq!(code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
            let aliases: Vec<String> = (0..51)
                .map(|a| format!("a{a}_{i}: network {{ name }}"))
                .collect();
            let (_, body) = hub
                .post(&format!("{{ {} }}", aliases.join(" ")), json!({}), None)
                .await;
            assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
        }
        assert_eq!(metric(&hub, "cityhub_document_cache_entries").await, 0.0);
        hub.ok("{ network { name } }", json!({}), None).await;
        assert_eq!(metric(&hub, "cityhub_document_cache_entries").await, 1.0);
        // Many distinct valid documents: the cache stays within its bytes.
        for i in 0..400 {
            let fields: Vec<String> = (0..20).map(|f| format!("f{f}_{i}: name")).collect();
            let q = format!("{{ network {{ {} }} }}", fields.join(" "));
            hub.ok(&q, json!({}), None).await;
        }
        let bytes = metric(&hub, "cityhub_document_cache_bytes").await;
        let entries = metric(&hub, "cityhub_document_cache_entries").await;
        assert!(
            bytes <= 256.0 * 1024.0,
            "{bytes} bytes in {entries} entries"
        );
        assert!((10.0..401.0).contains(&entries), "{entries}");
        hub.stop().await;
    }
);

both_backends!(
    entities_given_as_a_variable_default_are_counted,
    |backend| async move {
        let hub = TestHub::start(backend).await;
        let items = vec![r#"{__typename: "City", id: "1"}"#; 500].join(", ");
        let q = format!(
            "query($r: [_Any!]! = [{items}]) {{ _entities(representations: $r) {{ __typename }} }}"
        );
        let (_, body) = hub.post(&q, json!({}), None).await;
        assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
        assert!(body["data"].is_null(), "nothing resolved: {body}");
        // Sent as a variable instead, the same list is refused the same way.
        let reps: Vec<Value> = (0..500)
            .map(|_| json!({"__typename": "City", "id": "1"}))
            .collect();
        let (_, body) = hub
            .post(
                "query($r: [_Any!]!) { _entities(representations: $r) { __typename } }",
                json!({ "r": reps }),
                None,
            )
            .await;
        assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
        // Within the limit, a default runs.
        let few = [r#"{__typename: "City", id: "1"}"#; 3].join(", ");
        let q = format!(
            "query($r: [_Any!]! = [{few}]) {{ _entities(representations: $r) {{ __typename }} }}"
        );
        let data = hub.ok(&q, json!({}), None).await;
        assert_eq!(data["_entities"].as_array().map(Vec::len), Some(3));
        hub.stop().await;
    }
);

both_backends!(
    the_mutation_cap_counts_the_operation_that_runs,
    |backend| async move {
        let hub = TestHub::start(backend).await;
        let token = hub.token(Some("lyon")).await;
        let publishes = |n: usize| {
            (0..n)
                .map(|i| {
                    format!(
                        r#"m{i}: publishActivity(input: {{ kind: WORKSHOP, title: "Steered {i}" }}, draft: true) {{ id }}"#
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let reads = (0..30)
            .map(|i| format!("q{i}: activities(first: 100) {{ nodes {{ id title }} }}"))
            .collect::<Vec<_>>()
            .join(" ");
        let before = activity_count(&hub, &token).await;
        // A query and a mutation in one document; `operationName` picks
        // the mutation.
        let run = |name: &'static str, mutations: usize| {
            let doc = format!(
                "query Big {{ {reads} }} mutation {name} {{ {} }}",
                publishes(mutations)
            );
            let request = hub
                .client
                .post(hub.url())
                .bearer_auth(&token)
                .json(&json!({ "query": doc, "operationName": name }));
            async move {
                let response = request.send().await.expect("post");
                response.json::<Value>().await.expect("json")
            }
        };
        let body = run("Many", 14).await;
        assert_eq!(code(&body), "QUERY_TOO_COMPLEX", "{body}");
        assert_eq!(
            activity_count(&hub, &token).await,
            before,
            "no mutation ran"
        );
        // The same document picking a small mutation runs just that one.
        let body = run("Few", 2).await;
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(activity_count(&hub, &token).await, before + 2);
        hub.stop().await;
    }
);

/// Registers `query` as a persisted query over POST (with `token` when
/// given); returns the answer's status and body.
async fn register(hub: &TestHub, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = hub
        .client
        .post(hub.url())
        .json(&json!({ "query": query, "extensions": persisted(query) }));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("post");
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.expect("json");
    assert!(status != 429 || retry_after, "a 429 says when to retry");
    (status, body)
}

fn persisted(query: &str) -> Value {
    json!({ "persistedQuery": {
        "version": 1,
        "sha256Hash": cityhub_graphql::persisted::sha256_hex(query),
    } })
}

both_backends!(
    persisted_registrations_are_rate_limited_per_address_and_token,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.cache.persisted_registrations_per_minute = 3;
        })
        .await;
        let doc = |i: usize| format!("query R{i} {{ cities(first: {i}) {{ nodes {{ slug }} }} }}");
        for i in 1..=3 {
            assert_eq!(register(&hub, &doc(i), None).await.0, 200);
        }
        let (status, body) = register(&hub, &doc(4), None).await;
        assert_eq!(status, 429);
        assert_eq!(code(&body), "RATE_LIMITED", "{body}");
        // Over GET alike.
        let q = doc(5);
        let response = hub
            .client
            .get(hub.url())
            .query(&[
                ("query", q.as_str()),
                ("extensions", &persisted(&q).to_string()),
            ])
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 429);
        // Documents already registered still resolve by their hash.
        let response = hub
            .client
            .post(hub.url())
            .json(&json!({ "extensions": persisted(&doc(1)) }))
            .send()
            .await
            .expect("post");
        let body: Value = response.json().await.expect("json");
        assert!(body["data"]["cities"]["nodes"].is_array(), "{body}");
        // A token has its own budget.
        let token = hub.token(Some("lyon")).await;
        assert_eq!(register(&hub, &doc(6), Some(&token)).await.0, 200);
        hub.stop().await;
    }
);

both_backends!(
    stored_persisted_queries_are_bounded_in_bytes,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.cache.max_persisted_stored_bytes = 2_000;
        })
        .await;
        for i in 0..8 {
            let q = format!(
                "# {}\nquery B{i} {{ cities(first: 1) {{ nodes {{ slug }} }} }}",
                "p".repeat(500)
            );
            let (_, body) = register(&hub, &q, None).await;
            assert!(body["data"]["cities"]["nodes"].is_array(), "{body}");
        }
        let length = match backend {
            Backend::Postgres => "octet_length(query)",
            Backend::Sqlite => "length(CAST(query AS BLOB))",
        };
        let row = sea_orm::ConnectionTrait::query_one_raw(
            hub.db.conn(),
            sea_orm::Statement::from_string(
                hub.db.conn().get_database_backend(),
                format!(
                    "SELECT CAST(COALESCE(SUM({length}), 0) AS BIGINT) AS bytes, COUNT(*) AS n FROM persisted_queries"
                ),
            ),
        )
        .await
        .expect("query")
        .expect("a row");
        let bytes: i64 = row.try_get("", "bytes").expect("bytes");
        let n: i64 = row.try_get("", "n").expect("n");
        assert!(bytes <= 2_000, "{bytes} bytes in {n} rows");
        assert!(n >= 1, "the newest is kept");
        hub.stop().await;
    }
);

both_backends!(
    anonymous_sockets_are_counted_per_address,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.events.max_anonymous_sockets_per_address = 2;
        })
        .await;
        let a = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        let b = RawClient::connect(&hub, Protocol::TransportWs, None).await;
        let mut extra = RawClient::open(&hub, Protocol::TransportWs).await;
        match extra.init(None).await {
            Incoming::Closed {
                code: Some(4429), ..
            } => {}
            other => panic!("expected a 4429 close, got {other:?}"),
        }
        // A token's sockets are counted by the token, not the address.
        let token = hub.token(Some("lyon")).await;
        let with_token = RawClient::connect(&hub, Protocol::TransportWs, Some(&token)).await;
        with_token.close().await;
        a.close().await;
        b.close().await;
        hub.stop().await;
    }
);

both_backends!(
    city_website_pages_fall_under_the_anonymous_limit,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| {
            c.rate_limit.anonymous_per_sec = 1;
            c.rate_limit.anonymous_burst = 3;
        })
        .await;
        let mut statuses = Vec::new();
        for path in [
            "/calendar.ics",
            "/feeds/activities.atom",
            "/embed.js",
            "/calendar.ics",
            "/feeds/activities.atom",
            "/calendar.ics",
        ] {
            let response = hub
                .client
                .get(format!("{}{path}", hub.base))
                .send()
                .await
                .expect("get");
            let status = response.status().as_u16();
            if status == 429 {
                assert!(response.headers().contains_key("retry-after"));
                let body: Value = response.json().await.expect("json");
                assert_eq!(code(&body), "RATE_LIMITED", "{body}");
            }
            statuses.push(status);
        }
        assert!(
            statuses.contains(&429),
            "an anonymous address past its burst is limited: {statuses:?}"
        );
        // A token's requests are not anonymous.
        let token = hub.token(Some("lyon")).await;
        let response = hub
            .client
            .get(format!("{}/calendar.ics", hub.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200);
        hub.stop().await;
    }
);

/// GraphQL and the city websites take from one anonymous budget per
/// address (the application layer's `Limiters`, one instance handed to
/// both): six quick requests, alternating, cannot all pass a burst of
/// three, as they would if each surface had a budget of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_and_city_websites_share_one_anonymous_budget() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| {
        c.rate_limit.anonymous_per_sec = 1;
        c.rate_limit.anonymous_burst = 3;
        c.cache.enabled = false;
    })
    .await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let response = if i % 2 == 0 {
            hub.client
                .post(hub.url())
                .json(&json!({ "query": "{ network { name } }" }))
                .send()
                .await
        } else {
            hub.client
                .get(format!("{}/calendar.ics", hub.base))
                .send()
                .await
        }
        .expect("request");
        statuses.push((i % 2, response.status().as_u16()));
    }
    assert!(
        statuses.iter().any(|(_, s)| *s == 429),
        "one budget across both surfaces: {statuses:?}"
    );
    hub.stop().await;
}

both_backends!(
    variants_of_one_request_share_one_cache_entry,
    |backend| async move {
        let hub = TestHub::start(backend).await;
        let get = |path: String| {
            let request = hub.client.get(format!("{}{path}", hub.base));
            async move {
                let response = request.send().await.expect("get");
                assert_eq!(response.status(), 200, "{path}");
                response.text().await.expect("body")
            }
        };
        let first = get("/calendar.ics?field=MUSIC&kind=ANNUAL_MEETING".into()).await;
        let hits = hub.read_cache_count("hit").await;
        for variant in [
            "/calendar.ics?kind=ANNUAL_MEETING&field=MUSIC",
            "/calendar.ics?field=MUSIC&kind=ANNUAL_MEETING&field=MUSIC",
            "/calendar.ics?field=MUSIC&kind=ANNUAL_MEETING&status=CANCELLED&status=PUBLISHED",
        ] {
            assert_eq!(get(variant.into()).await, first, "{variant}");
        }
        assert_eq!(hub.read_cache_count("hit").await, hits + 3);
        // GraphQL over GET: object keys in any order, defaults spelled out.
        let query = "query($first: Int = 3, $filter: ActivityFilter) { activities(first: $first, filter: $filter) { nodes { id } } }";
        let graphql_get = |variables: Value| {
            let request = hub.client.get(hub.url()).query(&[
                ("query", query.to_owned()),
                ("variables", variables.to_string()),
            ]);
            async move {
                let response = request.send().await.expect("get");
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.expect("json")
            }
        };
        let first =
            graphql_get(json!({ "filter": { "kinds": ["ANNUAL_MEETING"], "fields": ["MUSIC"] } }))
                .await;
        let hits = hub.read_cache_count("hit").await;
        let second = graphql_get(
            json!({ "first": 3, "filter": { "fields": ["MUSIC"], "kinds": ["ANNUAL_MEETING"] } }),
        )
        .await;
        assert_eq!(first, second);
        assert_eq!(hub.read_cache_count("hit").await, hits + 1);
        hub.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_live_on_an_admin_listener() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| {
        c.http.admin_listen = "127.0.0.1:0".into();
    })
    .await;
    let public = hub
        .client
        .get(format!("{}/metrics", hub.base))
        .send()
        .await
        .expect("get");
    assert_eq!(public.status(), 404, "no /metrics on the public listener");
    let admin = hub.admin_addr.expect("an admin listener");
    let response = hub
        .client
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert!(response.text().await.expect("text").contains("cityhub_"));
    let ready = hub
        .client
        .get(format!("http://{admin}/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(ready.status(), 200);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_cannot_be_framed() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let response = hub
        .client
        .get(hub.url())
        .header("accept", "text/html")
        .send()
        .await
        .expect("get");
    let csp = response
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    hub.stop().await;
}

both_backends!(
    links_are_not_built_from_an_untrusted_host,
    |backend| async move {
        let hub = TestHub::start(backend).await;
        let calendar = |hub: &TestHub| {
            let request = hub
                .client
                .get(format!("{}/feeds/activities.atom", hub.base))
                .header("host", "evil.example")
                .header("x-forwarded-proto", "https");
            async move {
                request
                    .send()
                    .await
                    .expect("get")
                    .text()
                    .await
                    .expect("body")
            }
        };
        let body = calendar(&hub).await;
        assert!(
            !body.contains("evil.example"),
            "an untrusted Host set links"
        );
        assert!(body.contains(&hub.base), "links use the hub's own address");
        hub.stop().await;
        // Behind a trusted proxy, its Host and scheme are believed.
        let proxied = TestHub::start_with(backend, |c| {
            c.http.trusted_proxies = vec!["127.0.0.1".into()];
        })
        .await;
        let body = calendar(&proxied).await;
        assert!(body.contains("https://evil.example"), "{body}");
        proxied.stop().await;
    }
);
