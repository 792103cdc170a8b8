//! schema.org `Event` JSON-LD of an activity: one pure builder shared by
//! the activity page (`GET /activities/{slug}`) and `Activity.jsonLd`, so
//! both always say the same thing.
//!
//! Dates keep their precision: a DAY date is `2014-09-15`, a MONTH date
//! `2014-09`, a YEAR date `2014` (all ISO 8601); an end date is given only
//! when the days are known, and undated activities have no `startDate`.
//! A timed activity's `startDate` / `endDate` are local date-times with
//! their offset (`2026-05-01T19:30:00+02:00`), as schema.org asks.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use crate::CityId;
use crate::chars::for_output;
use crate::enums::{ActivityFormat, ActivityStatus, DatePrecision};
use crate::records::{Activity, City, Document};

/// What the builder needs besides the activity itself.
#[derive(Debug, Clone, Copy)]
pub struct JsonLdContext<'a> {
    /// The hub's public base URL without a trailing slash
    /// (`https://hub.example.org`); empty for root-relative URLs.
    pub base_url: &'a str,
    /// Member cities the activity refers to (hosts, venue city), by id.
    pub cities: &'a HashMap<CityId, City>,
    /// The activity's documents, in order.
    pub documents: &'a [Document],
}

/// The activity page's URL.
pub fn activity_url(base_url: &str, slug: &str) -> String {
    format!("{}/activities/{slug}", base_url.trim_end_matches('/'))
}

/// A date written at its known precision (ISO 8601 reduced precision).
pub fn date_at_precision(date: NaiveDate, precision: DatePrecision) -> String {
    match precision {
        DatePrecision::Day => date.format("%Y-%m-%d").to_string(),
        DatePrecision::Month => date.format("%Y-%m").to_string(),
        DatePrecision::Year => date.format("%Y").to_string(),
    }
}

fn place(activity: &Activity, cities: &HashMap<CityId, City>) -> Value {
    let venue_city = activity.venue_city_id.and_then(|id| cities.get(&id));
    let mut place = Map::new();
    place.insert("@type".into(), json!("Place"));
    let name = activity
        .venue
        .clone()
        .or_else(|| venue_city.map(|c| c.name.clone()))
        .unwrap_or_else(|| "To be announced".to_owned());
    place.insert("name".into(), json!(name));
    if let Some(city) = venue_city {
        place.insert(
            "address".into(),
            json!({
                "@type": "PostalAddress",
                "addressLocality": city.name,
                "addressCountry": city.country,
            }),
        );
        if let (Some(lat), Some(lon)) = (city.latitude, city.longitude) {
            place.insert(
                "geo".into(),
                json!({ "@type": "GeoCoordinates", "latitude": lat, "longitude": lon }),
            );
        }
    }
    Value::Object(place)
}

