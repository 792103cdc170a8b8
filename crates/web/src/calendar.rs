//! iCalendar (RFC 5545): `GET /calendar.ics` and `GET /cities/{slug}/calendar.ics`.
//!
//! One `VEVENT` per dated activity, with a stable `UID`, `DTSTAMP` and
//! `LAST-MODIFIED` from its last change (so the body, and its ETag, change
//! only when the data does), `SEQUENCE` = version − 1 (RFC 5545 starts at
//! 0; our versions start at 1), `STATUS:CANCELLED` for cancelled ones.
//!
//! Date precision is never faked. A DAY date is an all-day event, several
//! days long with an exclusive `DTEND`. A MONTH or YEAR date is left out by
//! default; with `include=approximate` it becomes an all-day event spanning
//! the whole month or year it is known by, marked in `SUMMARY` ("… (2010,
//! exact dates not known)"), in `DESCRIPTION` and in
//! `X-CITYHUB-DATE-PRECISION`, and `TRANSP:TRANSPARENT` so it blocks no
//! time. Undated activities are never in calendars.
//!
//! A timed activity (`startTime` in `timeZone`) is a timed event:
//! `DTSTART;TZID=…` (and `DTEND;TZID=…` when its end time is known) in
//! local time, with one `VTIMEZONE` per zone the calendar uses, covering
//! the years its events span (`vtimezone.rs`).

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use chrono::{Datelike, Days, Months, NaiveDate};
use cityhub_domain::jsonld::activity_url;
use cityhub_domain::{
    Activity, ActivityFormat, ActivityOrder, ActivityStatus, City, CityId, DatePrecision,
};

use cityhub_storage::ActivityTexts;

use crate::WebState;
use crate::http::{CacheKey, Representation, answer, base_url, reader};
use crate::ics::IcsWriter;
use crate::listing::{self, ListingRequest};
use crate::params::ApproximateDates;

/// `GET /calendar.ics`: the network's calendar.
pub async fn network_calendar(
    State(state): State<WebState>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    calendar(&state, &uri, &headers, None, query.as_deref()).await
}

/// `GET /cities/{slug}/calendar.ics`: one city's calendar.
pub async fn city_calendar(
    State(state): State<WebState>,
    Path(slug): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    calendar(&state, &uri, &headers, Some(&slug), query.as_deref()).await
}

const ICS: Representation = Representation {
    content_type: "text/calendar; charset=utf-8",
    extra: &[],
};

async fn calendar(
    state: &WebState,
    uri: &Uri,
    headers: &HeaderMap,
    city_slug: Option<&str>,
    query: Option<&str>,
) -> Response {
    let reader = match reader(state, headers).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let base = base_url(state, headers);
    let key = CacheKey::new(&reader, &base, "ics", uri);
    let rendering = async {
        let listing = listing::load(
            state,
            reader.clone(),
            ListingRequest {
                city_slug,
                query,
                order: ActivityOrder::StartDateDesc,
                limit: state.settings.calendar_max_events,
                dated_only: true,
                texts: ActivityTexts::WithoutDescription,
            },
        )
        .await?;
        let name = match &listing.city {
            Some(city) => format!("{} · UNESCO Creative Cities Network", city.name),
            None => "UNESCO Creative Cities Network".to_owned(),
        };
        Ok(render(
            &name,
            &base,
            &listing.activities,
            &listing.cities,
            listing.query.approximate,
        )
        .into_bytes())
    };
    answer(state, &reader, headers, key, ICS, rendering).await
}

/// The (all-day) span of an activity in a calendar, `DTEND` exclusive;
/// `None` when it does not belong in one.
pub fn span(activity: &Activity, approximate: ApproximateDates) -> Option<(NaiveDate, NaiveDate)> {
    let start = activity.start_date?;
    let include_approximate = approximate == ApproximateDates::Include;
    match activity.date_precision {
        DatePrecision::Day => {
            let last = activity.end_date.filter(|e| *e >= start).unwrap_or(start);
            Some((start, last.checked_add_days(Days::new(1))?))
        }
        DatePrecision::Month if include_approximate => {
            let first = start.with_day(1)?;
            Some((first, first.checked_add_months(Months::new(1))?))
        }
        DatePrecision::Year if include_approximate => {
            let first = NaiveDate::from_ymd_opt(start.year(), 1, 1)?;
            Some((first, first.checked_add_months(Months::new(12))?))
        }
        DatePrecision::Month | DatePrecision::Year => None,
    }
}

