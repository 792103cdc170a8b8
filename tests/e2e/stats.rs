//! `stats` and `network` against counts computed independently from the
//! `activities` listing, after publications, drafts, updates, cancellations,
//! deletions, participations and a city's change of country, for anonymous,
//! city and secretariat readers, on filters the kept counts answer and on
//! filters that fall back; the stats migrations down and up again with
//! data in place, on both backends; and, on PostgreSQL, concurrent writers
//! that once took the kept-count rows in opposite orders (a deadlock), and
//! many concurrent publishes, after which every kept count is exact.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub, cityhub_ok as run};

const STATS: &str = "query($filter: ActivityFilter) { stats(filter: $filter) { total cityCount \
    byField { field count } byKind { kind count } byCountry { country count } \
    byYear { year count } byFormat { format count } } }";

const PAGE: &str = "query($filter: ActivityFilter, $after: String) { activities(filter: $filter, first: 100, after: $after) { \
    nodes { kind format startDate fields hosts { slug country } participants { slug } venueCity { slug country } } \
    pageInfo { hasNextPage endCursor } } }";

/// Counts as a test computes them from the listing's rows.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    total: i64,
    cities: BTreeSet<String>,
    by_field: BTreeMap<String, i64>,
    by_kind: BTreeMap<String, i64>,
    by_country: BTreeMap<String, i64>,
    by_year: BTreeMap<i64, i64>,
    by_format: BTreeMap<String, i64>,
}

