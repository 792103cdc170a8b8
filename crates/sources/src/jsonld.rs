//! Reading schema.org `Event` JSON-LD: every `application/ld+json` block
//! of an HTML page (found by `html5ever`'s tokenizer, so scripts,
//! comments and attributes are read as browsers read them), or a JSON-LD
//! document itself; `@graph` and arrays included; `Event` and its
//! subtypes, with `name`, `startDate`, `endDate`, `eventStatus`,
//! `eventAttendanceMode`, `location` (`Place` or `VirtualLocation`),
//! `url`, `description`, `organizer`.

use std::cell::RefCell;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use cityhub_domain::{ActivityFormat, ActivityKind, SkippedItem};
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use serde_json::Value;

use crate::item::{Item, When};

/// Most nested levels of JSON-LD walked (a hostile document may nest deep).
const MAX_DEPTH: usize = 16;

/// The schema.org types that are events.
const EVENT_TYPES: &[&str] = &[
    "Event",
    "BusinessEvent",
    "ChildrensEvent",
    "ComedyEvent",
    "CourseInstance",
    "DanceEvent",
    "DeliveryEvent",
    "EducationEvent",
    "EventSeries",
    "ExhibitionEvent",
    "Festival",
    "FoodEvent",
    "Hackathon",
    "LiteraryEvent",
    "MusicEvent",
    "PublicationEvent",
    "BroadcastEvent",
    "OnDemandEvent",
    "SaleEvent",
    "ScreeningEvent",
    "SocialEvent",
    "SportsEvent",
    "TheaterEvent",
    "VisualArtsEvent",
];

/// What a page or document yielded.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The events found.
    pub items: Vec<Item>,
    /// Events (or blocks) not read, and why.
    pub skipped: Vec<SkippedItem>,
}

/// Collects the text of `<script type="application/ld+json">` elements.
#[derive(Default)]
struct ScriptSink {
    blocks: RefCell<Vec<String>>,
    current: RefCell<Option<String>>,
}

impl TokenSink for ScriptSink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        match token {
            Token::TagToken(tag) if &*tag.name == "script" => match tag.kind {
                TagKind::StartTag => {
                    let is_ld = tag.attrs.iter().any(|a| {
                        &*a.name.local == "type"
                            && a.value.split(';').next().is_some_and(|t| {
                                t.trim().eq_ignore_ascii_case("application/ld+json")
                            })
                    });
                    *self.current.borrow_mut() = is_ld.then(String::new);
                    // Script content is raw text, as in a browser.
                    return TokenSinkResult::RawData(RawKind::ScriptData);
                }
                TagKind::EndTag => {
                    if let Some(block) = self.current.borrow_mut().take() {
                        self.blocks.borrow_mut().push(block);
                    }
                }
            },
            Token::CharacterTokens(text) => {
                if let Some(block) = self.current.borrow_mut().as_mut() {
                    block.push_str(&text);
                }
            }
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// The `application/ld+json` blocks of an HTML page.
fn ld_blocks(html: &str) -> Vec<String> {
    let tokenizer = Tokenizer::new(ScriptSink::default(), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    let sink = tokenizer.sink;
    sink.blocks.into_inner()
}

/// Reads the events of an HTML page or a JSON-LD document.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let blocks = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        vec![trimmed.to_owned()]
    } else {
        ld_blocks(text)
    };
    for (i, block) in blocks.iter().enumerate() {
        match serde_json::from_str::<Value>(block) {
            Ok(value) => walk(&value, 0, &mut parsed),
            Err(e) => parsed.skipped.push(SkippedItem {
                uid: format!("JSON-LD block {}", i + 1),
                reason: format!("it is not valid JSON: {e}"),
            }),
        }
    }
    parsed
}

fn walk(value: &Value, depth: usize, parsed: &mut Parsed) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Array(values) => {
            for v in values {
                walk(v, depth + 1, parsed);
            }
        }
        Value::Object(map) => {
            if let Some(graph) = map.get("@graph") {
                walk(graph, depth + 1, parsed);
            }
            if let Some(kind) = event_type(value) {
                match read_event(value, kind) {
                    Ok(item) => parsed.items.push(item),
                    Err(skipped) => parsed.skipped.push(skipped),
                }
            }
        }
        _ => {}
    }
}

/// The schema.org event type named by `@type` (a string or a list;
/// `schema:` and `https://schema.org/` prefixes allowed).
fn event_type(value: &Value) -> Option<&'static str> {
    let names: Vec<&str> = match value.get("@type")? {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    names.into_iter().find_map(|name| {
        let short = name.rsplit(['/', ':']).next().unwrap_or(name);
        EVENT_TYPES.iter().copied().find(|t| *t == short)
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(text),
        Value::Object(map) => map.get("@value").and_then(text),
        _ => None,
    }
}

fn name_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("name").and_then(text),
        _ => None,
    }
}

