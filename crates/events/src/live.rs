//! Events ready to deliver: a log record with its activity and relations,
//! loaded once per batch for every subscriber. Activities deleted since are
//! loaded as tombstones (type, id, slug, kind; no content), so no event,
//! live or replayed, carries the content of a deleted activity.

use std::collections::HashMap;
use std::sync::Arc;

use cityhub_domain::{Activity, ActivityId, City, CityId, Document, Invitation};
use cityhub_storage::repo::events::{EventLog, EventRecord};
use cityhub_storage::repo::invitation::InvitationRepo;
use cityhub_storage::{ActivityRepo, CityRepo, Db, StorageError};

/// What an activity is related to, loaded once per event for every subscriber.
#[derive(Debug, Default)]
pub struct Related {
    /// Hosts, venue city, publisher, participants, invited cities and actor, by id.
    pub cities: HashMap<CityId, City>,
    /// Participant ids, in order.
    pub participants: Vec<CityId>,
    /// Documents, in order.
    pub documents: Vec<Document>,
    /// Invitations, in order, every one (each reader sees those the
    /// domain's `invitation::visible_to` lets it).
    pub invitations: Vec<Invitation>,
    /// The activity was deleted since: the event's activity is a tombstone
    /// (identity only), and `Activity.deleted` says so.
    pub deleted: bool,
}

/// One event, ready to deliver.
#[derive(Debug)]
pub struct LiveEvent {
    /// The log record.
    pub record: EventRecord,
    /// The activity as it is now; a tombstone (no content) once deleted.
    pub activity: Option<Activity>,
    /// Its relations (empty for a tombstone).
    pub related: Arc<Related>,
}

/// Strips everything but identity from a deleted activity.
fn tombstone(a: &Activity) -> Activity {
    Activity {
        title: String::new(),
        summary: None,
        description: None,
        start_date: None,
        end_date: None,
        timing: None,
        venue: None,
        venue_city_id: None,
        organizations: Vec::new(),
        fields: Vec::new(),
        themes: Vec::new(),
        objectives: Vec::new(),
        hosts: Vec::new(),
        cancel_reason: None,
        ..a.clone()
    }
}

/// Loads activities and relations for a batch of log records (a constant
/// number of queries per batch).
pub async fn load_live(
    db: &Db,
    records: Vec<EventRecord>,
) -> Result<Vec<Arc<LiveEvent>>, StorageError> {
    let conn = db;
    let mut ids: Vec<ActivityId> = records.iter().map(|r| r.activity_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut activities = ActivityRepo::find_by_ids_unscoped(conn, &ids).await?;
    let deleted = EventLog::deleted_among(conn, &ids).await?;
    for id in &deleted {
        if let Some(a) = activities.get_mut(id) {
            *a = tombstone(a);
        }
    }
    let live: Vec<ActivityId> = ids
        .iter()
        .copied()
        .filter(|id| !deleted.contains(id))
        .collect();
    let mut participants = ActivityRepo::participants_of(conn, &live).await?;
    let mut documents = ActivityRepo::documents_of(conn, &live).await?;
    let mut invitations = InvitationRepo::of_activities(conn, &live).await?;
    let mut city_ids: Vec<CityId> = Vec::new();
    for a in activities.values() {
        city_ids.extend(a.hosts.iter().copied());
        city_ids.extend(a.venue_city_id);
        city_ids.extend(a.published_by);
    }
    for p in participants.values() {
        city_ids.extend(p.iter().copied());
    }
    for i in invitations.values() {
        city_ids.extend(i.iter().map(|i| i.city));
    }
    city_ids.extend(records.iter().filter_map(|r| r.actor_city_id));
    city_ids.sort_unstable();
    city_ids.dedup();
    let cities = CityRepo::find_by_ids(conn, &city_ids).await?;
    let mut related: HashMap<ActivityId, Arc<Related>> = HashMap::new();
    for id in &ids {
        let p = participants.remove(id).unwrap_or_default();
        let d = documents.remove(id).unwrap_or_default();
        let inv = invitations.remove(id).unwrap_or_default();
        let mut own = HashMap::new();
        if let Some(a) = activities.get(id) {
            for c in a
                .hosts
                .iter()
                .chain(a.venue_city_id.iter())
                .chain(a.published_by.iter())
                .chain(p.iter())
                .chain(inv.iter().map(|i| &i.city))
            {
                if let Some(city) = cities.get(c) {
                    own.insert(*c, city.clone());
                }
            }
        }
        related.insert(
            *id,
            Arc::new(Related {
                cities: own,
                participants: p,
                documents: d,
                invitations: inv,
                deleted: deleted.contains(id),
            }),
        );
    }
    Ok(records
        .into_iter()
        .map(|record| {
            let mut rel = related
                .get(&record.activity_id)
                .cloned()
                .unwrap_or_default();
            if let Some(actor) = record.actor_city_id.and_then(|c| cities.get(&c))
                && !rel.cities.contains_key(&actor.id)
            {
                let mut copy = Related {
                    cities: rel.cities.clone(),
                    participants: rel.participants.clone(),
                    documents: rel.documents.clone(),
                    invitations: rel.invitations.clone(),
                    deleted: rel.deleted,
                };
                copy.cities.insert(actor.id, actor.clone());
                rel = Arc::new(copy);
            }
            Arc::new(LiveEvent {
                activity: activities.get(&record.activity_id).cloned(),
                related: rel,
                record,
            })
        })
        .collect())
}