/// Walks every page of `activities(filter)` and counts what it returns.
async fn from_listing(hub: &TestHub, filter: &Value, token: Option<&str>) -> Expected {
    let mut e = Expected::default();
    let mut after: Option<String> = None;
    loop {
        let data = hub
            .ok(PAGE, json!({"filter": filter, "after": after}), token)
            .await;
        let page = &data["activities"];
        for a in page["nodes"].as_array().expect("nodes") {
            e.total += 1;
            *e.by_kind
                .entry(a["kind"].as_str().expect("kind").into())
                .or_default() += 1;
            *e.by_format
                .entry(a["format"].as_str().expect("format").into())
                .or_default() += 1;
            for f in a["fields"].as_array().expect("fields") {
                *e.by_field
                    .entry(f.as_str().expect("field").into())
                    .or_default() += 1;
            }
            if let Some(date) = a["startDate"].as_str() {
                let year: i64 = date[..4].parse().expect("year");
                *e.by_year.entry(year).or_default() += 1;
            }
            let mut countries = BTreeSet::new();
            for h in a["hosts"].as_array().expect("hosts") {
                countries.insert(h["country"].as_str().expect("country").to_owned());
                e.cities
                    .insert(h["slug"].as_str().expect("slug").to_owned());
            }
            for p in a["participants"].as_array().expect("participants") {
                e.cities
                    .insert(p["slug"].as_str().expect("slug").to_owned());
            }
            if a["venueCity"].is_object() {
                countries.insert(a["venueCity"]["country"].as_str().expect("c").to_owned());
                e.cities
                    .insert(a["venueCity"]["slug"].as_str().expect("slug").to_owned());
            }
            for c in countries {
                *e.by_country.entry(c).or_default() += 1;
            }
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    e
}

/// Reads `stats(filter)` into the same shape, checking the lists' forms
/// (every field, kind and format listed; no zero country or year).
async fn from_stats(hub: &TestHub, filter: &Value, token: Option<&str>) -> Expected {
    let data = hub.ok(STATS, json!({ "filter": filter }), token).await;
    let s = &data["stats"];
    let list = |name: &str| s[name].as_array().expect(name).clone();
    let counted = |name: &str, key: &str, keep_zero: bool| -> BTreeMap<String, i64> {
        list(name)
            .iter()
            .map(|r| {
                (
                    r[key].as_str().expect(key).to_owned(),
                    r["count"].as_i64().expect("n"),
                )
            })
            .filter(|(_, n)| keep_zero || *n > 0)
            .collect()
    };
    assert_eq!(list("byField").len(), 8, "every field listed: {s}");
    assert_eq!(list("byKind").len(), 9, "every kind listed: {s}");
    assert_eq!(list("byFormat").len(), 3, "every format listed: {s}");
    let years: Vec<i64> = list("byYear")
        .iter()
        .map(|r| r["year"].as_i64().expect("y"))
        .collect();
    assert!(
        years.windows(2).all(|w| w[0] < w[1]),
        "years ascending: {s}"
    );
    assert!(
        list("byCountry")
            .iter()
            .chain(list("byYear").iter())
            .all(|r| r["count"].as_i64() > Some(0)),
        "no zero rows: {s}"
    );
    Expected {
        total: s["total"].as_i64().expect("total"),
        // The listing knows slugs, stats a number: compare sizes below.
        cities: (0..s["cityCount"].as_i64().expect("cityCount"))
            .map(|i| i.to_string())
            .collect(),
        by_field: counted("byField", "field", false),
        by_kind: counted("byKind", "kind", false),
        by_country: counted("byCountry", "country", false),
        by_year: list("byYear")
            .iter()
            .map(|r| {
                (
                    r["year"].as_i64().expect("y"),
                    r["count"].as_i64().expect("n"),
                )
            })
            .collect(),
        by_format: counted("byFormat", "format", false),
    }
}

/// Asserts that stats and the listing agree for every filter and reader.
async fn assert_agree(hub: &TestHub, readers: &[(&str, Option<&str>)], filters: &[Value]) {
    for (who, token) in readers {
        for filter in filters {
            let listed = from_listing(hub, filter, *token).await;
            let stats = from_stats(hub, filter, *token).await;
            let what = format!("{who}, filter {filter}");
            assert_eq!(stats.total, listed.total, "total for {what}");
            assert_eq!(
                stats.cities.len(),
                listed.cities.len(),
                "cityCount for {what}"
            );
            assert_eq!(stats.by_field, listed.by_field, "byField for {what}");
            assert_eq!(stats.by_kind, listed.by_kind, "byKind for {what}");
            assert_eq!(stats.by_country, listed.by_country, "byCountry for {what}");
            assert_eq!(stats.by_year, listed.by_year, "byYear for {what}");
            assert_eq!(stats.by_format, listed.by_format, "byFormat for {what}");
        }
    }
}

/// Filters the kept counts answer, and filters that fall back.
fn filters() -> Vec<Value> {
    vec![
        json!(null),
        json!({"kinds": ["FESTIVAL", "ANNUAL_MEETING"]}),
        json!({"formats": ["ONLINE"]}),
        json!({"fields": ["MUSIC"]}),
        json!({"countries": ["fr"]}),
        json!({"cities": ["lyon"]}),
        json!({"cities": ["no-such-city"]}),
        json!({"statuses": ["PUBLISHED", "CANCELLED", "DRAFT"]}),
        json!({"statuses": ["DRAFT"], "kinds": ["WORKSHOP"]}),
        json!({"statuses": []}),
        // Answered from the facts in memory: two values of a many-valued
        // dimension, two dimensions. Counted per request: dates, themes,
        // text.
        json!({"fields": ["MUSIC", "DESIGN"]}),
        json!({"cities": ["lyon", "seoul"], "statuses": ["PUBLISHED", "DRAFT"]}),
        json!({"kinds": ["FESTIVAL"], "countries": ["FR"]}),
        json!({"from": "2015-01-01", "to": "2024-12-31"}),
        json!({"themes": ["light art"]}),
        json!({"text": "creative"}),
    ]
}

async fn publish(hub: &TestHub, token: &str, input: Value, draft: bool) -> (String, i64) {
    let data = hub
        .ok(
            "mutation($i: ActivityInput!, $d: Boolean) { publishActivity(input: $i, draft: $d) { id version } }",
            json!({"i": input, "d": draft}),
            Some(token),
        )
        .await;
    (
        data["publishActivity"]["id"]
            .as_str()
            .expect("id")
            .to_owned(),
        data["publishActivity"]["version"]
            .as_i64()
            .expect("version"),
    )
}

/// Publications, drafts, updates, invitations and their answers,
/// cancellations, deletions, participations and a country change, through
/// the API.
async fn churn(hub: &TestHub, lyon: &str, seoul: &str, secretariat: &str) {
    let (festival, _) = publish(
        hub,
        lyon,
        json!({"kind": "FESTIVAL", "title": "Fête des Lumières 2026", "startDate": "2026-12-05",
               "venueCity": "lyon", "fields": ["MEDIA_ARTS", "MUSIC"], "themes": ["light art"],
               "coHosts": ["seoul", "enghien-les-bains"], "format": "HYBRID"}),
        false,
    )
    .await;
    let (workshop, version) = publish(
        hub,
        lyon,
        json!({"kind": "WORKSHOP", "title": "Design workshop", "startDate": "2025-05-04",
               "fields": ["DESIGN"]}),
        false,
    )
    .await;
    let (undated, _) = publish(
        hub,
        seoul,
        json!({"kind": "EXHIBITION", "title": "Undated exhibition", "fields": ["CRAFTS_AND_FOLK_ART"],
               "venueCity": "kanazawa", "format": "ONLINE"}),
        false,
    )
    .await;
    publish(
        hub,
        lyon,
        json!({"kind": "WORKSHOP", "title": "A draft of Lyon", "startDate": "2027-01-10", "fields": ["GASTRONOMY"]}),
        true,
    )
    .await;
    publish(
        hub,
        seoul,
        json!({"kind": "WORKSHOP", "title": "A draft of Seoul", "startDate": "2027-02-10", "fields": ["MUSIC"]}),
        true,
    )
    .await;
    publish(
        hub,
        secretariat,
        json!({"kind": "OTHER", "title": "A secretariat draft", "startDate": "2027-03-10"}),
        true,
    )
    .await;
    // Update: kind, format, year, fields, venue and co-hosts all change.
    hub.ok(
        "mutation($id: ID!, $v: Int) { updateActivity(id: $id, expectedVersion: $v, patch: { kind: RESIDENCY, format: ONLINE, startDate: \"2024-03-01\", fields: [LITERATURE, FILM], venueCity: \"ostersund\", coHosts: [\"dakar\"] }) { version } }",
        json!({"id": workshop, "v": version}),
        Some(lyon),
    )
    .await;
    // Invited cities answer: Enghien-les-Bains co-hosts the festival (so
    // its move below moves it), Östersund receives the residency, Dakar
    // declines it; Seoul's invitation stays pending.
    for (city, id, mutation) in [
        ("enghien-les-bains", &festival, "acceptInvitation"),
        ("ostersund", &workshop, "acceptInvitation"),
        ("dakar", &workshop, "declineInvitation"),
    ] {
        let token = hub.token(Some(city)).await;
        hub.ok(
            &format!("mutation($id: ID!) {{ {mutation}(activity: $id) {{ version }} }}"),
            json!({"id": id}),
            Some(&token),
        )
        .await;
    }
    // A participant joins and another leaves again.
    hub.ok(
        "mutation($id: ID!) { joinActivity(id: $id) { version } }",
        json!({"id": festival}),
        Some(seoul),
    )
    .await;
    let berlin = hub.token(Some("berlin")).await;
    hub.ok(
        "mutation($id: ID!) { joinActivity(id: $id) { version } }",
        json!({"id": festival}),
        Some(&berlin),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { leaveActivity(id: $id) { version } }",
        json!({"id": festival}),
        Some(&berlin),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { cancelActivity(id: $id, reason: \"rain\") { status } }",
        json!({"id": festival}),
        Some(lyon),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { deleteActivity(id: $id) }",
        json!({"id": undated}),
        Some(seoul),
    )
    .await;
    // A seeded activity changes kind, and one is deleted by the secretariat.
    let seeded = hub
        .ok(
            "{ activities(first: 2, orderBy: TITLE_ASC) { nodes { id version } } }",
            json!({}),
            None,
        )
        .await;
    let nodes = seeded["activities"]["nodes"]
        .as_array()
        .expect("nodes")
        .clone();
    hub.ok(
        "mutation($id: ID!) { updateActivity(id: $id, patch: { kind: FESTIVAL, fields: [MUSIC] }) { version } }",
        json!({"id": nodes[0]["id"]}),
        Some(secretariat),
    )
    .await;
    hub.ok(
        "mutation($id: ID!) { deleteActivity(id: $id) }",
        json!({"id": nodes[1]["id"]}),
        Some(secretariat),
    )
    .await;
    // A city moves country: every activity it hosts or receives moves too.
    hub.ok(
        "mutation { updateCity(slug: \"enghien-les-bains\", patch: { country: \"BE\" }) { country } }",
        json!({}),
        Some(secretariat),
    )
    .await;
}

both_backends!(
    stats_agree_with_the_listing_after_every_kind_of_write,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let secretariat = hub.token(None).await;
        let readers = [
            ("anonymous", None),
            ("lyon", Some(lyon.as_str())),
            ("secretariat", Some(secretariat.as_str())),
        ];
        // The seeded network as it is.
        assert_agree(&hub, &readers[..1], &filters()).await;
        let seeded = hub.ok(STATS, json!({}), None).await;
        assert!(seeded["stats"]["total"].as_i64() > Some(10), "{seeded}");

        churn(&hub, &lyon, &seoul, &secretariat).await;
        assert_agree(&hub, &readers, &filters()).await;

        // Drafts: a city sees its own, not another's; anonymous sees none.
        let drafts = json!({"statuses": ["DRAFT"]});
        let total = |v: Value| v["stats"]["total"].as_i64().expect("total");
        assert_eq!(
            total(hub.ok(STATS, json!({"filter": drafts}), None).await),
            0
        );
        assert_eq!(
            total(hub.ok(STATS, json!({"filter": drafts}), Some(&lyon)).await),
            1
        );
        assert_eq!(
            total(
                hub.ok(STATS, json!({"filter": drafts}), Some(&secretariat))
                    .await
            ),
            3
        );

        // `network` reads the same kept counts.
        let network = hub
            .ok(
                "{ network { activityCount fields { field activityCount } } }",
                json!({}),
                None,
            )
            .await;
        let stats = from_stats(&hub, &json!(null), None).await;
        assert_eq!(
            network["network"]["activityCount"].as_i64(),
            Some(stats.total)
        );
        for f in network["network"]["fields"].as_array().expect("fields") {
            let field = f["field"].as_str().expect("field");
            assert_eq!(
                f["activityCount"].as_i64().unwrap_or(-1),
                stats.by_field.get(field).copied().unwrap_or(0),
                "network field {field}"
            );
        }
    }
);

/// Filters on two or more dimensions, or on several values of a
/// many-valued one: the ones the facts in memory answer.
fn in_memory_filters() -> Vec<Value> {
    vec![
        json!({"fields": ["MUSIC", "DESIGN"]}),
        json!({"kinds": ["FESTIVAL", "WORKSHOP"], "fields": ["MUSIC", "MEDIA_ARTS", "DESIGN"]}),
        json!({"kinds": ["FESTIVAL"], "countries": ["FR", "kr"]}),
        json!({"cities": ["lyon", "seoul"], "statuses": ["PUBLISHED", "DRAFT"]}),
        json!({"cities": ["lyon", "no-such-city"], "formats": ["HYBRID", "IN_PERSON"]}),
        json!({"fields": ["CRAFTS_AND_FOLK_ART"], "statuses": ["PUBLISHED", "CANCELLED", "DRAFT"], "formats": ["ONLINE"]}),
        json!({"countries": ["BE", "FR"], "statuses": ["CANCELLED", "DRAFT"]}),
    ]
}

both_backends!(
    stats_on_several_dimensions_come_from_memory_and_are_never_stale,
    |backend: Backend| async move {
        // Two instances on one database: `b` answers from the facts it
        // holds in memory, `a` takes every write.
        let a = TestHub::start_with(backend, |c| c.cache.enabled = false).await;
        let b = TestHub::start_on(backend, a.test_db.clone(), |c| c.cache.enabled = false).await;
        let lyon = a.token(Some("lyon")).await;
        let seoul = a.token(Some("seoul")).await;
        let secretariat = a.token(None).await;
        let readers = [
            ("anonymous", None),
            ("lyon", Some(lyon.as_str())),
            ("secretariat", Some(secretariat.as_str())),
        ];
        // Read into memory when the hub starts, before any request.
        crate::support::eventually(
            "every live activity's facts in memory",
            std::time::Duration::from_secs(10),
            || async {
                let held = b.db.facts().activities();
                if held > 10 { Ok(()) } else { Err(held) }
            },
        )
        .await;
        assert_agree(&b, &readers, &in_memory_filters()).await;

        // Once up to date, one small statement a request: the events since.
        let query = json!({"filter": {"kinds": ["FESTIVAL"], "fields": ["MUSIC"]}});
        b.ok(STATS, query.clone(), None).await;
        let before = b.db.query_count();
        b.ok(STATS, query, None).await;
        assert_eq!(b.db.query_count() - before, 1, "one statement");

        // Every kind of write through the other instance, the country
        // change included, shows in this one's very next answer.
        churn(&a, &lyon, &seoul, &secretariat).await;
        assert_agree(&b, &readers, &in_memory_filters()).await;
        assert_agree(&b, &readers[..1], &filters()).await;
        b.stop().await;
        a.stop().await;
    }
);

both_backends!(
    stats_refuse_bad_filters_with_codes,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let error = hub
            .fails(
                STATS,
                json!({"filter": {"countries": ["FRA"]}}),
                None,
                "BAD_USER_INPUT",
            )
            .await;
        assert_eq!(
            error["extensions"]["field"], "filter.countries[0]",
            "{error}"
        );
        hub.fails(
            STATS,
            json!({"filter": {"from": "2020-01-01", "to": "2019-01-01"}}),
            None,
            "BAD_USER_INPUT",
        )
        .await;
        hub.fails(STATS, json!({}), Some("not-a-token"), "UNAUTHENTICATED")
            .await;
    }
);

both_backends!(
    stats_migration_goes_down_and_up_with_data_in_place,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let seoul = hub.token(Some("seoul")).await;
        let secretariat = hub.token(None).await;
        churn(&hub, &lyon, &seoul, &secretariat).await;
        let all = json!({"statuses": ["PUBLISHED", "CANCELLED", "DRAFT"]});
        let before = hub
            .ok(STATS, json!({"filter": all}), Some(&secretariat))
            .await;
        let test_db = hub.test_db.clone();
        let url = test_db.url.clone();
        hub.stop().await;

        // The kept counts themselves and every migration after them.
        let steps = crate::support::steps_to_undo("m20261201_000002_stats");
        let out = run(&url, &["migrate", "down", "--steps", &steps.to_string()]).await;
        assert!(out.contains(&format!("rolled back {steps}")), "{out}");
        let out = run(&url, &["migrate", "status"]).await;
        assert!(out.contains("pending m20261201_000002_stats"), "{out}");
        assert!(
            out.contains("pending m20261201_000004_stats_lock_order"),
            "{out}"
        );
        assert!(
            out.contains("pending m20261201_000005_stats_refresh_any"),
            "{out}"
        );
        // Gone for good: writes without the triggers still work.
        let db = sea_orm::Database::connect(&url).await.expect("connect");
        let count = |sql: &'static str| {
            let db = db.clone();
            async move { sea_orm::ConnectionTrait::execute_unprepared(&db, sql).await }
        };
        assert!(
            count("SELECT 1 FROM stats_pairs").await.is_err(),
            "stats_pairs dropped"
        );
        count("UPDATE activities SET kind = 'OTHER' WHERE id = 1")
            .await
            .expect("write without triggers");
        db.close().await.expect("close");

        // Up again: the counts are rebuilt from the rows, including the write above.
        let out = run(&url, &["migrate", "up"]).await;
        assert!(out.contains("migrations applied"), "{out}");
        let hub = TestHub::start_on(backend, test_db, |_| {}).await;
        let after = hub
            .ok(STATS, json!({"filter": all}), Some(&secretariat))
            .await;
        assert_eq!(before["stats"]["total"], after["stats"]["total"]);
        assert_eq!(before["stats"]["cityCount"], after["stats"]["cityCount"]);
        assert_agree(
            &hub,
            &[("secretariat", Some(secretariat.as_str()))],
            &filters(),
        )
        .await;
        // And the triggers count new writes again.
        publish(
            &hub,
            &lyon,
            json!({"kind": "FESTIVAL", "title": "After the migration", "startDate": "2026-06-01"}),
            false,
        )
        .await;
        assert_agree(
            &hub,
            &[("lyon", Some(lyon.as_str()))],
            &[json!(null), json!({"kinds": ["FESTIVAL"]})],
        )
        .await;
    }
);