/// How an approximate date reads ("2010", "September 2014").
fn approximate_label(activity: &Activity) -> Option<String> {
    let start = activity.start_date?;
    match activity.date_precision {
        DatePrecision::Day => None,
        DatePrecision::Month => Some(start.format("%B %Y").to_string()),
        DatePrecision::Year => Some(start.format("%Y").to_string()),
    }
}

fn location(activity: &Activity, cities: &HashMap<CityId, City>) -> Option<String> {
    let city = activity.venue_city_id.and_then(|id| cities.get(&id));
    let place = match (&activity.venue, city) {
        (Some(venue), Some(city)) if !venue.contains(&city.name) => {
            Some(format!("{venue}, {} ({})", city.name, city.country))
        }
        (Some(venue), _) => Some(venue.clone()),
        (None, Some(city)) => Some(format!("{} ({})", city.name, city.country)),
        (None, None) => None,
    };
    match activity.format {
        ActivityFormat::Online => Some("Online".to_owned()),
        ActivityFormat::Hybrid => {
            Some(place.map_or_else(|| "Online".into(), |p| format!("{p} and online")))
        }
        ActivityFormat::InPerson => place,
    }
}

/// The calendar's text. Every text value is sanitised and escaped by
/// [`IcsWriter`], so no stored value can add a line, a property or a
/// `VEVENT`.
pub fn render(
    name: &str,
    base: &str,
    activities: &[Activity],
    cities: &HashMap<CityId, City>,
    approximate: ApproximateDates,
) -> String {
    let mut ics = IcsWriter::new();
    ics.begin("VCALENDAR");
    ics.plain("VERSION", "2.0");
    ics.text(
        "PRODID",
        "-//cityhub//UNESCO Creative Cities Network hub//EN",
    );
    ics.plain("CALSCALE", "GREGORIAN");
    ics.plain("METHOD", "PUBLISH");
    ics.text("NAME", name);
    ics.text("X-WR-CALNAME", name);
    ics.plain("REFRESH-INTERVAL;VALUE=DURATION", "PT1H");
    ics.plain("X-PUBLISHED-TTL", "PT1H");
    // Oldest first: calendars read more naturally, and the order is stable.
    let mut dated: Vec<(&Activity, (NaiveDate, NaiveDate))> = activities
        .iter()
        .filter_map(|a| span(a, approximate).map(|s| (a, s)))
        .collect();
    dated.sort_by_key(|(a, (start, _))| (*start, a.id));
    // The zones of timed events, each with the years it must cover.
    let mut zones: std::collections::BTreeMap<&'static str, (chrono_tz::Tz, i32, i32)> =
        std::collections::BTreeMap::new();
    for timing in dated.iter().filter_map(|(a, _)| a.timing.as_ref()) {
        let first = timing.local_start().year();
        let last = timing
            .local_end()
            .map_or(first, |end| end.year())
            .max(first);
        let entry = zones
            .entry(timing.zone_name())
            .or_insert((timing.zone, first, last));
        entry.1 = entry.1.min(first);
        entry.2 = entry.2.max(last);
    }
    for (zone, first, last) in zones.into_values() {
        crate::vtimezone::write(&mut ics, zone, first, last);
    }
    for (activity, (start, end)) in dated {
        event(&mut ics, base, activity, (start, end), cities);
    }
    ics.end("VCALENDAR");
    ics.finish()
}

