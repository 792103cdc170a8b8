//! Reading an iCalendar feed (RFC 5545) with the `ical` parser (content
//! lines, folding, parameters), and what it means here: all-day, timed and
//! multi-day events, `TZID` through the IANA database (`chrono-tz`), UTC
//! and floating times, `RRULE`/`RDATE`/`EXDATE` expanded within a window
//! by `rrule` (bounded), `RECURRENCE-ID` overrides, `STATUS:CANCELLED`,
//! `URL`, `LOCATION`, `DESCRIPTION`, `CATEGORIES`, `ORGANIZER`.
//!
//! A feed the parser cannot read whole is read event by event, so one
//! broken event does not cost the others; an event that cannot be read or
//! makes no sense is skipped with its reason.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use cityhub_domain::{ActivityFormat, SkippedItem};
use ical::parser::ical::component::IcalEvent;
use ical::property::Property;
use sha2::{Digest, Sha256};

use crate::item::{Item, When};

/// The span recurrences are expanded within, and how far.
#[derive(Debug, Clone, Copy)]
pub struct Expansion {
    /// No instance before this.
    pub from: DateTime<Utc>,
    /// No instance after this.
    pub to: DateTime<Utc>,
    /// Most instances of one event.
    pub max_instances: u16,
}

/// What a feed yielded.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The events, recurrences expanded.
    pub items: Vec<Item>,
    /// Events not imported, and why.
    pub skipped: Vec<SkippedItem>,
    /// The `UID`s of events that could not be read: their activities are
    /// neither changed nor taken as gone.
    pub unreadable: HashSet<String>,
}

/// A feed that is not iCalendar at all.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotICalendar(pub String);

/// Reads an iCalendar feed.
pub fn parse(text: &str, expansion: &Expansion) -> Result<Parsed, NotICalendar> {
    let text = text.trim_start_matches('\u{feff}');
    let head = text.trim_start();
    if !head
        .get(..15)
        .is_some_and(|h| h.eq_ignore_ascii_case("BEGIN:VCALENDAR"))
    {
        let start: String = head.chars().take(40).collect();
        return Err(NotICalendar(format!(
            "not an iCalendar feed: it does not begin with BEGIN:VCALENDAR (it begins with {start:?})"
        )));
    }
    let mut parsed = Parsed::default();
    let events = match read_whole(text) {
        Ok(events) => events,
        Err(_) => read_event_by_event(text, &mut parsed),
    };
    let mut masters: Vec<IcalEvent> = Vec::new();
    let mut overrides: BTreeMap<String, Vec<IcalEvent>> = BTreeMap::new();
    for event in events {
        let uid = uid_of(&event);
        if value(&event.properties, "RECURRENCE-ID").is_some() {
            overrides.entry(uid).or_default().push(event);
        } else {
            masters.push(event);
        }
    }
    for master in masters {
        let uid = uid_of(&master);
        let own = overrides.remove(&uid).unwrap_or_default();
        if let Err(reason) = read_master(&master, &uid, own, expansion, &mut parsed) {
            parsed.unreadable.insert(uid.clone());
            parsed.skipped.push(SkippedItem { uid, reason });
        }
    }
    // Instances whose series is not in the feed: each on its own.
    for (uid, events) in overrides {
        for event in events {
            match read_instance(&event, &uid) {
                Ok(item) => parsed.items.push(item),
                Err(reason) => {
                    parsed.unreadable.insert(uid.clone());
                    parsed.skipped.push(SkippedItem {
                        uid: uid.clone(),
                        reason,
                    });
                }
            }
        }
    }
    // Floating times are the calendar's own local time: with the zone it
    // names (`X-WR-TIMEZONE`, as Google Calendar and Apple write it), they
    // are times in that zone.
    if let Some(tz) = calendar_zone(text) {
        for item in &mut parsed.items {
            item.start = in_zone(item.start, tz);
            item.end = item.end.map(|end| in_zone(end, tz));
        }
    }
    Ok(parsed)
}