/// A date-time written with its UTC offset. JSON-LD names no zone, only
/// the offset: a whole-hour offset becomes the IANA zone of that fixed
/// offset (`+02:00` is `Etc/GMT-2`, whose sign POSIX inverts), so the
/// activity keeps the local time the page shows; `Z`, `+00:00` and
/// offsets of part of an hour are kept as UTC.
fn with_offset(t: DateTime<chrono::FixedOffset>) -> When {
    let seconds = t.offset().local_minus_utc();
    let hours = seconds / 3600;
    let fixed = (seconds != 0 && seconds % 3600 == 0)
        .then(|| {
            let name = if hours > 0 {
                format!("Etc/GMT-{hours}")
            } else {
                format!("Etc/GMT+{}", -hours)
            };
            name.parse::<chrono_tz::Tz>().ok()
        })
        .flatten();
    match fixed {
        Some(tz) => When::Zoned(t.with_timezone(&tz)),
        None => When::Utc(t.with_timezone(&Utc)),
    }
}

/// A schema.org date or date-time (ISO 8601).
fn when(raw: &str) -> Result<When, String> {
    let raw = raw.trim();
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(When::Date(date));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(with_offset(t));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%dT%H:%M%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(raw, format) {
            return Ok(with_offset(t));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
            return Ok(When::Floating(t));
        }
    }
    Err(format!("'{raw}' is not a date"))
}

fn read_event(value: &Value, kind: &str) -> Result<Item, SkippedItem> {
    let get = |k: &str| value.get(k);
    let url = get("url").and_then(text);
    let name = get("name").and_then(text);
    let start_raw = get("startDate").and_then(text);
    let key = get("@id")
        .and_then(text)
        .or_else(|| url.clone())
        .unwrap_or_else(|| {
            format!(
                "{}@{}",
                name.as_deref().unwrap_or("event"),
                start_raw.as_deref().unwrap_or("?")
            )
        });
    let skip = |reason: String| SkippedItem {
        uid: key.clone(),
        reason,
    };
    let start = when(
        start_raw
            .as_deref()
            .ok_or_else(|| skip("it has no startDate".into()))?,
    )
    .map_err(|e| skip(format!("startDate: {e}")))?;
    let end = match get("endDate").and_then(text) {
        Some(raw) => Some(when(&raw).map_err(|e| skip(format!("endDate: {e}")))?),
        None => None,
    };
    let mut item = Item::new(key.clone(), start);
    item.title = name;
    item.end = end;
    item.url = url;
    item.description = get("description").and_then(text);
    item.cancelled = get("eventStatus")
        .and_then(text)
        .is_some_and(|s| s.ends_with("EventCancelled"));
    let mode = get("eventAttendanceMode")
        .and_then(text)
        .unwrap_or_default();
    item.format = if mode.ends_with("OnlineEventAttendanceMode") {
        Some(ActivityFormat::Online)
    } else if mode.ends_with("MixedEventAttendanceMode") {
        Some(ActivityFormat::Hybrid)
    } else if mode.ends_with("OfflineEventAttendanceMode") {
        Some(ActivityFormat::InPerson)
    } else {
        None
    };
    item.location = get("location").and_then(location);
    if item.format.is_none()
        && get("location").is_some_and(|l| event_location_type(l) == Some("VirtualLocation"))
    {
        item.format = Some(ActivityFormat::Online);
    }
    item.organizers = match get("organizer") {
        Some(Value::Array(list)) => list.iter().filter_map(name_of).collect(),
        Some(one) => name_of(one).into_iter().collect(),
        None => Vec::new(),
    };
    if let Some(keywords) = get("keywords").and_then(text) {
        item.categories = keywords.split(',').map(|k| k.trim().to_owned()).collect();
    }
    item.kind = match kind {
        "Festival" => Some(ActivityKind::Festival),
        "ExhibitionEvent" | "VisualArtsEvent" => Some(ActivityKind::Exhibition),
        _ => None,
    };
    Ok(item)
}

fn event_location_type(value: &Value) -> Option<&str> {
    match value {
        Value::Array(a) => a.iter().find_map(event_location_type),
        Value::Object(map) => map.get("@type").and_then(Value::as_str),
        _ => None,
    }
}

