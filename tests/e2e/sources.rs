//! Sources (issue 21): cities connect the calendars they already publish,
//! and the hub imports them. Every test serves its feeds from a small
//! local HTTP server it starts itself (axum on 127.0.0.1:0): feeds
//! generated here, and hand-written ones in the shapes calendar software
//! exports (time zones, recurrences with exceptions, cancelled instances,
//! folded lines, JSON-LD `@graph`).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub, pg_available};

/// What the feed server answers on a path.
#[derive(Clone)]
pub(crate) enum Reply {
    /// `text/calendar`, with an `ETag` honoured by `If-None-Match`.
    Calendar(String),
    /// `text/calendar` without validators: every fetch gets the body.
    CalendarNoValidators(String),
    /// `text/html`.
    Html(String),
    /// A status, with `Retry-After` seconds.
    Status(u16, Option<u64>),
    /// A redirect to another path.
    Redirect(String),
    /// A gzip body (`Content-Encoding: gzip`).
    Gzip(Vec<u8>),
    /// A body trickled a byte at a time, forever.
    Trickle,
    /// A body of this many bytes.
    Huge(usize),
    /// A calendar answered only once the test adds a permit.
    Held(String, Arc<tokio::sync::Semaphore>),
}

#[derive(Default)]
struct Feeds {
    replies: Mutex<HashMap<String, Reply>>,
    hits: Mutex<HashMap<String, usize>>,
}

/// A local HTTP server of feeds.
pub(crate) struct FeedServer {
    addr: SocketAddr,
    feeds: Arc<Feeds>,
}

impl FeedServer {
    pub(crate) async fn start() -> Self {
        let feeds = Arc::new(Feeds::default());
        let app = axum::Router::new()
            .fallback(serve_feed)
            .with_state(feeds.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the feed server");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, feeds }
    }

    pub(crate) fn set(&self, path: &str, reply: Reply) {
        self.feeds
            .replies
            .lock()
            .expect("lock")
            .insert(path.to_owned(), reply);
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> usize {
        self.feeds
            .hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

fn etag_of(body: &str) -> String {
    use sha2::Digest;
    format!(
        "\"{}\"",
        hex::encode(&sha2::Sha256::digest(body.as_bytes())[..8])
    )
}

async fn serve_feed(State(feeds): State<Arc<Feeds>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    *feeds
        .hits
        .lock()
        .expect("lock")
        .entry(path.clone())
        .or_default() += 1;
    let reply = feeds.replies.lock().expect("lock").get(&path).cloned();
    let headers: HeaderMap = request.headers().clone();
    let calendar = |body: String| {
        (
            [(header::CONTENT_TYPE, "text/calendar; charset=utf-8")],
            body,
        )
            .into_response()
    };
    match reply {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Reply::Calendar(body)) => {
            let etag = etag_of(&body);
            if headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.to_str().ok() == Some(etag.as_str()))
            {
                return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
            }
            let mut response = calendar(body);
            response
                .headers_mut()
                .insert(header::ETAG, HeaderValue::from_str(&etag).expect("etag"));
            response
        }
        Some(Reply::CalendarNoValidators(body)) => calendar(body),
        Some(Reply::Html(body)) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
        }
        Some(Reply::Status(code, retry_after)) => {
            let mut response = StatusCode::from_u16(code).expect("status").into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&seconds.to_string()).expect("retry-after"),
                );
            }
            response
        }
        Some(Reply::Redirect(to)) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
        Some(Reply::Gzip(bytes)) => (
            [
                (header::CONTENT_TYPE, "text/calendar"),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            bytes,
        )
            .into_response(),
        Some(Reply::Trickle) => {
            let stream = futures::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some((
                    Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"B")),
                    n + 1,
                ))
            });
            let mut response = Response::new(Body::from_stream(stream));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/calendar"),
            );
            response
        }
        Some(Reply::Huge(size)) => calendar(format!(
            "BEGIN:VCALENDAR\r\nX-PAD:{}\r\nEND:VCALENDAR\r\n",
            "x".repeat(size)
        )),
        Some(Reply::Held(body, gate)) => {
            let _permit = gate.acquire().await.expect("the gate stays open");
            calendar(body)
        }
    }
}

/// An iCalendar feed of `events` (already written VEVENT bodies).
pub(crate) fn calendar(events: &[String]) -> String {
    let mut text =
        String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cityhub tests//EN\r\n");
    for event in events {
        text.push_str("BEGIN:VEVENT\r\n");
        text.push_str(event);
        text.push_str("END:VEVENT\r\n");
    }
    text.push_str("END:VCALENDAR\r\n");
    text
}

/// A generated all-day event.
fn all_day(uid: &str, summary: &str, start: &str, end_exclusive: &str) -> String {
    format!(
        "UID:{uid}\r\nDTSTAMP:20261201T000000Z\r\nDTSTART;VALUE=DATE:{start}\r\nDTEND;VALUE=DATE:{end_exclusive}\r\nSUMMARY:{summary}\r\nURL:https://city.example/events/{uid}\r\n"
    )
}

/// A generated timed event in a zone.
fn timed(uid: &str, summary: &str, zone: &str, start: &str, end: &str) -> String {
    format!(
        "UID:{uid}\r\nDTSTAMP:20261201T000000Z\r\nDTSTART;TZID={zone}:{start}\r\nDTEND;TZID={zone}:{end}\r\nSUMMARY:{summary}\r\nLOCATION:Hôtel de Ville\\, salle 2\r\nCATEGORIES:Music,Open air\r\n"
    )
}

const SOURCE_FIELDS: &str = "id kind url paused lastStatus lastError importedCount nextRunAt lastRunAt lastChangeAt city { slug } skippedItems { uid reason }";

pub(crate) async fn connect(hub: &TestHub, token: &str, kind: &str, url: &str) -> Value {
    let data = hub
        .ok(
            &format!(
                "mutation($input: SourceInput!) {{ connectSource(input: $input) {{ {SOURCE_FIELDS} }} }}"
            ),
            json!({ "input": { "kind": kind, "url": url } }),
            Some(token),
        )
        .await;
    data["connectSource"].clone()
}