/// Every kept pair count that differs from a recount of the facts as the
/// rows are now (empty when the counts are exact).
async fn kept_count_errors(url: &str) -> Vec<String> {
    let db = sea_orm::Database::connect(url).await.expect("connect");
    // A country or city reached twice is one fact (the facts' key).
    let sql = "WITH facts AS (SELECT DISTINCT activity_id, dim, val, scope, status, f, o FROM stats_current_facts), \
        truth AS (SELECT x.dim AS fdim, x.val AS fval, x.status, x.scope, y.dim AS odim, y.val AS oval, \
                         COUNT(*) AS n \
                    FROM facts x JOIN facts y ON y.activity_id = x.activity_id \
                   WHERE x.f = 1 AND y.o = 1 \
                   GROUP BY x.dim, x.val, x.status, x.scope, y.dim, y.val), \
        kept AS (SELECT fdim, fval, status, scope, odim, oval, SUM(n) AS n FROM stats_pair_counts \
                 GROUP BY fdim, fval, status, scope, odim, oval HAVING SUM(n) <> 0) \
        SELECT 'kept ' || fdim || '=' || fval || ' ' || status || ' ' || CAST(scope AS TEXT) || ' ' \
               || odim || '=' || oval || ': ' || CAST(n AS TEXT) AS what \
          FROM (SELECT * FROM kept EXCEPT SELECT * FROM truth) k \
        UNION ALL \
        SELECT 'true ' || fdim || '=' || fval || ' ' || status || ' ' || CAST(scope AS TEXT) || ' ' \
               || odim || '=' || oval || ': ' || CAST(n AS TEXT) \
          FROM (SELECT * FROM truth EXCEPT SELECT * FROM kept) t";
    let rows = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(db.get_database_backend(), sql),
    )
    .await
    .expect("recount");
    let errors = rows
        .iter()
        .map(|r| r.try_get::<String>("", "what").expect("what"))
        .collect();
    db.close().await.expect("close");
    errors
}

