//! GraphQL input types and their conversion into domain and storage types.

use async_graphql::{InputObject, MaybeUndefined};
use cityhub_domain as d;
use cityhub_storage as s;

use crate::enums::{
    ActivityFormat, ActivityKind, ActivityStatus, CreativeField, DatePrecision, DocumentKind,
};
use crate::error::bad_input;
use crate::scalars::Date;

/// Which activities to list. Each list matches any of its values; all the
/// parts given must hold.
#[derive(InputObject, Default, Clone, Debug)]
#[graphql(name = "ActivityFilter")]
pub struct ActivityFilterInput {
    /// Any of these kinds.
    pub kinds: Option<Vec<ActivityKind>>,
    /// Concerning any of these creative fields.
    pub fields: Option<Vec<CreativeField>>,
    /// City slugs: activities these cities host, are held in, or joined (a city only invited as co-host or venue city counts once it accepted).
    pub cities: Option<Vec<String>>,
    /// ISO 3166-1 alpha-2 codes: activities held in, or hosted from, these countries.
    pub countries: Option<Vec<String>>,
    /// Activities ending on or after this day (undated ones are left out).
    pub from: Option<Date>,
    /// Activities starting on or before this day (undated ones are left out).
    pub to: Option<Date>,
    /// Any of these formats.
    pub formats: Option<Vec<ActivityFormat>>,
    /// Any of these statuses; default `[PUBLISHED]`. Drafts are only ever visible to their own city and the secretariat.
    pub statuses: Option<Vec<ActivityStatus>>,
    /// Having any of these themes (case and accents ignored).
    pub themes: Option<Vec<String>>,
    /// Full-text search over title, summary, description and themes; case and accents ignored, words match as prefixes.
    pub text: Option<String>,
}

