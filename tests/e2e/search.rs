//! Full-text search pages: prefix terms, both start-date orders walked page
//! by page (SQLite answers them from an index in the listing's own order,
//! migration `m20261206_000001_search_by_listing_order`), and that
//! migration down and up again with writes in between.

use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub, cityhub_ok as run};

const SEARCH: &str =
    "query Search($text: String!, $order: ActivityOrder!, $first: Int!, $after: String) {
  activities(filter: { text: $text }, orderBy: $order, first: $first, after: $after) {
    nodes { slug title }
    pageInfo { hasNextPage endCursor }
  }
}";

const PUBLISH: &str =
    "mutation P($input: ActivityInput!) { publishActivity(input: $input) { slug } }";

/// Publishes a workshop; returns its slug.
async fn publish(hub: &TestHub, token: &str, title: &str, start: Option<&str>) -> String {
    let mut input = json!({ "kind": "WORKSHOP", "title": title });
    if let Some(start) = start {
        input["startDate"] = json!(start);
    }
    let data = hub
        .ok(PUBLISH, json!({ "input": input }), Some(token))
        .await;
    data["publishActivity"]["slug"]
        .as_str()
        .expect("a slug")
        .to_owned()
}

/// Every slug the search finds, `first` at a time, following the cursors.
async fn walk(hub: &TestHub, text: &str, order: &str, first: i64) -> Vec<String> {
    let mut slugs = Vec::new();
    let mut after = Value::Null;
    for _ in 0..100 {
        let data = hub
            .ok(
                SEARCH,
                json!({ "text": text, "order": order, "first": first, "after": after }),
                None,
            )
            .await;
        let page = &data["activities"];
        for node in page["nodes"].as_array().expect("nodes") {
            slugs.push(node["slug"].as_str().expect("slug").to_owned());
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            return slugs;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    panic!("the pages of {text:?} never ended");
}

both_backends!(
    search_pages_follow_the_listing_order,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        // Same day twice (the id breaks the tie), an undated one, a plural that
        // the prefix covers, and two that do not match.
        let dated = [
            ("Zorblat mapping walk", Some("2026-03-02")),
            ("Zorblats of the city", Some("2026-05-10")),
            ("Zorblat sound archive", Some("2026-05-10")),
            ("Zorblat ecology, undated", None),
            ("Zorblat printmaking", Some("2025-11-20")),
            ("Harbour festival", Some("2026-04-01")),
            ("Zorbla book fair", Some("2026-04-02")),
        ];
        let mut slugs = Vec::new();
        for (title, start) in dated {
            slugs.push(publish(&hub, &lyon, title, start).await);
        }
        // The full answer, in one page, is the reference.
        for order in ["START_DATE_DESC", "START_DATE_ASC", "UPDATED_AT_DESC"] {
            let whole = walk(&hub, "zorblat", order, 50).await;
            assert_eq!(whole.len(), 5, "{order}: {whole:?}");
            for page_size in [1, 2, 3] {
                assert_eq!(
                    walk(&hub, "zorblat", order, page_size).await,
                    whole,
                    "{order}, pages of {page_size}"
                );
            }
        }
        let desc = walk(&hub, "zorblat", "START_DATE_DESC", 50).await;
        // Latest first, the later of a day's two first (higher id), undated last.
        assert_eq!(
            desc,
            vec![
                slugs[2].clone(),
                slugs[1].clone(),
                slugs[0].clone(),
                slugs[4].clone(),
                slugs[3].clone()
            ]
        );
        let mut asc = walk(&hub, "zorblat", "START_DATE_ASC", 50).await;
        asc.reverse();
        assert_eq!(asc, desc, "ascending is descending reversed");
        // A prefix covers every word it starts ("zorb" → zorblat, zorblats, zorbla).
        assert_eq!(walk(&hub, "zorb", "START_DATE_DESC", 2).await.len(), 6);
        // Several terms must all match; a word nobody wrote matches nothing.
        assert_eq!(
            walk(&hub, "zorblat sound", "START_DATE_DESC", 1).await,
            vec![slugs[2].clone()]
        );
        assert!(walk(&hub, "zzyzx", "START_DATE_DESC", 5).await.is_empty());
        hub.stop().await;
    }
);

/// SQLite only (PostgreSQL's search index does not change): down, a write
/// the old index's triggers see, up; the rebuilt index and vocabulary hold
/// the write, and new writes reach them through the new triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_index_migrates_down_and_up_with_writes_between() {
    let hub = TestHub::start(Backend::Sqlite).await;
    let lyon = hub.token(Some("lyon")).await;
    let slug = publish(&hub, &lyon, "Marsh choir", Some("2026-06-01")).await;
    let test_db = hub.test_db.clone();
    let url = test_db.url.clone();
    hub.stop().await;

    // The search index and every migration after it.
    let steps = crate::support::steps_to_undo("m20261206_000001_search_by_listing_order");
    let out = run(&url, &["migrate", "down", "--steps", &steps.to_string()]).await;
    assert!(out.contains(&format!("rolled back {steps}")), "{out}");
    let db = sea_orm::Database::connect(&url).await.expect("connect");
    let exec = |sql: String| {
        let db = db.clone();
        async move { sea_orm::ConnectionTrait::execute_unprepared(&db, &sql).await }
    };
    assert!(
        exec("SELECT 1 FROM activity_search".into()).await.is_err(),
        "the new index is gone"
    );
    // The old index works and follows writes.
    exec(format!(
        "UPDATE activities SET search_text = search_text || ' quagmire' WHERE slug = '{slug}'"
    ))
    .await
    .expect("write on the old schema");
    let old = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT rowid FROM activity_fts WHERE activity_fts MATCH 'quagmire'",
        ),
    )
    .await
    .expect("old index");
    assert_eq!(old.len(), 1);
    db.close().await.expect("close");

    let out = run(&url, &["migrate", "up"]).await;
    assert!(out.contains("migrations applied"), "{out}");
    let hub = TestHub::start_on(Backend::Sqlite, test_db, |_| {}).await;
    assert_eq!(
        walk(&hub, "quag", "START_DATE_DESC", 5).await,
        vec![slug.clone()]
    );
    assert_eq!(
        walk(&hub, "marsh choir", "START_DATE_ASC", 5).await,
        vec![slug.clone()]
    );
    let later = publish(&hub, &lyon, "Marshland radio", Some("2026-07-01")).await;
    assert_eq!(
        walk(&hub, "marsh", "START_DATE_DESC", 1).await,
        vec![later, slug]
    );
    hub.stop().await;
}