/// One activity's `VEVENT`.
fn event(
    ics: &mut IcsWriter,
    base: &str,
    activity: &Activity,
    (start, end): (NaiveDate, NaiveDate),
    cities: &HashMap<CityId, City>,
) {
    let url = activity_url(base, &activity.slug);
    let approximate = approximate_label(activity);
    ics.begin("VEVENT");
    ics.text("UID", &format!("activity-{}@cityhub", activity.id));
    ics.date_time("DTSTAMP", activity.updated_at);
    ics.date_time("LAST-MODIFIED", activity.updated_at);
    if let Some(published) = activity.published_at {
        ics.date_time("CREATED", published);
    }
    ics.plain(
        "SEQUENCE",
        &u32::try_from(activity.version.saturating_sub(1))
            .unwrap_or(0)
            .to_string(),
    );
    match &activity.timing {
        Some(timing) => {
            let zone = timing.zone_name();
            ics.zoned_date_time("DTSTART", zone, timing.local_start().naive_local());
            if let Some(end) = timing.local_end() {
                ics.zoned_date_time("DTEND", zone, end.naive_local());
            }
        }
        None => {
            ics.date("DTSTART", start);
            ics.date("DTEND", end);
        }
    }
    let mut description = String::new();
    match &approximate {
        Some(label) => {
            ics.text(
                "SUMMARY",
                &format!("{} ({label}, exact dates not known)", activity.title),
            );
            description.push_str(&format!(
                "Known only as {label}: the exact dates are not known.\n\n"
            ));
        }
        None => ics.text("SUMMARY", &activity.title),
    }
    if let Some(summary) = &activity.summary {
        description.push_str(summary);
        description.push_str("\n\n");
    }
    if let Some(reason) = activity
        .cancel_reason
        .as_ref()
        .filter(|_| activity.status == ActivityStatus::Cancelled)
    {
        description.push_str(&format!("Cancelled: {reason}\n\n"));
    }
    description.push_str(&url);
    ics.text("DESCRIPTION", &description);
    if let Some(place) = location(activity, cities) {
        ics.text("LOCATION", &place);
    }
    ics.plain("URL", &url);
    ics.text_list(
        "CATEGORIES",
        std::iter::once(activity.kind.as_str()).chain(activity.fields.iter().map(|f| f.as_str())),
    );
    ics.plain(
        "STATUS",
        match activity.status {
            ActivityStatus::Cancelled => "CANCELLED",
            ActivityStatus::Draft => "TENTATIVE",
            ActivityStatus::Published => "CONFIRMED",
        },
    );
    if approximate.is_some() {
        ics.plain("TRANSP", "TRANSPARENT");
        ics.plain("X-CITYHUB-DATE-PRECISION", activity.date_precision.as_str());
    }
    ics.end("VEVENT");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use cityhub_domain::ActivityKind;

    fn activity(start: Option<NaiveDate>, end: Option<NaiveDate>, p: DatePrecision) -> Activity {
        Activity {
            id: cityhub_domain::ActivityId(1),
            slug: "a".into(),
            kind: ActivityKind::AnnualMeeting,
            format: ActivityFormat::InPerson,
            status: ActivityStatus::Published,
            title: "A".into(),
            summary: None,
            description: None,
            start_date: start,
            end_date: end,
            date_precision: p,
            timing: None,
            venue: None,
            venue_city_id: None,
            organizations: vec![],
            fields: vec![],
            themes: vec![],
            objectives: vec![],
            published_by: None,
            hosts: vec![],
            published_at: None,
            updated_at: Utc::now(),
            version: 1,
            cancel_reason: None,
        }
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("date")
    }

    #[test]
    fn spans_never_invent_days() {
        let day = activity(
            Some(d(2015, 5, 25)),
            Some(d(2015, 5, 28)),
            DatePrecision::Day,
        );
        assert_eq!(
            span(&day, ApproximateDates::LeaveOut),
            Some((d(2015, 5, 25), d(2015, 5, 29)))
        );
        let one = activity(Some(d(2015, 5, 25)), None, DatePrecision::Day);
        assert_eq!(
            span(&one, ApproximateDates::LeaveOut),
            Some((d(2015, 5, 25), d(2015, 5, 26)))
        );
        let year = activity(Some(d(2010, 1, 1)), None, DatePrecision::Year);
        assert_eq!(span(&year, ApproximateDates::LeaveOut), None);
        assert_eq!(
            span(&year, ApproximateDates::Include),
            Some((d(2010, 1, 1), d(2011, 1, 1)))
        );
        let month = activity(Some(d(2014, 9, 1)), None, DatePrecision::Month);
        assert_eq!(span(&month, ApproximateDates::LeaveOut), None);
        assert_eq!(
            span(&month, ApproximateDates::Include),
            Some((d(2014, 9, 1), d(2014, 10, 1)))
        );
        let undated = activity(None, None, DatePrecision::Day);
        assert_eq!(span(&undated, ApproximateDates::Include), None);
    }
}