/// Runs a source and waits (with a generous deadline) for its outcome.
pub(crate) async fn sync(hub: &TestHub, token: &str, id: &Value) -> Value {
    let data = hub
        .ok(
            &format!("mutation($id: ID!) {{ syncSource(id: $id) {{ {SOURCE_FIELDS} }} }}"),
            json!({ "id": id }),
            Some(token),
        )
        .await;
    let mut source = data["syncSource"].clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while source["lastStatus"] == "RUNNING" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never ended: {source}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        source = source_of(hub, token, id).await;
    }
    source
}

async fn source_of(hub: &TestHub, token: &str, id: &Value) -> Value {
    hub.ok(
        &format!("query($id: ID!) {{ source(id: $id) {{ {SOURCE_FIELDS} }} }}"),
        json!({ "id": id }),
        Some(token),
    )
    .await["source"]
        .clone()
}

const ACTIVITY_FIELDS: &str = "id title status version startDate endDate venue themes cancelReason sourceUrl source { id url }";

/// The activities of `city`, every status, by title.
async fn activities_of(hub: &TestHub, city: &str) -> Vec<Value> {
    let data = hub
        .ok(
            &format!(
                "query($city: String!) {{ activities(filter: {{ cities: [$city], statuses: [PUBLISHED, CANCELLED] }}, first: 100, orderBy: TITLE_ASC) {{ nodes {{ {ACTIVITY_FIELDS} }} }} }}"
            ),
            json!({ "city": city }),
            None,
        )
        .await;
    data["activities"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn imported(activities: &[Value]) -> Vec<&Value> {
    activities
        .iter()
        .filter(|a| !a["source"].is_null())
        .collect()
}

fn by_title<'a>(activities: &'a [Value], title: &str) -> &'a Value {
    activities
        .iter()
        .find(|a| a["title"] == title)
        .unwrap_or_else(|| panic!("no activity titled {title} in {activities:?}"))
}

/// Rows of the event log and of the audit trail: what "no writes" counts.
async fn write_counts(hub: &TestHub) -> (i64, i64) {
    use sea_orm::ConnectionTrait;
    let conn = hub.db.conn();
    let count = |table: &str| {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        async move {
            let row = conn
                .query_one_raw(sea_orm::Statement::from_string(
                    conn.get_database_backend(),
                    sql,
                ))
                .await
                .expect("count")
                .expect("a row");
            row.try_get::<i64>("", "n").expect("n")
        }
    };
    (
        count("activity_events").await,
        count("audit_log WHERE action LIKE '%Activit%'").await,
    )
}

pub(crate) fn test_settings(config: &mut cityhub::config::Config) {
    config.sources.allow_private_networks = true;
    config.sources.scheduler = false;
}

both_backends!(
    a_city_connects_its_calendar_and_the_hub_keeps_it_in_sync,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let lyon = hub.token(Some("lyon")).await;
        let feed = calendar(&[
            all_day(
                "fest-1@lyon.example",
                "Festival of Lights",
                "20271208",
                "20271212",
            ),
            timed(
                "concert-2@lyon.example",
                "Evening concert",
                "Europe/Paris",
                "20270115T203000",
                "20270115T223000",
            ),
            all_day("talk-3@lyon.example", "Design talk", "20270301", "20270302"),
            all_day(
                "past-4@lyon.example",
                "Past exhibition",
                "20250301",
                "20250305",
            ),
        ]);
        feeds.set("/lyon.ics", Reply::Calendar(feed));
        let source = connect(&hub, &lyon, "ICALENDAR", &feeds.url("/lyon.ics")).await;
        assert_eq!(source["lastStatus"], "NEVER_RUN");
        assert_eq!(source["city"]["slug"], "lyon");
        let id = source["id"].clone();

        let source = sync(&hub, &lyon, &id).await;
        assert_eq!(source["lastStatus"], "OK", "{source}");
        assert_eq!(source["importedCount"], 4);
        assert!(source["lastError"].is_null());
        assert!(!source["lastChangeAt"].is_null());
        assert!(!source["nextRunAt"].is_null());
        let activities = activities_of(&hub, "lyon").await;
        assert_eq!(imported(&activities).len(), 4, "{activities:?}");
        let festival = by_title(&activities, "Festival of Lights");
        assert_eq!(festival["startDate"], "2027-12-08");
        assert_eq!(
            festival["endDate"], "2027-12-11",
            "DTEND of an all-day event is exclusive"
        );
        assert_eq!(festival["source"]["id"], id);
        assert_eq!(
            festival["sourceUrl"],
            "https://city.example/events/fest-1@lyon.example"
        );
        let concert = by_title(&activities, "Evening concert");
        assert_eq!(concert["startDate"], "2027-01-15");
        assert_eq!(concert["venue"], "Hôtel de Ville, salle 2");
        assert_eq!(concert["themes"], json!(["Music", "Open air"]));
        assert_eq!(by_title(&activities, "Design talk")["endDate"], Value::Null);

        // Unchanged (a 304 for the ETag): no write at all.
        let before = write_counts(&hub).await;
        let source = sync(&hub, &lyon, &id).await;
        assert_eq!(source["lastStatus"], "NOT_MODIFIED", "{source}");
        assert_eq!(feeds.hits("/lyon.ics"), 2);
        assert_eq!(write_counts(&hub).await, before);

        // One event changed, one gone upcoming, one gone past.
        feeds.set(
            "/lyon.ics",
            Reply::Calendar(calendar(&[
                all_day(
                    "fest-1@lyon.example",
                    "Festival of Lights 2027",
                    "20271208",
                    "20271212",
                ),
                timed(
                    "concert-2@lyon.example",
                    "Evening concert",
                    "Europe/Paris",
                    "20270115T203000",
                    "20270115T223000",
                ),
            ])),
        );
        let source = sync(&hub, &lyon, &id).await;
        assert_eq!(source["lastStatus"], "OK", "{source}");
        assert_eq!(source["importedCount"], 2);
        let activities = activities_of(&hub, "lyon").await;
        let festival = by_title(&activities, "Festival of Lights 2027");
        assert_eq!(festival["version"], 2);
        assert_eq!(
            by_title(&activities, "Evening concert")["version"],
            1,
            "unchanged items are not written"
        );
        let talk = by_title(&activities, "Design talk");
        assert_eq!(talk["status"], "CANCELLED");
        assert!(
            talk["cancelReason"]
                .as_str()
                .is_some_and(|r| r.contains("no longer lists")),
            "{talk}"
        );
        let past = by_title(&activities, "Past exhibition");
        assert_eq!(
            past["status"], "PUBLISHED",
            "a past activity stays as it was"
        );
        assert_eq!(past["version"], 1);

        // The same body without validators: read, found identical, no write.
        let same = calendar(&[
            all_day(
                "fest-1@lyon.example",
                "Festival of Lights 2027",
                "20271208",
                "20271212",
            ),
            timed(
                "concert-2@lyon.example",
                "Evening concert",
                "Europe/Paris",
                "20270115T203000",
                "20270115T223000",
            ),
        ]);
        feeds.set("/lyon.ics", Reply::CalendarNoValidators(same.clone()));
        let first = sync(&hub, &lyon, &id).await;
        assert_eq!(
            first["lastStatus"], "NOT_MODIFIED",
            "the body hash matched: {first}"
        );
        let before = write_counts(&hub).await;
        let again = sync(&hub, &lyon, &id).await;
        assert_eq!(again["lastStatus"], "NOT_MODIFIED", "{again}");
        assert_eq!(write_counts(&hub).await, before);

        // Every run and every change is in the audit trail.
        let audit = cityhub_storage::repo::audit::AuditRepo::for_target(
            hub.db.conn(),
            "source",
            id.as_str().expect("id"),
        )
        .await
        .expect("audit");
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions[0], "connectSource");
        assert!(
            actions.contains(&"sourceRun:OK") && actions.contains(&"sourceRun:NOT_MODIFIED"),
            "{actions:?}"
        );
        let festival_id = festival["id"].as_str().expect("id").to_owned();
        let trail = cityhub_storage::repo::audit::AuditRepo::for_target(
            hub.db.conn(),
            "activity",
            &festival_id,
        )
        .await
        .expect("audit");
        let actions: Vec<&str> = trail.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, vec!["importActivity", "updateImportedActivity"]);
    }
);

