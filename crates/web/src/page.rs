//! `GET /activities/{slug}`: a small, accessible HTML page per activity,
//! with its schema.org `Event` JSON-LD embedded; with
//! `Accept: application/ld+json`, the JSON-LD alone. The JSON-LD comes from
//! `cityhub_domain::jsonld`, as `Activity.jsonLd` in GraphQL does.
//!
//! The page loads nothing: no script, no font, no image; its styles are
//! inline and its `Content-Security-Policy` forbids everything else.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri, header};
use axum::response::Response;
use chrono::{Datelike, NaiveDate};
use cityhub_domain::chars::for_output;
use cityhub_domain::jsonld::{JsonLdContext, activity_url, event_json_ld};
use cityhub_domain::{
    Activity, ActivityFormat, ActivityStatus, City, CityId, DatePrecision, Document,
};
use cityhub_storage::{ActivityRepo, CityRepo};

use crate::WebState;
use crate::http::{CacheKey, Representation, answer, base_url, not_found, reader, storage_failure};
use crate::markdown::{escape, safe_url, to_safe_html};

/// The page's Content-Security-Policy: nothing but its own inline styles.
pub const PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// Everything a page shows.
pub struct PageData {
    /// The activity.
    pub activity: Activity,
    /// Cities it names (hosts, participants, venue city), by id.
    pub cities: HashMap<CityId, City>,
    /// Participant city ids, in order.
    pub participants: Vec<CityId>,
    /// Documents, in order.
    pub documents: Vec<Document>,
}

fn wants_json_ld(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|a| a.contains("application/ld+json"))
}

const JSON_LD: Representation = Representation {
    content_type: "application/ld+json; charset=utf-8",
    extra: &[],
};

const HTML: Representation = Representation {
    content_type: "text/html; charset=utf-8",
    extra: &[("content-security-policy", PAGE_CSP)],
};

/// `GET /activities/{slug}`.
pub async fn activity_page(
    State(state): State<WebState>,
    Path(slug): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let reader = match reader(&state, &headers).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let base = base_url(&state, &headers);
    let json = wants_json_ld(&headers);
    let (variant, representation) = if json {
        ("jsonld", JSON_LD)
    } else {
        ("html", HTML)
    };
    let key = CacheKey::new(&reader, &base, variant, &uri);
    let rendering = async {
        let db = &state.db;
        let activity = match ActivityRepo::find_by_slug(db, reader.scope, &slug).await {
            Ok(Some(a)) => a,
            Ok(None) => return Err(not_found(&format!("no activity `{slug}`"))),
            Err(e) => return Err(storage_failure(&e)),
        };
        let data = match load(db, activity).await {
            Ok(d) => d,
            Err(e) => return Err(storage_failure(&e)),
        };
        let json_ld = event_json_ld(
            &data.activity,
            JsonLdContext {
                base_url: &base,
                cities: &data.cities,
                documents: &data.documents,
            },
        );
        Ok(if json {
            serde_json::to_vec_pretty(&json_ld).unwrap_or_default()
        } else {
            render(&data, &base, &json_ld).into_bytes()
        })
    };
    answer(&state, &reader, &headers, key, representation, rendering).await
}

