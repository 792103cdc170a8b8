//! Who may see an event, and whether it matches a subscription's filter;
//! both in memory, without queries, and both the domain's rules
//! ([`ReadScope::sees`], [`PreparedFilter`]) applied to an event. A filter
//! is prepared once per subscription, so the per-event check does no
//! allocation for the common filters.

use cityhub_domain::{ActivityFilter, Actor, PreparedFilter, ReadScope, Surroundings};
use cityhub_storage::repo::events::EventRecord;

use crate::LiveEvent;

/// Whether `actor` may see event `record`: drafts' events reach only their
/// own city and the secretariat (the domain's visibility rule, applied to
/// the activity's status after the event).
pub fn visible(actor: &Actor, record: &EventRecord) -> bool {
    ReadScope::for_actor(actor).sees(record.status, record.published_by)
}

/// A subscription's filter, prepared for matching events in memory.
#[derive(Debug, Clone)]
pub struct EventFilter {
    prepared: PreparedFilter,
}

impl EventFilter {
    /// Prepares `filter`.
    pub fn new(filter: ActivityFilter) -> Self {
        Self {
            prepared: PreparedFilter::new(filter),
        }
    }

    /// Whether the event's activity matches: its status after the event
    /// (the log record's), and its content as loaded. A tombstone (a
    /// deleted activity) matches nothing.
    pub fn matches(&self, event: &LiveEvent) -> bool {
        let Some(activity) = &event.activity else {
            return false;
        };
        let around = Surroundings {
            participants: &event.related.participants,
            cities: &event.related.cities,
        };
        self.prepared.filter().admits_status(event.record.status)
            && self.prepared.matches_besides_status(activity, &around)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cityhub_domain::{ActivityEventType, ActivityId, ActivityStatus, CityId};

    #[test]
    fn drafts_reach_only_their_city_and_the_secretariat() {
        let record = EventRecord {
            seq: 1,
            activity_id: ActivityId(1),
            event_type: ActivityEventType::Published,
            occurred_at: chrono::Utc::now(),
            actor_city_id: Some(CityId(7)),
            status: ActivityStatus::Draft,
            published_by: Some(CityId(7)),
        };
        assert!(visible(&Actor::Secretariat, &record));
        assert!(visible(
            &Actor::City {
                id: CityId(7),
                slug: "a".into()
            },
            &record
        ));
        assert!(!visible(
            &Actor::City {
                id: CityId(8),
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