/// The zone a calendar names for itself (`X-WR-TIMEZONE`), read from the
/// lines before its first event.
fn calendar_zone(text: &str) -> Option<chrono_tz::Tz> {
    text.lines()
        .take_while(|line| !line.trim().eq_ignore_ascii_case("BEGIN:VEVENT"))
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("X-WR-TIMEZONE")
                .then(|| zone(value))
                .flatten()
        })
}

/// A floating time read as a local time in `tz`; other times unchanged.
fn in_zone(w: When, tz: chrono_tz::Tz) -> When {
    match w {
        When::Floating(local) => {
            When::Zoned(cityhub_domain::timing::instant(local, tz).with_timezone(&tz))
        }
        other => other,
    }
}

fn read_whole(text: &str) -> Result<Vec<IcalEvent>, ical::parser::ParserError> {
    let mut events = Vec::new();
    for calendar in ical::IcalParser::new(text.as_bytes()) {
        events.extend(calendar?.events);
    }
    Ok(events)
}

/// Unfolds content lines (RFC 5545 3.1).
fn unfold(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n') {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match (
            raw.strip_prefix(' ').or_else(|| raw.strip_prefix('\t')),
            lines.last_mut(),
        ) {
            (Some(rest), Some(last)) => last.push_str(rest),
            _ => lines.push(raw.to_owned()),
        }
    }
    lines
}

/// Reads each `VEVENT` block on its own, skipping those the parser refuses.
fn read_event_by_event(text: &str, parsed: &mut Parsed) -> Vec<IcalEvent> {
    let mut events = Vec::new();
    let mut block: Option<Vec<String>> = None;
    let mut position = 0;
    for line in unfold(text) {
        let upper = line.trim().to_ascii_uppercase();
        if upper == "BEGIN:VEVENT" {
            block = Some(vec![line]);
            continue;
        }
        let Some(lines) = block.as_mut() else {
            continue;
        };
        lines.push(line);
        if upper == "END:VEVENT" {
            position += 1;
            let lines = block.take().unwrap_or_default();
            let uid = lines
                .iter()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("UID")
                        .then(|| value.trim().to_owned())
                })
                .unwrap_or_else(|| format!("event {position}"));
            let one = format!(
                "BEGIN:VCALENDAR\r\n{}\r\nEND:VCALENDAR\r\n",
                lines.join("\r\n")
            );
            match read_whole(&one) {
                Ok(found) => events.extend(found),
                Err(e) => {
                    parsed.unreadable.insert(uid.clone());
                    parsed.skipped.push(SkippedItem {
                        uid,
                        reason: format!("the event cannot be read: {e}"),
                    });
                }
            }
        }
    }
    if block.is_some() {
        parsed.skipped.push(SkippedItem {
            uid: format!("event {}", position + 1),
            reason: "the feed ends inside an event (no END:VEVENT)".into(),
        });
    }
    events
}

fn property<'a>(props: &'a [Property], name: &str) -> Option<&'a Property> {
    props.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

fn value<'a>(props: &'a [Property], name: &str) -> Option<&'a str> {
    property(props, name).and_then(|p| p.value.as_deref())
}

fn param<'a>(prop: &'a Property, name: &str) -> Option<&'a str> {
    prop.params
        .as_ref()?
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(String::as_str)
}

/// The event's `UID`; without one, a stable key made of its title and start.
fn uid_of(event: &IcalEvent) -> String {
    match value(&event.properties, "UID").map(str::trim) {
        Some(uid) if !uid.is_empty() => uid.to_owned(),
        _ => {
            let mut hasher = Sha256::new();
            hasher.update(value(&event.properties, "SUMMARY").unwrap_or_default());
            hasher.update([0]);
            hasher.update(value(&event.properties, "DTSTART").unwrap_or_default());
            format!("no-uid-{}", &hex::encode(hasher.finalize())[..16])
        }
    }
}