/// SQLite: the search page's plan walks `activity_search` in its own order
/// and reaches each row by primary key, with no sort, whatever the scope,
/// the direction, a cursor or another filter beside the text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_page_reads_the_index_in_order_without_sorting() {
    use cityhub_domain::{ActivityKind, CityId};
    use cityhub_storage::cursor::CursorKey;
    use cityhub_storage::{ActivityFilter, ActivityRepo, ActivityTexts, Cursor, ReadScope};
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};

    let hub = TestHub::start(Backend::Sqlite).await;
    let cursor = Cursor {
        order: "START_DATE_DESC".into(),
        key: CursorKey::Int(20_260_510),
        id: 3,
    };
    let filters = [
        ActivityFilter {
            text: Some("design week".into()),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            text: Some("design".into()),
            kinds: vec![ActivityKind::Workshop],
            ..ActivityFilter::default()
        },
    ];
    for filter in &filters {
        for scope in [
            ReadScope::Public,
            ReadScope::City(CityId(1)),
            ReadScope::All,
        ] {
            for descending in [true, false] {
                for after in [None, Some(&cursor)] {
                    let stmt = ActivityRepo::search_page_statement(
                        scope,
                        filter,
                        "\"design\"",
                        descending,
                        20,
                        after,
                        ActivityTexts::All.into(),
                    );
                    let explain = Statement::from_sql_and_values(
                        DatabaseBackend::Sqlite,
                        format!("EXPLAIN QUERY PLAN {}", stmt.sql),
                        stmt.values.map(|v| v.0).unwrap_or_default(),
                    );
                    // (parent, detail): the page's own steps have parent 0;
                    // the hosts' subquery sorts its few rows under its own.
                    let plan: Vec<(i64, String)> = hub
                        .db
                        .conn()
                        .query_all_raw(explain)
                        .await
                        .expect("explain")
                        .iter()
                        .map(|r| {
                            (
                                r.try_get::<i64>("", "parent").expect("parent"),
                                r.try_get::<String>("", "detail").expect("detail"),
                            )
                        })
                        .collect();
                    let top: Vec<&str> = plan
                        .iter()
                        .filter(|(parent, _)| *parent == 0)
                        .map(|(_, detail)| detail.as_str())
                        .collect();
                    let text = format!("{plan:#?}");
                    assert!(
                        top[0].starts_with("SCAN activity_search VIRTUAL TABLE"),
                        "{text}"
                    );
                    assert!(
                        top[1].starts_with("SEARCH activities USING INTEGER PRIMARY KEY"),
                        "{text}"
                    );
                    assert!(!top.iter().any(|d| d.contains("TEMP B-TREE")), "{text}");
                }
            }
        }
    }
    hub.stop().await;
}