/// `SELECT id … LIMIT 1` on `db`.
async fn one_id(db: &sea_orm::DatabaseTransaction, sql: &str) -> i64 {
    let row = sea_orm::ConnectionTrait::query_one_raw(
        db,
        sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql),
    )
    .await
    .expect("query")
    .unwrap_or_else(|| panic!("no row for {sql}"));
    row.try_get::<i64>("", "id").expect("id")
}

async fn exec(db: &sea_orm::DatabaseTransaction, sql: String) -> Result<(), sea_orm::DbErr> {
    sea_orm::ConnectionTrait::execute_unprepared(db, &sql)
        .await
        .map(|_| ())
}

/// Two writers each add a field to one activity and a city to the other's
/// interleaved so that, when each statement updated its counter rows at
/// once, each held one counter the other needed next (PostgreSQL aborted
/// one with `deadlock_detected`). With the counts taken at commit in one
/// order, all four statements run without waiting and both commit; the
/// counts are exact afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_writers_never_deadlock_on_kept_counts() {
    use sea_orm::TransactionTrait;
    if !crate::support::pg_available().await {
        return;
    }
    let hub = TestHub::start(Backend::Postgres).await;
    let url = hub.test_db.url.clone();
    let one = sea_orm::Database::connect(&url).await.expect("connect");
    let two = sea_orm::Database::connect(&url).await.expect("connect");
    let t1 = one.begin().await.expect("begin");
    let t2 = two.begin().await.expect("begin");
    // Two published activities without FILM, and a city neither names.
    let a1 = one_id(
        &t1,
        "SELECT id FROM activities WHERE status = 'PUBLISHED' AND deleted_at IS NULL \
         AND id NOT IN (SELECT activity_id FROM activity_fields WHERE field = 'FILM') ORDER BY id LIMIT 1",
    )
    .await;
    let a2 = one_id(
        &t1,
        &format!(
            "SELECT id FROM activities WHERE status = 'PUBLISHED' AND deleted_at IS NULL AND id <> {a1} \
             AND id NOT IN (SELECT activity_id FROM activity_fields WHERE field = 'FILM') ORDER BY id LIMIT 1"
        ),
    )
    .await;
    let city = one_id(
        &t1,
        &format!(
            "SELECT id FROM cities WHERE id NOT IN (SELECT city_id FROM activity_cities WHERE activity_id IN ({a1}, {a2})) \
             AND id NOT IN (SELECT venue_city_id FROM activities WHERE id IN ({a1}, {a2}) AND venue_city_id IS NOT NULL) \
             ORDER BY id LIMIT 1"
        ),
    )
    .await;
    let field =
        |a: i64| format!("INSERT INTO activity_fields (activity_id, field) VALUES ({a}, 'FILM')");
    let participant = move |a: i64| {
        format!(
            "INSERT INTO activity_cities (activity_id, city_id, role, position) VALUES ({a}, {city}, 'PARTICIPANT', 99)"
        )
    };
    exec(&t1, field(a1)).await.expect("t1 field");
    exec(&t2, participant(a2)).await.expect("t2 city");
    // t1 now needs what t2 touched and t2 what t1 touched: in the background
    // (it would wait for t2 if counts were locked per statement).
    let t1_city = tokio::spawn(async move {
        let r = exec(&t1, participant(a1)).await;
        (t1, r)
    });
    let t2_field = tokio::time::timeout(std::time::Duration::from_secs(20), exec(&t2, field(a2)))
        .await
        .expect("t2 finishes");
    let (t1, t1_city) = tokio::time::timeout(std::time::Duration::from_secs(20), t1_city)
        .await
        .expect("t1 finishes")
        .expect("join");
    assert!(t2_field.is_ok(), "t2: {t2_field:?}");
    assert!(t1_city.is_ok(), "t1: {t1_city:?}");
    // Commit both at once: the counts are taken at commit, in one order.
    let (c1, c2) = tokio::join!(t1.commit(), t2.commit());
    c1.expect("t1 commits");
    c2.expect("t2 commits");
    let _ = one.close().await;
    let _ = two.close().await;
    assert_eq!(kept_count_errors(&url).await, Vec::<String>::new());
    let film = from_stats(&hub, &json!({"fields": ["FILM"]}), None).await;
    let listed = from_listing(&hub, &json!({"fields": ["FILM"]}), None).await;
    assert_eq!(film.total, listed.total);
    assert_eq!(film.by_kind, listed.by_kind);
}