/// The schema.org `Event` describing `activity`; its strings hold no
/// character [`for_output`] drops, whatever the activity holds.
pub fn event_json_ld(activity: &Activity, ctx: JsonLdContext<'_>) -> Value {
    let url = activity_url(ctx.base_url, &activity.slug);
    let mut event = Map::new();
    event.insert("@context".into(), json!("https://schema.org"));
    event.insert("@type".into(), json!("Event"));
    event.insert("@id".into(), json!(url));
    event.insert("url".into(), json!(url));
    event.insert("name".into(), json!(activity.title));
    if let Some(text) = activity.summary.as_ref().or(activity.description.as_ref()) {
        event.insert("description".into(), json!(text));
    }
    if let Some(timing) = &activity.timing {
        event.insert("startDate".into(), json!(timing.local_start().to_rfc3339()));
        if let Some(end) = timing.local_end() {
            event.insert("endDate".into(), json!(end.to_rfc3339()));
        } else if let Some(end) = activity.end_date {
            event.insert(
                "endDate".into(),
                json!(date_at_precision(end, DatePrecision::Day)),
            );
        }
    } else if let Some(start) = activity.start_date {
        event.insert(
            "startDate".into(),
            json!(date_at_precision(start, activity.date_precision)),
        );
        if activity.date_precision == DatePrecision::Day
            && let Some(end) = activity.end_date
        {
            event.insert(
                "endDate".into(),
                json!(date_at_precision(end, DatePrecision::Day)),
            );
        }
    }
    let status = match activity.status {
        ActivityStatus::Cancelled => "https://schema.org/EventCancelled",
        ActivityStatus::Published | ActivityStatus::Draft => "https://schema.org/EventScheduled",
    };
    event.insert("eventStatus".into(), json!(status));
    let online = json!({ "@type": "VirtualLocation", "url": url });
    let (mode, location) = match activity.format {
        ActivityFormat::InPerson => (
            "https://schema.org/OfflineEventAttendanceMode",
            place(activity, ctx.cities),
        ),
        ActivityFormat::Online => ("https://schema.org/OnlineEventAttendanceMode", online),
        ActivityFormat::Hybrid => (
            "https://schema.org/MixedEventAttendanceMode",
            json!([place(activity, ctx.cities), online]),
        ),
    };
    event.insert("eventAttendanceMode".into(), json!(mode));
    event.insert("location".into(), location);
    let mut organizers: Vec<Value> = activity
        .hosts
        .iter()
        .filter_map(|id| ctx.cities.get(id))
        .map(|city| {
            let mut org = Map::new();
            org.insert("@type".into(), json!("Organization"));
            org.insert("name".into(), json!(city.name));
            if let Some(site) = &city.website {
                org.insert("url".into(), json!(site));
            }
            org.insert(
                "address".into(),
                json!({ "@type": "PostalAddress", "addressLocality": city.name, "addressCountry": city.country }),
            );
            Value::Object(org)
        })
        .collect();
    organizers.extend(
        activity
            .organizations
            .iter()
            .map(|name| json!({ "@type": "Organization", "name": name })),
    );
    if !organizers.is_empty() {
        event.insert("organizer".into(), Value::Array(organizers));
    }
    if !activity.themes.is_empty() {
        event.insert("keywords".into(), json!(activity.themes.join(", ")));
    }
    let documents: Vec<Value> = ctx
        .documents
        .iter()
        .map(|doc| {
            let mut work = Map::new();
            work.insert("@type".into(), json!("CreativeWork"));
            work.insert("name".into(), json!(doc.title));
            if let Some(u) = &doc.url {
                work.insert("url".into(), json!(u));
            }
            if let Some(d) = doc.issued_on {
                work.insert(
                    "datePublished".into(),
                    json!(date_at_precision(d, doc.issued_precision)),
                );
            }
            Value::Object(work)
        })
        .collect();
    if !documents.is_empty() {
        event.insert("subjectOf".into(), Value::Array(documents));
    }
    let mut event = Value::Object(event);
    sanitize(&mut event);
    event
}

