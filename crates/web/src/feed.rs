//! Atom (RFC 4287): `GET /feeds/activities.atom` and `GET /cities/{slug}/feed.atom`,
//! the latest publications and changes first (by `updatedAt`), with the
//! calendars' parameters. Entry ids are stable URNs; an entry's `updated`
//! is the activity's last change, `published` its first publication.

use std::borrow::Cow;
use std::collections::HashMap;

use atom_syndication::{Category, Content, Entry, Feed, Generator, Link, Person, Text};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use chrono::{DateTime, Utc};
use cityhub_domain::chars::for_output;
use cityhub_domain::jsonld::{activity_url, date_at_precision};
use cityhub_domain::{Activity, ActivityOrder, ActivityStatus, City, CityId, DatePrecision};

use cityhub_storage::ActivityTexts;

use crate::WebState;
use crate::http::{CacheKey, Representation, answer, base_url, internal_failure, reader};
use crate::listing::{self, ListingRequest};
use crate::markdown::{escape, to_safe_html};

/// `GET /feeds/activities.atom`: the network's feed.
pub async fn network_feed(
    State(state): State<WebState>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    feed(&state, &uri, &headers, None, query.as_deref()).await
}

/// `GET /cities/{slug}/feed.atom`: one city's feed.
pub async fn city_feed(
    State(state): State<WebState>,
    Path(slug): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    feed(&state, &uri, &headers, Some(&slug), query.as_deref()).await
}

const ATOM: Representation = Representation {
    content_type: "application/atom+xml; charset=utf-8",
    extra: &[],
};

async fn feed(
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
    let key = CacheKey::new(&reader, &base, "atom", uri);
    let rendering = async {
        let listing = listing::load(
            state,
            reader.clone(),
            ListingRequest {
                city_slug,
                query,
                order: ActivityOrder::UpdatedAtDesc,
                limit: state.settings.feed_max_entries,
                dated_only: false,
                texts: ActivityTexts::All,
            },
        )
        .await?;
        let (title, self_path) = match &listing.city {
            Some(city) => (
                format!("{} · UNESCO Creative Cities Network activities", city.name),
                format!("/cities/{}/feed.atom", city.slug),
            ),
            None => (
                "UNESCO Creative Cities Network activities".to_owned(),
                "/feeds/activities.atom".to_owned(),
            ),
        };
        let self_url = match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{base}{self_path}?{q}"),
            None => format!("{base}{self_path}"),
        };
        render(&FeedInfo {
            title: &title,
            id: &format!("urn:cityhub:feed:{}", self_path.trim_start_matches('/')),
            self_url: &self_url,
            base: &base,
            activities: &listing.activities,
            cities: &listing.cities,
        })
        .map_err(|e| internal_failure("cannot write an Atom feed", &e))
    };
    answer(state, &reader, headers, key, ATOM, rendering).await
}

/// What a feed is made of.
pub struct FeedInfo<'a> {
    /// Feed title.
    pub title: &'a str,
    /// Stable feed id.
    pub id: &'a str,
    /// The feed's own URL.
    pub self_url: &'a str,
    /// The hub's base URL.
    pub base: &'a str,
    /// Entries, latest change first.
    pub activities: &'a [Activity],
    /// Cities they name.
    pub cities: &'a HashMap<CityId, City>,
}

fn when(activity: &Activity) -> Option<String> {
    let start = activity.start_date?;
    if let Some(timing) = &activity.timing {
        return Some(crate::page::timed_text(timing));
    }
    let text = date_at_precision(start, activity.date_precision);
    Some(match (activity.date_precision, activity.end_date) {
        (DatePrecision::Day, Some(end)) if end != start => format!("{text} to {end}"),
        (DatePrecision::Day, _) => text,
        (_, _) => format!("{text} (exact dates not known)"),
    })
}

