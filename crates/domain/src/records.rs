//! Stored records as the rest of the hub reads them: what storage returns
//! and what the GraphQL layer presents.

use chrono::{DateTime, NaiveDate, Utc};

use crate::enums::{
    ActivityFormat, ActivityKind, ActivityStatus, CreativeField, DatePrecision, DocumentKind,
};
use crate::invitation::Invitation;
use crate::policy::ActivityFacts;
use crate::timing::Timing;
use crate::{ActivityId, CityId};

/// A member city.
#[derive(Debug, Clone, PartialEq)]
pub struct City {
    /// Database id.
    pub id: CityId,
    /// Stable slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
    /// Creative fields of its designation.
    pub fields: Vec<CreativeField>,
    /// Year of designation.
    pub member_since: i32,
    /// Website.
    pub website: Option<String>,
    /// Latitude.
    pub latitude: Option<f64>,
    /// Longitude.
    pub longitude: Option<f64>,
}

/// A document attached to an activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Database id.
    pub id: i64,
    /// The activity it belongs to.
    pub activity_id: ActivityId,
    /// What it is.
    pub kind: DocumentKind,
    /// Title.
    pub title: String,
    /// Where to read it.
    pub url: Option<String>,
    /// When it was issued.
    pub issued_on: Option<NaiveDate>,
    /// How exact `issued_on` is.
    pub issued_precision: DatePrecision,
    /// Editors.
    pub editors: Vec<String>,
}

/// An activity as stored (relations to cities and documents are loaded
/// separately, in batches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// Database id.
    pub id: ActivityId,
    /// Stable slug.
    pub slug: String,
    /// Kind.
    pub kind: ActivityKind,
    /// Format.
    pub format: ActivityFormat,
    /// Status.
    pub status: ActivityStatus,
    /// Title.
    pub title: String,
    /// Summary.
    pub summary: Option<String>,
    /// Markdown description.
    pub description: Option<String>,
    /// Start date.
    pub start_date: Option<NaiveDate>,
    /// End date.
    pub end_date: Option<NaiveDate>,
    /// How exact the start date is.
    pub date_precision: DatePrecision,
    /// Start and end times with their zone and instants; `None` for a
    /// date-only activity.
    pub timing: Option<Timing>,
    /// Venue text.
    pub venue: Option<String>,
    /// Venue member city, as it counts: the publisher itself or a city
    /// that accepted its invitation (`None` while the named one has not;
    /// see `invitation.rs`).
    pub venue_city_id: Option<CityId>,
    /// Non-member organizers.
    pub organizations: Vec<String>,
    /// Creative fields.
    pub fields: Vec<CreativeField>,
    /// Themes.
    pub themes: Vec<String>,
    /// Objectives.
    pub objectives: Vec<String>,
    /// Publishing city; `None` for the secretariat.
    pub published_by: Option<CityId>,
    /// Host cities, in order: the publisher first, then the co-hosts that
    /// accepted their invitation (an invited city hosts nothing until it
    /// accepts; see `invitation.rs`).
    pub hosts: Vec<CityId>,
    /// When it was first published.
    pub published_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version, +1 on every change.
    pub version: i32,
    /// Why it was cancelled.
    pub cancel_reason: Option<String>,
}

impl Activity {
    /// The text full-text search indexes, as it was stored when the
    /// activity was written.
    pub fn search_document(&self) -> String {
        crate::text::activity_document(
            &self.title,
            self.summary.as_deref(),
            self.description.as_deref(),
            &self.themes,
        )
    }

    /// The facts the permission policy needs, given the activity's
    /// invitations (every one, whatever its state).
    pub fn facts(&self, invitations: &[Invitation]) -> ActivityFacts {
        let mut invited: Vec<CityId> = invitations.iter().map(|i| i.city).collect();
        invited.sort_unstable();
        invited.dedup();
        ActivityFacts {
            status: self.status,
            published_by: self.published_by,
            hosts: self.hosts.clone(),
            invited,
        }
    }
}