both_backends!(
    imported_activities_are_edited_at_their_source_until_detached,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let lyon = hub.token(Some("lyon")).await;
        feeds.set(
            "/cal.ics",
            Reply::Calendar(calendar(&[
                all_day("a@lyon.example", "Workshop A", "20270401", "20270402"),
                all_day("b@lyon.example", "Workshop B", "20270402", "20270403"),
            ])),
        );
        let id = connect(&hub, &lyon, "ICALENDAR", &feeds.url("/cal.ics")).await["id"].clone();
        assert_eq!(sync(&hub, &lyon, &id).await["lastStatus"], "OK");
        let activities = activities_of(&hub, "lyon").await;
        let a = by_title(&activities, "Workshop A")["id"].clone();

        let error = hub
        .fails(
            "mutation($id: ID!) { updateActivity(id: $id, patch: { title: \"Edited here\" }) { id } }",
            json!({ "id": a }),
            Some(&lyon),
            "FORBIDDEN",
        )
        .await;
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("edited at its source")),
            "{error}"
        );
        hub.fails(
            "mutation($id: ID!) { cancelActivity(id: $id) { id } }",
            json!({ "id": a }),
            Some(&lyon),
            "FORBIDDEN",
        )
        .await;
        // Another city may not detach it.
        let seoul = hub.token(Some("seoul")).await;
        hub.fails(
            "mutation($id: ID!) { detachFromSource(activity: $id) { id } }",
            json!({ "id": a }),
            Some(&seoul),
            "FORBIDDEN",
        )
        .await;

        let detached = hub
        .ok(
            &format!("mutation($id: ID!) {{ detachFromSource(activity: $id) {{ {ACTIVITY_FIELDS} }} }}"),
            json!({ "id": a }),
            Some(&lyon),
        )
        .await;
        assert!(detached["detachFromSource"]["source"].is_null());
        let updated = hub
        .ok(
            "mutation($id: ID!) { updateActivity(id: $id, patch: { title: \"Edited here\" }) { title version } }",
            json!({ "id": a }),
            Some(&lyon),
        )
        .await;
        assert_eq!(updated["updateActivity"]["title"], "Edited here");

        // The source still lists it, changed: the detached activity is left alone.
        feeds.set(
            "/cal.ics",
            Reply::Calendar(calendar(&[
                all_day(
                    "a@lyon.example",
                    "Workshop A (source)",
                    "20270401",
                    "20270402",
                ),
                all_day("b@lyon.example", "Workshop B", "20270402", "20270403"),
            ])),
        );
        let source = sync(&hub, &lyon, &id).await;
        assert_eq!(source["lastStatus"], "OK", "{source}");
        let activities = activities_of(&hub, "lyon").await;
        assert_eq!(by_title(&activities, "Edited here")["version"], 2);
        assert!(
            activities
                .iter()
                .all(|x| x["title"] != "Workshop A (source)")
        );

        // Removing the source keeping its activities: they become the city's own.
        let removed = hub
            .ok(
                "mutation($id: ID!) { removeSource(id: $id, keepActivities: true) }",
                json!({ "id": id }),
                Some(&lyon),
            )
            .await;
        assert_eq!(removed["removeSource"], id);
        let activities = activities_of(&hub, "lyon").await;
        let b = by_title(&activities, "Workshop B");
        assert_eq!(b["status"], "PUBLISHED");
        assert!(b["source"].is_null());
        hub.ok(
        "mutation($id: ID!) { updateActivity(id: $id, patch: { title: \"Workshop B, ours\" }) { id } }",
        json!({ "id": b["id"] }),
        Some(&lyon),
    )
    .await;
    }
);

