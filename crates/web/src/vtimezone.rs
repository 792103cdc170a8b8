//! `VTIMEZONE` components (RFC 5545 §3.6.5) for the zones of timed
//! activities, written from the IANA database (`chrono-tz`), so that a
//! calendar says what `TZID=Europe/Paris` means without the reader having
//! to know the name.
//!
//! Each transition within the years the calendar's events span is written
//! as its own observance (`STANDARD` when the new offset has no daylight
//! saving in it, `DAYLIGHT` otherwise) with a plain `DTSTART` and no
//! `RRULE`: exact for every year, whatever rule changes the zone went
//! through. A first observance starts on January 1st of the first year, so
//! every time of the span has one. `chrono-tz` publishes offsets, not
//! transitions: they are found by sampling the span day by day and
//! bisecting each change to the second.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::{OffsetComponents, OffsetName, Tz};

use crate::ics::IcsWriter;

/// What is in force at an instant: the offset, whether it holds daylight
/// saving, and its abbreviation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observance {
    offset_seconds: i32,
    daylight: bool,
    name: Option<String>,
}

fn observance_at(zone: Tz, at: DateTime<Utc>) -> Observance {
    let offset = zone.offset_from_utc_datetime(&at.naive_utc());
    Observance {
        offset_seconds: offset.fix().local_minus_utc(),
        daylight: !offset.dst_offset().is_zero(),
        name: offset.abbreviation().map(str::to_owned),
    }
}

/// A change of observance: the instant, what was and what is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transition {
    at: DateTime<Utc>,
    from: Observance,
    to: Observance,
}

/// The first instant in `(before, after]` whose observance differs from
/// the one at `before` (which must differ at `after`).
fn bisect(zone: Tz, mut before: DateTime<Utc>, mut after: DateTime<Utc>) -> DateTime<Utc> {
    let first = observance_at(zone, before);
    while after - before > Duration::seconds(1) {
        let middle = before + (after - before) / 2;
        if observance_at(zone, middle) == first {
            before = middle;
        } else {
            after = middle;
        }
    }
    after
}

/// Every change of observance between `from` and `to`.
fn transitions(zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Transition> {
    let mut found = Vec::new();
    let mut at = from;
    let mut current = observance_at(zone, at);
    while at < to {
        let next = (at + Duration::days(1)).min(to);
        let then = observance_at(zone, next);
        if then != current {
            // Two changes within one day would hide each other; none in the
            // database is that close, but a bisection per change still
            // finds the first, and the loop the next.
            let change = bisect(zone, at, next);
            let to_observance = observance_at(zone, change);
            found.push(Transition {
                at: change,
                from: current,
                to: to_observance.clone(),
            });
            current = to_observance;
            at = change;
            continue;
        }
        at = next;
    }
    found
}

/// An offset as RFC 5545 writes it: `+0100`, `-0330`, `+054545`.
fn utc_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let total = seconds.unsigned_abs();
    let (hours, minutes, rest) = (total / 3600, total % 3600 / 60, total % 60);
    if rest == 0 {
        format!("{sign}{hours:02}{minutes:02}")
    } else {
        format!("{sign}{hours:02}{minutes:02}{rest:02}")
    }
}

fn local(at: DateTime<Utc>, offset_seconds: i32) -> NaiveDateTime {
    at.naive_utc() + Duration::seconds(i64::from(offset_seconds))
}

fn observance(ics: &mut IcsWriter, onset: NaiveDateTime, from: &Observance, to: &Observance) {
    let component = if to.daylight { "DAYLIGHT" } else { "STANDARD" };
    ics.begin(component);
    ics.plain("DTSTART", &onset.format("%Y%m%dT%H%M%S").to_string());
    ics.plain("TZOFFSETFROM", &utc_offset(from.offset_seconds));
    ics.plain("TZOFFSETTO", &utc_offset(to.offset_seconds));
    if let Some(name) = &to.name {
        ics.text("TZNAME", name);
    }
    ics.end(component);
}

