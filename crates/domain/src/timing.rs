//! Timed activities: a local start (and end) time on the activity's days,
//! in an IANA time zone, and the UTC instants they make.
//!
//! The local time and the zone are what a city says and what is stored;
//! the instants are derived from them when the activity is written.
//!
//! **Daylight-saving transitions** follow RFC 5545 (§3.3.5), so that a
//! calendar written by the hub means what the hub means:
//! - a local time that occurs twice (the clocks go back) is the *first*
//!   occurrence, in the offset before the change (`01:30` on the night
//!   New York leaves daylight time is 05:30 UTC, not 06:30);
//! - a local time that does not occur (the clocks go forward) is read with
//!   the offset *before* the gap, so it lands the gap's length later
//!   (`02:30` on the night Paris enters summer time is 01:30 UTC, 03:30
//!   local summer time).
//!
//! Neither is refused: an iCalendar feed may hold such times, and the
//! rule above is the one every calendar client applies to them.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use crate::error::DomainError;

/// When a timed activity starts and ends: local times in `zone`, and the
/// instants they make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Local start time, on the start date.
    pub start_time: NaiveTime,
    /// Local end time, on the end date (the start date when there is none).
    pub end_time: Option<NaiveTime>,
    /// The IANA zone both times are in.
    pub zone: Tz,
    /// The start as a UTC instant.
    pub starts_at: DateTime<Utc>,
    /// The end as a UTC instant, when an end time is given.
    pub ends_at: Option<DateTime<Utc>>,
}

impl Timing {
    /// The timing of an activity from `start_date` at `start_time` to
    /// `end_date` (the start date when `None`) at `end_time`, in `zone`.
    #[must_use]
    pub fn new(
        start_date: NaiveDate,
        end_date: Option<NaiveDate>,
        start_time: NaiveTime,
        end_time: Option<NaiveTime>,
        zone: Tz,
    ) -> Self {
        let starts_at = instant(start_date.and_time(start_time), zone);
        let ends_at =
            end_time.map(|end| instant(end_date.unwrap_or(start_date).and_time(end), zone));
        Self {
            start_time,
            end_time,
            zone,
            starts_at,
            ends_at,
        }
    }

    /// The zone's IANA name (`Europe/Paris`).
    #[must_use]
    pub fn zone_name(&self) -> &'static str {
        self.zone.name()
    }

    /// The start in its zone, with the offset in force then.
    #[must_use]
    pub fn local_start(&self) -> DateTime<Tz> {
        self.starts_at.with_timezone(&self.zone)
    }

    /// The end in its zone, with the offset in force then.
    #[must_use]
    pub fn local_end(&self) -> Option<DateTime<Tz>> {
        self.ends_at.map(|end| end.with_timezone(&self.zone))
    }
}

/// The UTC instant of a local date and time in `zone`, by the rule of
/// RFC 5545 for times that occur twice or not at all (see the module's
/// documentation).
#[must_use]
pub fn instant(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(at) => at.with_timezone(&Utc),
        // Twice: the first occurrence.
        chrono::LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        // In a gap: the offset in force before it. No gap in the database
        // lasts two days (Samoa's whole skipped day is the longest), so
        // two days earlier is before it.
        chrono::LocalResult::None => {
            let before = zone.offset_from_utc_datetime(&(local - Duration::days(2)));
            (local - Duration::seconds(i64::from(before.fix().local_minus_utc()))).and_utc()
        }
    }
}

/// Parses a local time written `HH:MM` (24-hour clock, two digits each);
/// `field` is the input path for the error.
pub fn parse_local_time(field: &str, value: &str) -> Result<NaiveTime, DomainError> {
    let bytes = value.as_bytes();
    let well_formed = bytes.len() == 5
        && bytes[2] == b':'
        && [0, 1, 3, 4].iter().all(|&i| bytes[i].is_ascii_digit());
    if !well_formed {
        return Err(DomainError::invalid(
            field,
            "must be a local time written HH:MM (24-hour clock)",
        ));
    }
    NaiveTime::parse_from_str(value, "%H:%M")
        .map_err(|_| DomainError::invalid(field, "must be a time of day between 00:00 and 23:59"))
}

