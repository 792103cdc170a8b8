//! Text that every output format can carry, checked from outside: arbitrary
//! stored strings (line breaks of every kind, U+FFFE and U+FFFF, controls,
//! bidi controls, astral characters, `]]>`, markup, quotes, backslashes,
//! semicolons, commas, a whole injected `VEVENT`) go through each writer,
//! and what comes out is read back with a parser that is not the writer's:
//! iCalendar with `ical`, Atom with the strict `roxmltree`, the activity
//! page with `html5ever` as browsers parse it, JSON-LD with `serde_json`.
//! What is read back is the stored text as `chars::for_output` sanitises
//! it, and the document's structure (events, entries, elements) is the one
//! the data asks for, whatever the text.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;

use chrono::{NaiveDate, TimeZone, Utc};
use cityhub_domain::chars::{for_output, is_forbidden};
use cityhub_domain::jsonld::{JsonLdContext, event_json_ld};
use cityhub_domain::{
    Activity, ActivityFormat, ActivityId, ActivityKind, ActivityStatus, City, CityId,
    CreativeField, DatePrecision, Document, DocumentKind,
};
use cityhub_web::calendar;
use cityhub_web::feed::{self, FeedInfo};
use cityhub_web::page::{self, PageData};
use cityhub_web::params::ApproximateDates;
use html5ever::tendril::TendrilSink;
use markup5ever_rcdom::{Handle, NodeData, RcDom};
use proptest::prelude::*;
use serde_json::Value;

const BASE: &str = "https://hub.example";

/// Strings built from pieces a writer could stumble on, mixed with any
/// character at all.
fn hostile() -> impl Strategy<Value = String> {
    let tricky = proptest::sample::select(vec![
        "\r",
        "\n",
        "\r\n",
        "\n\r",
        "\r\r",
        "\u{FFFE}",
        "\u{FFFF}",
        "\u{0}",
        "\u{1}",
        "\u{B}",
        "\u{C}",
        "\u{1B}",
        "\u{7F}",
        "\u{85}",
        "\u{9F}",
        "\u{FDD0}",
        "\u{FDEF}",
        "\u{1FFFE}",
        "\u{10FFFF}",
        "\u{202E}",
        "\u{2067}",
        "\u{200F}",
        "\u{2028}",
        "\u{FEFF}",
        "\u{1F600}",
        "\u{10000}",
        "\u{3000}",
        "\u{A0}",
        "é",
        "老虎",
        "]]>",
        "<",
        ">",
        "&",
        "&amp;",
        "&#0;",
        "\"",
        "'",
        "\\",
        "\\n",
        "\\,",
        ";",
        ",",
        ":",
        " ",
        "  ",
        "\t",
        "<script>alert(1)</script>",
        "</script>",
        "</h1><h1>x",
        "<!--",
        "BEGIN:VEVENT",
        "END:VCALENDAR",
        "\r\nBEGIN:VEVENT\r\nUID:activity-1@cityhub\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\n",
        "\rBEGIN:VEVENT\rUID:activity-1@cityhub\rEND:VEVENT\r",
    ]);
    let piece = prop_oneof![
        3 => any::<char>().prop_map(String::from),
        2 => tricky.prop_map(str::to_owned),
        1 => "[a-z ]{1,12}",
    ];
    proptest::collection::vec(piece, 0..32).prop_map(|pieces| pieces.concat())
}

/// Every text an activity page, feed or calendar shows.
#[derive(Debug, Clone)]
struct Texts {
    title: String,
    summary: String,
    description: String,
    venue: String,
    organization: String,
    theme: String,
    reason: String,
    city: String,
    document: String,
}

fn texts() -> impl Strategy<Value = Texts> {
    (
        (hostile(), hostile(), hostile(), hostile(), hostile()),
        (hostile(), hostile(), hostile(), hostile()),
    )
        .prop_map(
            |(
                (title, summary, description, venue, organization),
                (theme, reason, city, document),
            )| {
                Texts {
                    title,
                    summary,
                    description,
                    venue,
                    organization,
                    theme,
                    reason,
                    city,
                    document,
                }
            },
        )
}