both_backends!(
    removing_a_source_cancels_its_upcoming_activities,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let secretariat = hub.token(None).await;
        feeds.set(
            "/bologna.ics",
            Reply::Calendar(calendar(&[
                all_day(
                    "x@bologna.example",
                    "Upcoming reading",
                    "20270510",
                    "20270511",
                ),
                all_day("y@bologna.example", "Old reading", "20250510", "20250511"),
            ])),
        );
        // The secretariat connects a calendar for a city.
        let data = hub
        .ok(
            &format!("mutation($input: SourceInput!) {{ connectSource(input: $input) {{ {SOURCE_FIELDS} }} }}"),
            json!({ "input": { "kind": "ICALENDAR", "url": feeds.url("/bologna.ics"), "city": "bologna",
                                "defaults": { "kind": "WORKSHOP", "fields": ["LITERATURE"], "themes": ["reading"] } } }),
            Some(&secretariat),
        )
        .await;
        let id = data["connectSource"]["id"].clone();
        assert_eq!(data["connectSource"]["city"]["slug"], "bologna");
        // A city's token sees its own sources only.
        let bologna = hub.token(Some("bologna")).await;
        let lyon = hub.token(Some("lyon")).await;
        let own = hub
            .ok("{ sources { id } }", json!({}), Some(&bologna))
            .await;
        assert_eq!(own["sources"], json!([{ "id": id }]));
        let none = hub.ok("{ sources { id } }", json!({}), Some(&lyon)).await;
        assert_eq!(none["sources"], json!([]));
        hub.fails(
            "{ sources(city: \"bologna\") { id } }",
            json!({}),
            Some(&lyon),
            "FORBIDDEN",
        )
        .await;
        hub.fails("{ sources { id } }", json!({}), None, "UNAUTHENTICATED")
            .await;
        let hidden = hub
            .ok(
                "query($id: ID!) { source(id: $id) { id } }",
                json!({ "id": id }),
                Some(&lyon),
            )
            .await;
        assert!(hidden["source"].is_null());
        hub.fails(
            "mutation($id: ID!) { syncSource(id: $id) { id } }",
            json!({ "id": id }),
            Some(&lyon),
            "NOT_FOUND",
        )
        .await;

        assert_eq!(sync(&hub, &bologna, &id).await["lastStatus"], "OK");
        let activities = activities_of(&hub, "bologna").await;
        let upcoming = by_title(&activities, "Upcoming reading");
        let kinds = hub
            .ok(
                "query($id: ID!) { activity(id: $id) { kind fields themes } }",
                json!({ "id": upcoming["id"] }),
                None,
            )
            .await;
        assert_eq!(
            kinds["activity"],
            json!({ "kind": "WORKSHOP", "fields": ["LITERATURE"], "themes": ["reading"] })
        );

        // Paused: not run; resumed: due again.
        let paused = hub
            .ok(
                &format!("mutation($id: ID!) {{ pauseSource(id: $id) {{ {SOURCE_FIELDS} }} }}"),
                json!({ "id": id }),
                Some(&bologna),
            )
            .await;
        assert_eq!(paused["pauseSource"]["paused"], true);
        assert_eq!(paused["pauseSource"]["lastStatus"], "PAUSED");
        hub.fails(
            "mutation($id: ID!) { syncSource(id: $id) { id } }",
            json!({ "id": id }),
            Some(&bologna),
            "CONFLICT",
        )
        .await;
        let resumed = hub
            .ok(
                &format!("mutation($id: ID!) {{ resumeSource(id: $id) {{ {SOURCE_FIELDS} }} }}"),
                json!({ "id": id }),
                Some(&bologna),
            )
            .await;
        assert_eq!(resumed["resumeSource"]["paused"], false);

        hub.ok(
            "mutation($id: ID!) { removeSource(id: $id) }",
            json!({ "id": id }),
            Some(&bologna),
        )
        .await;
        let activities = activities_of(&hub, "bologna").await;
        assert_eq!(
            by_title(&activities, "Upcoming reading")["status"],
            "CANCELLED"
        );
        assert_eq!(by_title(&activities, "Old reading")["status"], "PUBLISHED");
        let gone = hub
            .ok(
                "query($id: ID!) { source(id: $id) { id } }",
                json!({ "id": id }),
                Some(&bologna),
            )
            .await;
        assert!(gone["source"].is_null());
    }
);

/// A hand-written feed in the shape Outlook and Google Calendar export: a
/// VTIMEZONE, a weekly series with an EXDATE, an instance moved by
/// RECURRENCE-ID, a cancelled instance, folded lines and UTF-8.
const SERIES_FEED: &str = "BEGIN:VCALENDAR\r
PRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r
VERSION:2.0\r
METHOD:PUBLISH\r
X-WR-CALNAME:Ville de Montréal – Culture\r
BEGIN:VTIMEZONE\r
TZID:America/Toronto\r
BEGIN:STANDARD\r
DTSTART:16011104T020000\r
RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11\r
TZOFFSETFROM:-0400\r
TZOFFSETTO:-0500\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:16010311T020000\r
RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3\r
TZOFFSETFROM:-0500\r
TZOFFSETTO:-0400\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:040000008200E00074C5B7101A82E00800000000D0B5A1C2@montreal.example\r
DTSTAMP:20261201T120000Z\r
SEQUENCE:2\r
DTSTART;TZID=America/Toronto:20270106T190000\r
DTEND;TZID=America/Toronto:20270106T210000\r
RRULE:FREQ=WEEKLY;BYDAY=WE;COUNT=6\r
EXDATE;TZID=America/Toronto:20270113T190000\r
SUMMARY;LANGUAGE=fr-CA:Atelier de design – séance hebdomadaire\r
DESCRIPTION:Un atelier ouvert à toutes et à tous. Apportez vos croquis\\, vo\r
 s idées\\; et votre curiosité.\\nInscription sur place.\r