/// iCalendar TEXT unescaped (`\n`, `\,`, `\;`, `\\`).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A TEXT list split on unescaped commas, each unescaped.
fn split_list(text: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push('\\');
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            items.push(unescape(&current));
            current.clear();
        } else {
            current.push(c);
        }
    }
    items.push(unescape(&current));
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// The IANA zone a `TZID` names. Besides IANA names (quotes tolerated),
/// it reads what real calendar software writes: a path whose tail is an
/// IANA name (`/mozilla.org/20050126_1/Europe/Paris`,
/// `/softwarestudio.org/Olson_20011030_5/America/New_York`), and the
/// Windows zone names of Outlook and Exchange (`W. Europe Standard Time`),
/// mapped through CLDR's `windowsZones` table (its world-wide `001` rows,
/// as the `localzone` crate ships them). Anything else is `None`.
pub fn zone(tzid: &str) -> Option<chrono_tz::Tz> {
    let tzid = tzid.trim().trim_matches('"').trim();
    if let Ok(tz) = tzid.parse() {
        return Some(tz);
    }
    // The longest tail of the path that is an IANA name.
    let tail = tzid
        .match_indices('/')
        .map(|(at, _)| &tzid[at + 1..])
        .find_map(|tail| tail.parse().ok());
    if tail.is_some() {
        return tail;
    }
    localzone::win_zone_to_iana(tzid, None).and_then(|iana| iana.parse().ok())
}

/// A DATE or DATE-TIME value with its `TZID`. A local time in a zone is
/// read by RFC 5545's rule (the domain's `timing::instant`): of a time
/// that occurs twice the first, a time in a gap with the offset before it.
fn when(raw: &str, tzid: Option<&str>, date_only: bool) -> Result<When, String> {
    let raw = raw.trim();
    let bad = || format!("'{raw}' is not a valid date or date-time");
    if date_only || raw.len() == 8 {
        return NaiveDate::parse_from_str(raw, "%Y%m%d")
            .map(When::Date)
            .map_err(|_| bad());
    }
    if let Some(utc) = raw.strip_suffix('Z').or_else(|| raw.strip_suffix('z')) {
        let naive = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
        return Ok(When::Utc(Utc.from_utc_datetime(&naive)));
    }
    let naive = NaiveDateTime::parse_from_str(raw, "%Y%m%dT%H%M%S").map_err(|_| bad())?;
    match tzid {
        Some(tzid) => {
            let tz = zone(tzid).ok_or_else(|| {
                format!(
                    "TZID '{}' is not a time zone the hub knows (an IANA name, or a Windows zone name)",
                    tzid.trim_matches('"')
                )
            })?;
            Ok(When::Zoned(
                cityhub_domain::timing::instant(naive, tz).with_timezone(&tz),
            ))
        }
        None => Ok(When::Floating(naive)),
    }
}