/// Parses an IANA time-zone name (`Europe/Paris`); `field` is the input
/// path for the error.
pub fn parse_zone(field: &str, value: &str) -> Result<Tz, DomainError> {
    value
        .parse::<Tz>()
        .map_err(|_| DomainError::invalid(field, "must be an IANA time zone, e.g. Europe/Paris"))
}

/// A local time as the API writes it: `HH:MM`.
#[must_use]
pub fn format_local_time(time: NaiveTime) -> String {
    time.format("%H:%M").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: (i32, u32, u32), time: (u32, u32)) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(date.0, date.1, date.2)
            .and_then(|d| d.and_hms_opt(time.0, time.1, 0))
            .expect("valid")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn ordinary_times_take_the_offset_in_force() {
        let paris: Tz = "Europe/Paris".parse().expect("zone");
        assert_eq!(
            instant(at((2026, 1, 15), (19, 30)), paris),
            utc("2026-01-15T18:30:00Z")
        );
        assert_eq!(
            instant(at((2026, 7, 15), (19, 30)), paris),
            utc("2026-07-15T17:30:00Z")
        );
    }

    #[test]
    fn a_time_that_occurs_twice_is_the_first() {
        let new_york: Tz = "America/New_York".parse().expect("zone");
        // RFC 5545's own example: 2007-11-04 01:30 is 01:30 EDT.
        assert_eq!(
            instant(at((2007, 11, 4), (1, 30)), new_york),
            utc("2007-11-04T05:30:00Z")
        );
    }

    #[test]
    fn a_time_in_a_gap_takes_the_offset_before_it() {
        let new_york: Tz = "America/New_York".parse().expect("zone");
        // RFC 5545's own example: 2007-03-11 02:30 is 03:30 EDT.
        assert_eq!(
            instant(at((2007, 3, 11), (2, 30)), new_york),
            utc("2007-03-11T07:30:00Z")
        );
        let paris: Tz = "Europe/Paris".parse().expect("zone");
        assert_eq!(
            instant(at((2026, 3, 29), (2, 30)), paris),
            utc("2026-03-29T01:30:00Z")
        );
        // Samoa skipped 2011-12-30 whole.
        let apia: Tz = "Pacific/Apia".parse().expect("zone");
        assert_eq!(
            instant(at((2011, 12, 30), (12, 0)), apia),
            utc("2011-12-30T22:00:00Z")
        );
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(
            parse_local_time("input.startTime", "09:05").ok(),
            NaiveTime::from_hms_opt(9, 5, 0)
        );
        for bad in [
            "25:00", "24:00", "12:60", "9:05", "09:05:00", "0905", "ab:cd", "", "09:0５",
        ] {
            let err = parse_local_time("input.startTime", bad).expect_err(bad);
            let DomainError::Invalid(e) = err;
            assert_eq!(e.field, "input.startTime");
        }
    }

    #[test]
    fn zones_are_iana_names() {
        assert!(parse_zone("input.timeZone", "Europe/Paris").is_ok());
        assert!(parse_zone("input.timeZone", "UTC").is_ok());
        for bad in ["Mars/Olympus_Mons", "W. Europe Standard Time", "+02:00", ""] {
            assert!(parse_zone("input.timeZone", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_timing_makes_its_instants() {
        let paris: Tz = "Europe/Paris".parse().expect("zone");
        let day = NaiveDate::from_ymd_opt(2026, 10, 24).expect("date");
        let timing = Timing::new(
            day,
            day.succ_opt(),
            NaiveTime::from_hms_opt(22, 0, 0).expect("time"),
            NaiveTime::from_hms_opt(4, 0, 0),
            paris,
        );
        assert_eq!(timing.starts_at, utc("2026-10-24T20:00:00Z"));
        // The clocks go back in between: 04:00 CET.
        assert_eq!(timing.ends_at, Some(utc("2026-10-25T03:00:00Z")));
        assert_eq!(
            timing.local_start().to_rfc3339(),
            "2026-10-24T22:00:00+02:00"
        );
    }
}
