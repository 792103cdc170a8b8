//! The scenarios' GraphQL documents and request bodies, and the discovery
//! of what they rotate through (city slugs, activity slugs).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use cityhub_storage::Db;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::load::{MakeRequest, Req};
use crate::words;

/// A city website's listing: one city's activities, with hosts and documents.
pub const LISTING: &str = "query Listing($cities: [String!]) { activities(first: 20, filter: {cities: $cities}) { nodes { id slug title summary kind format startDate endDate venue hosts { slug name country } documents { kind title url } } pageInfo { hasNextPage endCursor } } }";

/// An activity's page.
pub const DETAIL: &str = "query Detail($slug: String) { activity(slug: $slug) { id slug kind format status title summary description startDate endDate datePrecision venue venueCity { slug name country } hosts { slug name country } participants { slug name country } organizations fields themes objectives documents { id kind title url issuedOn editors } publishedBy { slug name } publishedAt updatedAt version } }";

/// The network's overview page.
pub const OVERVIEW: &str = "query Overview { network { name foundedYear cityCount countryCount activityCount fields { field cityCount activityCount } } cities(first: 50) { totalCount nodes { slug name country fields memberSince website } pageInfo { hasNextPage endCursor } } }";

/// Full-text search.
pub const SEARCH: &str = "query Search($text: String) { activities(first: 20, filter: {text: $text}) { nodes { id slug title summary startDate kind hosts { slug name } } pageInfo { hasNextPage endCursor } } }";

/// The secretariat's dashboard: latest changes with the total.
pub const DASHBOARD: &str = "query Dashboard { activities(first: 20, orderBy: UPDATED_AT_DESC) { totalCount nodes { id slug title status kind updatedAt version hosts { slug name } } pageInfo { hasNextPage endCursor } } }";

/// The live dashboard's statistics (`GET /dashboard` loads them and reloads
/// them after events).
pub const STATS: &str = "query Stats($filter: ActivityFilter) { stats(filter: $filter) { total cityCount byField { field count } byKind { kind count } byCountry { country count } byYear { year count } byFormat { format count } } }";

/// Publishing an activity.
pub const PUBLISH: &str = "mutation Publish($input: ActivityInput!) { publishActivity(input: $input) { id slug version } }";

/// The live feed every fan-out subscriber watches.
pub const SUBSCRIPTION: &str = "subscription Feed { activityEvents { cursor type occurredAt activity { id slug title status hosts { slug name } } } }";

/// What the read scenarios rotate through.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Slugs of member cities.
    pub city_slugs: Vec<String>,
    /// Slugs of published activities (a sample spread over the table).
    pub activity_slugs: Vec<String>,
}