fn when_of(props: &[Property], name: &str) -> Option<Result<When, String>> {
    let prop = property(props, name)?;
    let raw = prop.value.as_deref().unwrap_or_default();
    let date_only = param(prop, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
    Some(when(raw, param(prop, "TZID"), date_only).map_err(|e| format!("{name}: {e}")))
}

/// Every value of every `name` property (comma lists split), with its TZID.
fn when_list(props: &[Property], name: &str) -> Result<Vec<When>, String> {
    let mut out = Vec::new();
    for prop in props.iter().filter(|p| p.name.eq_ignore_ascii_case(name)) {
        let date_only = param(prop, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
        for raw in prop.value.as_deref().unwrap_or_default().split(',') {
            if raw.trim().is_empty() || raw.contains('/') {
                // An empty value, or a PERIOD (RDATE;VALUE=PERIOD): not read.
                continue;
            }
            out.push(
                when(raw, param(prop, "TZID"), date_only).map_err(|e| format!("{name}: {e}"))?,
            );
        }
    }
    Ok(out)
}

/// An ISO 8601 / RFC 5545 duration (`P1D`, `PT1H30M`, `P2W`).
fn duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let (negative, raw) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let raw = raw.strip_prefix('P')?;
    let mut total = Duration::zero();
    let mut number = String::new();
    let mut in_time = false;
    for c in raw.chars() {
        match c {
            'T' => in_time = true,
            '0'..='9' => number.push(c),
            unit => {
                let n: i64 = number.parse().ok()?;
                number.clear();
                total += match (unit, in_time) {
                    ('W', false) => Duration::try_weeks(n)?,
                    ('D', false) => Duration::try_days(n)?,
                    ('H', true) => Duration::try_hours(n)?,
                    ('M', true) => Duration::try_minutes(n)?,
                    ('S', true) => Duration::try_seconds(n)?,
                    _ => return None,
                };
            }
        }
    }
    if !number.is_empty() {
        return None;
    }
    Some(if negative { -total } else { total })
}

/// An event's fields, its dates aside.
fn describe(event: &IcalEvent, key: String, start: When) -> Item {
    let props = &event.properties;
    let text = |name: &str| value(props, name).map(unescape);
    let mut item = Item::new(key, start);
    item.title = text("SUMMARY");
    item.description = text("DESCRIPTION");
    item.location = text("LOCATION");
    item.url = value(props, "URL").map(|u| u.trim().to_owned());
    item.categories = props
        .iter()
        .filter(|p| p.name.eq_ignore_ascii_case("CATEGORIES"))
        .filter_map(|p| p.value.as_deref())
        .flat_map(split_list)
        .collect();
    item.cancelled =
        value(props, "STATUS").is_some_and(|s| s.trim().eq_ignore_ascii_case("CANCELLED"));
    item.organizers = property(props, "ORGANIZER")
        .and_then(|p| param(p, "CN"))
        .map(|cn| vec![cn.trim_matches('"').to_owned()])
        .unwrap_or_default();
    if value(props, "X-GOOGLE-CONFERENCE").is_some() || location_is_online(item.location.as_deref())
    {
        item.format = Some(
            if item
                .location
                .as_deref()
                .is_some_and(|l| !location_is_online(Some(l)))
            {
                ActivityFormat::Hybrid
            } else {
                ActivityFormat::Online
            },
        );
    }
    item
}

/// A location that is only a link (an online meeting).
fn location_is_online(location: Option<&str>) -> bool {
    location.is_some_and(|l| {
        let l = l.trim();
        l.starts_with("https://") || l.starts_with("http://")
    })
}

/// The start, and the end (explicit, or from `DURATION`), of an event.
fn span(event: &IcalEvent) -> Result<(When, Option<When>, bool), String> {
    let props = &event.properties;
    let start = when_of(props, "DTSTART").ok_or("it has no DTSTART")??;
    let end = match when_of(props, "DTEND") {
        Some(end) => Some(end?),
        None => match value(props, "DURATION") {
            Some(raw) => {
                let d =
                    duration(raw).ok_or_else(|| format!("DURATION: '{raw}' is not a duration"))?;
                Some(shift(start, d).ok_or("DURATION: out of range")?)
            }
            None => None,
        },
    };
    let exclusive = matches!(start, When::Date(_));
    Ok((start, end, exclusive))
}

/// `w` moved by `d`, in its own kind of time.
fn shift(w: When, d: Duration) -> Option<When> {
    Some(match w {
        When::Date(day) => When::Date(day.checked_add_signed(Duration::try_days(d.num_days())?)?),
        When::Zoned(t) => When::Zoned(t.checked_add_signed(d)?),
        When::Utc(t) => When::Utc(t.checked_add_signed(d)?),
        When::Floating(t) => When::Floating(t.checked_add_signed(d)?),
    })
}

/// The instant rrule expands from: zoned times in their zone, the rest
/// as UTC (dates at midnight).
fn to_rrule(w: When) -> DateTime<rrule::Tz> {
    match w {
        When::Zoned(t) => t.with_timezone(&rrule::Tz::Tz(t.timezone())),
        When::Utc(t) => t.with_timezone(&rrule::Tz::UTC),
        When::Date(d) => Utc
            .from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN))
            .with_timezone(&rrule::Tz::UTC),
        When::Floating(t) => Utc.from_utc_datetime(&t).with_timezone(&rrule::Tz::UTC),
    }
}

/// An instance rrule gave back, in the series' kind of time.
fn from_rrule(like: When, t: DateTime<rrule::Tz>) -> When {
    match like {
        When::Zoned(z) => When::Zoned(t.with_timezone(&z.timezone())),
        When::Utc(_) => When::Utc(t.with_timezone(&Utc)),
        When::Date(_) => When::Date(t.with_timezone(&Utc).date_naive()),
        When::Floating(_) => When::Floating(t.with_timezone(&Utc).naive_utc()),
    }
}

