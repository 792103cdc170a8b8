//! SQLite's read connections (`storage/src/sqlite_read.rs`) return exactly
//! what the sea-orm path returns: the same reads, run through the hub's own
//! `Db` (which has them) and through a second `Db` on the same file with
//! them turned off, over the seeded network plus activities with
//! documents, co-hosts, participants, drafts and a cancellation.

use cityhub_domain::{
    ActivityId, ActivityKind, ActivityOrder, ActivityStatus, CityId, CreativeField,
};
use cityhub_storage::{
    ActivityFilter, ActivityRepo, CityRepo, Cursor, Db, DbConfig, ReadConnection, ReadScope,
    repo::activity::cursor_of,
};
use serde_json::json;

use crate::support::{Backend, TestHub};

const PUBLISH: &str = "mutation($input: ActivityInput!, $draft: Boolean) { publishActivity(input: $input, draft: $draft) { id } }";

/// Activities with every relation the readers decode.
async fn publish_varied(hub: &TestHub) -> Vec<String> {
    let lyon = hub.token(Some("lyon")).await;
    let seoul = hub.token(Some("seoul")).await;
    let mut ids = Vec::new();
    for (n, (token, draft)) in [
        (&lyon, false),
        (&lyon, true),
        (&seoul, false),
        (&seoul, true),
    ]
    .into_iter()
    .enumerate()
    {
        let input = json!({
            "kind": if n % 2 == 0 { "WORKSHOP" } else { "FESTIVAL" },
            "title": format!("Reader agreement {n} — Café crème"),
            "summary": "A summary with accents: Zürich, Kraków",
            "description": "Some *Markdown*.\n\nTwo paragraphs.",
            "startDate": format!("2027-0{}-1{n}", n + 1),
            "endDate": format!("2027-0{}-2{n}", n + 1),
            "venue": "Town hall",
            "venueCity": "bologna",
            "coHosts": ["bologna"],
            "organizations": ["A foundation"],
            "fields": ["DESIGN", "GASTRONOMY"],
            "themes": ["urban design", "food"],
            "objectives": ["exchange"],
            "format": if n == 2 { "HYBRID" } else { "IN_PERSON" },
            "documents": [
                { "kind": "REPORT", "title": format!("Report {n}"), "url": "https://example.org/r.pdf",
                  "issuedOn": "2027-01-01", "issuedPrecision": "MONTH", "editors": ["Ed"] },
                { "kind": "PROGRAMME", "title": "Programme" },
            ],
        });
        let data = hub
            .ok(
                PUBLISH,
                json!({ "input": input, "draft": draft }),
                Some(token),
            )
            .await;
        ids.push(
            data["publishActivity"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let secretariat = hub.token(None).await;
    hub.ok(
        "mutation($id: ID!) { cancelActivity(id: $id, reason: \"postponed\") { id } }",
        json!({ "id": ids[0] }),
        Some(&secretariat),
    )
    .await;
    ids
}

/// Every page of `filter` in `order`, following cursors.
async fn all_pages(
    db: &impl ReadConnection,
    scope: ReadScope,
    filter: &ActivityFilter,
    order: ActivityOrder,
) -> Vec<cityhub_domain::Activity> {
    let mut out = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = ActivityRepo::page(db, scope, filter, order, 3, after.as_ref())
            .await
            .expect("page");
        after = page.items.last().map(|a| cursor_of(a, order));
        out.extend(page.items);
        if !page.has_next {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_connections_return_what_sea_orm_returns() {
    let hub = TestHub::start(Backend::Sqlite).await;
    assert!(
        hub.db.sqlite_reader().is_some(),
        "the hub's SQLite database has read connections by default"
    );
    publish_varied(&hub).await;
    let plain = Db::connect(&DbConfig {
        url: hub.test_db.url.clone(),
        sqlite_readers: 0,
        ..DbConfig::default()
    })
    .await
    .expect("second pool");
    assert!(plain.sqlite_reader().is_none());

    let lyon_id = CityRepo::find_by_slug(plain.conn(), "lyon")
        .await
        .expect("lyon")
        .expect("lyon exists")
        .id;
    let scopes = [ReadScope::Public, ReadScope::City(lyon_id), ReadScope::All];
    let all = Some(vec![
        ActivityStatus::Draft,
        ActivityStatus::Published,
        ActivityStatus::Cancelled,
    ]);
    let filters = [
        ActivityFilter::default(),
        ActivityFilter {
            statuses: all.clone(),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            cities: vec!["lyon".into()],
            statuses: all.clone(),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            cities: vec!["bologna".into()],
            ..ActivityFilter::default()
        },
        ActivityFilter {
            kinds: vec![ActivityKind::Workshop],
            fields: vec![CreativeField::Design],
            statuses: all.clone(),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            kinds: vec![ActivityKind::Festival],
            ..ActivityFilter::default()
        },
        ActivityFilter {
            fields: vec![CreativeField::Gastronomy],
            statuses: Some(vec![ActivityStatus::Draft, ActivityStatus::Cancelled]),
            ..ActivityFilter::default()
        },
        ActivityFilter {
            text: Some("cafe".into()),
            statuses: all,
            ..ActivityFilter::default()
        },
    ];
    let orders = [
        ActivityOrder::StartDateDesc,
        ActivityOrder::StartDateAsc,
        ActivityOrder::UpdatedAtDesc,
        ActivityOrder::TitleAsc,
    ];
    let mut compared = 0;
    for scope in scopes {
        for filter in &filters {
            for order in orders {
                let fast = all_pages(&hub.db, scope, filter, order).await;
                let slow = all_pages(plain.conn(), scope, filter, order).await;
                assert_eq!(fast, slow, "{scope:?} {filter:?} {order:?}");
                compared += fast.len();
                let n_fast = ActivityRepo::count(&hub.db, scope, filter)
                    .await
                    .expect("count");
                let n_slow = ActivityRepo::count(plain.conn(), scope, filter)
                    .await
                    .expect("count");
                assert_eq!(n_fast, n_slow, "count {scope:?} {filter:?}");
                assert_eq!(n_fast as usize, fast.len(), "count and pages {filter:?}");
            }
        }
    }
    assert!(compared > 100, "the comparison covered rows: {compared}");

    let everything = all_pages(
        plain.conn(),
        ReadScope::All,
        &filters[1],
        ActivityOrder::StartDateAsc,
    )
    .await;
    let ids: Vec<ActivityId> = everything.iter().map(|a| a.id).collect();
    assert!(ids.len() > 4);
    for a in &everything {
        for scope in scopes {
            let fast = ActivityRepo::find_by_id(&hub.db, scope, a.id)
                .await
                .expect("by id");
            let slow = ActivityRepo::find_by_id(plain.conn(), scope, a.id)
                .await
                .expect("by id");
            assert_eq!(fast, slow);
            let fast = ActivityRepo::find_by_slug(&hub.db, scope, &a.slug)
                .await
                .expect("by slug");
            assert_eq!(fast, slow);
        }
    }
    let fast = ActivityRepo::documents_of(&hub.db, &ids)
        .await
        .expect("docs");
    assert_eq!(
        fast,
        ActivityRepo::documents_of(plain.conn(), &ids)
            .await
            .expect("docs")
    );
    assert!(
        fast.values().flatten().count() >= 8,
        "documents were compared"
    );
    let fast = ActivityRepo::participants_of(&hub.db, &ids)
        .await
        .expect("participants");
    assert_eq!(
        fast,
        ActivityRepo::participants_of(plain.conn(), &ids)
            .await
            .expect("participants")
    );
    let city_ids: Vec<CityId> = everything.iter().flat_map(|a| a.hosts.clone()).collect();
    let fast = CityRepo::find_by_ids(&hub.db, &city_ids)
        .await
        .expect("cities");
    assert_eq!(
        fast,
        CityRepo::find_by_ids(plain.conn(), &city_ids)
            .await
            .expect("cities")
    );
    assert!(fast.len() > 3);
    hub.stop().await;
}

/// A statement that runs past `database.statement_timeout_secs` is
/// interrupted: the read connection answers "unavailable" instead of
/// holding the thread, and the next read works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reads_stop_at_the_statement_timeout() {
    let hub = TestHub::start_with(Backend::Sqlite, |c| c.database.statement_timeout_secs = 1).await;
    let reader = hub.db.sqlite_reader().expect("read connections");
    let endless = sea_orm::Statement::from_string(
        sea_orm::DatabaseBackend::Sqlite,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
    );
    let failed = reader.query(&endless, |row| Ok(row.get::<_, i64>(0).unwrap_or_default()));
    assert!(
        matches!(failed, Err(cityhub_storage::StorageError::Unavailable(_))),
        "{failed:?}"
    );
    let one = sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Sqlite, "SELECT 1");
    let ok = reader
        .query(&one, |row| Ok(row.get::<_, i64>(0).unwrap_or_default()))
        .expect("the connection works after an interrupted statement");
    assert_eq!(ok, vec![1]);
    hub.stop().await;
}

/// `PRAGMA mmap_size` on one of `db`'s read connections and on its pool.
async fn mapped_bytes(db: &Db) -> (i64, i64) {
    let pragma = sea_orm::Statement::from_string(sea_orm::DbBackend::Sqlite, "PRAGMA mmap_size");
    let reader = db
        .sqlite_reader()
        .expect("read connections")
        .query(&pragma, |row| Ok(row.get::<_, i64>(0).expect("mmap_size")))
        .expect("pragma on a reader");
    let pool = sea_orm::ConnectionTrait::query_one_raw(db.conn(), pragma)
        .await
        .expect("pragma on the pool")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("mmap_size");
    (reader[0], pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_maps_as_much_of_the_file_as_configured() {
    let hub = TestHub::start(Backend::Sqlite).await;
    // The default maps a network of 100,000 activities (730 MB) whole.
    let default = 2000 << 20;
    assert_eq!(mapped_bytes(&hub.db).await, (default, default));
    let small = Db::connect(&DbConfig {
        url: hub.test_db.url.clone(),
        sqlite_mmap_mib: 64,
        ..DbConfig::default()
    })
    .await
    .expect("second pool");
    assert_eq!(mapped_bytes(&small).await, (64 << 20, 64 << 20));
}
