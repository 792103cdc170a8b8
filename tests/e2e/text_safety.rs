//! Text that every output format can carry, end to end: prose line endings
//! are stored as LF, characters no format can carry (XML 1.0's forbidden
//! code points, Unicode noncharacters, controls) are refused with the
//! field's path, and rows stored before these rules (planted with raw SQL)
//! still give a calendar with no bare CR and no injected event, a
//! well-formed feed, a page a browser reads without a bad character, and
//! JSON-LD that parses. Calendars are read with `ical`, feeds with the
//! strict `roxmltree`, pages with `html5ever`.

use std::collections::BTreeMap;
use std::io::BufReader;

use html5ever::tendril::TendrilSink;
use markup5ever_rcdom::{Handle, NodeData, RcDom};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::{Value, json};

use crate::both_backends;
use crate::support::{Backend, TestHub};

const PUBLISH: &str =
    "mutation($i: ActivityInput!) { publishActivity(input: $i) { id slug summary description } }";
const READ: &str = "query($slug: String!) { activity(slug: $slug) { id title summary description cancelReason jsonLd } }";

async fn get(hub: &TestHub, path: &str, accept: Option<&str>) -> String {
    let mut request = hub.client.get(format!("{}{path}", hub.base));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.text().await.expect("body")
}

/// Undoes RFC 5545 TEXT escaping (the `ical` crate leaves it in values).
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A calendar's events (property name → unescaped value), after checking
/// that every line break in it is CRLF: no bare CR a client could end a
/// line at, no bare LF.
fn calendar_events(text: &str) -> Vec<BTreeMap<String, String>> {
    let stripped = text.replace("\r\n", "");
    assert!(
        !stripped.contains('\r'),
        "a bare CR in the calendar:\n{text:?}"
    );
    assert!(
        !stripped.contains('\n'),
        "a bare LF in the calendar:\n{text:?}"
    );
    let mut parser = ical::IcalParser::new(BufReader::new(text.as_bytes()));
    let calendar = parser
        .next()
        .expect("one VCALENDAR")
        .unwrap_or_else(|e| panic!("invalid iCalendar: {e}\n{text}"));
    assert!(parser.next().is_none(), "exactly one VCALENDAR");
    let events: Vec<BTreeMap<String, String>> = calendar
        .events
        .into_iter()
        .map(|e| {
            e.properties
                .into_iter()
                .map(|p| (p.name, unescape(&p.value.unwrap_or_default())))
                .collect()
        })
        .collect();
    let begins = text.split("\r\n").filter(|l| *l == "BEGIN:VEVENT").count();
    assert_eq!(begins, events.len(), "{text}");
    let mut uids: Vec<&str> = events.iter().map(|e| e["UID"].as_str()).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), events.len(), "one UID per event:\n{text}");
    events
}

fn event_of<'a>(
    events: &'a [BTreeMap<String, String>],
    id: &str,
) -> Option<&'a BTreeMap<String, String>> {
    events
        .iter()
        .find(|e| e["UID"] == format!("activity-{id}@cityhub"))
}

