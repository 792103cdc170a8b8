//! A page of one city's activities (or a search page) in one statement:
//! its hosts and documents read by the page's own statement, the same as
//! the queries of their own read them, and its cities from the member
//! cities held in memory (`Db::cities`), which are never stale — a city
//! renamed through another instance sharing the database shows in the very
//! next listing of this one, and so does a city renamed through this one.

use serde_json::json;

use crate::both_backends;
use crate::support::TestHub;

const PUBLISH: &str = "mutation($i: ActivityInput!) { publishActivity(input: $i) { id } }";
const RENAME: &str = "mutation($slug: String!, $name: String!) { updateCity(slug: $slug, patch: { name: $name }) { name } }";

/// The host names of Lyon's listing on `hub`, and how many SQL statements
/// the cheapest of `runs` listings ran (stray statements of the hub's
/// background jobs only add to a run). Each run's document differs (an
/// alias), so none is answered from the response cache.
async fn lyon_hosts(hub: &TestHub, runs: usize) -> (Vec<String>, u64) {
    let mut cheapest = u64::MAX;
    let mut names = Vec::new();
    for run in 0..runs {
        let query = format!(
            "{{ activities(first: 5, filter: {{ cities: [\"lyon\"] }}) {{ \
             run{run}: nodes {{ hosts {{ slug name }} }} }} }}"
        );
        let before = hub.db.query_count();
        let data = hub.ok(&query, json!({}), None).await;
        cheapest = cheapest.min(hub.db.query_count() - before);
        names = data["activities"][format!("run{run}")]
            .as_array()
            .expect("nodes")
            .iter()
            .flat_map(|n| n["hosts"].as_array().cloned().unwrap_or_default())
            .filter(|h| h["slug"] == "lyon")
            .map(|h| h["name"].as_str().expect("name").to_owned())
            .collect();
    }
    (names, cheapest)
}

both_backends!(
    listings_name_their_cities_from_memory_and_never_stale,
    |backend| async move {
        // The response cache off: each listing runs its statements.
        let a = TestHub::start_with(backend, |c| c.cache.enabled = false).await;
        let b = TestHub::start_on(backend, a.test_db.clone(), |c| c.cache.enabled = false).await;
        let lyon = a.token(Some("lyon")).await;
        let secretariat = a.token(None).await;
        a.ok(
            PUBLISH,
            json!({ "i": { "kind": "WORKSHOP", "title": "Silk weaving", "startDate": "2027-03-01" } }),
            Some(&lyon),
        )
        .await;

        // Warm: the page's one statement names its hosts too.
        let (names, statements) = lyon_hosts(&b, 4).await;
        assert!(
            !names.is_empty() && names.iter().all(|n| n == "Lyon"),
            "{names:?}"
        );
        assert_eq!(statements, 1, "a listing with its hosts, cities in memory");

        // Renamed through the other instance: seen at once.
        for (round, hub) in [("a", &a), ("b", &b), ("a", &a)] {
            let name = format!("Lyon ({round})");
            hub.ok(
                RENAME,
                json!({ "slug": "lyon", "name": name }),
                Some(&secretariat),
            )
            .await;
            for reader in [&b, &a] {
                let (names, _) = lyon_hosts(reader, 1).await;
                assert!(
                    !names.is_empty() && names.iter().all(|n| *n == name),
                    "renamed through {round}: {names:?}"
                );
            }
        }
        let (_, statements) = lyon_hosts(&b, 4).await;
        assert_eq!(statements, 1, "in memory again after the renames");
        // A network-wide page (no city: the generic path) too, by either
        // order, its documents included.
        for order in ["UPDATED_AT_DESC", "TITLE_ASC"] {
            let mut cheapest = u64::MAX;
            for run in 0..4 {
                let query = format!(
                    "{{ activities(first: 5, orderBy: {order}, filter: {{ kinds: [WORKSHOP, FESTIVAL] }}) {{ \
                     run{run}: nodes {{ title hosts {{ name }} documents {{ title }} }} }} }}"
                );
                let before = b.db.query_count();
                let data = b.ok(&query, json!({}), None).await;
                cheapest = cheapest.min(b.db.query_count() - before);
                let nodes = data["activities"][format!("run{run}")]
                    .as_array()
                    .expect("nodes")
                    .clone();
                assert!(
                    nodes
                        .iter()
                        .any(|n| n["hosts"].as_array().is_some_and(|h| !h.is_empty())),
                    "{nodes:?}"
                );
            }
            assert_eq!(
                cheapest, 1,
                "a network-wide page by {order} in one statement"
            );
        }
        b.stop().await;
        a.stop().await;
    }
);