/// Many publishes at once, every one with several fields, hosts and a
/// venue (each touching dozens of shared counter rows), then every kept
/// count is exact and `stats` agrees with the listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_counts_are_exact_after_many_concurrent_publishes() {
    if !crate::support::pg_available().await {
        return;
    }
    let hub = std::sync::Arc::new(TestHub::start(Backend::Postgres).await);
    let cities = [
        "lyon",
        "seoul",
        "kanazawa",
        "enghien-les-bains",
        "santos",
        "braga",
    ];
    let fields = [
        "FILM",
        "MUSIC",
        "DESIGN",
        "GASTRONOMY",
        "LITERATURE",
        "MEDIA_ARTS",
    ];
    let mut tokens = Vec::new();
    for city in cities {
        tokens.push(hub.token(Some(city)).await);
    }
    let mut tasks = Vec::new();
    for i in 0..48usize {
        let hub = hub.clone();
        let token = tokens[i % cities.len()].clone();
        // Fields and co-hosts rotate in opposite directions, so concurrent
        // publishes reach the same counters through different statements.
        let co_hosts: BTreeSet<&str> = [
            cities[(i + 1) % cities.len()],
            cities[(cities.len() - 1 - i % cities.len()) % cities.len()],
        ]
        .into_iter()
        .filter(|c| *c != cities[i % cities.len()])
        .collect();
        let input = json!({
            "kind": if i % 2 == 0 { "FESTIVAL" } else { "WORKSHOP" },
            "title": format!("Concurrent {i}"),
            "startDate": format!("20{:02}-0{}-01", 10 + i % 15, 1 + i % 9),
            "fields": [fields[i % fields.len()], fields[(fields.len() - 1 - i % fields.len()) % fields.len()]],
            "coHosts": co_hosts,
            "venueCity": cities[(i + 3) % cities.len()],
        });
        tasks.push(tokio::spawn(async move {
            publish(&hub, &token, input, false).await
        }));
    }
    for task in tasks {
        task.await.expect("publish");
    }
    assert_eq!(
        kept_count_errors(&hub.test_db.url).await,
        Vec::<String>::new()
    );
    assert_agree(
        &hub,
        &[("anonymous", None)],
        &[
            json!(null),
            json!({"fields": ["FILM"]}),
            json!({"cities": ["lyon"]}),
            json!({"countries": ["KR"]}),
            json!({"kinds": ["FESTIVAL"]}),
        ],
    )
    .await;
    let titled = hub
        .ok(
            "{ activities(filter: { text: \"Concurrent\" }, first: 100) { totalCount } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(titled["activities"]["totalCount"], 48);
}

