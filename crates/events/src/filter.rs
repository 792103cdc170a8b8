//! Who may see an event, and whether it matches a subscription's filter;
//! both in memory, without queries. A filter is prepared once per
//! subscription (themes and countries folded, search terms built), so the
//! per-event check does no allocation for the common filters.

use cityhub_domain::{ActivityStatus, Actor, CityId, text};
use cityhub_storage::ActivityFilter;
use cityhub_storage::repo::events::EventRecord;

use crate::LiveEvent;

/// Whether `actor` may see event `record`: drafts' events reach only their
/// own city and the secretariat.
pub fn visible(actor: &Actor, record: &EventRecord) -> bool {
    match actor {
        Actor::Secretariat => true,
        _ if record.status != ActivityStatus::Draft => true,
        Actor::City { id, .. } => record.published_by == Some(*id),
        Actor::Anonymous => false,
    }
}

/// A subscription's filter, prepared for matching events in memory.
#[derive(Debug, Clone)]
pub struct EventFilter {
    filter: ActivityFilter,
    themes: Vec<String>,
    countries: Vec<String>,
    terms: Option<Vec<String>>,
}

impl EventFilter {
    /// Prepares `filter` (`statuses: None` means every status).
    pub fn new(filter: ActivityFilter) -> Self {
        let themes = filter.themes.iter().map(|t| text::fold(t.trim())).collect();
        let countries = filter
            .countries
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let terms = filter.text.as_deref().map(|q| text::search_terms(q, 16));
        Self {
            filter,
            themes,
            countries,
            terms,
        }
    }

    /// Whether the event's activity matches.
    pub fn matches(&self, event: &LiveEvent) -> bool {
        let filter = &self.filter;
        let Some(a) = &event.activity else {
            return false;
        };
        if let Some(statuses) = &filter.statuses
            && !statuses.contains(&event.record.status)
        {
            return false;
        }
        if !filter.kinds.is_empty() && !filter.kinds.contains(&a.kind) {
            return false;
        }
        if !filter.formats.is_empty() && !filter.formats.contains(&a.format) {
            return false;
        }
        if !filter.fields.is_empty() && !a.fields.iter().any(|f| filter.fields.contains(f)) {
            return false;
        }
        if !self.themes.is_empty()
            && !a
                .themes
                .iter()
                .any(|t| self.themes.contains(&text::fold(t.trim())))
        {
            return false;
        }
        let cities = &event.related.cities;
        let slug = |id: &CityId| cities.get(id).map(|c| c.slug.as_str());
        if !filter.cities.is_empty() {
            let mut involved = a
                .hosts
                .iter()
                .chain(a.venue_city_id.iter())
                .chain(event.related.participants.iter());
            if !involved.any(|id| slug(id).is_some_and(|s| filter.cities.iter().any(|f| f == s))) {
                return false;
            }
        }
        if !self.countries.is_empty() {
            let mut located = a
                .hosts
                .iter()
                .chain(a.venue_city_id.iter())
                .filter_map(|id| cities.get(id));
            if !located.any(|c| self.countries.contains(&c.country)) {
                return false;
            }
        }
        let start = a.start_date;
        let end = a.end_date.or(start);
        if let Some(from) = filter.from
            && end.is_none_or(|e| e < from)
        {
            return false;
        }
        if let Some(to) = filter.to
            && start.is_none_or(|s| s > to)
        {
            return false;
        }
        if let Some(terms) = &self.terms {
            let doc = text::search_document(
                std::iter::once(a.title.as_str())
                    .chain(a.summary.as_deref())
                    .chain(a.description.as_deref())
                    .chain(a.themes.iter().map(String::as_str)),
            );
            let words: Vec<&str> = doc.split(' ').collect();
            if terms.is_empty()
                || !terms
                    .iter()
                    .all(|t| words.iter().any(|w| w.starts_with(t.as_str())))
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cityhub_domain::ActivityEventType;

    #[test]
    fn drafts_reach_only_their_city_and_the_secretariat() {
        let record = EventRecord {
            seq: 1,
            activity_id: 1,
            event_type: ActivityEventType::Published,
            occurred_at: chrono::Utc::now(),
            actor_city_id: Some(7),
            status: ActivityStatus::Draft,
            published_by: Some(7),
        };
        assert!(visible(&Actor::Secretariat, &record));
        assert!(visible(
            &Actor::City {
                id: 7,
                slug: "a".into()
            },
            &record
        ));
        assert!(!visible(
            &Actor::City {
                id: 8,
                slug: "b".into()
            },
            &record
        ));
        assert!(!visible(&Actor::Anonymous, &record));
        let public = EventRecord {
            status: ActivityStatus::Published,
            ..record
        };
        assert!(visible(&Actor::Anonymous, &public));
    }
}