LOCATION:Maison de la culture\\, 1210 rue Sherbrooke\r
CATEGORIES:Design,Atelier\r
STATUS:CONFIRMED\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:040000008200E00074C5B7101A82E00800000000D0B5A1C2@montreal.example\r
RECURRENCE-ID;TZID=America/Toronto:20270120T190000\r
DTSTAMP:20261201T120000Z\r
SEQUENCE:3\r
DTSTART;TZID=America/Toronto:20270121T183000\r
DTEND;TZID=America/Toronto:20270121T203000\r
SUMMARY;LANGUAGE=fr-CA:Atelier de design – séance déplacée\r
LOCATION:Maison de la culture\\, 1210 rue Sherbrooke\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:040000008200E00074C5B7101A82E00800000000D0B5A1C2@montreal.example\r
RECURRENCE-ID;TZID=America/Toronto:20270127T190000\r
DTSTAMP:20261201T120000Z\r
DTSTART;TZID=America/Toronto:20270127T190000\r
DTEND;TZID=America/Toronto:20270127T210000\r
STATUS:CANCELLED\r
SUMMARY;LANGUAGE=fr-CA:Atelier de design – séance hebdomadaire\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:7kukuqrfedlm2f9t0vbnmcd4@google.com\r
DTSTART:20270214T230000Z\r
DTEND:20270215T010000Z\r
DTSTAMP:20261201T120000Z\r
SUMMARY:Nuit blanche (UTC times)\r
END:VEVENT\r
END:VCALENDAR\r
";

both_backends!(
    recurrences_with_exceptions_become_one_activity_per_instance,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let montreal = hub.token(Some("montreal")).await;
        feeds.set("/culture.ics", Reply::Calendar(SERIES_FEED.to_owned()));
        let id =
            connect(&hub, &montreal, "ICALENDAR", &feeds.url("/culture.ics")).await["id"].clone();
        let source = sync(&hub, &montreal, &id).await;
        assert_eq!(source["lastStatus"], "OK", "{source}");
        // Six Wednesdays, one excluded, one moved, one cancelled before the hub
        // saw it (not imported), plus the UTC event.
        assert_eq!(source["importedCount"], 5, "{source}");
        let activities = activities_of(&hub, "montreal").await;
        let imported = imported(&activities);
        let mut dates: Vec<&str> = imported
            .iter()
            .filter(|a| {
                a["title"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Atelier"))
            })
            .map(|a| a["startDate"].as_str().expect("date"))
            .collect();
        dates.sort_unstable();
        assert_eq!(
            dates,
            vec!["2027-01-06", "2027-01-21", "2027-02-03", "2027-02-10"]
        );
        let moved = by_title(&activities, "Atelier de design – séance déplacée");
        assert_eq!(moved["startDate"], "2027-01-21");
        let weekly = activities
            .iter()
            .find(|a| a["title"] == "Atelier de design – séance hebdomadaire")
            .expect("an instance");
        let detail = hub
            .ok(
                "query($id: ID!) { activity(id: $id) { description venue themes } }",
                json!({ "id": weekly["id"] }),
                None,
            )
            .await;
        assert_eq!(
            detail["activity"]["description"],
            "Un atelier ouvert à toutes et à tous. Apportez vos croquis, vos idées; et votre curiosité.\nInscription sur place."
        );
        assert_eq!(
            detail["activity"]["venue"],
            "Maison de la culture, 1210 rue Sherbrooke"
        );
        // 23:00 UTC on the 14th.
        assert_eq!(
            by_title(&activities, "Nuit blanche (UTC times)")["startDate"],
            "2027-02-14"
        );
    }
);