const DOCUMENTS: &str = "documents { id kind title url issuedOn issuedPrecision editors }";

both_backends!(
    pages_read_their_documents_as_their_own_queries_do,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| c.cache.enabled = false).await;
        let lyon = hub.token(Some("lyon")).await;
        let documents = json!([
            { "kind": "PROGRAMME", "title": "Programme, \"draft\" 2", "url": "https://lyon.example/p.pdf",
              "issuedOn": "2027-01-15", "issuedPrecision": "DAY", "editors": ["Ana", "Ben"] },
            { "kind": "REPORT", "title": "Bilan", "issuedOn": "2027-01-01", "issuedPrecision": "MONTH" },
            { "kind": "WEBSITE", "title": "Site ✓", "url": "https://lyon.example/" },
        ]);
        for (title, docs) in [
            ("Lantern carving", documents.clone()),
            ("Lantern parade", json!([])),
            ("Lantern archive", json!([documents[1].clone()])),
        ] {
            hub.ok(
                PUBLISH,
                json!({ "i": { "kind": "WORKSHOP", "title": title, "startDate": "2027-02-01", "documents": docs } }),
                Some(&lyon),
            )
            .await;
        }
        // Each activity's documents as its own query reads them (the detail).
        let detail = |slug: String| {
            let hub = &hub;
            async move {
                hub.ok(
                    &format!("query($s: String!) {{ activity(slug: $s) {{ {DOCUMENTS} }} }}"),
                    json!({ "s": slug }),
                    None,
                )
                .await["activity"]["documents"]
                    .clone()
            }
        };
        // The city's page by start date and by last change, and a search.
        for filter in [
            "{ cities: [\"lyon\"] }",
            "{ cities: [\"lyon\"], from: \"2027-01-01\" }",
            "{ text: \"lantern\" }",
        ] {
            for order in ["START_DATE_DESC", "UPDATED_AT_DESC"] {
                // The cheapest of three runs (stray statements of the hub's
                // background jobs only add to a run); each run's document
                // differs, an alias.
                let mut cheapest = u64::MAX;
                let mut nodes = Vec::new();
                for run in 0..3 {
                    let query = format!(
                        "{{ activities(first: 10, filter: {filter}, orderBy: {order}) {{ \
                         run{run}: nodes {{ slug title {DOCUMENTS} }} }} }}"
                    );
                    let before = hub.db.query_count();
                    let data = hub.ok(&query, json!({}), None).await;
                    cheapest = cheapest.min(hub.db.query_count() - before);
                    nodes = data["activities"][format!("run{run}")]
                        .as_array()
                        .expect("nodes")
                        .clone();
                }
                let lanterns: Vec<_> = nodes
                    .iter()
                    .filter(|n| {
                        n["title"]
                            .as_str()
                            .is_some_and(|t| t.starts_with("Lantern"))
                    })
                    .collect();
                assert_eq!(lanterns.len(), 3, "{filter} {order}: {nodes:?}");
                for node in lanterns {
                    let slug = node["slug"].as_str().expect("slug").to_owned();
                    assert_eq!(node["documents"], detail(slug).await, "{filter} {order}");
                }
                let carving = nodes
                    .iter()
                    .find(|n| n["title"] == "Lantern carving")
                    .expect("carving");
                assert_eq!(carving["documents"].as_array().map(Vec::len), Some(3));
                assert_eq!(carving["documents"][0]["editors"], json!(["Ana", "Ben"]));
                if filter.contains("cities") {
                    assert_eq!(cheapest, 1, "{filter} {order}: one statement");
                }
            }
        }
        hub.stop().await;
    }
);