/// The key of an instance: its series' UID and its RECURRENCE-ID, as a
/// UTC instant (or a date for all-day series).
fn instance_key(uid: &str, at: When) -> String {
    let id = match at {
        When::Date(d) => d.format("%Y%m%d").to_string(),
        When::Zoned(t) => t.with_timezone(&Utc).format("%Y%m%dT%H%M%SZ").to_string(),
        When::Utc(t) => t.format("%Y%m%dT%H%M%SZ").to_string(),
        When::Floating(t) => t.format("%Y%m%dT%H%M%S").to_string(),
    };
    format!("{uid}#{id}")
}

/// One instance that overrides its series (or stands alone).
fn read_instance(event: &IcalEvent, uid: &str) -> Result<Item, String> {
    let rid = when_of(&event.properties, "RECURRENCE-ID").ok_or("it has no RECURRENCE-ID")??;
    let (start, end, exclusive) = span(event)?;
    let mut item = describe(event, instance_key(uid, rid), start);
    item.end = end;
    item.end_exclusive = exclusive;
    Ok(item)
}

fn read_master(
    master: &IcalEvent,
    uid: &str,
    overrides: Vec<IcalEvent>,
    expansion: &Expansion,
    parsed: &mut Parsed,
) -> Result<(), String> {
    let (start, end, exclusive) = span(master)?;
    let props = &master.properties;
    let rrule_text = value(props, "RRULE");
    let rdates = when_list(props, "RDATE")?;
    if rrule_text.is_none() && rdates.is_empty() {
        let mut item = describe(master, uid.to_owned(), start);
        item.end = end;
        item.end_exclusive = exclusive;
        parsed.items.push(item);
        for event in overrides {
            match read_instance(&event, uid) {
                Ok(item) => parsed.items.push(item),
                Err(reason) => parsed.skipped.push(SkippedItem {
                    uid: uid.to_owned(),
                    reason,
                }),
            }
        }
        return Ok(());
    }
    let dt_start = to_rrule(start);
    let length = end.map(|e| to_rrule(e) - dt_start);
    let mut set = match rrule_text {
        Some(text) => {
            let rule: rrule::RRule<rrule::Unvalidated> = text
                .trim()
                .parse()
                .map_err(|e| format!("RRULE '{text}' cannot be read: {e}"))?;
            rule.build(dt_start)
                .map_err(|e| format!("RRULE '{text}' is not valid: {e}"))?
        }
        None => rrule::RRuleSet::new(dt_start).rdate(dt_start),
    };
    for rdate in rdates {
        set = set.rdate(to_rrule(rdate));
    }
    for exdate in when_list(props, "EXDATE")? {
        set = set.exdate(to_rrule(exdate));
    }
    let from = expansion.from.with_timezone(&rrule::Tz::UTC);
    let to = expansion.to.with_timezone(&rrule::Tz::UTC);
    let result = set.after(from).before(to).all(expansion.max_instances);
    let mut instants = result.dates;
    instants.sort();
    instants.dedup();
    if result.limited && instants.len() >= usize::from(expansion.max_instances) {
        parsed.skipped.push(SkippedItem {
            uid: uid.to_owned(),
            reason: format!(
                "it recurs more than {} times within the window; only the first {} instances are imported",
                expansion.max_instances, expansion.max_instances
            ),
        });
    }
    let mut moved: BTreeMap<String, IcalEvent> = BTreeMap::new();
    for event in overrides {
        match when_of(&event.properties, "RECURRENCE-ID") {
            Some(Ok(rid)) => {
                moved.insert(instance_key(uid, rid), event);
            }
            _ => parsed.skipped.push(SkippedItem {
                uid: uid.to_owned(),
                reason: "an instance with a RECURRENCE-ID that cannot be read".into(),
            }),
        }
    }
    for instant in instants {
        let at = from_rrule(start, instant);
        let key = instance_key(uid, at);
        if let Some(event) = moved.remove(&key) {
            match read_instance(&event, uid) {
                Ok(item) => parsed.items.push(item),
                Err(reason) => parsed.skipped.push(SkippedItem { uid: key, reason }),
            }
            continue;
        }
        let mut item = describe(master, key, at);
        item.end = length
            .and_then(|l| instant.checked_add_signed(l))
            .map(|e| from_rrule(start, e));
        item.end_exclusive = exclusive;
        parsed.items.push(item);
    }
    // Overrides of instances outside the expansion (moved into it, or
    // beyond the window): kept when they fall inside it.
    for (_, event) in moved {
        if let Ok(item) = read_instance(&event, uid) {
            let at = to_rrule(item.start).with_timezone(&Utc);
            if at >= expansion.from && at <= expansion.to {
                parsed.items.push(item);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tzids_as_calendar_software_writes_them() {
        let name = |tzid: &str| zone(tzid).map(|tz| tz.name());
        assert_eq!(name("Europe/Paris"), Some("Europe/Paris"));
        assert_eq!(name("\"Europe/Paris\""), Some("Europe/Paris"));
        assert_eq!(
            name("/mozilla.org/20050126_1/America/New_York"),
            Some("America/New_York")
        );
        assert_eq!(
            name("/softwarestudio.org/Olson_20011030_5/Europe/Lisbon"),
            Some("Europe/Lisbon")
        );
        assert_eq!(name("W. Europe Standard Time"), Some("Europe/Berlin"));
        assert_eq!(name("Romance Standard Time"), Some("Europe/Paris"));
        assert_eq!(name("Tokyo Standard Time"), Some("Asia/Tokyo"));
        assert_eq!(name("Customized Time Zone"), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn an_unknown_tzid_is_a_reason_and_a_gap_is_read_by_rfc_5545() {
        let err =
            when("20270305T150000", Some("Customized Time Zone"), false).expect_err("unknown zone");
        assert!(err.contains("TZID 'Customized Time Zone'"), "{err}");
        // 02:30 on the night Paris goes to summer time: 03:30 CEST.
        let When::Zoned(at) =
            when("20270328T023000", Some("Europe/Paris"), false).expect("a zoned time")
        else {
            panic!("not zoned");
        };
        assert_eq!(at.to_rfc3339(), "2027-03-28T03:30:00+02:00");
    }

    #[test]
    fn floating_times_take_the_calendar_zone() {
        let feed = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-WR-TIMEZONE:Europe/Lisbon\r\nBEGIN:VEVENT\r\nUID:f1\r\nDTSTART:20270710T210000\r\nSUMMARY:Fado\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let expansion = Expansion {
            from: Utc::now() - Duration::days(365),
            to: Utc::now() + Duration::days(3650),
            max_instances: 10,
        };
        let parsed = parse(feed, &expansion).expect("a calendar");
        let When::Zoned(at) = parsed.items[0].start else {
            panic!("not zoned: {:?}", parsed.items[0].start);
        };
        assert_eq!(at.to_rfc3339(), "2027-07-10T21:00:00+01:00");
    }
    use proptest::prelude::*;

    fn expansion() -> Expansion {
        Expansion {
            from: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .expect("from"),
            to: Utc
                .with_ymd_and_hms(2027, 12, 31, 0, 0, 0)
                .single()
                .expect("to"),
            max_instances: 100,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    const OUTLOOK_STYLE: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Test//EN\r\nBEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\nBEGIN:VEVENT\r\nUID:weekly-1@example.org\r\nDTSTART;TZID=Europe/Paris:20260105T183000\r\nDTEND;TZID=Europe/Paris:20260105T200000\r\nRRULE:FREQ=WEEKLY;COUNT=4\r\nEXDATE;TZID=Europe/Paris:20260112T183000\r\nSUMMARY:Reading group\\, weekly\r\nDESCRIPTION:Bring a book.\\nAny book\r\n  at all.\r\nCATEGORIES:Literature,Books\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:weekly-1@example.org\r\nRECURRENCE-ID;TZID=Europe/Paris:20260119T183000\r\nDTSTART;TZID=Europe/Paris:20260120T190000\r\nDTEND;TZID=Europe/Paris:20260120T203000\r\nSUMMARY:Reading group (moved)\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:weekly-1@example.org\r\nRECURRENCE-ID;TZID=Europe/Paris:20260126T183000\r\nDTSTART;TZID=Europe/Paris:20260126T183000\r\nSTATUS:CANCELLED\r\nSUMMARY:Reading group\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn a_weekly_series_with_an_exception_an_override_and_a_cancelled_instance() {
        let parsed = parse(OUTLOOK_STYLE, &expansion()).expect("parse");
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        let keys: Vec<&str> = parsed.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "weekly-1@example.org#20260105T173000Z",
                "weekly-1@example.org#20260119T173000Z",
                "weekly-1@example.org#20260126T173000Z",
            ]
        );
        assert_eq!(
            parsed.items[0].title.as_deref(),
            Some("Reading group, weekly")
        );
        assert_eq!(
            parsed.items[0].description.as_deref(),
            Some("Bring a book.\nAny book at all.")
        );
        assert_eq!(parsed.items[0].categories, vec!["Literature", "Books"]);
        assert_eq!(
            parsed.items[1].title.as_deref(),
            Some("Reading group (moved)")
        );
        assert_eq!(parsed.items[1].start.date(), day(2026, 1, 20));
        assert!(parsed.items[2].cancelled);
    }

    #[test]
    fn html_is_not_a_calendar() {
        let err = parse(
            "<!DOCTYPE html><html><body>Events</body></html>",
            &expansion(),
        )
        .expect_err("not ical");
        assert!(err.0.contains("BEGIN:VCALENDAR"), "{err}");
    }

    #[test]
    fn a_broken_event_does_not_cost_the_others() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:good\r\nDTSTART;VALUE=DATE:20270301\r\nSUMMARY:Good\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:broken\r\nthis line has no colon\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:impossible\r\nDTSTART:20271345T100000Z\r\nSUMMARY:Impossible\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let parsed = parse(text, &expansion()).expect("parse");
        assert_eq!(parsed.items.len(), 1);
        assert_eq!(parsed.items[0].key, "good");
        let uids: Vec<&str> = parsed.skipped.iter().map(|s| s.uid.as_str()).collect();
        assert_eq!(uids, vec!["broken", "impossible"]);
    }

    #[test]
    fn a_huge_recurrence_is_bounded() {
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:daily\r\nDTSTART:20260101T090000Z\r\nRRULE:FREQ=DAILY;COUNT=10000\r\nSUMMARY:Every day\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let parsed = parse(text, &expansion()).expect("parse");
        assert_eq!(parsed.items.len(), 100);
        assert_eq!(parsed.skipped.len(), 1);
    }

    #[test]
    fn durations_and_all_day_ranges() {
        assert_eq!(duration("PT1H30M"), Some(Duration::minutes(90)));
        assert_eq!(duration("P2W"), Some(Duration::days(14)));
        assert_eq!(duration("P1DT2H"), Some(Duration::hours(26)));
        assert_eq!(duration("1H"), None);
        let text = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:fest\r\nDTSTART;VALUE=DATE:20270610\r\nDTEND;VALUE=DATE:20270613\r\nSUMMARY:Festival\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let parsed = parse(text, &expansion()).expect("parse");
        let item = &parsed.items[0];
        assert_eq!(item.start, When::Date(day(2027, 6, 10)));
        assert_eq!(item.end, Some(When::Date(day(2027, 6, 13))));
        assert!(item.end_exclusive);
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in ".{0,400}") {
            let _ = parse(&text, &expansion());
            let with_header = format!("BEGIN:VCALENDAR\r\n{text}");
            let _ = parse(&with_header, &expansion());
        }

        #[test]
        fn escaped_text_round_trips(text in "[a-zA-Z ,;\\\\\n]{0,60}") {
            let escaped = text
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace(';', "\\;")
                .replace('\n', "\\n");
            prop_assert_eq!(unescape(&escaped), text);
        }
    }
}
