//! Reads at the machine's limit (issue 9), end to end on both backends: the
//! per-city listing index agrees with the generic query after every kind of
//! write; the response cache is never stale (one instance and two sharing a
//! database); `ETag`/`If-None-Match` follow changes exactly; persisted
//! queries (Apollo's protocol) over POST and GET, shared through the
//! database; migrations go down and up again.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

const ALL_KINDS: &str = "[ANNUAL_MEETING, INTERNATIONAL_CONFERENCE, MEMBER_MEETING, \
    SUB_NETWORK_COLLABORATION, WORKSHOP, EXHIBITION, FESTIVAL, RESIDENCY, OTHER]";

const PUBLISH: &str = "mutation($i: ActivityInput!, $d: Boolean) { publishActivity(input: $i, draft: $d) { id version } }";

fn input(title: &str, start: &str, extra: Value) -> Value {
    let mut base = json!({ "kind": "WORKSHOP", "title": title, "startDate": start });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

async fn publish(hub: &TestHub, token: &str, input: Value, draft: bool) -> String {
    hub.ok(PUBLISH, json!({ "i": input, "d": draft }), Some(token))
        .await["publishActivity"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Every page of `city`'s listing (ids in order) and its `totalCount`,
/// through the city index (`generic` false) or the generic query (the same
/// filter with every kind listed, which the index path does not take).
async fn listing(
    hub: &TestHub,
    city: &str,
    statuses: &str,
    order: &str,
    generic: bool,
    token: Option<&str>,
) -> (Vec<String>, i64) {
    let kinds = if generic {
        format!(", kinds: {ALL_KINDS}")
    } else {
        String::new()
    };
    let query = format!(
        "query($after: String) {{ activities(filter: {{ cities: [\"{city}\"], statuses: {statuses}{kinds} }}, \
         orderBy: {order}, first: 3, after: $after) {{ totalCount nodes {{ id hosts {{ slug }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let mut ids = Vec::new();
    let mut after = Value::Null;
    let mut total = -1;
    for _ in 0..200 {
        let data = hub.ok(&query, json!({ "after": after }), token).await;
        let page = &data["activities"];
        total = page["totalCount"].as_i64().expect("totalCount");
        for n in page["nodes"].as_array().expect("nodes") {
            let hosts: Vec<&str> = n["hosts"]
                .as_array()
                .expect("hosts")
                .iter()
                .filter_map(|h| h["slug"].as_str())
                .collect();
            ids.push(format!(
                "{}:{}",
                n["id"].as_str().expect("id"),
                hosts.join("+")
            ));
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    (ids, total)
}

/// The ids of `listing` rows (`id:host+host`).
fn ids_of(rows: &[String]) -> Vec<String> {
    rows.iter()
        .map(|r| r.split(':').next().unwrap_or_default().to_owned())
        .collect()
}

/// The index path and the generic path agree for these cities, statuses,
/// orders and readers.
async fn assert_paths_agree(hub: &TestHub, cities: &[&str], tokens: &[Option<&str>]) {
    for city in cities {
        for statuses in ["[PUBLISHED]", "[PUBLISHED, CANCELLED, DRAFT]"] {
            for order in ["START_DATE_DESC", "START_DATE_ASC"] {
                for token in tokens {
                    let fast = listing(hub, city, statuses, order, false, *token).await;
                    let slow = listing(hub, city, statuses, order, true, *token).await;
                    assert_eq!(fast, slow, "{city} {statuses} {order}");
                    assert_eq!(fast.0.len() as i64, fast.1, "totalCount = rows listed");
                }
            }
        }
    }
}

both_backends!(city_index_follows_every_write, |backend| async move {
    let hub = TestHub::start(backend).await;
    let lyon = hub.token(Some("lyon")).await;
    let berlin = hub.token(Some("berlin")).await;
    let sec = hub.token(None).await;
    let readers = [
        None,
        Some(lyon.as_str()),
        Some(berlin.as_str()),
        Some(sec.as_str()),
    ];
    let cities = ["lyon", "berlin", "seoul", "bologna"];
    // Hosted, co-hosted, held in another city, drafted, same dates (ties).
    let a = publish(
        &hub,
        &lyon,
        input("Index A", "2026-03-01", json!({ "venueCity": "seoul" })),
        false,
    )
    .await;
    let b = publish(
        &hub,
        &lyon,
        input("Index B", "2026-03-01", json!({ "coHosts": ["berlin"] })),
        false,
    )
    .await;
    let c = publish(&hub, &lyon, input("Index C", "2026-04-01", json!({})), true).await;
    let d = publish(
        &hub,
        &berlin,
        input("Index D", "2026-02-01", json!({ "venueCity": "lyon" })),
        false,
    )
    .await;
    let undated = publish(
        &hub,
        &berlin,
        json!({ "kind": "OTHER", "title": "Index undated" }),
        false,
    )
    .await;
    assert_paths_agree(&hub, &cities, &readers).await;
    // The named cities accept their invitations (until then the
    // activities are not theirs).
    let seoul = hub.token(Some("seoul")).await;
    let bologna = hub.token(Some("bologna")).await;
    let accept = "mutation($id: ID!) { acceptInvitation(activity: $id) { id } }";
    for (id, token) in [(&a, &seoul), (&b, &berlin), (&d, &lyon)] {
        hub.ok(accept, json!({ "id": id }), Some(token)).await;
    }
    assert_paths_agree(&hub, &cities, &readers).await;
    // Joined, then updated (new venue, new co-hosts, new date), then
    // cancelled, a draft published, one deleted, one left.
    hub.ok(
        "mutation($id: ID!) { joinActivity(id: $id) { id } }",
        json!({ "id": a }),
        Some(&berlin),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { joinActivity(id: $id) { id } }",
        json!({ "id": undated }),
        Some(&lyon),
    )
    .await;
    hub.ok(
            "mutation($id: ID!, $p: ActivityPatch!) { updateActivity(id: $id, patch: $p) { id } }",
            json!({ "id": b, "p": { "venueCity": "bologna", "coHosts": ["seoul"], "startDate": "2025-01-01" } }),
            Some(&lyon),
        )
        .await;
    assert_paths_agree(&hub, &cities, &readers).await;
    hub.ok(accept, json!({ "id": b }), Some(&bologna)).await;
    hub.ok(accept, json!({ "id": b }), Some(&seoul)).await;
    assert_paths_agree(&hub, &cities, &readers).await;
    hub.ok(
        "mutation($id: ID!) { cancelActivity(id: $id) { id } }",
        json!({ "id": d }),
        Some(&berlin),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { publishDraft(id: $id) { id } }",
        json!({ "id": c }),
        Some(&lyon),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { deleteActivity(id: $id) }",
        json!({ "id": a }),
        Some(&lyon),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { leaveActivity(id: $id) { id } }",
        json!({ "id": undated }),
        Some(&lyon),
    )
    .await;
    assert_paths_agree(&hub, &cities, &readers).await;
    let (lyon_ids, _) = listing(
        &hub,
        "lyon",
        "[PUBLISHED, CANCELLED]",
        "START_DATE_DESC",
        false,
        None,
    )
    .await;
    let lyon_ids = ids_of(&lyon_ids);
    assert!(!lyon_ids.contains(&a), "deleted: gone");
    assert!(
        lyon_ids.contains(&c) && lyon_ids.contains(&d),
        "{lyon_ids:?}"
    );
    assert!(!lyon_ids.contains(&undated), "left: gone");
    let (seoul_ids, _) =
        listing(&hub, "seoul", "[PUBLISHED]", "START_DATE_DESC", false, None).await;
    let seoul_ids = ids_of(&seoul_ids);
    assert!(
        seoul_ids.contains(&b) && !seoul_ids.contains(&a),
        "{seoul_ids:?}"
    );

    // Down and up again: the backfill rebuilds the same index.
    hub.db.migrate_down(Some(2)).await.expect("down");
    hub.db.migrate_up().await.expect("up");
    assert_paths_agree(&hub, &cities, &readers).await;
    hub.stop().await;
});

// A query whose document passed full validation once runs afterwards on
// the extension-free schema with async-graphql's fast validation
// (`http::execute`). Every refusal must read exactly as it did before the
// document was known, and the answers must be the same.
both_backends!(
    validated_documents_answer_and_refuse_as_before,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| c.cache.enabled = false).await;
        const Q: &str = "query($cities: [String!], $n: Int) { activities(first: $n, filter: { cities: $cities }) { nodes { slug title hosts { slug } documents { title } } pageInfo { hasNextPage } } }";
        let refused = [
            json!({ "cities": 5, "n": 2 }),
            json!({ "cities": ["lyon"], "n": "two" }),
            json!({ "cities": ["lyon"], "n": 100_000 }),
            json!({ "cities": ["lyon"], "n": -1 }),
            json!({ "cities": ["bad\u{0}slug"], "n": 2 }),
        ];
        let mut before = Vec::new();
        for vars in &refused {
            before.push(hub.post(Q, vars.clone(), None).await);
        }
        assert_eq!(hub.read_cache_count("fast_path").await, 0);
        let good = json!({ "cities": ["santa-fe"], "n": 3 });
        let first = hub.post(Q, good.clone(), None).await;
        assert_eq!(first.0, 200);
        assert!(first.1.get("errors").is_none(), "{}", first.1);
        assert!(
            !first.1["data"]["activities"]["nodes"]
                .as_array()
                .expect("nodes")
                .is_empty()
        );
        let second = hub.post(Q, good, None).await;
        assert_eq!(second, first, "the fast path answers as the full one");
        assert_eq!(hub.read_cache_count("fast_path").await, 1);
        for (vars, was) in refused.iter().zip(&before) {
            let code = &was.1["errors"][0]["extensions"]["code"];
            assert!(code.is_string(), "{vars}: {}", was.1);
            let now = hub.post(Q, vars.clone(), None).await;
            assert_eq!(&now, was, "{vars}");
        }
        assert!(hub.read_cache_count("fast_path").await > 1);
        hub.stop().await;
    }
);

/// The read-cache counters of `/metrics`: (hits, misses).
async fn cache_counts(hub: &TestHub) -> (u64, u64) {
    (
        hub.read_cache_count("hit").await,
        hub.read_cache_count("miss").await,
    )
}

const LYON_LISTING: &str = r#"{ city(slug: "lyon") { activities(first: 50, filter: { statuses: [PUBLISHED, CANCELLED, DRAFT] }) { totalCount nodes { id title status participants { slug } } } } }"#;

/// A mutation, its variables, the token it runs with, and what a read
/// shows once it is done.
type Step<'a> = (&'a str, Value, &'a str, Box<dyn Fn(&Value) -> bool>);

/// Whether the listed activity titled `title` has `city` among its participants.
fn joined_by(data: &Value, title: &str, city: &str) -> bool {
    data["city"]["activities"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["title"] == title)
        .any(|n| {
            n["participants"]
                .as_array()
                .is_some_and(|p| p.iter().any(|c| c["slug"] == city))
        })
}

fn titles(data: &Value) -> Vec<(String, String)> {
    data["city"]["activities"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["title"].as_str().unwrap_or_default().to_owned(),
                n["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

both_backends!(cache_is_never_stale, |backend| async move {
    let hub = TestHub::start(backend).await;
    let lyon = hub.token(Some("lyon")).await;
    let berlin = hub.token(Some("berlin")).await;
    let sec = hub.token(None).await;
    // Prime, then hit: the same answer twice, the second from the cache.
    let first = hub.ok(LYON_LISTING, json!({}), None).await;
    let (hits0, _) = cache_counts(&hub).await;
    assert_eq!(hub.ok(LYON_LISTING, json!({}), None).await, first);
    let (hits1, _) = cache_counts(&hub).await;
    assert!(hits1 > hits0, "the repeat was a hit ({hits0} → {hits1})");

    // A draft: its city and the secretariat see it at once, others never.
    let id = publish(
        &hub,
        &lyon,
        input("Cache draft", "2026-06-01", json!({})),
        true,
    )
    .await;
    let has = |d: &Value, t: &str| titles(d).iter().any(|(x, _)| x == t);
    for _ in 0..2 {
        assert!(!has(
            &hub.ok(LYON_LISTING, json!({}), None).await,
            "Cache draft"
        ));
        assert!(!has(
            &hub.ok(LYON_LISTING, json!({}), Some(&berlin)).await,
            "Cache draft"
        ));
        assert!(has(
            &hub.ok(LYON_LISTING, json!({}), Some(&lyon)).await,
            "Cache draft"
        ));
        assert!(has(
            &hub.ok(LYON_LISTING, json!({}), Some(&sec)).await,
            "Cache draft"
        ));
    }
    // Each change is visible to the next read, which had been cached.
    let steps: Vec<Step<'_>> = vec![
        (
            "mutation($id: ID!) { publishDraft(id: $id) { id } }",
            json!({ "id": id }),
            lyon.as_str(),
            Box::new(|d: &Value| titles(d).contains(&("Cache draft".into(), "PUBLISHED".into()))),
        ),
        (
            "mutation($id: ID!) { updateActivity(id: $id, patch: { title: \"Cache renamed\" }) { id } }",
            json!({ "id": id }),
            lyon.as_str(),
            Box::new(|d: &Value| titles(d).iter().any(|(t, _)| t == "Cache renamed")),
        ),
        (
            "mutation($id: ID!) { joinActivity(id: $id) { id } }",
            json!({ "id": id }),
            berlin.as_str(),
            Box::new(|d: &Value| joined_by(d, "Cache renamed", "berlin")),
        ),
        (
            "mutation($id: ID!) { cancelActivity(id: $id) { id } }",
            json!({ "id": id }),
            lyon.as_str(),
            Box::new(|d: &Value| titles(d).contains(&("Cache renamed".into(), "CANCELLED".into()))),
        ),
        (
            "mutation($id: ID!) { deleteActivity(id: $id) }",
            json!({ "id": id }),
            lyon.as_str(),
            Box::new(|d: &Value| !titles(d).iter().any(|(t, _)| t == "Cache renamed")),
        ),
    ];
    for (mutation, vars, token, visible) in steps {
        let before = hub.ok(LYON_LISTING, json!({}), None).await;
        assert_eq!(hub.ok(LYON_LISTING, json!({}), None).await, before);
        assert!(!visible(&before), "{mutation}: not before");
        hub.ok(mutation, vars, Some(token)).await;
        let after = hub.ok(LYON_LISTING, json!({}), None).await;
        assert!(
            visible(&after),
            "{mutation}: visible right after it returned: {after}"
        );
    }
    // A city's change too.
    hub.ok(
        r#"mutation { updateCity(slug: "lyon", patch: { name: "Lyon (cached)" }) { slug } }"#,
        json!({}),
        Some(&sec),
    )
    .await;
    let q = r#"{ city(slug: "lyon") { name } }"#;
    assert_eq!(
        hub.ok(q, json!({}), None).await["city"]["name"],
        "Lyon (cached)"
    );
    hub.stop().await;
});

both_backends!(two_instances_never_serve_stale, |backend| async move {
    let a = TestHub::start(backend).await;
    let b = TestHub::start_on(backend, a.test_db.clone(), |_| {}).await;
    let lyon = a.token(Some("lyon")).await;
    let count = r#"{ city(slug: "lyon") { activities { totalCount } } }"#;
    for i in 0..15 {
        let before = b.ok(count, json!({}), None).await["city"]["activities"]["totalCount"]
            .as_i64()
            .expect("count");
        // Twice, so the second is served from b's cache.
        assert_eq!(
            b.ok(count, json!({}), None).await["city"]["activities"]["totalCount"],
            before
        );
        publish(
            &a,
            &lyon,
            input(&format!("Two {i}"), "2026-07-01", json!({})),
            false,
        )
        .await;
        let after = b.ok(count, json!({}), None).await["city"]["activities"]["totalCount"]
            .as_i64()
            .expect("count");
        assert_eq!(after, before + 1, "round {i}: b saw a's publish at once");
    }
    b.stop().await;
    a.stop().await;
});

/// `GET /graphql` with an optional `If-None-Match`: (status, ETag,
/// Cache-Control, body).
async fn get(
    hub: &TestHub,
    params: &[(&str, &str)],
    token: Option<&str>,
    if_none_match: Option<&str>,
) -> (u16, Option<String>, Option<String>, Value) {
    let mut request = hub.client.get(hub.url()).query(params);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if let Some(tag) = if_none_match {
        request = request.header("If-None-Match", tag);
    }
    let response = request.send().await.expect("get");
    let status = response.status().as_u16();
    let header = |n: &str| {
        response
            .headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (etag, cc) = (header("etag"), header("cache-control"));
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, etag, cc, body)
}

both_backends!(etags_follow_changes_exactly, |backend| async move {
    let hub = TestHub::start_with(backend, |c| {
        c.cache.cache_control = "public, max-age=5".into();
    })
    .await;
    let lyon = hub.token(Some("lyon")).await;
    let q = [("query", LYON_LISTING)];
    let (status, tag, cc, body) = get(&hub, &q, None, None).await;
    assert_eq!(status, 200, "{body}");
    let tag = tag.expect("an ETag");
    assert_eq!(cc.as_deref(), Some("public, max-age=5"));
    for _ in 0..3 {
        let (status, again, _, _) = get(&hub, &q, None, Some(&tag)).await;
        assert_eq!(status, 304, "unchanged data: 304");
        assert_eq!(again.as_deref(), Some(tag.as_str()));
    }
    // Another query has another tag; a token gets a private answer.
    let (_, other, _, _) = get(&hub, &[("query", "{ network { name } }")], None, None).await;
    assert_ne!(other.as_deref(), Some(tag.as_str()));
    let (status, _, cc, _) = get(&hub, &q, Some(&lyon), Some(&tag)).await;
    assert_eq!(status, 200, "another visibility: another tag");
    assert_eq!(cc.as_deref(), Some("private, no-cache"));
    // A change: the old tag no longer matches, the new one does.
    publish(
        &hub,
        &lyon,
        input("Etag change", "2026-08-01", json!({})),
        false,
    )
    .await;
    let (status, new_tag, _, body) = get(&hub, &q, None, Some(&tag)).await;
    assert_eq!(status, 200, "changed data: full answer");
    assert!(body.to_string().contains("Etag change"));
    let new_tag = new_tag.expect("ETag");
    assert_ne!(new_tag, tag);
    assert_eq!(get(&hub, &q, None, Some(&new_tag)).await.0, 304);
    // Per-token queries carry no ETag and are never cached.
    let (status, none, _, _) = get(
        &hub,
        &[("query", "{ viewer { tokenId } }")],
        Some(&lyon),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(none.is_none(), "viewer answers carry no ETag");
    // With the response cache off, ETags still work.
    let off = TestHub::start_on(backend, hub.test_db.clone(), |c| c.cache.enabled = false).await;
    let (_, tag_off, _, _) = get(&off, &q, None, None).await;
    assert_eq!(get(&off, &q, None, tag_off.as_deref()).await.0, 304);
    off.ok(LYON_LISTING, json!({}), None).await;
    off.ok(LYON_LISTING, json!({}), None).await;
    assert_eq!(cache_counts(&off).await.0, 0, "no hits with the cache off");
    off.stop().await;
    hub.stop().await;
});

both_backends!(persisted_queries_over_post_and_get, |backend| async move {
    let a = TestHub::start(backend).await;
    let b = TestHub::start_on(backend, a.test_db.clone(), |_| {}).await;
    let query = r#"query Lyon { city(slug: "lyon") { name } }"#;
    let hash = cityhub_graphql::persisted::sha256_hex(query);
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let post = |hub: &TestHub, body: Value| {
        let request = hub.client.post(hub.url()).json(&body);
        async move {
            let r = request.send().await.expect("post");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // Unknown hash.
    let (status, body) = post(&a, json!({ "extensions": ext })).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
        "{body}"
    );
    // A wrong hash is refused and registers nothing.
    let wrong = json!({ "persistedQuery": { "version": 1, "sha256Hash": "0".repeat(64) } });
    let (status, body) = post(&a, json!({ "query": query, "extensions": wrong })).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    // Registered with its document, then by hash alone: on the other
    // instance too, over POST and GET.
    let (status, body) = post(&a, json!({ "query": query, "extensions": ext })).await;
    assert_eq!(
        (status, body["data"]["city"]["name"].clone()),
        (200, json!("Lyon")),
        "{body}"
    );
    let (_, body) = post(&b, json!({ "extensions": ext })).await;
    assert_eq!(body["data"]["city"]["name"], "Lyon", "{body}");
    let ext_text = ext.to_string();
    let (status, tag, _, body) = get(&b, &[("extensions", ext_text.as_str())], None, None).await;
    assert_eq!(
        (status, body["data"]["city"]["name"].clone()),
        (200, json!("Lyon")),
        "{body}"
    );
    assert_eq!(
        get(
            &b,
            &[("extensions", ext_text.as_str())],
            None,
            tag.as_deref()
        )
        .await
        .0,
        304
    );
    // A persisted mutation is still refused over GET.
    let mutation = r#"mutation { deleteActivity(id: "1") }"#;
    let m_hash = cityhub_graphql::persisted::sha256_hex(mutation);
    let m_ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": m_hash } });
    post(&a, json!({ "query": mutation, "extensions": m_ext })).await;
    let (status, _, _, _) = get(
        &a,
        &[("extensions", m_ext.to_string().as_str())],
        None,
        None,
    )
    .await;
    assert_eq!(status, 405);
    // Switched off: said so.
    let off = TestHub::start_on(backend, a.test_db.clone(), |c| {
        c.cache.persisted_queries = false
    })
    .await;
    let (_, body) = post(&off, json!({ "extensions": ext })).await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_SUPPORTED"
    );
    off.stop().await;
    b.stop().await;
    a.stop().await;
});

both_backends!(
    stored_persisted_queries_are_capped_oldest_first,
    |backend| async move {
        let cap = |c: &mut cityhub::config::Config| c.cache.max_persisted_stored = 3;
        let a = TestHub::start_with(backend, cap).await;
        let queries: Vec<String> = (1..=5)
            .map(|i| format!("query Q{i} {{ cities(first: {i}) {{ nodes {{ slug }} }} }}"))
            .collect();
        let ext = |query: &str| {
            json!({ "persistedQuery": {
            "version": 1,
            "sha256Hash": cityhub_graphql::persisted::sha256_hex(query),
        } })
        };
        let post = |hub: &TestHub, body: Value| {
            let request = hub.client.post(hub.url()).json(&body);
            async move {
                let r = request.send().await.expect("post");
                r.json::<Value>().await.expect("json body")
            }
        };
        for q in &queries {
            let body = post(&a, json!({ "query": q, "extensions": ext(q) })).await;
            assert!(body["data"]["cities"]["nodes"].is_array(), "{body}");
        }
        let stored = cityhub_storage::repo::persisted::PersistedQueryRepo::count(a.db.conn())
            .await
            .expect("count");
        assert_eq!(stored, 3, "the table keeps the newest three");
        // A second instance knows only what the database kept.
        let b = TestHub::start_on(backend, a.test_db.clone(), cap).await;
        for (i, q) in queries.iter().enumerate() {
            let body = post(&b, json!({ "extensions": ext(q) })).await;
            if i < 2 {
                assert_eq!(
                    body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
                    "the oldest were dropped: {body}"
                );
            } else {
                assert!(body["data"]["cities"]["nodes"].is_array(), "{body}");
            }
        }
        // The protocol's recovery: the client sends the document again.
        let body = post(
            &b,
            json!({ "query": queries[0], "extensions": ext(&queries[0]) }),
        )
        .await;
        assert!(body["data"]["cities"]["nodes"].is_array(), "{body}");
        let stored = cityhub_storage::repo::persisted::PersistedQueryRepo::count(a.db.conn())
            .await
            .expect("count");
        assert_eq!(stored, 3);
        // Stored again, as the newest; the oldest left (Q3) made room.
        let c = TestHub::start_on(backend, a.test_db.clone(), cap).await;
        let body = post(&c, json!({ "extensions": ext(&queries[0]) })).await;
        assert!(body["data"]["cities"]["nodes"].is_array(), "{body}");
        let body = post(&c, json!({ "extensions": ext(&queries[2]) })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND",
            "{body}"
        );
        c.stop().await;
        b.stop().await;
        a.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_cache_is_bounded() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| c.cache.max_bytes = 4_096).await;
    for i in 0..20 {
        let q =
            format!("{{ activities(first: {i}) {{ totalCount nodes {{ id title summary }} }} }}");
        hub.ok(&q, json!({}), None).await;
    }
    let text = hub
        .client
        .get(format!("{}/metrics", hub.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let bytes: f64 = text
        .lines()
        .find(|l| l.starts_with("cityhub_read_cache_bytes "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("cityhub_read_cache_bytes");
    assert!(bytes > 0.0 && bytes <= 4_096.0, "{bytes}");
    hub.stop().await;
}

/// On PostgreSQL, right after bulk inserts and with no statistics on the
/// new rows (autovacuum off, no `ANALYZE`), a city's page is still the
/// ordered range scan of the listing index, never a scan of `activities`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn city_listing_plan_holds_without_statistics() {
    use cityhub_domain::ActivityOrder;
    use cityhub_storage::{ActivityFilter, ActivityRepo, ActivityTexts, ReadScope};
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    if !crate::support::pg_available().await {
        return;
    }
    // 30,000 rows through every trigger (listing index, kept counts) can
    // outlast the default statement timeout on a loaded machine.
    let hub = TestHub::start_with(Backend::Postgres, |c| {
        c.database.statement_timeout_secs = 600;
    })
    .await;
    let conn = hub.db.conn();
    for table in ["activities", "activity_cities", "city_activities"] {
        conn.execute_unprepared(&format!(
            "ALTER TABLE {table} SET (autovacuum_enabled = false)"
        ))
        .await
        .expect("autovacuum off");
    }
    // The kept statistics are not what this test is about, and their
    // per-row triggers make the bulk load minutes long: off for the load.
    for (table, op) in [("activities", "insert"), ("activity_cities", "insert")] {
        conn.execute_unprepared(&format!(
            "ALTER TABLE {table} DISABLE TRIGGER stats_{table}_{op}"
        ))
        .await
        .expect("stats triggers off");
    }
    conn.execute_unprepared(
        "INSERT INTO activities (slug, kind, format, status, title, title_key, date_precision, \
         start_key, end_key, organizations, fields, themes, objectives, published_by, created_at, \
         updated_at, version, search_text) \
         SELECT 'bulk-' || g, 'WORKSHOP', 'IN_PERSON', CASE WHEN g % 10 = 0 THEN 'DRAFT' ELSE 'PUBLISHED' END, \
         'Bulk ' || g, 'bulk ' || g, 'DAY', 20000101 + (g % 5000), 20000101 + (g % 5000), \
         '[]', '[]', '[]', '[]', (SELECT id FROM cities WHERE slug = 'lyon'), 0, 0, 1, 'bulk' \
         FROM generate_series(1, 30000) g",
    )
    .await
    .expect("bulk activities");
    conn.execute_unprepared(
        "INSERT INTO activity_cities (activity_id, city_id, role, position) \
         SELECT a.id, c.id, 'HOST', 0 FROM activities a \
         JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM cities) c \
           ON c.n = a.id % (SELECT COUNT(*) FROM cities) \
         WHERE a.slug LIKE 'bulk-%'",
    )
    .await
    .expect("bulk hosts");
    let filter = ActivityFilter {
        cities: vec!["lyon".into()],
        ..ActivityFilter::default()
    };
    for scope in [ReadScope::Public, ReadScope::All] {
        for descending in [true, false] {
            let stmt = ActivityRepo::city_page_statement(
                DatabaseBackend::Postgres,
                scope,
                &filter,
                "lyon",
                descending,
                20,
                None,
                ActivityTexts::WithoutDescription.into(),
            );
            let explain = Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                format!("EXPLAIN (ANALYZE, BUFFERS) {}", stmt.sql),
                stmt.values.map(|v| v.0).unwrap_or_default(),
            );
            let plan: Vec<String> = conn
                .query_all_raw(explain)
                .await
                .expect("explain")
                .iter()
                .map(|r| r.try_get::<String>("", "QUERY PLAN").expect("plan line"))
                .collect();
            let text = plan.join("\n");
            assert!(text.contains("using city_activities_listing"), "{text}");
            assert!(!text.contains("Seq Scan on activities"), "{text}");
            assert!(!text.contains("Seq Scan on city_activities"), "{text}");
        }
    }
    // And the rows are right: lyon's newest first, through the API.
    let page = ActivityRepo::page(
        conn,
        ReadScope::Public,
        &filter,
        ActivityOrder::StartDateDesc,
        5,
        None,
    )
    .await
    .expect("page");
    assert_eq!(page.items.len(), 5);
    assert!(
        page.items
            .windows(2)
            .all(|w| w[0].start_date >= w[1].start_date)
    );
    hub.stop().await;
}