/// Passes every string of `value` through [`for_output`]: whatever is
/// stored, the JSON-LD (and the page that embeds it) carries nothing an
/// output format cannot.
fn sanitize(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Cow::Owned(clean) = for_output(text) {
                *text = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize),
        Value::Object(map) => map.values_mut().for_each(sanitize),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActivityId;
    use crate::enums::{ActivityKind, CreativeField};
    use chrono::Utc;

    fn city(id: CityId, slug: &str, name: &str, country: &str) -> City {
        City {
            id,
            slug: slug.into(),
            name: name.into(),
            country: country.into(),
            fields: vec![CreativeField::Music],
            member_since: 2008,
            website: Some(format!("https://{slug}.example")),
            latitude: Some(1.5),
            longitude: Some(2.5),
        }
    }

    fn activity(precision: DatePrecision, format: ActivityFormat) -> Activity {
        Activity {
            id: ActivityId(7),
            slug: "annual-meeting-2011-seoul".into(),
            kind: ActivityKind::AnnualMeeting,
            format,
            status: ActivityStatus::Published,
            title: "Annual meeting".into(),
            summary: Some("Summary".into()),
            description: None,
            start_date: NaiveDate::from_ymd_opt(2011, 1, 1),
            end_date: NaiveDate::from_ymd_opt(2011, 1, 3),
            date_precision: precision,
            timing: None,
            venue: None,
            venue_city_id: Some(CityId(1)),
            organizations: vec!["UNESCO".into()],
            fields: vec![],
            themes: vec!["music".into(), "cities".into()],
            objectives: vec![],
            published_by: Some(CityId(1)),
            hosts: vec![CityId(1)],
            published_at: None,
            updated_at: Utc::now(),
            version: 1,
            cancel_reason: None,
        }
    }

    fn build(a: &Activity) -> Value {
        let cities = HashMap::from([(CityId(1), city(CityId(1), "seoul", "Seoul", "KR"))]);
        event_json_ld(
            a,
            JsonLdContext {
                base_url: "https://hub.example/",
                cities: &cities,
                documents: &[],
            },
        )
    }

    #[test]
    fn a_year_only_date_stays_a_year_and_has_no_end() {
        let ld = build(&activity(DatePrecision::Year, ActivityFormat::InPerson));
        assert_eq!(ld["startDate"], "2011");
        assert!(ld.get("endDate").is_none());
        assert_eq!(
            ld["url"],
            "https://hub.example/activities/annual-meeting-2011-seoul"
        );
        assert_eq!(ld["location"]["address"]["addressCountry"], "KR");
        assert_eq!(ld["organizer"][0]["name"], "Seoul");
        assert_eq!(ld["organizer"][1]["name"], "UNESCO");
        assert_eq!(ld["keywords"], "music, cities");
    }

    #[test]
    fn day_and_month_precision() {
        let ld = build(&activity(DatePrecision::Day, ActivityFormat::InPerson));
        assert_eq!(ld["startDate"], "2011-01-01");
        assert_eq!(ld["endDate"], "2011-01-03");
        let ld = build(&activity(DatePrecision::Month, ActivityFormat::InPerson));
        assert_eq!(ld["startDate"], "2011-01");
        assert!(ld.get("endDate").is_none());
    }

    #[test]
    fn status_and_attendance_modes() {
        let mut a = activity(DatePrecision::Day, ActivityFormat::Online);
        a.status = ActivityStatus::Cancelled;
        let ld = build(&a);
        assert_eq!(ld["eventStatus"], "https://schema.org/EventCancelled");
        assert_eq!(
            ld["eventAttendanceMode"],
            "https://schema.org/OnlineEventAttendanceMode"
        );
        assert_eq!(ld["location"]["@type"], "VirtualLocation");
        let ld = build(&activity(DatePrecision::Day, ActivityFormat::Hybrid));
        assert_eq!(ld["location"][0]["@type"], "Place");
        assert_eq!(ld["location"][1]["@type"], "VirtualLocation");
    }

    #[test]
    fn timed_activities_have_date_times_with_their_offset() {
        let mut a = activity(DatePrecision::Day, ActivityFormat::InPerson);
        a.start_date = NaiveDate::from_ymd_opt(2026, 5, 1);
        a.end_date = None;
        a.timing = Some(crate::Timing::new(
            NaiveDate::from_ymd_opt(2026, 5, 1).expect("date"),
            None,
            chrono::NaiveTime::from_hms_opt(19, 30, 0).expect("time"),
            chrono::NaiveTime::from_hms_opt(22, 0, 0),
            "Europe/Paris".parse().expect("zone"),
        ));
        let ld = build(&a);
        assert_eq!(ld["startDate"], "2026-05-01T19:30:00+02:00");
        assert_eq!(ld["endDate"], "2026-05-01T22:00:00+02:00");
    }

    #[test]
    fn undated_activities_have_no_start_date() {
        let mut a = activity(DatePrecision::Day, ActivityFormat::InPerson);
        a.start_date = None;
        a.end_date = None;
        assert!(build(&a).get("startDate").is_none());
    }
}