fn status_of(n: usize) -> ActivityStatus {
    [
        ActivityStatus::Published,
        ActivityStatus::Cancelled,
        ActivityStatus::Draft,
    ][n % 3]
}

fn activity(n: usize, t: &Texts) -> Activity {
    let id = i64::try_from(n).expect("small") + 1;
    let start = NaiveDate::from_ymd_opt(2024, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(u64::try_from(n).expect("small"))));
    Activity {
        id: ActivityId(id),
        slug: format!("activity-{id}"),
        kind: ActivityKind::Workshop,
        format: ActivityFormat::InPerson,
        status: status_of(n),
        title: t.title.clone(),
        summary: Some(t.summary.clone()),
        description: Some(t.description.clone()),
        start_date: start,
        end_date: start,
        date_precision: DatePrecision::Day,
        timing: None,
        venue: Some(t.venue.clone()),
        venue_city_id: None,
        organizations: vec![t.organization.clone()],
        fields: vec![CreativeField::Music],
        themes: vec![t.theme.clone(), "music".into()],
        objectives: vec![t.theme.clone()],
        published_by: Some(CityId(1)),
        hosts: vec![CityId(1)],
        published_at: Utc.timestamp_opt(1_700_000_000, 0).single(),
        updated_at: Utc
            .timestamp_opt(1_700_000_000 + id, 0)
            .single()
            .expect("time"),
        version: 2,
        cancel_reason: Some(t.reason.clone()),
    }
}

fn city(id: i64, name: &str) -> City {
    City {
        id: CityId(id),
        slug: format!("city-{id}"),
        name: name.to_owned(),
        country: "FR".into(),
        fields: vec![CreativeField::Music],
        member_since: 2008,
        website: Some(format!("https://city.example/{name}")),
        latitude: Some(45.0),
        longitude: Some(4.0),
    }
}

fn document(t: &Texts) -> Document {
    Document {
        id: 1,
        activity_id: ActivityId(1),
        kind: DocumentKind::Report,
        title: t.document.clone(),
        url: Some(format!("https://docs.example/{}", t.document)),
        issued_on: NaiveDate::from_ymd_opt(2024, 1, 1),
        issued_precision: DatePrecision::Day,
        editors: vec![],
    }
}

/// Only tab and line feed, of all control characters, may be written, and
/// nothing XML forbids or Unicode keeps as a noncharacter.
fn carriable(text: &str) -> bool {
    text.chars()
        .all(|c| !is_forbidden(c) && (!c.is_control() || matches!(c, '\t' | '\n')))
}

// ---------------------------------------------------------------- iCalendar

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

/// The `ical` crate trims whitespace from the end of every physical line
/// and colons from the start of a value: framing a value in brackets keeps
/// those lossy reads of the test's parser away from its ends, while the
/// text between them stays arbitrary (and a fold right after whitespace
/// inside it would still be caught).
fn framed(text: &str) -> String {
    format!("[{text}]")
}

/// Whether a raw TEXT value is escaped as RFC 5545 §3.3.11 says: a
/// backslash only before `\`, `;`, `,`, `n` or `N`, and no bare `;` or `,`
/// (the `ical` crate reads those leniently, so it is checked here).
fn escaped_as_text(raw: &str) -> bool {
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        let escaped = c == '\\' && matches!(chars.next(), Some('\\' | ';' | ',' | 'n' | 'N'));
        if matches!(c, '\\' | ';' | ',') && !escaped {
            return false;
        }
    }
    true
}

/// A calendar's properties and events as the `ical` crate reads them:
/// name → raw (still escaped) value.
type Properties = BTreeMap<String, String>;

fn read_calendar(text: &str) -> (Properties, Vec<Properties>) {
    let mut parser = ical::IcalParser::new(BufReader::new(text.as_bytes()));
    let calendar = parser
        .next()
        .expect("one VCALENDAR")
        .unwrap_or_else(|e| panic!("invalid iCalendar: {e}\n{text}"));
    assert!(parser.next().is_none(), "exactly one VCALENDAR:\n{text}");
    let props = |properties: Vec<ical::property::Property>| {
        properties
            .into_iter()
            .map(|p| (p.name, p.value.unwrap_or_default()))
            .collect::<Properties>()
    };
    let events = calendar
        .events
        .into_iter()
        .map(|e| props(e.properties))
        .collect();
    (props(calendar.properties), events)
}