/// Everything of an activity a detail may select, relations included.
const DETAIL: &str = "id slug title summary description venue venueCity { slug name } \
    hosts { slug name } participants { slug name } documents { id kind title url issuedOn editors } \
    publishedBy { slug } version jsonLd";

both_backends!(
    a_detail_is_one_statement_and_reads_as_a_listing_does,
    |backend| async move {
        let hub = TestHub::start_with(backend, |c| c.cache.enabled = false).await;
        let lyon = hub.token(Some("lyon")).await;
        let mut ids = Vec::new();
        for (title, summary) in [
            ("Indigo dyeing", None),
            ("Indigo market", Some("Dyes and cloth")),
        ] {
            let created = hub
                .ok(
                    PUBLISH,
                    json!({ "i": {
                        "kind": "RESIDENCY", "title": title, "summary": summary,
                        "description": "Two weeks with the **dyers** of the old town.",
                        "startDate": "2027-04-01", "venue": "Les Subsistances",
                        "documents": [
                            { "kind": "PROGRAMME", "title": "Days", "issuedOn": "2027-02-01", "editors": ["Ana"] },
                            { "kind": "REPORT", "title": "After" }
                        ]
                    } }),
                    Some(&lyon),
                )
                .await;
            ids.push(
                created["publishActivity"]["id"]
                    .as_str()
                    .expect("id")
                    .to_owned(),
            );
        }
        for city in ["seoul", "bologna"] {
            let token = hub.token(Some(city)).await;
            hub.ok(
                "mutation($id: ID!) { joinActivity(id: $id) { id } }",
                json!({ "id": ids[0] }),
                Some(&token),
            )
            .await;
        }
        // The same activities through the generic listing (a kind filter),
        // whose relations are read by queries of their own.
        let listed = hub
            .ok(
                &format!("{{ activities(first: 50, filter: {{ kinds: [RESIDENCY] }}) {{ nodes {{ {DETAIL} }} }} }}"),
                json!({}),
                None,
            )
            .await["activities"]["nodes"]
            .as_array()
            .expect("nodes")
            .clone();
        for id in &ids {
            let expected = listed
                .iter()
                .find(|n| n["id"] == *id)
                .expect("listed")
                .clone();
            let slug = expected["slug"].as_str().expect("slug").to_owned();
            for (arg, value) in [("id", id.clone()), ("slug", slug)] {
                let mut cheapest = u64::MAX;
                for run in 0..3 {
                    let query = format!(
                        "query($v: String!) {{ run{run}: activity({arg}: $v) {{ {DETAIL} }} }}"
                    );
                    let query =
                        query.replace("String!", if arg == "id" { "ID!" } else { "String!" });
                    let before = hub.db.query_count();
                    let data = hub.ok(&query, json!({ "v": value }), None).await;
                    cheapest = cheapest.min(hub.db.query_count() - before);
                    assert_eq!(data[format!("run{run}")], expected, "by {arg}");
                }
                assert_eq!(cheapest, 1, "a detail by {arg} in one statement");
            }
        }
        let dyeing = listed.iter().find(|n| n["id"] == *ids[0]).expect("dyeing");
        assert_eq!(
            dyeing["participants"].as_array().map(Vec::len),
            Some(2),
            "{dyeing}"
        );
        // JSON-LD falls back on the description without a summary, even
        // when the query selects no `description`.
        let data = hub
            .ok(
                "query($id: ID!) { activity(id: $id) { jsonLd } activities(filter: { cities: [\"lyon\"] }) { nodes { id jsonLd } } }",
                json!({ "id": ids[0] }),
                None,
            )
            .await;
        let text = "Two weeks with the **dyers** of the old town.";
        assert_eq!(data["activity"]["jsonLd"]["description"], text, "{data}");
        let node = data["activities"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"] == *ids[0])
            .expect("in Lyon's listing")
            .clone();
        assert_eq!(node["jsonLd"]["description"], text, "{node}");
        hub.stop().await;
    }
);
