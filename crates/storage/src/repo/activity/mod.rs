//! Activities: scoped finders, filtered keyset listings, relations loaded in
//! batches, and the writes the services compose into transactions.
//!
//! By what it does: `read` (scoped finders, keyset listings, relations
//! loaded in batches), `search` (SQLite's full-text page by start date),
//! `sql` (the hand-written statements' builder) and `write` (slugs and the
//! writes the services compose into transactions). The SQL translations of
//! the scope and the filter, which the kept counts share, are
//! `repo/conditions.rs`.

mod read;
mod search;
mod sql;
mod write;

pub use read::ActivityKey;
pub use sql::{ActivityTexts, PageColumns, RelationRead};

use cityhub_domain::{
    Activity, ActivityFormat, ActivityId, ActivityInput, ActivityKind, ActivityOrder,
    ActivityStatus, Cities, CityId, DatePrecision, Invitation, text,
};

use crate::cursor::{Cursor, CursorKey};
use crate::decode::{Row, TimingColumns};
use crate::entities::activity;
use crate::error::StorageError;
use crate::time::date_key;

/// Role of a city in `activity_cities`.
const HOST: &str = "HOST";
/// Role of a city in `activity_cities`.
const PARTICIPANT: &str = "PARTICIPANT";

pub use cityhub_domain::{ActivityFilter, ReadScope};
/// Repository of activities.
pub struct ActivityRepo;

/// Everything written for an activity, resolved to ids.
#[derive(Debug, Clone)]
pub struct ActivityWrite {
    /// The validated input.
    pub input: ActivityInput,
    /// The slug to store.
    pub slug: String,
    /// Venue city id, as it counts (the publisher's own, or accepted).
    pub venue_city_id: Option<CityId>,
    /// Host city ids in order, the publisher first, then the co-hosts that
    /// accepted.
    pub hosts: Vec<CityId>,
    /// The invitations of the cities the input names, in order.
    pub invitations: Vec<Invitation>,
}

impl ActivityWrite {
    /// A write of `input` with this slug and these cities (the domain's
    /// settlement of what the input names).
    pub fn new(input: ActivityInput, slug: String, cities: Cities) -> Self {
        Self {
            input,
            slug,
            venue_city_id: cities.venue,
            hosts: cities.hosts,
            invitations: cities.invitations,
        }
    }
}

fn to_activity(m: activity::Model, hosts: Vec<CityId>) -> Result<Activity, StorageError> {
    let row = Row::new("activities", &m.id);
    Ok(Activity {
        id: ActivityId(m.id),
        kind: row.enumeration("kind", &m.kind, ActivityKind::parse)?,
        format: row.enumeration("format", &m.format, ActivityFormat::parse)?,
        status: row.enumeration("status", &m.status, ActivityStatus::parse)?,
        date_precision: row.enumeration(
            "date_precision",
            &m.date_precision,
            DatePrecision::parse,
        )?,
        organizations: row.json_list("organizations", &m.organizations)?,
        fields: row.json_list("fields", &m.fields)?,
        themes: row.json_list("themes", &m.themes)?,
        objectives: row.json_list("objectives", &m.objectives)?,
        timing: row.timing(TimingColumns {
            start_time: m.start_time.as_deref(),
            end_time: m.end_time.as_deref(),
            time_zone: m.time_zone.as_deref(),
            starts_at: m.starts_at,
            ends_at: m.ends_at,
        })?,
        published_at: row.micros_opt("published_at", m.published_at)?,
        updated_at: row.micros("updated_at", m.updated_at)?,
        slug: m.slug,
        title: m.title,
        summary: m.summary,
        description: m.description,
        start_date: m.start_date,
        end_date: m.end_date,
        venue: m.venue,
        venue_city_id: m.venue_city_id.map(CityId),
        published_by: m.published_by.map(CityId),
        hosts,
        version: m.version,
        cancel_reason: m.cancel_reason,
    })
}

/// The cursor of an activity in `order`.
pub fn cursor_of(activity: &Activity, order: ActivityOrder) -> Cursor {
    let key = match order {
        ActivityOrder::StartDateDesc | ActivityOrder::StartDateAsc => {
            CursorKey::Int(i64::from(date_key(activity.start_date)))
        }
        ActivityOrder::UpdatedAtDesc => CursorKey::Int(activity.updated_at.timestamp_micros()),
        ActivityOrder::TitleAsc => CursorKey::Text(text::fold(&activity.title)),
    };
    Cursor {
        order: order.as_str().to_owned(),
        key,
        id: activity.id.get(),
    }
}

fn dedup_in_order<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(items.len());
    items.retain(|x| {
        if seen.contains(x) {
            false
        } else {
            seen.push(x.clone());
            true
        }
    });
}