/// Two instances fold the kept counts' deltas every 10 ms while cities
/// publish, update and delete at once: nothing is counted twice or lost
/// (every count is exact while deltas are pending and after they are all
/// folded), and the folds leave no delta behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_deltas_fold_exactly_while_two_instances_fold_at_once() {
    if !crate::support::pg_available().await {
        return;
    }
    let fast = |c: &mut cityhub::config::Config| c.database.stats_fold_interval_ms = 10;
    let hub = std::sync::Arc::new(TestHub::start_with(Backend::Postgres, fast).await);
    let other = TestHub::start_on(Backend::Postgres, hub.test_db.clone(), fast).await;
    let cities = ["lyon", "seoul", "kanazawa", "santos"];
    let mut tokens = Vec::new();
    for city in cities {
        tokens.push(hub.token(Some(city)).await);
    }
    let mut tasks = Vec::new();
    for i in 0..40usize {
        let hub = hub.clone();
        let token = tokens[i % cities.len()].clone();
        let field = ["FILM", "MUSIC", "DESIGN"][i % 3];
        let input = json!({
            "kind": if i % 3 == 0 { "FESTIVAL" } else { "WORKSHOP" },
            "title": format!("Folded {i}"),
            "startDate": format!("20{:02}-05-01", 15 + i % 10),
            "fields": [field],
            "venueCity": cities[(i + 1) % cities.len()],
        });
        tasks.push(tokio::spawn(async move {
            let (id, _) = publish(&hub, &token, input, false).await;
            // Every fourth moves to another kind, every fifth goes away.
            if i % 4 == 0 {
                hub.ok(
                    "mutation($id: ID!) { updateActivity(id: $id, patch: { kind: RESIDENCY }) { id } }",
                    json!({ "id": id }),
                    Some(&token),
                )
                .await;
            }
            if i % 5 == 0 {
                hub.ok(
                    "mutation($id: ID!) { deleteActivity(id: $id) }",
                    json!({ "id": id }),
                    Some(&token),
                )
                .await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    // Exact whatever has been folded by now.
    assert_eq!(
        kept_count_errors(&hub.test_db.url).await,
        Vec::<String>::new()
    );
    // Then every delta is folded, and the kept pairs alone are exact.
    let db = sea_orm::Database::connect(&hub.test_db.url)
        .await
        .expect("connect");
    let pending = || async {
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &db,
            sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT COUNT(*) AS n FROM stats_pair_deltas",
            ),
        )
        .await
        .expect("count")
        .expect("row");
        row.try_get::<i64>("", "n").expect("n")
    };
    crate::support::eventually(
        "every delta folded",
        std::time::Duration::from_secs(20),
        || async {
            match pending().await {
                0 => Ok(()),
                left => Err(left),
            }
        },
    )
    .await;
    assert_eq!(
        kept_count_errors(&hub.test_db.url).await,
        Vec::<String>::new()
    );
    assert_agree(
        &hub,
        &[("anonymous", None)],
        &[
            json!(null),
            json!({"kinds": ["RESIDENCY"]}),
            json!({"fields": ["MUSIC"]}),
        ],
    )
    .await;
    db.close().await.expect("close");
    other.stop().await;
}

/// Deltas that piled up while no instance folded (a bulk import, an
/// instance down for a while) leave `stats_pair_deltas` a large file of
/// empty pages once folded, which every later fold read whole (an idle hub
/// on 100,000 generated activities read 53,000 blocks a second). The hub
/// gives that file back after folding, and the counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_file_of_folded_deltas_is_given_back() {
    if !crate::support::pg_available().await {
        return;
    }
    use sea_orm::ConnectionTrait;
    let hub = TestHub::start(Backend::Postgres).await;
    let secretariat = hub.token(None).await;
    let all = json!({"statuses": ["PUBLISHED", "CANCELLED", "DRAFT"]});
    let before = hub
        .ok(STATS, json!({"filter": all}), Some(&secretariat))
        .await;
    // Zero deltas on a kept pair's own key: they change no count, and
    // make a file well past the size the hub gives back (measured in the
    // same transaction, before any fold can take them).
    let piled = {
        use sea_orm::TransactionTrait;
        let txn = hub.db.conn().begin().await.expect("begin");
        txn.execute_unprepared(
            "INSERT INTO stats_pair_deltas (fdim, fval, status, scope, odim, oval, n) \
             SELECT p.fdim, p.fval, p.status, p.scope, p.odim, p.oval, 0 \
             FROM (SELECT * FROM stats_pair_counts LIMIT 1) p, generate_series(1, 200000)",
        )
        .await
        .expect("deltas piled up");
        let (bytes, _) = deltas_size(&txn).await;
        txn.commit().await.expect("commit");
        bytes
    };
    assert!(
        piled > cityhub_storage::repo::stats::RECLAIM_PAST_BYTES,
        "{piled} bytes: not past the threshold"
    );
    // The hub folds them (50,000 rows and more trigger its vacuum) and
    // gives the file back.
    let db = hub.db.clone();
    let (bytes, _) = crate::support::eventually(
        "the folded deltas' file given back",
        std::time::Duration::from_secs(60),
        || {
            let db = db.clone();
            async move {
                let (bytes, n) = deltas_size(db.conn()).await;
                if bytes < cityhub_storage::repo::stats::RECLAIM_PAST_BYTES && n == 0 {
                    Ok((bytes, n))
                } else {
                    Err((bytes, n))
                }
            }
        },
    )
    .await;
    assert!(bytes < piled, "{bytes} of {piled}");
    let after = hub
        .ok(STATS, json!({"filter": all}), Some(&secretariat))
        .await;
    assert_eq!(after, before, "the counts read the same");
    hub.stop().await;
}

/// The size of `stats_pair_deltas`' file and how many rows it holds.
async fn deltas_size(db: &impl sea_orm::ConnectionTrait) -> (i64, i64) {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_relation_size('stats_pair_deltas') AS bytes, \
             (SELECT COUNT(*) FROM stats_pair_deltas) AS n",
        ))
        .await
        .expect("size")
        .expect("a row");
    (
        row.try_get::<i64>("", "bytes").expect("bytes"),
        row.try_get::<i64>("", "n").expect("n"),
    )
}
