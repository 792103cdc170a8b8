//! Sources: the calendars a city already publishes (an iCalendar feed, or
//! pages carrying schema.org `Event` JSON-LD), connected once and kept in
//! sync by the hub. What a source is, what a city may say when connecting
//! one, and why an item of it was not imported.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::enums::{ActivityFormat, ActivityKind, CreativeField, SourceKind, SourceStatus};
use crate::error::DomainError;
use crate::ids::{CityId, SourceId};
use crate::limits::Limits;
use crate::policy::{Actor, Denied};

/// What an imported activity gets when its item says nothing of it: its
/// kind, format, creative fields and themes. Stored as JSON with the source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SourceDefaults {
    /// Kind of activity (`OTHER` when unset).
    pub kind: Option<ActivityKind>,
    /// Format (`IN_PERSON` when unset and the item says nothing).
    pub format: Option<ActivityFormat>,
    /// Creative fields.
    pub fields: Vec<CreativeField>,
    /// Themes, added to the item's own categories.
    pub themes: Vec<String>,
}

impl SourceDefaults {
    /// Validates the defaults; `path` is their input path.
    pub fn validate(&self, path: &str, limits: &Limits) -> Result<(), DomainError> {
        if self.themes.len() > limits.list_items {
            return Err(DomainError::invalid(
                format!("{path}.themes"),
                format!("must have at most {} items", limits.list_items),
            ));
        }
        for (i, theme) in self.themes.iter().enumerate() {
            let field = format!("{path}.themes[{i}]");
            if theme.trim().is_empty() {
                return Err(DomainError::invalid(field, "must not be blank"));
            }
            if theme.chars().count() > limits.text_chars {
                return Err(DomainError::invalid(
                    field,
                    format!("must be at most {} characters", limits.text_chars),
                ));
            }
            crate::chars::check_text(&field, theme, crate::chars::TextKind::Line)?;
        }
        Ok(())
    }
}

/// Why an item of a source's feed was not imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedItem {
    /// The item's identity in its feed (`UID`, `@id` or `url`; its position
    /// when it has none).
    pub uid: String,
    /// Why it was skipped, for the city's staff.
    pub reason: String,
}

/// A connected calendar, with its run state and schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Database id.
    pub id: SourceId,
    /// The city whose calendar it is (its activities are the city's).
    pub city_id: CityId,
    /// What it publishes.
    pub kind: SourceKind,
    /// Where it is fetched.
    pub url: String,
    /// What items that say nothing get.
    pub defaults: SourceDefaults,
    /// Paused by its city.
    pub paused: bool,
    /// When the last run ended.
    pub last_run_at: Option<DateTime<Utc>>,
    /// When a run last changed an activity.
    pub last_change_at: Option<DateTime<Utc>>,
    /// How the last run went (`RUNNING` while one goes on).
    pub last_status: SourceStatus,
    /// Why the last run failed, or what it could not read.
    pub last_error: Option<String>,
    /// When the next scheduled run is due.
    pub next_run_at: DateTime<Utc>,
    /// Failed runs in a row (the back-off grows with them).
    pub failures: i32,
    /// The `ETag` of the last answer, for `If-None-Match`.
    pub etag: Option<String>,
    /// The `Last-Modified` of the last answer, for `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// SHA-256 of the last body read: the same body again changes nothing.
    pub body_hash: Option<String>,
    /// A run holds the source until then (one instance at a time).
    pub lease_until: Option<DateTime<Utc>>,
}

impl Source {
    /// The status a client sees: `PAUSED` for a paused source that is not
    /// running, else the last run's.
    #[must_use]
    pub fn status(&self) -> SourceStatus {
        if self.paused && self.last_status != SourceStatus::Running {
            SourceStatus::Paused
        } else {
            self.last_status
        }
    }
}

/// Whether `actor` may connect, read, run, pause, resume and remove the
/// sources of `city`: the city's own token, or the secretariat for any
/// city. Anonymous callers need a token; other cities may not.
pub fn may_manage_sources(actor: &Actor, city: CityId) -> Result<(), Denied> {
    match actor {
        Actor::Secretariat => Ok(()),
        Actor::City { id, .. } if *id == city => Ok(()),
        Actor::City { .. } => Err(Denied::Forbidden),
        Actor::Anonymous => Err(Denied::Unauthenticated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_as_camel_case_json() {
        let defaults = SourceDefaults {
            kind: Some(ActivityKind::Festival),
            format: None,
            fields: vec![CreativeField::Music],
            themes: vec!["jazz".into()],
        };
        let json = serde_json::to_string(&defaults).expect("serialize");
        assert_eq!(
            json,
            r#"{"kind":"FESTIVAL","format":null,"fields":["MUSIC"],"themes":["jazz"]}"#
        );
        let back: SourceDefaults = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, defaults);
    }

    #[test]
    fn a_city_manages_its_own_sources_and_the_secretariat_every_one() {
        let lyon = Actor::City {
            id: CityId(1),
            slug: "lyon".into(),
        };
        assert_eq!(may_manage_sources(&lyon, CityId(1)), Ok(()));
        assert_eq!(may_manage_sources(&lyon, CityId(2)), Err(Denied::Forbidden));
        assert_eq!(may_manage_sources(&Actor::Secretariat, CityId(2)), Ok(()));
        assert_eq!(
            may_manage_sources(&Actor::Anonymous, CityId(2)),
            Err(Denied::Unauthenticated)
        );
    }

    #[test]
    fn blank_and_control_themes_are_refused() {
        let limits = Limits::default();
        let blank = SourceDefaults {
            themes: vec![" ".into()],
            ..SourceDefaults::default()
        };
        assert!(blank.validate("input.defaults", &limits).is_err());
        let control = SourceDefaults {
            themes: vec!["a\u{0}b".into()],
            ..SourceDefaults::default()
        };
        assert!(control.validate("input.defaults", &limits).is_err());
    }
}