/// Writes the `VTIMEZONE` of `zone` for the years `first_year` to
/// `last_year` (inclusive).
pub fn write(ics: &mut IcsWriter, zone: Tz, first_year: i32, last_year: i32) {
    let year_start = |year: i32| {
        NaiveDate::from_ymd_opt(year, 1, 1)
            .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    // From a day before the first local January 1st (no offset exceeds a
    // day) to the end of the last year.
    let from = year_start(first_year) - Duration::days(1);
    let to = year_start(last_year.saturating_add(1)) + Duration::days(1);
    let initial = observance_at(zone, from);
    ics.begin("VTIMEZONE");
    ics.plain("TZID", zone.name());
    let first_onset = NaiveDate::from_ymd_opt(first_year, 1, 1)
        .map(|d| d.and_time(chrono::NaiveTime::MIN))
        .unwrap_or_else(|| local(from, initial.offset_seconds));
    let changes = transitions(zone, from, to);
    // The first observance: what is in force on January 1st of the first
    // year (a change in the day before it is taken as already made).
    let opening = changes
        .iter()
        .take_while(|t| local(t.at, t.from.offset_seconds) <= first_onset)
        .last()
        .map_or(initial, |t| t.to.clone());
    observance(ics, first_onset, &opening, &opening);
    for change in changes
        .iter()
        .filter(|t| local(t.at, t.from.offset_seconds) > first_onset)
    {
        observance(
            ics,
            local(change.at, change.from.offset_seconds),
            &change.from,
            &change.to,
        );
    }
    ics.end("VTIMEZONE");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_written_as_rfc_5545_says() {
        assert_eq!(utc_offset(3600), "+0100");
        assert_eq!(utc_offset(-12600), "-0330");
        assert_eq!(utc_offset(0), "+0000");
        assert_eq!(utc_offset(20_745), "+054545");
    }

    #[test]
    fn paris_has_its_two_changes_a_year() {
        let mut ics = IcsWriter::new();
        write(&mut ics, "Europe/Paris".parse().expect("zone"), 2026, 2026);
        let text = ics.finish();
        assert!(
            text.starts_with("BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\n"),
            "{text}"
        );
        // The opening observance, then spring forward and fall back.
        assert!(text.contains(
            "BEGIN:STANDARD\r\nDTSTART:20260101T000000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nEND:STANDARD"
        ), "{text}");
        assert!(text.contains(
            "BEGIN:DAYLIGHT\r\nDTSTART:20260329T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nEND:DAYLIGHT"
        ), "{text}");
        assert!(text.contains(
            "BEGIN:STANDARD\r\nDTSTART:20261025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nEND:STANDARD"
        ), "{text}");
        assert_eq!(text.matches("BEGIN:DAYLIGHT").count(), 1);
        assert_eq!(text.matches("BEGIN:STANDARD").count(), 2);
    }

    #[test]
    fn southern_and_fixed_zones() {
        let mut ics = IcsWriter::new();
        write(&mut ics, "Asia/Tokyo".parse().expect("zone"), 2026, 2027);
        let text = ics.finish();
        assert_eq!(text.matches("BEGIN:STANDARD").count(), 1, "{text}");
        assert!(text.contains("TZOFFSETTO:+0900"));
        let mut ics = IcsWriter::new();
        write(
            &mut ics,
            "Australia/Sydney".parse().expect("zone"),
            2026,
            2026,
        );
        let text = ics.finish();
        // January is summer there.
        assert!(text.contains(
            "BEGIN:DAYLIGHT\r\nDTSTART:20260101T000000\r\nTZOFFSETFROM:+1100\r\nTZOFFSETTO:+1100"
        ), "{text}");
        assert!(
            text.contains("DTSTART:20260405T030000\r\nTZOFFSETFROM:+1100\r\nTZOFFSETTO:+1000"),
            "{text}"
        );
    }
}
