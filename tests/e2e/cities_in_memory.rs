//! `cities` without a filter, and `network`'s member counts, from the
//! member cities held in memory (`Db::cities`): the same pages, cursors
//! and counts as the SQL path, in one small statement each, and never
//! stale — a city created or renamed through another instance sharing
//! the database shows in the very next answer of this one.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::TestHub;

const ALL_FIELDS: &str =
    "[ARCHITECTURE, CRAFTS_AND_FOLK_ART, DESIGN, FILM, GASTRONOMY, LITERATURE, MEDIA_ARTS, MUSIC]";

/// Every city's slug in page order, paged `size` at a time, and the
/// `totalCount` of the first page; `filter` is a GraphQL filter literal
/// or empty. Each call's document differs (an alias), so none is
/// answered from the response cache.
async fn every_city(hub: &TestHub, filter: &str, size: usize, run: &str) -> (Vec<String>, i64) {
    let mut slugs = Vec::new();
    let mut after: Option<String> = None;
    let mut total = -1;
    loop {
        let after_arg = after
            .as_ref()
            .map(|c| format!(", after: \"{c}\""))
            .unwrap_or_default();
        let query = format!(
            "{{ {run}: cities(first: {size}{after_arg}{filter}) {{ totalCount nodes {{ slug }} \
             pageInfo {{ hasNextPage endCursor }} }} }}"
        );
        let data = hub.ok(&query, json!({}), None).await;
        let page = &data[run];
        if total < 0 {
            total = page["totalCount"].as_i64().expect("totalCount");
        }
        slugs.extend(
            page["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .map(|n| n["slug"].as_str().expect("slug").to_owned()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            return (slugs, total);
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

async fn network(hub: &TestHub, run: &str) -> Value {
    let query = format!(
        "{{ {run}: network {{ cityCount countryCount activityCount fields {{ field cityCount activityCount }} }} }}"
    );
    hub.ok(&query, json!({}), None).await[run].clone()
}

fn field_cities(network: &Value, field: &str) -> i64 {
    network["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["field"] == field)
        .and_then(|f| f["cityCount"].as_i64())
        .expect("the field's cityCount")
}

both_backends!(
    every_city_and_the_member_counts_come_from_memory_and_are_never_stale,
    |backend| async move {
        let a = TestHub::start_with(backend, |c| c.cache.enabled = false).await;
        let b = TestHub::start_on(backend, a.test_db.clone(), |c| c.cache.enabled = false).await;
        let secretariat = a.token(None).await;
        let sql_path = format!(", filter: {{ fields: {ALL_FIELDS} }}");

        // The same order and cursors as the SQL path, page by page.
        let (memory, total) = every_city(&b, "", 7, "m0").await;
        let (sql, sql_total) = every_city(&b, &sql_path, 7, "s0").await;
        assert!(memory.len() > 7, "{memory:?}");
        assert_eq!(memory, sql);
        assert_eq!(
            (total, sql_total),
            (memory.len() as i64, memory.len() as i64)
        );
        let before = network(&b, "n0").await;
        assert_eq!(before["cityCount"], total);

        // One small statement each, once the cities are in memory.
        for (query, what) in [
            (
                "{ q1: cities(first: 10) { totalCount nodes { slug name country } } }",
                "cities",
            ),
            (
                "{ q2: network { cityCount countryCount fields { cityCount } } }",
                "network",
            ),
        ] {
            b.ok(query, json!({}), None).await;
            let before = b.db.query_count();
            b.ok(query, json!({}), None).await;
            assert_eq!(b.db.query_count() - before, 1, "{what}: one statement");
        }

        // Created through the other instance: first by name, counted.
        a.ok(
            "mutation($i: CityInput!) { createCity(input: $i) { slug } }",
            json!({ "i": { "slug": "aaa-test-city", "name": "Aaa Test City", "country": "AQ",
                           "fields": ["MEDIA_ARTS"], "memberSince": 2026 } }),
            Some(&secretariat),
        )
        .await;
        let (memory, total) = every_city(&b, "", 7, "m1").await;
        assert_eq!(memory.first().map(String::as_str), Some("aaa-test-city"));
        assert_eq!(total, before["cityCount"].as_i64().expect("count") + 1);
        let after = network(&b, "n1").await;
        assert_eq!(after["cityCount"], total);
        assert_eq!(
            after["countryCount"].as_i64(),
            before["countryCount"].as_i64().map(|n| n + 1),
            "a new country"
        );
        assert_eq!(
            field_cities(&after, "MEDIA_ARTS"),
            field_cities(&before, "MEDIA_ARTS") + 1
        );

        // Renamed through this one: last by name, at once on the other.
        b.ok(
            "mutation { updateCity(slug: \"aaa-test-city\", patch: { name: \"Zzz Test City\" }) { name } }",
            json!({}),
            Some(&secretariat),
        )
        .await;
        let (memory, _) = every_city(&a, "", 7, "m2").await;
        assert_eq!(memory.last().map(String::as_str), Some("aaa-test-city"));
        let (sql, _) = every_city(&a, &sql_path, 7, "s2").await;
        assert_eq!(memory, sql);
        b.stop().await;
        a.stop().await;
    }
);