/// Parses a page as a browser does; panics on a reported bad character
/// (a control or a noncharacter).
fn parse_page(html: &str) -> RcDom {
    let opts = html5ever::ParseOpts {
        tokenizer: html5ever::tokenizer::TokenizerOpts {
            exact_errors: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let dom = html5ever::parse_document(RcDom::default(), opts).one(html);
    let bad: Vec<String> = dom
        .errors
        .borrow()
        .iter()
        .filter(|e| e.starts_with("Bad character"))
        .map(|e| e.to_string())
        .collect();
    assert!(bad.is_empty(), "{bad:?} in {html:?}");
    dom
}

fn find_element(node: &Handle, name: &str) -> Option<Handle> {
    if let NodeData::Element { name: n, .. } = &node.data
        && &*n.local == name
    {
        return Some(node.clone());
    }
    node.children
        .borrow()
        .iter()
        .find_map(|c| find_element(c, name))
}

fn text_of(node: &Handle) -> String {
    let mut out = String::new();
    if let NodeData::Text { contents } = &node.data {
        out.push_str(&contents.borrow());
    }
    for c in node.children.borrow().iter() {
        out.push_str(&text_of(c));
    }
    out
}

/// The uid of the network calendar's first event: another activity's,
/// which a planted summary tries to overwrite.
async fn a_victim_uid(hub: &TestHub) -> String {
    let events = calendar_events(&get(hub, "/calendar.ics", None).await);
    events.first().expect("the seed has dated activities")["UID"].clone()
}

both_backends!(
    prose_line_endings_are_stored_as_lf,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let victim = a_victim_uid(&hub).await;
        let calendars = ["/calendar.ics", "/cities/lyon/calendar.ics"];
        let mut before = Vec::new();
        for path in calendars {
            before.push(calendar_events(&get(&hub, path, None).await).len());
        }
        let summary = format!(
            "First line\rBEGIN:VEVENT\rUID:{victim}\rSTATUS:CANCELLED\rEND:VEVENT\r\nLast line\r"
        );
        let data = hub
            .ok(
                PUBLISH,
                json!({ "i": {
                    "kind": "WORKSHOP",
                    "title": "Line endings",
                    "summary": summary,
                    "description": "# Programme\r\n\r\n- one\r- two\n",
                    "startDate": "2031-05-04",
                } }),
                Some(&lyon),
            )
            .await;
        let published = &data["publishActivity"];
        let stored_summary = format!(
            "First line\nBEGIN:VEVENT\nUID:{victim}\nSTATUS:CANCELLED\nEND:VEVENT\nLast line\n"
        );
        assert_eq!(published["summary"], stored_summary.as_str());
        assert_eq!(published["description"], "# Programme\n\n- one\n- two\n");
        let slug = published["slug"].as_str().expect("slug").to_owned();
        let id = published["id"].as_str().expect("id").to_owned();
        let read = hub.ok(READ, json!({ "slug": slug }), None).await;
        assert_eq!(read["activity"]["summary"], stored_summary.as_str());
        assert_eq!(
            read["activity"]["description"],
            "# Programme\n\n- one\n- two\n"
        );

        // The calendars: one more event, no bare CR, the victim still once.
        for (path, before) in calendars.into_iter().zip(&before) {
            let events = calendar_events(&get(&hub, path, None).await);
            assert_eq!(events.len(), before + 1, "{path}");
            assert!(
                events.iter().filter(|e| e["UID"] == victim).count() <= 1,
                "{path}"
            );
            let ours = event_of(&events, &id).expect("the new event");
            assert!(
                ours["DESCRIPTION"].starts_with(&stored_summary),
                "{path}: {ours:?}"
            );
            assert_eq!(ours["SUMMARY"], "Line endings");
        }

        // A patch and a cancellation reason are prose too.
        let update = "mutation($id: ID!, $p: ActivityPatch!) { updateActivity(id: $id, patch: $p) { summary description } }";
        let updated = hub
            .ok(
                update,
                json!({ "id": id, "p": { "summary": "a\r\nb\rc", "description": "x\ry" } }),
                Some(&lyon),
            )
            .await;
        assert_eq!(updated["updateActivity"]["summary"], "a\nb\nc");
        assert_eq!(updated["updateActivity"]["description"], "x\ny");
        let cancel = "mutation($id: ID!, $r: String) { cancelActivity(id: $id, reason: $r) { cancelReason } }";
        let cancelled = hub
            .ok(
                cancel,
                json!({ "id": id, "r": "Postponed\rsee\r\nnotes" }),
                Some(&lyon),
            )
            .await;
        assert_eq!(
            cancelled["cancelActivity"]["cancelReason"],
            "Postponed\nsee\nnotes"
        );
        let events = calendar_events(&get(&hub, "/calendar.ics", None).await);
        assert_eq!(events.len(), before[0] + 1);
        assert_eq!(events.iter().filter(|e| e["UID"] == victim).count(), 1);
        let ours = event_of(&events, &id).expect("the cancelled event");
        assert_eq!(ours["STATUS"], "CANCELLED");
        assert!(
            ours["DESCRIPTION"].contains("Cancelled: Postponed\nsee\nnotes"),
            "{ours:?}"
        );
        hub.stop().await;
    }
);

both_backends!(
    what_no_format_can_carry_is_refused_with_its_field,
    |backend: Backend| async move {
        let hub = TestHub::start(backend).await;
        let lyon = hub.token(Some("lyon")).await;
        let secretariat = hub.token(None).await;
        let count = r#"{ activities(first: 0, filter: { statuses: [DRAFT, PUBLISHED, CANCELLED] }) { totalCount } }"#;
        let total = |data: Value| data["activities"]["totalCount"].as_i64().expect("count");
        let before = total(hub.ok(count, json!({}), Some(&lyon)).await);
        let publish = "mutation($i: ActivityInput!) { publishActivity(input: $i) { id } }";
        let existing = hub
            .ok(
                publish,
                json!({ "i": { "kind": "WORKSHOP", "title": "Target" } }),
                Some(&lyon),
            )
            .await["publishActivity"]["id"]
            .clone();
        for bad in ['\u{FFFE}', '\u{FFFF}', '\u{1}'] {
            let text = format!("Text {bad} here");
            let doc = json!({ "kind": "REPORT", "title": text });
            let base = json!({ "kind": "WORKSHOP", "title": "Fine" });
            let with = |key: &str, value: Value| {
                let mut input = base.clone();
                input[key] = value;
                json!({ "i": input })
            };
            let cases = [
                (
                    json!({ "i": { "kind": "WORKSHOP", "title": text } }),
                    "input.title",
                ),
                (with("summary", json!(text)), "input.summary"),
                (with("description", json!(text)), "input.description"),
                (with("venue", json!(text)), "input.venue"),
                (
                    with("organizations", json!(["UNESCO", text])),
                    "input.organizations[1]",
                ),
                (with("themes", json!([text])), "input.themes[0]"),
                (with("objectives", json!([text])), "input.objectives[0]"),
                (with("documents", json!([doc])), "input.documents[0].title"),
            ];
            for (vars, field) in cases {
                let err = hub
                    .fails(publish, vars.clone(), Some(&lyon), "BAD_USER_INPUT")
                    .await;
                assert_eq!(err["extensions"]["field"], field, "{vars}: {err}");
            }
            let update = "mutation($id: ID!, $p: ActivityPatch!) { updateActivity(id: $id, patch: $p) { id } }";
            for (patch, field) in [
                (json!({ "title": text }), "patch.title"),
                (json!({ "summary": text }), "patch.summary"),
                (json!({ "themes": ["ok", text] }), "patch.themes[1]"),
            ] {
                let vars = json!({ "id": existing, "p": patch });
                let err = hub
                    .fails(update, vars.clone(), Some(&lyon), "BAD_USER_INPUT")
                    .await;
                assert_eq!(err["extensions"]["field"], field, "{vars}: {err}");
            }
            let cancel =
                "mutation($id: ID!, $r: String) { cancelActivity(id: $id, reason: $r) { id } }";
            let vars = json!({ "id": existing, "r": text });
            let err = hub.fails(cancel, vars, Some(&lyon), "BAD_USER_INPUT").await;
            assert_eq!(err["extensions"]["field"], "reason");
            let city = "mutation($i: CityInput!) { createCity(input: $i) { id } }";
            let vars = json!({ "i": { "slug": "nowhere", "name": text, "country": "FR", "fields": ["MUSIC"], "memberSince": 2020 } });
            let err = hub
                .fails(city, vars, Some(&secretariat), "BAD_USER_INPUT")
                .await;
            assert_eq!(err["extensions"]["field"], "input.name");
        }
        assert_eq!(
            total(hub.ok(count, json!({}), Some(&lyon)).await),
            before + 1,
            "only the valid publication landed"
        );
        let read = "query($id: ID!) { activity(id: $id) { title version } }";
        let target = hub.ok(read, json!({ "id": existing }), Some(&lyon)).await;
        assert_eq!(target["activity"]["title"], "Target");
        assert_eq!(target["activity"]["version"], 1, "no refused patch landed");
        hub.stop().await;
    }
);

both_backends!(
    rows_stored_before_the_rules_still_make_valid_outputs,
    |backend: Backend| async move {
        // The rows are changed behind the hub's back: no cached answer may
        // hide them.
        let hub = TestHub::start_with(backend, |c| c.cache.enabled = false).await;
        let lyon = hub.token(Some("lyon")).await;
        let victim = a_victim_uid(&hub).await;
        let data = hub
            .ok(
                PUBLISH,
                json!({ "i": {
                    "kind": "WORKSHOP",
                    "title": "Planted",
                    "summary": "Plain",
                    "venue": "Hall",
                    "startDate": "2031-06-01",
                    "documents": [{ "kind": "REPORT", "title": "Report", "url": "https://example.org/r.pdf" }],
                } }),
                Some(&lyon),
            )
            .await;
        let id = data["publishActivity"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let slug = data["publishActivity"]["slug"]
            .as_str()
            .expect("slug")
            .to_owned();
        let network_events = calendar_events(&get(&hub, "/calendar.ics", None).await).len();

        // Plant what the rules now refuse, as a row written before them or
        // imported around them would hold it.
        let title = "Planted\u{FFFF} title\u{1}";
        let summary = format!(
            "Line\rBEGIN:VEVENT\rUID:{victim}\rSTATUS:CANCELLED\rEND:VEVENT\r\u{FFFE}tail]]>&<"
        );
        let description = "# Heading\u{FFFF}\r\r<b>bold</b>\r\nEND:VCALENDAR\u{FDD0}";
        let venue = "Hall\u{FFFF}\rBEGIN:VEVENT\u{1}";
        let organizations = serde_json::to_string(&["Org\u{FFFF}\r"]).expect("json");
        let backend_kind = hub.db.conn().get_database_backend();
        let mark = |n: usize| match backend_kind {
            DatabaseBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        };
        let numeric_id: i64 = id.parse().expect("numeric id");
        hub.db
            .conn()
            .execute_raw(Statement::from_sql_and_values(
                backend_kind,
                format!(
                    "UPDATE activities SET title = {}, summary = {}, description = {}, venue = {}, \
                     organizations = {} WHERE id = {}",
                    mark(1),
                    mark(2),
                    mark(3),
                    mark(4),
                    mark(5),
                    mark(6)
                ),
                [
                    title.into(),
                    summary.clone().into(),
                    description.into(),
                    venue.into(),
                    organizations.into(),
                    numeric_id.into(),
                ],
            ))
            .await
            .expect("plant an activity");
        hub.db
            .conn()
            .execute_raw(Statement::from_sql_and_values(
                backend_kind,
                format!(
                    "UPDATE documents SET title = {} WHERE activity_id = {}",
                    mark(1),
                    mark(2)
                ),
                ["Report\u{FFFF}\r\u{1}".into(), numeric_id.into()],
            ))
            .await
            .expect("plant a document");
        let shown_title = "Planted title";
        let shown_summary =
            format!("Line\nBEGIN:VEVENT\nUID:{victim}\nSTATUS:CANCELLED\nEND:VEVENT\ntail]]>&<");

        // Calendars: no bare CR, no injected event, the victim once.
        let events = calendar_events(&get(&hub, "/calendar.ics", None).await);
        assert_eq!(events.len(), network_events);
        assert_eq!(events.iter().filter(|e| e["UID"] == victim).count(), 1);
        let ours = event_of(&events, &id).expect("the planted event");
        assert_eq!(ours["SUMMARY"], shown_title);
        assert!(ours["DESCRIPTION"].starts_with(&shown_summary), "{ours:?}");
        assert_eq!(ours["LOCATION"], "Hall\nBEGIN:VEVENT");
        let city = calendar_events(&get(&hub, "/cities/lyon/calendar.ics", None).await);
        assert_eq!(city.len(), 1);

        // Feeds: well-formed XML 1.0, the entry's text sanitised.
        for path in ["/feeds/activities.atom", "/cities/lyon/feed.atom"] {
            let text = get(&hub, path, None).await;
            let doc = roxmltree::Document::parse(&text)
                .unwrap_or_else(|e| panic!("{path} is not well-formed XML: {e}"));
            let entry = doc
                .descendants()
                .filter(|n| n.has_tag_name("entry"))
                .find(|e| {
                    e.children().any(|c| {
                        c.has_tag_name("id")
                            && c.text() == Some(format!("urn:cityhub:activity:{id}").as_str())
                    })
                })
                .expect("the planted entry");
            let title = entry
                .children()
                .find(|c| c.has_tag_name("title"))
                .and_then(|t| t.text());
            assert_eq!(title, Some(shown_title), "{path}");
            feed_rs::parser::parse(text.as_bytes()).expect("a feed reader reads it");
        }

        // The page: nothing a browser reports as a bad character; the
        // title as text; its JSON-LD parses.
        let html = get(&hub, &format!("/activities/{slug}"), None).await;
        let dom = parse_page(&html);
        let h1 = find_element(&dom.document, "h1").expect("h1");
        assert_eq!(text_of(&h1), shown_title);
        let script = find_element(&dom.document, "script").expect("JSON-LD");
        let embedded: Value = serde_json::from_str(&text_of(&script)).expect("embedded JSON-LD");
        assert_eq!(embedded["name"], shown_title);
        assert!(
            find_element(&dom.document, "b").is_none(),
            "raw HTML stays text"
        );

        // JSON-LD alone, and through GraphQL.
        let ld = get(
            &hub,
            &format!("/activities/{slug}"),
            Some("application/ld+json"),
        )
        .await;
        let ld: Value = serde_json::from_str(&ld).expect("JSON-LD parses");
        assert_eq!(ld["name"], shown_title);
        assert_eq!(ld["description"], shown_summary.as_str());
        assert_eq!(ld["location"]["name"], "Hall\nBEGIN:VEVENT");
        assert_eq!(ld["subjectOf"][0]["name"], "Report\n");
        let organizer = ld["organizer"]
            .as_array()
            .expect("organizers")
            .iter()
            .any(|o| o["name"] == "Org\n");
        assert!(organizer, "{ld}");
        assert_eq!(ld, embedded);
        let read = hub.ok(READ, json!({ "slug": slug }), None).await;
        assert_eq!(read["activity"]["title"], title, "stored as planted");
        assert_eq!(read["activity"]["jsonLd"]["name"], shown_title);
        assert_eq!(
            read["activity"]["jsonLd"]["description"],
            shown_summary.as_str()
        );
        hub.stop().await;
    }
);