/// A TEXT property's value: escaped as RFC 5545 says, and unescaped.
fn text_value(props: &Properties, name: &str) -> String {
    let raw = &props[name];
    assert!(escaped_as_text(raw), "{name} is not escaped: {raw:?}");
    unescape(raw)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// No stored text adds a line, a property or an event to a calendar:
    /// every line break is CRLF, every physical line at most 75 octets,
    /// one VEVENT and UID per activity, and each value reads back as its
    /// sanitised text.
    #[test]
    fn calendars_carry_any_text(all in proptest::collection::vec(texts(), 1..4), name in hostile()) {
        let activities: Vec<Activity> = all
            .iter()
            .enumerate()
            .map(|(n, t)| {
                let mut a = activity(n, t);
                a.title = framed(&t.title);
                a.summary = Some(framed(&t.summary));
                a.venue = Some(framed(&t.venue));
                a
            })
            .collect();
        let text = calendar::render(&framed(&name), BASE, &activities, &HashMap::new(), ApproximateDates::LeaveOut);

        // Line breaks are CRLF and nothing else; lines are folded at 75
        // octets (a `str` cannot hold a split UTF-8 sequence).
        prop_assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "a bare CR or LF:\n{text:?}");
        prop_assert!(text.ends_with("\r\n"));
        for line in text.split("\r\n") {
            prop_assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
        }
        prop_assert!(text.chars().all(|c| c == '\r' || carriable(&c.to_string())));
        let begins = text.split("\r\n").filter(|l| *l == "BEGIN:VEVENT").count();
        prop_assert_eq!(begins, activities.len());

        let (calendar_props, events) = read_calendar(&text);
        prop_assert_eq!(text_value(&calendar_props, "X-WR-CALNAME"), for_output(&framed(&name)).into_owned());
        prop_assert_eq!(text_value(&calendar_props, "NAME"), for_output(&framed(&name)).into_owned());
        prop_assert_eq!(events.len(), activities.len());
        for (event, a) in events.iter().zip(&activities) {
            let url = format!("{BASE}/activities/{}", a.slug);
            prop_assert_eq!(text_value(event, "UID"), format!("activity-{}@cityhub", a.id));
            prop_assert_eq!(&event["URL"], &url);
            prop_assert_eq!(text_value(event, "SUMMARY"), for_output(&a.title).into_owned());
            prop_assert_eq!(text_value(event, "LOCATION"), for_output(a.venue.as_deref().unwrap_or_default()).into_owned());
            let mut description = format!("{}\n\n", a.summary.as_deref().unwrap_or_default());
            if a.status == ActivityStatus::Cancelled {
                description.push_str(&format!("Cancelled: {}\n\n", a.cancel_reason.as_deref().unwrap_or_default()));
            }
            description.push_str(&url);
            prop_assert_eq!(text_value(event, "DESCRIPTION"), for_output(&description).into_owned());
        }
    }
}

// --------------------------------------------------------------------- Atom

fn element_text(node: roxmltree::Node<'_, '_>) -> String {
    node.children().filter_map(|c| c.text()).collect()
}