/// A location as text: a `Place`'s name and address, a
/// `VirtualLocation`'s URL, or the text itself.
fn location(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let parts: Vec<String> = list.iter().filter_map(location).collect();
            (!parts.is_empty()).then(|| parts.join(" / "))
        }
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some("VirtualLocation") {
                return map
                    .get("url")
                    .and_then(text)
                    .or_else(|| map.get("name").and_then(text));
            }
            let name = map.get("name").and_then(text);
            let address = match map.get("address") {
                Some(Value::Object(a)) => {
                    let parts: Vec<String> = [
                        "streetAddress",
                        "postalCode",
                        "addressLocality",
                        "addressCountry",
                    ]
                    .iter()
                    .filter_map(|k| a.get(*k).and_then(name_of))
                    .collect();
                    (!parts.is_empty()).then(|| parts.join(", "))
                }
                Some(other) => text(other),
                None => None,
            };
            match (name, address) {
                (Some(n), Some(a)) => Some(format!("{n}, {a}")),
                (n, a) => n.or(a),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PAGE: &str = r#"<!DOCTYPE html><html><head>
<script type="application/ld+json">
{"@context":"https://schema.org","@graph":[
  {"@type":"WebSite","name":"City of Music"},
  {"@type":"MusicEvent","@id":"https://city.example/events/1","name":"Open-air concert",
   "startDate":"2027-06-21T20:00:00+02:00","endDate":"2027-06-21T23:00:00+02:00",
   "eventStatus":"https://schema.org/EventScheduled",
   "eventAttendanceMode":"https://schema.org/OfflineEventAttendanceMode",
   "location":{"@type":"Place","name":"Place Bellecour","address":{"@type":"PostalAddress","addressLocality":"Lyon","addressCountry":"FR"}},
   "organizer":{"@type":"Organization","name":"Music office"},
   "url":"https://city.example/events/1"}
]}
</script>
<script>var notJsonLd = "</div>";</script>
<script type="application/ld+json">[{"@type":"Event","name":"Webinar","startDate":"2027-07-01",
  "eventStatus":"EventCancelled","location":{"@type":"VirtualLocation","url":"https://meet.example/x"},"url":"https://city.example/events/2"}]</script>
<script type="application/ld+json">{ not json </script>
</head><body></body></html>"#;

    #[test]
    fn offsets_become_fixed_zones_and_keep_the_local_time() {
        let zoned = |raw: &str| match when(raw).expect("a date-time") {
            When::Zoned(t) => (t.timezone().name().to_owned(), t.naive_local().to_string()),
            When::Utc(t) => ("UTC".to_owned(), t.naive_utc().to_string()),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            zoned("2027-06-21T20:00:00+02:00"),
            ("Etc/GMT-2".to_owned(), "2027-06-21 20:00:00".to_owned())
        );
        assert_eq!(
            zoned("2027-06-21T20:00-05:00"),
            ("Etc/GMT+5".to_owned(), "2027-06-21 20:00:00".to_owned())
        );
        assert_eq!(
            zoned("2027-06-21T18:00:00Z"),
            ("UTC".to_owned(), "2027-06-21 18:00:00".to_owned())
        );
        // Part of an hour: no fixed IANA zone, kept as UTC.
        assert_eq!(
            zoned("2027-06-21T20:00:00+05:30"),
            ("UTC".to_owned(), "2027-06-21 14:30:00".to_owned())
        );
    }

    #[test]
    fn events_of_a_page_graph_and_arrays_included() {
        let parsed = parse(PAGE);
        assert_eq!(parsed.items.len(), 2, "{:?}", parsed.items);
        let concert = &parsed.items[0];
        assert_eq!(concert.key, "https://city.example/events/1");
        assert_eq!(concert.title.as_deref(), Some("Open-air concert"));
        assert_eq!(
            concert.start.date(),
            NaiveDate::from_ymd_opt(2027, 6, 21).expect("date")
        );
        assert_eq!(
            concert.location.as_deref(),
            Some("Place Bellecour, Lyon, FR")
        );
        assert_eq!(concert.organizers, vec!["Music office"]);
        assert_eq!(concert.format, Some(ActivityFormat::InPerson));
        let webinar = &parsed.items[1];
        assert!(webinar.cancelled);
        assert_eq!(webinar.format, Some(ActivityFormat::Online));
        assert_eq!(parsed.skipped.len(), 1);
        assert_eq!(parsed.skipped[0].uid, "JSON-LD block 3");
    }

    #[test]
    fn an_event_without_a_start_is_skipped() {
        let parsed = parse(r#"{"@type":"Event","@id":"x","name":"No date"}"#);
        assert!(parsed.items.is_empty());
        assert_eq!(parsed.skipped[0].uid, "x");
    }

    proptest! {
        #[test]
        fn any_page_is_read_without_panicking(text in ".{0,300}") {
            let _ = parse(&text);
            let _ = parse(&format!("<script type=\"application/ld+json\">{text}</script>"));
        }
    }
}
