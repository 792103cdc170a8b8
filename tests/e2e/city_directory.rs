//! The member cities held in memory (`Db::cities`): a listing names its
//! hosts without reading the cities again, and is never stale — a city
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
        b.stop().await;
        a.stop().await;
    }
);