fn child<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(|c| c.has_tag_name(name))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever the activities hold, the feed is well-formed XML 1.0 (read
    /// by a parser that refuses every character XML forbids), has one
    /// entry per activity, and its titles, summaries and author names read
    /// back as their sanitised text.
    #[test]
    fn feeds_carry_any_text(all in proptest::collection::vec(texts(), 1..4), title in hostile()) {
        let activities: Vec<Activity> = all.iter().enumerate().map(|(n, t)| activity(n, t)).collect();
        let cities = HashMap::from([(CityId(1), city(1, &all[0].city))]);
        let written = feed::render(&FeedInfo {
            title: &title,
            id: "urn:cityhub:feed:test",
            self_url: &format!("{BASE}/feeds/activities.atom"),
            base: BASE,
            activities: &activities,
            cities: &cities,
        })
        .expect("a feed is written");
        let text = String::from_utf8(written).expect("UTF-8");
        let doc = roxmltree::Document::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("ill-formed XML: {e}\n{text:?}")))?;
        let root = doc.root_element();
        prop_assert!(root.has_tag_name("feed"));
        prop_assert_eq!(element_text(child(root, "title").expect("title")), for_output(&title).into_owned());
        let entries: Vec<_> = root.children().filter(|c| c.has_tag_name("entry")).collect();
        prop_assert_eq!(entries.len(), activities.len());
        for (entry, a) in entries.iter().zip(&activities) {
            prop_assert_eq!(element_text(child(*entry, "id").expect("id")), format!("urn:cityhub:activity:{}", a.id));
            let shown = match a.status {
                ActivityStatus::Cancelled => format!("Cancelled: {}", a.title),
                ActivityStatus::Draft => format!("Draft: {}", a.title),
                ActivityStatus::Published => a.title.clone(),
            };
            prop_assert_eq!(element_text(child(*entry, "title").expect("title")), for_output(&shown).into_owned());
            let when = format!("{} — ", a.start_date.expect("dated"));
            let summary = child(*entry, "summary").map(element_text).unwrap_or_default();
            prop_assert_eq!(summary, for_output(&format!("{when}{}", a.summary.as_deref().unwrap_or_default())).into_owned());
            let author = child(*entry, "author").and_then(|a| child(a, "name")).map(element_text);
            prop_assert_eq!(author, Some(for_output(&all[0].city).into_owned()));
            // The HTML content, once unescaped from the XML, is HTML a
            // browser reads without a bad character.
            let content = child(*entry, "content").map(element_text).unwrap_or_default();
            let (_, errors) = parse_html(&content);
            prop_assert!(errors.is_empty(), "{errors:?} in {content:?}");
        }
    }
}

// --------------------------------------------------------------------- HTML