/// A page in the shape CMSs publish for search engines: JSON-LD with an
/// `@graph`, an event list, and a broken block.
fn events_page(extra: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="it"><head><meta charset="utf-8"><title>Eventi</title>
<script type="application/ld+json">
{{"@context":"https://schema.org","@graph":[
  {{"@type":"WebPage","@id":"https://bologna.example/eventi","name":"Eventi"}},
  {{"@type":["MusicEvent"],"@id":"https://bologna.example/eventi#jazz","name":"Bologna Jazz Festival – opening",
    "startDate":"2027-11-05T21:00:00+01:00","endDate":"2027-11-05T23:30:00+01:00",
    "eventStatus":"https://schema.org/EventScheduled",
    "eventAttendanceMode":"https://schema.org/MixedEventAttendanceMode",
    "location":[{{"@type":"Place","name":"Teatro Comunale","address":{{"@type":"PostalAddress","streetAddress":"Largo Respighi 1","addressLocality":"Bologna"}}}},{{"@type":"VirtualLocation","url":"https://stream.bologna.example"}}],
    "organizer":{{"@type":"Organization","name":"Comune di Bologna"}},
    "url":"https://bologna.example/eventi/jazz"}}
]}}
</script>
<script type="application/ld+json">
[{{"@context":"https://schema.org","@type":"Event","name":"Letture in biblioteca","startDate":"2027-03-03",
   "url":"https://bologna.example/eventi/letture","description":"Letture ad alta voce."}}{extra}]
</script>
<script type="application/ld+json">{{ "@type": "Event", broken </script>
</head><body><h1>Eventi</h1></body></html>"#
    )
}

both_backends!(
    pages_with_json_ld_events_are_imported,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let bologna = hub.token(Some("bologna")).await;
        feeds.set("/eventi", Reply::Html(events_page("")));
        let id = connect(&hub, &bologna, "JSON_LD", &feeds.url("/eventi")).await["id"].clone();
        let source = sync(&hub, &bologna, &id).await;
        assert_eq!(
            source["lastStatus"], "PARTIAL",
            "the broken block is reported: {source}"
        );
        assert_eq!(source["importedCount"], 2);
        assert_eq!(source["skippedItems"][0]["uid"], "JSON-LD block 3");
        let activities = activities_of(&hub, "bologna").await;
        let jazz = by_title(&activities, "Bologna Jazz Festival – opening");
        assert_eq!(jazz["startDate"], "2027-11-05");
        assert_eq!(jazz["sourceUrl"], "https://bologna.example/eventi/jazz");
        let detail = hub
            .ok(
                "query($id: ID!) { activity(id: $id) { format venue organizations } }",
                json!({ "id": jazz["id"] }),
                None,
            )
            .await;
        assert_eq!(detail["activity"]["format"], "HYBRID");
        assert_eq!(
            detail["activity"]["venue"],
            "Teatro Comunale, Largo Respighi 1, Bologna / https://stream.bologna.example"
        );
        assert_eq!(
            detail["activity"]["organizations"],
            json!(["Comune di Bologna"])
        );

        // Cancelled on the page: cancelled here.
        feeds.set(
        "/eventi",
        Reply::Html(events_page(
            r#",{"@type":"Event","name":"Extra","startDate":"2027-04-04","url":"https://bologna.example/eventi/extra"}"#,
        )
        .replace("EventScheduled", "EventCancelled")),
    );
        let source = sync(&hub, &bologna, &id).await;
        assert_eq!(source["lastStatus"], "PARTIAL", "{source}");
        let activities = activities_of(&hub, "bologna").await;
        assert_eq!(
            by_title(&activities, "Bologna Jazz Festival – opening")["status"],
            "CANCELLED"
        );
        assert_eq!(by_title(&activities, "Extra")["status"], "PUBLISHED");

        // The same events through a second source of the city are not duplicated.
        feeds.set("/eventi-copia", Reply::Html(events_page("")));
        let second =
            connect(&hub, &bologna, "JSON_LD", &feeds.url("/eventi-copia")).await["id"].clone();
        sync(&hub, &bologna, &second).await;
        let activities = activities_of(&hub, "bologna").await;
        assert_eq!(
            activities
                .iter()
                .filter(|a| a["title"] == "Letture in biblioteca")
                .count(),
            1,
            "{activities:?}"
        );
    }
);

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