fn entry(activity: &Activity, base: &str, cities: &HashMap<CityId, City>) -> Entry {
    let url = activity_url(base, &activity.slug);
    let mut entry = Entry::default();
    entry.set_id(format!("urn:cityhub:activity:{}", activity.id));
    let title = match activity.status {
        ActivityStatus::Cancelled => format!("Cancelled: {}", activity.title),
        ActivityStatus::Draft => format!("Draft: {}", activity.title),
        ActivityStatus::Published => activity.title.clone(),
    };
    entry.set_title(Text::plain(title));
    entry.set_updated(activity.updated_at.fixed_offset());
    if let Some(p) = activity.published_at {
        entry.set_published(Some(p.fixed_offset()));
    }
    let mut link = Link::default();
    link.set_href(url.clone());
    link.set_rel("alternate");
    link.set_mime_type(Some("text/html".to_owned()));
    entry.set_links(vec![link]);
    let authors: Vec<Person> = activity
        .hosts
        .iter()
        .filter_map(|id| cities.get(id))
        .map(|city| {
            let mut person = Person::default();
            person.set_name(city.name.clone());
            person.set_uri(city.website.clone());
            person
        })
        .collect();
    entry.set_authors(if authors.is_empty() {
        let mut person = Person::default();
        person.set_name("UNESCO Creative Cities Network secretariat");
        vec![person]
    } else {
        authors
    });
    let mut categories = vec![category(activity.kind.as_str())];
    categories.extend(activity.fields.iter().map(|f| category(f.as_str())));
    entry.set_categories(categories);
    let mut summary = String::new();
    if let Some(w) = when(activity) {
        summary.push_str(&w);
    }
    if let Some(s) = &activity.summary {
        if !summary.is_empty() {
            summary.push_str(" — ");
        }
        summary.push_str(s);
    }
    if !summary.is_empty() {
        entry.set_summary(Some(Text::plain(summary)));
    }
    let mut html = String::new();
    if let Some(w) = when(activity) {
        html.push_str(&format!("<p><strong>When:</strong> {}</p>", escape(&w)));
    }
    if let Some(venue) = &activity.venue {
        html.push_str(&format!("<p><strong>Where:</strong> {}</p>", escape(venue)));
    }
    if let Some(d) = &activity.description {
        html.push_str(&to_safe_html(d));
    } else if let Some(s) = &activity.summary {
        html.push_str(&format!("<p>{}</p>", escape(s)));
    }
    let mut content = Content::default();
    content.set_content_type(Some("html".to_owned()));
    content.set_value(Some(html));
    entry.set_content(Some(content));
    entry
}

fn category(term: &str) -> Category {
    let mut c = Category::default();
    c.set_term(term.to_owned());
    c.set_scheme(Some("urn:cityhub:vocabulary".to_owned()));
    c
}

/// The feed's XML, well-formed whatever the activities hold.
pub fn render(info: &FeedInfo<'_>) -> Result<Vec<u8>, atom_syndication::Error> {
    let mut feed = Feed::default();
    feed.set_title(Text::plain(info.title));
    feed.set_id(info.id);
    let updated: DateTime<Utc> = info
        .activities
        .iter()
        .map(|a| a.updated_at)
        .max()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    feed.set_updated(updated.fixed_offset());
    let mut self_link = Link::default();
    self_link.set_href(info.self_url);
    self_link.set_rel("self");
    self_link.set_mime_type(Some("application/atom+xml".to_owned()));
    let mut alternate = Link::default();
    alternate.set_href(format!("{}/", info.base));
    alternate.set_rel("alternate");
    feed.set_links(vec![self_link, alternate]);
    let mut author = Person::default();
    author.set_name("UNESCO Creative Cities Network");
    feed.set_authors(vec![author]);
    let mut generator = Generator::default();
    generator.set_value("cityhub");
    feed.set_generator(Some(generator));
    feed.set_entries(
        info.activities
            .iter()
            .map(|a| entry(a, info.base, info.cities))
            .collect::<Vec<_>>(),
    );
    let written = feed.write_to(Vec::new())?;
    // What no XML document may hold is never markup: dropping it from the
    // written document drops it from every text in it (titles, summaries,
    // names, links, the HTML content), whatever is stored.
    if let Cow::Owned(clean) = for_output(&String::from_utf8_lossy(&written)) {
        return Ok(clean.into_bytes());
    }
    Ok(written)
}