/// Parses a page as a browser does; returns it and the parser's
/// bad-character reports (controls, noncharacters).
fn parse_html(html: &str) -> (RcDom, Vec<String>) {
    let opts = html5ever::ParseOpts {
        tokenizer: html5ever::tokenizer::TokenizerOpts {
            exact_errors: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let dom = html5ever::parse_document(RcDom::default(), opts).one(html);
    let bad = dom
        .errors
        .borrow()
        .iter()
        .filter(|e| e.starts_with("Bad character"))
        .map(|e| e.to_string())
        .collect();
    (dom, bad)
}

/// Every element, in document order.
fn elements(node: &Handle, out: &mut Vec<(String, Handle)>) {
    if let NodeData::Element { name, .. } = &node.data {
        out.push((name.local.to_string(), node.clone()));
    }
    for c in node.children.borrow().iter() {
        elements(c, out);
    }
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

fn attribute(node: &Handle, name: &str) -> Option<String> {
    match &node.data {
        NodeData::Element { attrs, .. } => attrs
            .borrow()
            .iter()
            .find(|a| &*a.name.local == name)
            .map(|a| a.value.to_string()),
        _ => None,
    }
}

fn page_data(t: &Texts) -> PageData {
    let mut a = activity(1, t);
    a.description = None;
    a.hosts = vec![CityId(1)];
    PageData {
        activity: a,
        cities: HashMap::from([(CityId(1), city(1, &t.city)), (CityId(2), city(2, &t.city))]),
        participants: vec![CityId(2)],
        documents: vec![document(t)],
    }
}

fn render_page(data: &PageData) -> (String, Value) {
    let json_ld = event_json_ld(
        &data.activity,
        JsonLdContext {
            base_url: BASE,
            cities: &data.cities,
            documents: &data.documents,
        },
    );
    (page::render(data, BASE, &json_ld), json_ld)
}

fn benign(t: &Texts) -> Texts {
    let x = |_: &String| "x".to_owned();
    Texts {
        title: x(&t.title),
        summary: x(&t.summary),
        description: x(&t.description),
        venue: x(&t.venue),
        organization: x(&t.organization),
        theme: x(&t.theme),
        reason: x(&t.reason),
        city: x(&t.city),
        document: x(&t.document),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A page with any text has no bad character for an HTML parser, the
    /// same elements as a page of plain words (no text becomes markup), its
    /// texts read back sanitised, and its embedded JSON-LD is the builder's.
    #[test]
    fn pages_carry_any_text(t in texts()) {
        let data = page_data(&t);
        let (html, json_ld) = render_page(&data);
        prop_assert!(carriable(&html), "{html:?}");
        let (dom, errors) = parse_html(&html);
        prop_assert!(errors.is_empty(), "{errors:?}");
        let mut found = Vec::new();
        elements(&dom.document, &mut found);

        let (plain_html, _) = render_page(&page_data(&benign(&t)));
        let (plain_dom, _) = parse_html(&plain_html);
        let mut plain = Vec::new();
        elements(&plain_dom.document, &mut plain);
        let names = |e: &[(String, Handle)]| e.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        prop_assert_eq!(names(&found), names(&plain));

        let first = |name: &str| found.iter().find(|(n, _)| n == name).map(|(_, h)| h.clone()).expect(name);
        prop_assert_eq!(text_of(&first("h1")), for_output(&t.title).into_owned());
        prop_assert_eq!(
            text_of(&first("title")),
            format!("{} · UNESCO Creative Cities Network", for_output(&t.title))
        );
        let description = found
            .iter()
            .find(|(n, h)| n == "meta" && attribute(h, "name").as_deref() == Some("description"))
            .and_then(|(_, h)| attribute(h, "content"));
        prop_assert_eq!(description, Some(for_output(&t.summary).into_owned()));
        let script = first("script");
        prop_assert_eq!(attribute(&script, "type"), Some("application/ld+json".to_owned()));
        let embedded: Value = serde_json::from_str(&text_of(&script)).expect("embedded JSON-LD parses");
        prop_assert_eq!(embedded, json_ld);
    }

    /// A Markdown description with any text adds no script, frame, image or
    /// other element that loads or runs something, and nothing a parser
    /// reports as a bad character.
    #[test]
    fn descriptions_carry_any_text(t in texts()) {
        let mut data = page_data(&t);
        data.activity.description = Some(t.description.clone());
        let (html, _) = render_page(&data);
        prop_assert!(carriable(&html), "{html:?}");
        let (dom, errors) = parse_html(&html);
        prop_assert!(errors.is_empty(), "{errors:?}");
        let mut found = Vec::new();
        elements(&dom.document, &mut found);
        let count = |name: &str| found.iter().filter(|(n, _)| n == name).count();
        prop_assert_eq!(count("script"), 1);
        prop_assert_eq!(count("style"), 1);
        prop_assert_eq!(count("link"), 1);
        for name in ["img", "iframe", "object", "embed", "base", "form", "input", "svg", "math", "video", "audio"] {
            prop_assert_eq!(count(name), 0, "{}", name);
        }
    }
}

// ------------------------------------------------------------------ JSON-LD

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The JSON-LD of an activity with any text is JSON that reads back as
    /// itself, every string in it carriable, names and description as
    /// their sanitised text.
    #[test]
    fn json_ld_carries_any_text(t in texts()) {
        let data = page_data(&t);
        let (_, json_ld) = render_page(&data);
        let written = serde_json::to_string(&json_ld).expect("JSON");
        let read: Value = serde_json::from_str(&written).expect("JSON parses");
        prop_assert_eq!(&read, &json_ld);
        let mut all = Vec::new();
        strings(&read, &mut all);
        prop_assert!(all.iter().all(|s| carriable(s)), "{all:?}");
        prop_assert_eq!(&read["name"], &Value::String(for_output(&t.title).into_owned()));
        prop_assert_eq!(&read["description"], &Value::String(for_output(&t.summary).into_owned()));
        prop_assert_eq!(&read["location"]["name"], &Value::String(for_output(&t.venue).into_owned()));
        prop_assert_eq!(&read["organizer"][1]["name"], &Value::String(for_output(&t.organization).into_owned()));
        prop_assert_eq!(&read["organizer"][0]["name"], &Value::String(for_output(&t.city).into_owned()));
        prop_assert_eq!(&read["subjectOf"][0]["name"], &Value::String(for_output(&t.document).into_owned()));
    }
}