both_backends!(bad_input_never_hurts, |backend| async move {
    let hub = TestHub::start_with(backend, |config| {
        test_settings(config);
        config.sources.max_body_bytes = 256 * 1024;
        config.sources.total_timeout_secs = 3;
        config.sources.max_instances_per_event = 20;
    })
    .await;
    let feeds = FeedServer::start().await;
    let lyon = hub.token(Some("lyon")).await;
    let before = activities_of(&hub, "lyon").await.len();

    // A good feed beside the bad ones.
    feeds.set(
        "/good.ics",
        Reply::Calendar(calendar(&[all_day(
            "good@lyon.example",
            "Good event",
            "20270601",
            "20270602",
        )])),
    );
    // Malformed: a line without a colon, an event without DTSTART, control characters.
    feeds.set(
        "/malformed.ics",
        Reply::Calendar(calendar(&[
            all_day("ok@lyon.example", "Still imported", "20270602", "20270603"),
            "UID:broken@lyon.example\r\nthis is not a content line\r\nSUMMARY:Broken\r\n".into(),
            "UID:nostart@lyon.example\r\nSUMMARY:No start\r\n".into(),
            "UID:control@lyon.example\r\nDTSTART;VALUE=DATE:20270603\r\nSUMMARY:Bell\u{7} here\r\n"
                .into(),
            "UID:nul\u{0}uid@lyon.example\r\nDTSTART;VALUE=DATE:20270604\r\nSUMMARY:NUL in its UID\r\n"
                .into(),
        ])),
    );
    // Impossible dates.
    feeds.set(
        "/dates.ics",
        Reply::Calendar(calendar(&[
            "UID:feb30@lyon.example\r\nDTSTART;VALUE=DATE:20270230\r\nSUMMARY:February 30\r\n".into(),
            "UID:month13@lyon.example\r\nDTSTART:20271301T100000Z\r\nSUMMARY:Month 13\r\n".into(),
            "UID:backwards@lyon.example\r\nDTSTART;VALUE=DATE:20270610\r\nDTEND;VALUE=DATE:20270601\r\nSUMMARY:Ends before it starts\r\n".into(),
            "UID:year9999@lyon.example\r\nDTSTART;VALUE=DATE:99991231\r\nSUMMARY:Far future\r\n".into(),
            all_day("fine@lyon.example", "Fine date", "20270611", "20270612"),
        ])),
    );
    // 10,000 recurrences.
    feeds.set(
        "/many.ics",
        Reply::Calendar(calendar(&[
            "UID:hourly@lyon.example\r\nDTSTART:20270101T000000Z\r\nDTEND:20270101T003000Z\r\nRRULE:FREQ=HOURLY;COUNT=10000\r\nSUMMARY:Every hour\r\n".into(),
        ])),
    );
    feeds.set(
        "/html.ics",
        Reply::Html("<!DOCTYPE html><html><body><h1>Our events</h1></body></html>".into()),
    );
    feeds.set("/huge.ics", Reply::Huge(1024 * 1024));
    feeds.set(
        "/bomb.ics",
        Reply::Gzip(gzip(&vec![b'A'; 32 * 1024 * 1024])),
    );
    feeds.set("/slow.ics", Reply::Trickle);
    feeds.set("/loop.ics", Reply::Redirect("/loop.ics".into()));
    feeds.set("/down.ics", Reply::Status(503, Some(7200)));

    let mut ids = HashMap::new();
    for path in [
        "/good.ics",
        "/malformed.ics",
        "/dates.ics",
        "/many.ics",
        "/html.ics",
        "/huge.ics",
        "/bomb.ics",
        "/slow.ics",
        "/loop.ics",
        "/down.ics",
    ] {
        ids.insert(
            path,
            connect(&hub, &lyon, "ICALENDAR", &feeds.url(path)).await["id"].clone(),
        );
    }
    let mut outcome = HashMap::new();
    for (path, id) in &ids {
        outcome.insert(*path, sync(&hub, &lyon, id).await);
    }
    let error = |path: &str| {
        outcome[path]["lastError"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let status = |path: &str| {
        outcome[path]["lastStatus"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    assert_eq!(status("/good.ics"), "OK");
    assert_eq!(
        status("/malformed.ics"),
        "PARTIAL",
        "{}",
        outcome["/malformed.ics"]
    );
    let skipped: Vec<&str> = outcome["/malformed.ics"]["skippedItems"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|s| s["uid"].as_str().expect("uid"))
        .collect();
    for uid in [
        "broken@lyon.example",
        "nostart@lyon.example",
        "control@lyon.example",
        "nul\u{fffd}uid@lyon.example",
    ] {
        assert!(skipped.contains(&uid), "{uid} in {skipped:?}");
    }
    assert_eq!(outcome["/malformed.ics"]["importedCount"], 1);

    assert_eq!(status("/dates.ics"), "PARTIAL", "{}", outcome["/dates.ics"]);
    assert_eq!(outcome["/dates.ics"]["importedCount"], 1);
    assert_eq!(
        outcome["/dates.ics"]["skippedItems"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    assert_eq!(status("/many.ics"), "PARTIAL", "{}", outcome["/many.ics"]);
    assert_eq!(outcome["/many.ics"]["importedCount"], 20);
    assert!(
        outcome["/many.ics"]["skippedItems"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("more than 20"))
    );

    assert_eq!(status("/html.ics"), "FAILED");
    assert!(
        error("/html.ics").contains("not an iCalendar feed"),
        "{}",
        error("/html.ics")
    );
    assert_eq!(status("/huge.ics"), "FAILED");
    assert!(
        error("/huge.ics").contains("larger than"),
        "{}",
        error("/huge.ics")
    );
    assert_eq!(status("/bomb.ics"), "FAILED");
    assert!(
        error("/bomb.ics").contains("larger than"),
        "{}",
        error("/bomb.ics")
    );
    assert_eq!(status("/slow.ics"), "FAILED");
    assert!(
        error("/slow.ics").contains("longer than"),
        "{}",
        error("/slow.ics")
    );
    assert_eq!(status("/loop.ics"), "FAILED");
    assert!(
        error("/loop.ics").contains("more than 5 redirects"),
        "{}",
        error("/loop.ics")
    );
    assert_eq!(
        feeds.hits("/loop.ics"),
        6,
        "the first request and five redirects"
    );
    assert_eq!(status("/down.ics"), "FAILED");
    assert!(error("/down.ics").contains("503"), "{}", error("/down.ics"));
    // Retry-After is respected: the next run is not before two hours.
    let next = chrono::DateTime::parse_from_rfc3339(
        outcome["/down.ics"]["nextRunAt"].as_str().expect("next"),
    )
    .expect("a date");
    assert!(
        next > chrono::Utc::now() + chrono::Duration::minutes(110),
        "{next}"
    );

    // Nothing else changed: only the valid items were imported.
    let after = activities_of(&hub, "lyon").await;
    assert_eq!(after.len(), before + 1 + 1 + 1 + 20, "{after:?}");
    for source in [
        "/html.ics",
        "/huge.ics",
        "/bomb.ics",
        "/slow.ics",
        "/loop.ics",
        "/down.ics",
    ] {
        assert_eq!(outcome[source]["importedCount"], 0, "{source}");
    }
});

both_backends!(
    private_addresses_are_refused_by_default,
    |backend| async move {
        // The default settings: private networks refused.
        let hub = TestHub::start_with(backend, |config| config.sources.scheduler = false).await;
        let feeds = FeedServer::start().await;
        feeds.set(
            "/feed.ics",
            Reply::Calendar(calendar(&[all_day(
                "p@lyon.example",
                "Private",
                "20270601",
                "20270602",
            )])),
        );
        feeds.set("/hop", Reply::Redirect(feeds.url("/feed.ics")));
        let lyon = hub.token(Some("lyon")).await;
        for url in [
            feeds.url("/feed.ics"),
            format!("http://localhost:{}/feed.ics", feeds.addr.port()),
            format!("http://[::ffff:127.0.0.1]:{}/feed.ics", feeds.addr.port()),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ] {
            let id = connect(&hub, &lyon, "ICALENDAR", &url).await["id"].clone();
            let source = sync(&hub, &lyon, &id).await;
            assert_eq!(source["lastStatus"], "FAILED", "{url}: {source}");
            assert!(
                source["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("does not fetch from such addresses")),
                "{url}: {source}"
            );
        }
        assert_eq!(
            feeds.hits("/feed.ics"),
            0,
            "nothing reached the private server"
        );
        assert!(imported(&activities_of(&hub, "lyon").await).is_empty());
    }
);

/// Two hub instances on one PostgreSQL: a source is fetched by one of
/// them at a time, whether the schedulers or `syncSource` start the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_fetch_a_source_once() {
    if !pg_available().await {
        return;
    }
    let tweak = |config: &mut cityhub::config::Config| {
        config.sources.allow_private_networks = true;
        config.sources.scheduler = true;
        config.sources.poll_interval_ms = 50;
        config.sources.sync_wait_ms = 200;
    };
    let first = TestHub::start_with(Backend::Postgres, tweak).await;
    let second = TestHub::start_on(Backend::Postgres, first.test_db.clone(), tweak).await;
    let feeds = FeedServer::start().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    feeds.set(
        "/shared.ics",
        Reply::Held(
            calendar(&[all_day("s@lyon.example", "Shared", "20270701", "20270702")]),
            gate.clone(),
        ),
    );
    let lyon = first.token(Some("lyon")).await;
    let id = connect(&first, &lyon, "ICALENDAR", &feeds.url("/shared.ics")).await["id"].clone();
    // Some scheduler takes it: wait for the request to arrive.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while feeds.hits("/shared.ics") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no instance fetched the source"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While that run holds the source, neither instance starts another.
    for hub in [&first, &second] {
        let data = hub
            .ok(
                "mutation($id: ID!) { syncSource(id: $id) { lastStatus } }",
                json!({ "id": id }),
                Some(&lyon),
            )
            .await;
        assert_eq!(data["syncSource"]["lastStatus"], "RUNNING");
    }
    gate.add_permits(1000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut source = source_of(&second, &lyon, &id).await;
    while source["lastStatus"] == "RUNNING" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run never ended: {source}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        source = source_of(&second, &lyon, &id).await;
    }
    assert_eq!(source["lastStatus"], "OK", "{source}");
    assert_eq!(feeds.hits("/shared.ics"), 1, "one fetch in all");
    assert_eq!(imported(&activities_of(&first, "lyon").await).len(), 1);
    // The schedule survives: the next run is an interval away.
    let next = chrono::DateTime::parse_from_rfc3339(source["nextRunAt"].as_str().expect("next"))
        .expect("date");
    assert!(next > chrono::Utc::now() + chrono::Duration::minutes(50));
    second.stop().await;
    first.stop().await;
}

/// Runs the real `cityhub` binary with private networks allowed (the feed
/// server is on loopback): whether it succeeded, and its output.
async fn cli(db_url: &str, args: &[&str]) -> (bool, String) {
    let url = db_url.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cityhub"))
            .args(&args)
            .current_dir(dir.path())
            .env("CITYHUB_DATABASE_URL", &url)
            .env("CITYHUB_SOURCES_ALLOW_PRIVATE_NETWORKS", "true")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run cityhub");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .expect("join")
}

both_backends!(
    the_command_line_adds_lists_syncs_and_removes_sources,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        feeds.set(
            "/cli.ics",
            Reply::Calendar(calendar(&[all_day(
                "cli@lyon.example",
                "From the command line",
                "20270801",
                "20270802",
            )])),
        );
        let url = hub.test_db.url.clone();
        let (ok, out) = cli(
            &url,
            &["source", "add", "--city", "lyon", &feeds.url("/cli.ics")],
        )
        .await;
        assert!(ok, "{out}");
        let id = out
            .lines()
            .find(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or_else(|| panic!("an id in {out}"))
            .to_owned();
        let (ok, out) = cli(&url, &["source", "list", "--city", "lyon"]).await;
        assert!(
            ok && out.contains(&feeds.url("/cli.ics")) && out.contains("NEVER_RUN"),
            "{out}"
        );
        let (ok, out) = cli(&url, &["source", "sync", &id]).await;
        assert!(ok && out.contains("\tOK\t"), "{out}");
        assert_eq!(feeds.hits("/cli.ics"), 1);
        let activities = activities_of(&hub, "lyon").await;
        assert_eq!(
            by_title(&activities, "From the command line")["source"]["id"],
            id.as_str()
        );
        let (ok, out) = cli(
            &url,
            &[
                "source",
                "add",
                "--city",
                "lyon",
                "--kind",
                "rss",
                "https://x.example/",
            ],
        )
        .await;
        assert!(!ok && out.contains("--kind"), "{out}");
        let (ok, out) = cli(&url, &["source", "remove", &id, "--keep-activities"]).await;
        assert!(ok && out.contains(&format!("removed source {id}")), "{out}");
        let activities = activities_of(&hub, "lyon").await;
        let kept = by_title(&activities, "From the command line");
        assert_eq!(kept["status"], "PUBLISHED");
        assert!(kept["source"].is_null());
    }
);

both_backends!(
    one_import_gives_events_of_one_title_distinct_slugs_beside_those_taken,
    |backend| async move {
        let hub = TestHub::start_with(backend, test_settings).await;
        let feeds = FeedServer::start().await;
        let lyon = hub.token(Some("lyon")).await;
        // A slug of the family already taken by a published activity.
        let taken = hub
            .ok(
                r#"mutation { publishActivity(input: { kind: WORKSHOP, title: "Open studio" }) { slug } }"#,
                json!({}),
                Some(&lyon),
            )
            .await["publishActivity"]["slug"]
            .as_str()
            .expect("slug")
            .to_owned();
        assert_eq!(taken, "open-studio");
        // Three events of that title in one run (one batch).
        let feed = calendar(&[
            all_day(
                "studio-1@lyon.example",
                "Open studio",
                "20270401",
                "20270402",
            ),
            all_day(
                "studio-2@lyon.example",
                "Open studio",
                "20270501",
                "20270502",
            ),
            all_day(
                "studio-3@lyon.example",
                "Open studio",
                "20270601",
                "20270602",
            ),
        ]);
        feeds.set("/studios.ics", Reply::Calendar(feed));
        let source = connect(&hub, &lyon, "ICALENDAR", &feeds.url("/studios.ics")).await;
        let source = sync(&hub, &lyon, &source["id"]).await;
        assert_eq!(source["lastStatus"], "OK", "{source}");
        assert_eq!(source["importedCount"], 3);
        let data = hub
            .ok(
                r#"{ activities(first: 10, filter: { cities: ["lyon"], text: "Open studio" }) { nodes { slug startDate } } }"#,
                json!({}),
                None,
            )
            .await;
        let mut slugs: Vec<String> = data["activities"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["slug"].as_str().expect("slug").to_owned())
            .collect();
        slugs.sort();
        assert_eq!(
            slugs,
            [
                "open-studio",
                "open-studio-2",
                "open-studio-3",
                "open-studio-4"
            ],
            "{data}"
        );
        // Each imported event is published once, with its audit row.
        let audited = hub
            .ok(
                "query($s: String) { activity(slug: $s) { version } }",
                json!({ "s": "open-studio-3" }),
                None,
            )
            .await;
        assert_eq!(audited["activity"]["version"], 1);
    }
);