/// Finds city and activity slugs: from the database when there is one (a
/// sample spread evenly over ids), else through the API.
pub async fn discover(addr: SocketAddr, db: Option<&Db>) -> anyhow::Result<Targets> {
    if let Some(db) = db {
        let backend = db.backend();
        let cities = db
            .conn()
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT slug FROM cities ORDER BY id",
            ))
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "slug"))
            .collect::<Result<Vec<_>, _>>()?;
        let total = crate::generate::count_rows(db, "activities").await?;
        let step = (total / 5000).max(1);
        let activities = db
            .conn()
            .query_all_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT slug FROM activities WHERE status = 'PUBLISHED' AND deleted_at IS NULL \
                     AND id % {step} = 0 ORDER BY id LIMIT 5000"
                ),
            ))
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "slug"))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Targets {
            city_slugs: cities,
            activity_slugs: activities,
        });
    }
    let mut targets = Targets::default();
    let mut after: Option<String> = None;
    loop {
        let data = crate::load::graphql(
            addr,
            "query($after: String) { cities(first: 100, after: $after) { nodes { slug } pageInfo { hasNextPage endCursor } } }",
            json!({"after": after}),
            None,
        )
        .await?;
        let page = &data["cities"];
        for n in page["nodes"].as_array().into_iter().flatten() {
            if let Some(s) = n["slug"].as_str() {
                targets.city_slugs.push(s.to_owned());
            }
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    after = None;
    for _ in 0..20 {
        let data = crate::load::graphql(
            addr,
            "query($after: String) { activities(first: 100, after: $after) { nodes { slug } pageInfo { hasNextPage endCursor } } }",
            json!({"after": after}),
            None,
        )
        .await?;
        let page = &data["activities"];
        for n in page["nodes"].as_array().into_iter().flatten() {
            if let Some(s) = n["slug"].as_str() {
                targets.activity_slugs.push(s.to_owned());
            }
        }
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    Ok(targets)
}

fn body(query: &str, variables: serde_json::Value) -> Bytes {
    serde_json::to_vec(&json!({"query": query, "variables": variables}))
        .unwrap_or_default()
        .into()
}

/// Rotates through prepared bodies; workers start at different places.
fn rotating(bodies: Vec<Bytes>, authorization: Option<Arc<str>>) -> MakeRequest {
    let bodies = Arc::new(bodies);
    Arc::new(move |worker, seq| {
        let n = bodies.len().max(1) as u64;
        let i = (worker as u64 * 7_919 + seq * 31) % n;
        Req {
            path: "/graphql",
            body: bodies.get(i as usize).cloned().unwrap_or_default(),
            authorization: authorization.clone(),
            if_none_match: None,
            get: None,
        }
    })
}

/// The listing, rotating city slugs.
pub fn listing(targets: &Targets) -> MakeRequest {
    rotating(
        targets
            .city_slugs
            .iter()
            .map(|s| body(LISTING, json!({"cities": [s]})))
            .collect(),
        None,
    )
}

/// Percent-encodes a query-string value (unreserved characters kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /graphql?query=…&variables=…` of the listing for each city (leaked:
/// one short string per city, for the run's lifetime).
fn listing_paths(targets: &Targets) -> Vec<&'static str> {
    targets
        .city_slugs
        .iter()
        .map(|s| {
            let vars = json!({"cities": [s]}).to_string();
            let path = format!(
                "/graphql?query={}&variables={}",
                encode(LISTING),
                encode(&vars)
            );
            &*Box::leak(path.into_boxed_str())
        })
        .collect()
}

/// The listing over `GET` (as a city website or a CDN sends it), rotating
/// city slugs.
pub fn listing_get(targets: &Targets) -> MakeRequest {
    let paths = Arc::new(listing_paths(targets));
    Arc::new(move |worker, seq| {
        let n = paths.len().max(1) as u64;
        let i = (worker as u64 * 7_919 + seq * 31) % n;
        Req {
            path: paths.get(i as usize).copied().unwrap_or("/graphql"),
            body: Bytes::new(),
            authorization: None,
            if_none_match: None,
            get: None,
        }
    })
}

/// The listing over `GET` with the `ETag` each city's answer had, rotating
/// city slugs: every answer is a 304 while the data does not change.
pub async fn not_modified(addr: SocketAddr, targets: &Targets) -> anyhow::Result<MakeRequest> {
    let mut prepared = Vec::new();
    for path in listing_paths(targets) {
        let tag = crate::load::etag_of(addr, path)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no ETag on GET {path}"))?;
        prepared.push((path, Arc::<str>::from(tag)));
    }
    let prepared = Arc::new(prepared);
    Ok(Arc::new(move |worker, seq| {
        let n = prepared.len().max(1) as u64;
        let i = (worker as u64 * 7_919 + seq * 31) % n;
        let (path, tag) = prepared[i as usize].clone();
        Req {
            path,
            body: Bytes::new(),
            authorization: None,
            if_none_match: Some(tag),
            get: None,
        }
    }))
}

/// The activity page, rotating activity slugs.
pub fn detail(targets: &Targets) -> MakeRequest {
    rotating(
        targets
            .activity_slugs
            .iter()
            .map(|s| body(DETAIL, json!({"slug": s})))
            .collect(),
        None,
    )
}

/// The overview.
pub fn overview() -> MakeRequest {
    rotating(vec![body(OVERVIEW, json!({}))], None)
}

/// Full-text search, rotating words.
pub fn search() -> MakeRequest {
    rotating(
        words::SEARCH_QUERIES
            .iter()
            .map(|q| body(SEARCH, json!({"text": q})))
            .collect(),
        None,
    )
}

/// The dashboard, as the secretariat sees it.
pub fn dashboard(authorization: Option<Arc<str>>) -> MakeRequest {
    rotating(vec![body(DASHBOARD, json!({}))], authorization)
}

/// The dashboard's statistics, anonymous, rotating the filters its page
/// offers: none, each kind, each field, and up to 100 cities.
pub fn stats(targets: &Targets) -> MakeRequest {
    let mut bodies = vec![body(STATS, json!({}))];
    for kind in cityhub_domain::ActivityKind::ALL {
        bodies.push(body(STATS, json!({"filter": {"kinds": [kind.as_str()]}})));
    }
    for field in cityhub_domain::CreativeField::ALL {
        bodies.push(body(STATS, json!({"filter": {"fields": [field.as_str()]}})));
    }
    for city in targets.city_slugs.iter().take(100) {
        bodies.push(body(STATS, json!({"filter": {"cities": [city]}})));
    }
    rotating(bodies, None)
}

/// `stats` filtered on two dimensions at once, as a dashboard drills down:
/// every kind with every field, every field with each of 20 cities, and
/// every kind with each of 20 cities, rotated.
pub fn stats_two_fields(targets: &Targets) -> MakeRequest {
    use cityhub_domain::{ActivityKind, CreativeField};
    let mut bodies = Vec::new();
    for kind in ActivityKind::ALL {
        for field in CreativeField::ALL {
            bodies.push(body(
                STATS,
                json!({"filter": {"kinds": [kind.as_str()], "fields": [field.as_str()]}}),
            ));
        }
    }
    for city in targets.city_slugs.iter().take(20) {
        for field in CreativeField::ALL {
            bodies.push(body(
                STATS,
                json!({"filter": {"cities": [city], "fields": [field.as_str()]}}),
            ));
        }
        for kind in ActivityKind::ALL {
            bodies.push(body(
                STATS,
                json!({"filter": {"cities": [city], "kinds": [kind.as_str()]}}),
            ));
        }
    }
    rotating(bodies, None)
}

/// Publishing: each publish goes to the next city in turn (every city
/// publishes with its own token, however few requests are in flight),
/// each activity titled with the run's marker so durable rows can be
/// counted.
pub fn publish(tokens: Vec<(String, Arc<str>)>, marker: String) -> MakeRequest {
    let tokens = Arc::new(tokens);
    let turn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Arc::new(move |worker, seq| {
        let i = turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (city, token) = &tokens[i % tokens.len()];
        let input = json!({
            "kind": "WORKSHOP",
            "title": format!("{marker} w{worker} n{seq}"),
            "summary": "A workshop published by the benchmark: creative tourism and design thinking for young creators.",
            "description": "## Programme\n\nTwo days of talks and hands-on sessions with local designers.\n\n- Share good practices\n- Develop joint projects",
            "format": "HYBRID",
            "startDate": "2026-06-01",
            "endDate": "2026-06-02",
            "venue": "Cultural Centre",
            "venueCity": city,
            "fields": ["DESIGN"],
            "themes": ["design thinking", "youth engagement"],
            "objectives": ["Share good practices"],
            "organizations": ["UNESCO"],
            "documents": [{"kind": "PROGRAMME", "title": "Programme", "url": "https://www.example.org/programme.pdf", "issuedOn": "2026-05-01"}],
        });
        Req {
            path: "/graphql",
            body: body(PUBLISH, json!({"input": input})),
            authorization: Some(token.clone()),
            if_none_match: None,
            get: None,
        }
    })
}

/// GETs rotating paths (calendars, feeds); workers start at different places.
fn rotating_get(paths: Vec<Arc<str>>) -> MakeRequest {
    let paths = Arc::new(paths);
    Arc::new(move |worker, seq| {
        let n = paths.len().max(1) as u64;
        let i = (worker as u64 * 7_919 + seq * 31) % n;
        Req {
            path: "/",
            body: Bytes::new(),
            authorization: None,
            if_none_match: None,
            get: paths.get(i as usize).cloned(),
        }
    })
}

/// A city website's calendar subscription: `GET /cities/{slug}/calendar.ics`,
/// rotating city slugs.
pub fn calendar(targets: &Targets) -> MakeRequest {
    rotating_get(
        targets
            .city_slugs
            .iter()
            .map(|s| Arc::from(format!("/cities/{s}/calendar.ics").as_str()))
            .collect(),
    )
}

/// A city website's feed import: `GET /cities/{slug}/feed.atom`, rotating
/// city slugs.
pub fn feed(targets: &Targets) -> MakeRequest {
    rotating_get(
        targets
            .city_slugs
            .iter()
            .map(|s| Arc::from(format!("/cities/{s}/feed.atom").as_str()))
            .collect(),
    )
}