/// Loads an activity's relations: participants, documents and every city
/// it names (three queries).
pub async fn load(
    db: &impl cityhub_storage::ReadConnection,
    activity: Activity,
) -> Result<PageData, cityhub_storage::StorageError> {
    let participants = ActivityRepo::participants_of(db, &[activity.id])
        .await?
        .remove(&activity.id)
        .unwrap_or_default();
    let documents = ActivityRepo::documents_of(db, &[activity.id])
        .await?
        .remove(&activity.id)
        .unwrap_or_default();
    let mut ids: Vec<CityId> = activity
        .hosts
        .iter()
        .chain(&participants)
        .copied()
        .chain(activity.venue_city_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let cities = CityRepo::find_by_ids(db, &ids).await?;
    Ok(PageData {
        activity,
        cities,
        participants,
        documents,
    })
}

/// `ANNUAL_MEETING` → `Annual meeting`.
pub fn label(name: &str) -> String {
    let lower = name.replace('_', " ").to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn day(d: NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

/// The dates as people read them, at their precision, and the
/// machine-readable `datetime` of the start.
pub fn dates(activity: &Activity) -> Option<(String, String)> {
    let start = activity.start_date?;
    if let Some(timing) = &activity.timing {
        return Some((timed_text(timing), timing.local_start().to_rfc3339()));
    }
    Some(match activity.date_precision {
        DatePrecision::Year => (
            format!("{} (exact dates not known)", start.year()),
            start.format("%Y").to_string(),
        ),
        DatePrecision::Month => (
            format!("{} (exact days not known)", start.format("%B %Y")),
            start.format("%Y-%m").to_string(),
        ),
        DatePrecision::Day => {
            let iso = start.format("%Y-%m-%d").to_string();
            let text = match activity.end_date.filter(|e| *e > start) {
                None => day(start),
                Some(end) if end.year() == start.year() && end.month() == start.month() => {
                    format!("{}–{}", start.day(), day(end))
                }
                Some(end) if end.year() == start.year() => {
                    format!("{} – {}", start.format("%-d %B"), day(end))
                }
                Some(end) => format!("{} – {}", day(start), day(end)),
            };
            (text, iso)
        }
    })
}

/// A timed activity's dates and times as people read them, in its zone:
/// "1 May 2026, 19:30–22:00 (Europe/Paris)".
pub fn timed_text(timing: &cityhub_domain::Timing) -> String {
    let start = timing.local_start();
    let zone = timing.zone_name();
    let start_day = start.date_naive();
    let start_time = start.format("%H:%M");
    match timing.local_end() {
        Some(end) if end.date_naive() == start_day => format!(
            "{}, {start_time}–{} ({zone})",
            day(start_day),
            end.format("%H:%M")
        ),
        Some(end) => format!(
            "{}, {start_time} – {}, {} ({zone})",
            day(start_day),
            day(end.date_naive()),
            end.format("%H:%M")
        ),
        None => format!("{}, {start_time} ({zone})", day(start_day)),
    }
}

fn city_item(out: &mut String, city: &City) {
    let name = format!("{} ({})", escape(&city.name), escape(&city.country));
    match city.website.as_deref().filter(|w| safe_url(w)) {
        Some(site) => {
            let _ = write!(out, "<li><a href=\"{}\">{name}</a></li>", escape(site));
        }
        None => {
            let _ = write!(out, "<li>{name}</li>");
        }
    }
}

fn city_list(out: &mut String, title: &str, ids: &[CityId], cities: &HashMap<CityId, City>) {
    let found: Vec<&City> = ids.iter().filter_map(|id| cities.get(id)).collect();
    if found.is_empty() {
        return;
    }
    let _ = write!(out, "<dt>{title}</dt><dd><ul>");
    for city in found {
        city_item(out, city);
    }
    out.push_str("</ul></dd>");
}

fn text_list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, "<dt>{title}</dt><dd><ul>");
    for item in items {
        let _ = write!(out, "<li>{}</li>", escape(item));
    }
    out.push_str("</ul></dd>");
}

const STYLE: &str = "body{font:1rem/1.5 system-ui,sans-serif;color:#1a1a1a;background:#fff;margin:0}\
main{max-width:44rem;margin:0 auto;padding:1.5rem}\
h1{font-size:1.75rem;line-height:1.25;margin:.25rem 0 1rem}\
.kind{color:#4a4a4a;margin:0;text-transform:none}\
.status{background:#fde8e8;color:#8a1010;padding:.5rem .75rem;border-left:4px solid #8a1010}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}dt{font-weight:600}dd{margin:0}\
dd ul{margin:0;padding:0;list-style:none}a{color:#0b4f9c}a:focus{outline:3px solid #f2b600}\
footer{margin-top:2rem;font-size:.9rem;color:#4a4a4a}";

/// The page's HTML, which carries no character [`for_output`] drops.
pub fn render(data: &PageData, base: &str, json_ld: &serde_json::Value) -> String {
    let a = &data.activity;
    let url = activity_url(base, &a.slug);
    // A JSON-LD block ends at the first `</script`: escape `<`, `>` and `&`.
    let ld = serde_json::to_string(json_ld)
        .unwrap_or_else(|_| "{}".into())
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · UNESCO Creative Cities Network</title>\
<link rel=\"canonical\" href=\"{url}\">",
        title = escape(&a.title),
        url = escape(&url),
    );
    if let Some(summary) = &a.summary {
        let _ = write!(
            out,
            "<meta name=\"description\" content=\"{}\">",
            escape(summary)
        );
    }
    let _ = write!(
        out,
        "<style>{STYLE}</style><script type=\"application/ld+json\">{ld}</script></head>\
<body><main><article><p class=\"kind\">{kind} · {format}</p><h1>{title}</h1>",
        kind = escape(&label(a.kind.as_str())),
        format = escape(&label(a.format.as_str())),
        title = escape(&a.title),
    );
    match a.status {
        ActivityStatus::Cancelled => {
            let reason = a
                .cancel_reason
                .as_deref()
                .map(|r| format!(": {}", escape(r)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<p class=\"status\" role=\"status\">Cancelled{reason}</p>"
            );
        }
        ActivityStatus::Draft => {
            out.push_str("<p class=\"status\" role=\"status\">Draft: not published</p>");
        }
        ActivityStatus::Published => {}
    }
    out.push_str("<dl>");
    match dates(a) {
        Some((text, iso)) => {
            let _ = write!(
                out,
                "<dt>When</dt><dd><time datetime=\"{}\">{}</time></dd>",
                escape(&iso),
                escape(&text)
            );
        }
        None => out.push_str("<dt>When</dt><dd>Ongoing, no set date</dd>"),
    }
    let venue_city = a.venue_city_id.and_then(|id| data.cities.get(&id));
    let place = match (&a.venue, venue_city) {
        (Some(v), Some(c)) => Some(format!(
            "{}, {} ({})",
            escape(v),
            escape(&c.name),
            escape(&c.country)
        )),
        (Some(v), None) => Some(escape(v)),
        (None, Some(c)) => Some(format!("{} ({})", escape(&c.name), escape(&c.country))),
        (None, None) => None,
    };
    let place = match (a.format, place) {
        (ActivityFormat::Online, _) => Some("Online".to_owned()),
        (ActivityFormat::Hybrid, Some(p)) => Some(format!("{p}, and online")),
        (ActivityFormat::Hybrid, None) => Some("Online".to_owned()),
        (ActivityFormat::InPerson, p) => p,
    };
    if let Some(place) = place {
        let _ = write!(out, "<dt>Where</dt><dd>{place}</dd>");
    }
    city_list(&mut out, "Hosts", &a.hosts, &data.cities);
    city_list(&mut out, "Participants", &data.participants, &data.cities);
    text_list(&mut out, "Organizers", &a.organizations);
    let fields: Vec<String> = a.fields.iter().map(|f| label(f.as_str())).collect();
    text_list(&mut out, "Creative fields", &fields);
    text_list(&mut out, "Themes", &a.themes);
    text_list(&mut out, "Objectives", &a.objectives);
    out.push_str("</dl>");
    if a.summary.is_some() || a.description.is_some() {
        out.push_str("<section aria-labelledby=\"about\"><h2 id=\"about\">About</h2>");
        if let Some(summary) = &a.summary {
            let _ = write!(out, "<p>{}</p>", escape(summary));
        }
        if let Some(description) = &a.description {
            out.push_str(&to_safe_html(description));
        }
        out.push_str("</section>");
    }
    if !data.documents.is_empty() {
        out.push_str(
            "<section aria-labelledby=\"documents\"><h2 id=\"documents\">Documents</h2><ul>",
        );
        for doc in &data.documents {
            let issued = doc
                .issued_on
                .map(|d| {
                    format!(
                        ", {}",
                        cityhub_domain::jsonld::date_at_precision(d, doc.issued_precision)
                    )
                })
                .unwrap_or_default();
            let kind = label(doc.kind.as_str());
            match doc.url.as_deref().filter(|u| safe_url(u)) {
                Some(href) => {
                    let _ = write!(
                        out,
                        "<li><a href=\"{}\">{}</a> ({}{})</li>",
                        escape(href),
                        escape(&doc.title),
                        escape(&kind),
                        escape(&issued)
                    );
                }
                None => {
                    let _ = write!(
                        out,
                        "<li>{} ({}{})</li>",
                        escape(&doc.title),
                        escape(&kind),
                        escape(&issued)
                    );
                }
            }
        }
        out.push_str("</ul></section>");
    }
    let _ = writeln!(
        out,
        "</article><footer><p>UNESCO Creative Cities Network · \
<a href=\"{base}/calendar.ics\">the network's calendar (iCalendar)</a> · \
<a href=\"{base}/feeds/activities.atom\">its feed (Atom)</a></p></footer></main></body></html>",
        base = escape(base),
    );
    // What an HTML document should not hold (noncharacters, controls) is
    // never markup: dropping it from the page drops it from every text in
    // it, whatever is stored.
    match for_output(&out) {
        Cow::Borrowed(_) => out,
        Cow::Owned(clean) => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(label("ANNUAL_MEETING"), "Annual meeting");
        assert_eq!(label("CRAFTS_AND_FOLK_ART"), "Crafts and folk art");
    }
}