fn check_list(
    field: &str,
    items: &Option<Vec<String>>,
    max_items: usize,
    max_chars: usize,
) -> async_graphql::Result<()> {
    if let Some(items) = items {
        if items.len() > max_items {
            return Err(bad_input(
                field,
                format!("must have at most {max_items} items"),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            d::chars::check_line(&format!("{field}[{i}]"), item, max_chars)
                .map_err(crate::error::domain)?;
        }
    }
    Ok(())
}

/// Checks a list of country codes: at most `max_items`, each the domain's
/// rule (two ASCII letters).
fn check_countries(
    field: &str,
    items: &Option<Vec<String>>,
    max_items: usize,
) -> async_graphql::Result<()> {
    if let Some(items) = items {
        if items.len() > max_items {
            return Err(bad_input(
                field,
                format!("must have at most {max_items} items"),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            d::filter::check_country(&format!("{field}[{i}]"), item)
                .map_err(crate::error::domain)?;
        }
    }
    Ok(())
}

/// Checks a search text: one line of at most `limits.search_chars`.
fn check_search(
    field: &str,
    text: &Option<String>,
    limits: &d::Limits,
) -> async_graphql::Result<()> {
    match text {
        Some(text) => {
            d::chars::check_line(field, text, limits.search_chars).map_err(crate::error::domain)
        }
        None => Ok(()),
    }
}

impl ActivityFilterInput {
    /// Checks the filter's own limits and converts it.
    pub fn into_filter(
        self,
        path: &str,
        limits: &d::Limits,
    ) -> async_graphql::Result<s::ActivityFilter> {
        let max = limits.list_items.max(d::page::FILTER_LIST_VALUES);
        check_list(
            &format!("{path}.cities"),
            &self.cities,
            max,
            limits.slug_chars,
        )?;
        check_countries(&format!("{path}.countries"), &self.countries, max)?;
        check_list(
            &format!("{path}.themes"),
            &self.themes,
            max,
            limits.theme_chars,
        )?;
        check_search(&format!("{path}.text"), &self.text, limits)?;
        d::filter::check_dates(
            (&format!("{path}.from"), self.from.map(|d| d.0)),
            (&format!("{path}.to"), self.to.map(|d| d.0)),
            limits,
        )
        .map_err(crate::error::domain)?;
        Ok(s::ActivityFilter {
            kinds: self
                .kinds
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            fields: self
                .fields
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            cities: self.cities.unwrap_or_default(),
            countries: self.countries.unwrap_or_default(),
            from: self.from.map(|d| d.0),
            to: self.to.map(|d| d.0),
            formats: self
                .formats
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            statuses: self
                .statuses
                .map(|v| v.into_iter().map(Into::into).collect()),
            themes: self.themes.unwrap_or_default(),
            text: self.text,
        })
    }
}

/// Which member cities to list.
#[derive(InputObject, Default, Clone, Debug)]
#[graphql(name = "CityFilter")]
pub struct CityFilterInput {
    /// Designated in any of these fields.
    pub fields: Option<Vec<CreativeField>>,
    /// In any of these countries (ISO 3166-1 alpha-2).
    pub countries: Option<Vec<String>>,
    /// Name contains this text (case and accents ignored).
    pub text: Option<String>,
}

impl CityFilterInput {
    /// Checks the filter's own limits and converts it.
    pub fn into_filter(self, limits: &d::Limits) -> async_graphql::Result<s::CityFilter> {
        check_countries("filter.countries", &self.countries, 300)?;
        check_search("filter.text", &self.text, limits)?;
        Ok(s::CityFilter {
            fields: self
                .fields
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            countries: self.countries.unwrap_or_default(),
            text: self.text,
        })
    }
}

/// A document to attach to an activity.
#[derive(InputObject, Clone, Debug)]
pub struct DocumentInput {
    /// What it is.
    pub kind: DocumentKind,
    /// Title.
    pub title: String,
    /// Where to read it (absolute http or https URL).
    pub url: Option<String>,
    /// When it was issued.
    pub issued_on: Option<Date>,
    /// How exact `issuedOn` is.
    #[graphql(default_with = "DatePrecision::Day")]
    pub issued_precision: DatePrecision,
    /// Editors.
    pub editors: Option<Vec<String>>,
}

impl From<DocumentInput> for d::DocumentInput {
    fn from(i: DocumentInput) -> Self {
        d::DocumentInput {
            kind: i.kind.into(),
            title: i.title,
            url: i.url,
            issued_on: i.issued_on.map(|d| d.0),
            issued_precision: i.issued_precision.into(),
            editors: i.editors.unwrap_or_default(),
        }
    }
}

/// An activity to publish. The token's city is its publisher and first host.
#[derive(InputObject, Clone, Debug)]
pub struct ActivityInput {
    /// What kind of activity.
    pub kind: ActivityKind,
    /// Title (at most 200 characters by default).
    pub title: String,
    /// One-paragraph summary.
    pub summary: Option<String>,
    /// Description in Markdown.
    pub description: Option<String>,
    /// In person, online or both; `null` or absent: `IN_PERSON`.
    #[graphql(default_with = "Some(ActivityFormat::InPerson)")]
    pub format: Option<ActivityFormat>,
    /// First day.
    pub start_date: Option<Date>,
    /// Last day, not before `startDate`.
    pub end_date: Option<Date>,
    /// How exact `startDate` is; `null` or absent: `DAY`.
    #[graphql(default_with = "Some(DatePrecision::Day)")]
    pub date_precision: Option<DatePrecision>,
    /// Where it takes place.
    pub venue: Option<String>,
    /// Slug of the member city where it takes place: invited to be its venue city, it is `venueCity` once it accepts (the publishing city itself, or a city the secretariat names, at once).
    pub venue_city: Option<String>,
    /// Slugs of member cities invited to co-host it: each is a host once it accepts (a city the secretariat names, at once).
    pub co_hosts: Option<Vec<String>>,
    /// Organizers that are not member cities.
    pub organizations: Option<Vec<String>>,
    /// Creative fields it concerns.
    pub fields: Option<Vec<CreativeField>>,
    /// Themes.
    pub themes: Option<Vec<String>>,
    /// Objectives.
    pub objectives: Option<Vec<String>>,
    /// Documents.
    pub documents: Option<Vec<DocumentInput>>,
    /// The slug to use; derived from the title when absent.
    pub slug: Option<String>,
    /// Local start time on `startDate`, `HH:MM` (24-hour clock): makes a timed activity. Needs `startDate` with precision `DAY` and `timeZone`.
    pub start_time: Option<String>,
    /// Local end time on `endDate` (or `startDate`), `HH:MM`; needs `startTime`, and must not end before the start.
    pub end_time: Option<String>,
    /// IANA time zone of the times, e.g. `Europe/Paris`; required with `startTime`, and only with it.
    pub time_zone: Option<String>,
}

impl From<ActivityInput> for d::ActivityInput {
    fn from(i: ActivityInput) -> Self {
        d::ActivityInput {
            kind: i.kind.into(),
            title: i.title,
            summary: i.summary,
            description: i.description,
            format: i.format.unwrap_or(ActivityFormat::InPerson).into(),
            start_date: i.start_date.map(|d| d.0),
            end_date: i.end_date.map(|d| d.0),
            date_precision: i.date_precision.unwrap_or(DatePrecision::Day).into(),
            venue: i.venue,
            venue_city: i.venue_city,
            co_hosts: i.co_hosts.unwrap_or_default(),
            organizations: i.organizations.unwrap_or_default(),
            fields: i
                .fields
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            themes: i.themes.unwrap_or_default(),
            objectives: i.objectives.unwrap_or_default(),
            documents: i
                .documents
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            slug: i.slug,
            start_time: i.start_time,
            end_time: i.end_time,
            time_zone: i.time_zone,
        }
    }
}

/// Changes to an activity: every `ActivityInput` field, all optional. An
/// absent field stays as it is; `null` clears an optional one.
#[derive(InputObject, Clone, Debug, Default)]
pub struct ActivityPatch {
    /// New kind.
    pub kind: Option<ActivityKind>,
    /// New title.
    pub title: Option<String>,
    /// New summary (null clears it).
    pub summary: MaybeUndefined<String>,
    /// New description (null clears it).
    pub description: MaybeUndefined<String>,
    /// New format.
    pub format: Option<ActivityFormat>,
    /// New start date (null clears it).
    pub start_date: MaybeUndefined<Date>,
    /// New end date (null clears it).
    pub end_date: MaybeUndefined<Date>,
    /// New precision of the start date.
    pub date_precision: Option<DatePrecision>,
    /// New venue (null clears it).
    pub venue: MaybeUndefined<String>,
    /// New venue city slug, invited unless it is named already (null clears it, with its invitation).
    pub venue_city: MaybeUndefined<String>,
    /// New co-hosts (replaces the list): a city kept keeps its invitation's state, a new one is invited, one dropped loses its invitation (and stops hosting).
    pub co_hosts: Option<Vec<String>>,
    /// New organizations (replaces the list).
    pub organizations: Option<Vec<String>>,
    /// New fields (replaces the list).
    pub fields: Option<Vec<CreativeField>>,
    /// New themes (replaces the list).
    pub themes: Option<Vec<String>>,
    /// New objectives (replaces the list).
    pub objectives: Option<Vec<String>>,
    /// New documents (replaces the list).
    pub documents: Option<Vec<DocumentInput>>,
    /// New slug.
    pub slug: Option<String>,
    /// New local start time, `HH:MM` (null clears it, with `endTime` and `timeZone` to clear alongside).
    pub start_time: MaybeUndefined<String>,
    /// New local end time, `HH:MM` (null clears it).
    pub end_time: MaybeUndefined<String>,
    /// New IANA time zone of the times (null clears it).
    pub time_zone: MaybeUndefined<String>,
}

fn maybe<T, U>(value: MaybeUndefined<T>, f: impl FnOnce(T) -> U) -> Option<Option<U>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(f(v))),
    }
}

impl From<ActivityPatch> for d::ActivityPatch {
    fn from(p: ActivityPatch) -> Self {
        d::ActivityPatch {
            kind: p.kind.map(Into::into),
            title: p.title,
            summary: maybe(p.summary, |s| s),
            description: maybe(p.description, |s| s),
            format: p.format.map(Into::into),
            start_date: maybe(p.start_date, |d| d.0),
            end_date: maybe(p.end_date, |d| d.0),
            date_precision: p.date_precision.map(Into::into),
            venue: maybe(p.venue, |s| s),
            venue_city: maybe(p.venue_city, |s| s),
            co_hosts: p.co_hosts,
            organizations: p.organizations,
            fields: p.fields.map(|f| f.into_iter().map(Into::into).collect()),
            themes: p.themes,
            objectives: p.objectives,
            documents: p
                .documents
                .map(|docs| docs.into_iter().map(Into::into).collect()),
            slug: p.slug,
            start_time: maybe(p.start_time, |s| s),
            end_time: maybe(p.end_time, |s| s),
            time_zone: maybe(p.time_zone, |s| s),
        }
    }
}

/// A member city to register.
#[derive(InputObject, Clone, Debug)]
pub struct CityInput {
    /// Stable slug, e.g. `santa-fe`.
    pub slug: String,
    /// Name as the city writes it.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Creative fields of its designation.
    pub fields: Vec<CreativeField>,
    /// Year of designation.
    pub member_since: i32,
    /// Official website.
    pub website: Option<String>,
    /// Latitude in degrees.
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    pub longitude: Option<f64>,
}

impl From<CityInput> for d::CityInput {
    fn from(i: CityInput) -> Self {
        d::CityInput {
            slug: i.slug,
            name: i.name,
            country: i.country,
            fields: i.fields.into_iter().map(Into::into).collect(),
            member_since: i.member_since,
            website: i.website,
            latitude: i.latitude,
            longitude: i.longitude,
        }
    }
}

/// Changes to a member city: every `CityInput` field but `slug`, all optional.
#[derive(InputObject, Clone, Debug, Default)]
pub struct CityPatch {
    /// New name.
    pub name: Option<String>,
    /// New country.
    pub country: Option<String>,
    /// New fields.
    pub fields: Option<Vec<CreativeField>>,
    /// New year of designation.
    pub member_since: Option<i32>,
    /// New website (null clears it).
    pub website: MaybeUndefined<String>,
    /// New latitude (null clears it).
    pub latitude: MaybeUndefined<f64>,
    /// New longitude (null clears it).
    pub longitude: MaybeUndefined<f64>,
}

impl From<CityPatch> for d::CityPatch {
    fn from(p: CityPatch) -> Self {
        d::CityPatch {
            name: p.name,
            country: p.country,
            fields: p.fields.map(|f| f.into_iter().map(Into::into).collect()),
            member_since: p.member_since,
            website: maybe(p.website, |s| s),
            latitude: maybe(p.latitude, |v| v),
            longitude: maybe(p.longitude, |v| v),
        }
    }
}

/// What imported activities get when their item says nothing of it.
#[derive(InputObject, Clone, Debug, Default)]
#[graphql(name = "SourceDefaults")]
pub struct SourceDefaultsInput {
    /// Kind of activity (`OTHER` when unset).
    pub kind: Option<ActivityKind>,
    /// Format when the item does not say (`IN_PERSON` when unset).
    pub format: Option<ActivityFormat>,
    /// Creative fields of every imported activity.
    pub fields: Option<Vec<CreativeField>>,
    /// Themes added to every imported activity, beside the item's own categories.
    pub themes: Option<Vec<String>>,
}

impl From<SourceDefaultsInput> for d::SourceDefaults {
    fn from(i: SourceDefaultsInput) -> Self {
        d::SourceDefaults {
            kind: i.kind.map(Into::into),
            format: i.format.map(Into::into),
            fields: i
                .fields
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            themes: i.themes.unwrap_or_default(),
        }
    }
}

/// A calendar a city already publishes, to connect.
#[derive(InputObject, Clone, Debug)]
#[graphql(name = "SourceInput")]
pub struct SourceInput {
    /// What it publishes: an iCalendar feed or pages with schema.org `Event` JSON-LD.
    pub kind: crate::enums::SourceKind,
    /// Where the hub fetches it: an absolute http or https URL.
    pub url: String,
    /// The city whose calendar it is, by slug (secretariat only; a city's token connects its own).
    pub city: Option<String>,
    /// What imported activities get when their item says nothing of it.
    pub defaults: Option<SourceDefaultsInput>,
}

impl From<SourceInput> for cityhub_app::service::SourceRequest {
    fn from(i: SourceInput) -> Self {
        cityhub_app::service::SourceRequest {
            kind: i.kind.into(),
            url: i.url,
            city: i.city,
            defaults: i.defaults.map(Into::into).unwrap_or_default(),
        }
    }
}
