//! Loading the network's dataset (`data/network.toml`): its member cities
//! and its activities, each created only if its slug is not there yet, so
//! seeding twice changes nothing.

use chrono::NaiveDate;
use cityhub_domain::{
    ActivityFormat, ActivityInput, ActivityKind, Actor, CityInput, CreativeField, DatePrecision,
    DocumentInput, DocumentKind, PublishAs,
};
use serde::Deserialize;

use crate::service::{HubService, ServiceError};
use cityhub_storage::repo::activity::{ActivityRepo, ReadScope};
use cityhub_storage::repo::city::CityRepo;

/// The dataset file's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// About the network.
    pub network: NetworkInfo,
    /// Member cities.
    #[serde(default)]
    pub cities: Vec<SeedCity>,
    /// Activities.
    #[serde(default)]
    pub activities: Vec<SeedActivity>,
}

/// The network's name and founding year.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInfo {
    /// Name.
    pub name: String,
    /// Founding year.
    pub founded_year: i32,
}

/// A member city in the dataset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCity {
    slug: String,
    name: String,
    country: String,
    fields: Vec<CreativeField>,
    member_since: i32,
    #[serde(default)]
    website: Option<String>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    /// Where the fact comes from (kept in the file, not stored).
    #[serde(default)]
    #[expect(dead_code, reason = "documents provenance in the data file")]
    source: Option<String>,
}

/// An activity in the dataset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedActivity {
    slug: String,
    kind: ActivityKind,
    /// Absent where the sources do not say: the contract's default applies.
    #[serde(default)]
    format: Option<ActivityFormat>,
    title: String,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    start_date: Option<NaiveDate>,
    #[serde(default)]
    end_date: Option<NaiveDate>,
    #[serde(default)]
    date_precision: Option<DatePrecision>,
    #[serde(default)]
    venue: Option<String>,
    #[serde(default)]
    venue_city: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    organizations: Vec<String>,
    #[serde(default)]
    fields: Vec<CreativeField>,
    #[serde(default)]
    themes: Vec<String>,
    #[serde(default)]
    objectives: Vec<String>,
    #[serde(default)]
    documents: Vec<SeedDocument>,
    #[serde(default)]
    #[expect(dead_code, reason = "documents provenance in the data file")]
    source: Option<String>,
}

/// A document in the dataset.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDocument {
    kind: DocumentKind,
    title: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    issued_on: Option<NaiveDate>,
    #[serde(default)]
    issued_precision: Option<DatePrecision>,
    #[serde(default)]
    editors: Vec<String>,
}

/// What a seeding run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// Cities created now.
    pub cities_created: usize,
    /// Cities already there.
    pub cities_existing: usize,
    /// Activities created now.
    pub activities_created: usize,
    /// Activities already there.
    pub activities_existing: usize,
}

/// Errors of seeding.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The dataset file does not parse.
    #[error("the dataset does not parse: {0}")]
    Parse(#[from] toml::de::Error),
    /// A record broke a rule or the database failed.
    #[error("seeding '{slug}' failed: {source}")]
    Record {
        /// The record's slug.
        slug: String,
        /// Why.
        #[source]
        source: ServiceError,
    },
}

/// Parses the dataset text.
pub fn parse(text: &str) -> Result<Dataset, SeedError> {
    Ok(toml::from_str(text)?)
}

impl SeedActivity {
    fn to_input(&self) -> ActivityInput {
        ActivityInput {
            kind: self.kind,
            title: self.title.clone(),
            summary: self.summary.clone(),
            description: self.description.clone(),
            format: self.format.unwrap_or(ActivityFormat::InPerson),
            start_date: self.start_date,
            end_date: self.end_date,
            date_precision: self.date_precision.unwrap_or(DatePrecision::Day),
            venue: self.venue.clone(),
            venue_city: self.venue_city.clone(),
            co_hosts: self.hosts.clone(),
            organizations: self.organizations.clone(),
            fields: self.fields.clone(),
            themes: self.themes.clone(),
            objectives: self.objectives.clone(),
            documents: self
                .documents
                .iter()
                .map(|d| DocumentInput {
                    kind: d.kind,
                    title: d.title.clone(),
                    url: d.url.clone(),
                    issued_on: d.issued_on,
                    issued_precision: d.issued_precision.unwrap_or(DatePrecision::Day),
                    editors: d.editors.clone(),
                })
                .collect(),
            slug: Some(self.slug.clone()),
            start_time: None,
            end_time: None,
            time_zone: None,
        }
    }
}

/// Loads the dataset as the secretariat; records whose slug exists are left
/// as they are.
pub async fn load(service: &HubService, dataset: &Dataset) -> Result<SeedReport, SeedError> {
    let actor = Actor::Secretariat;
    let db = service.db().conn();
    let mut report = SeedReport::default();
    let fail = |slug: &str| {
        let slug = slug.to_owned();
        move |source: ServiceError| SeedError::Record { slug, source }
    };
    for city in &dataset.cities {
        let exists = CityRepo::find_by_slug(db, &city.slug)
            .await
            .map_err(|e| fail(&city.slug)(e.into()))?;
        if exists.is_some() {
            report.cities_existing += 1;
            continue;
        }
        let input = CityInput {
            slug: city.slug.clone(),
            name: city.name.clone(),
            country: city.country.clone(),
            fields: city.fields.clone(),
            member_since: city.member_since,
            website: city.website.clone(),
            latitude: city.latitude,
            longitude: city.longitude,
        };
        service
            .create_city(&actor, input)
            .await
            .map_err(fail(&city.slug))?;
        report.cities_created += 1;
    }
    for activity in &dataset.activities {
        let exists = ActivityRepo::find_by_slug(db, ReadScope::All, &activity.slug)
            .await
            .map_err(|e| fail(&activity.slug)(e.into()))?;
        if exists.is_some() {
            report.activities_existing += 1;
            continue;
        }
        service
            .publish(&actor, activity.to_input(), PublishAs::Published, None)
            .await
            .map_err(fail(&activity.slug))?;
        report.activities_created += 1;
    }
    Ok(report)
}
