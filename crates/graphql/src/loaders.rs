//! Per-request DataLoaders: every relation of a page of activities is
//! fetched in one batched query per kind, whatever the page size. Loaders
//! are built for each request (and each subscription event), so their
//! caches never carry one viewer's data into another's response.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use cityhub_domain::{Activity, ActivityId, City, CityId, Document, Invitation, Source, SourceId};
use cityhub_storage::repo::invitation::InvitationRepo;
use cityhub_storage::repo::source::{SourceRepo, StoredItem};
use cityhub_storage::{ActivityRepo, CityRepo, Db, StorageError};

/// Loads cities by id.
pub struct CityLoader(Db);

impl Loader<CityId> for CityLoader {
    type Value = City;
    type Error = Arc<StorageError>;

    async fn load(&self, keys: &[CityId]) -> Result<HashMap<CityId, City>, Self::Error> {
        CityRepo::find_by_ids(&self.0, keys).await.map_err(Arc::new)
    }
}

/// Loads the participant city ids of activities.
pub struct ParticipantsLoader(Db);

impl Loader<ActivityId> for ParticipantsLoader {
    type Value = Vec<CityId>;
    type Error = Arc<StorageError>;

    async fn load(
        &self,
        keys: &[ActivityId],
    ) -> Result<HashMap<ActivityId, Vec<CityId>>, Self::Error> {
        ActivityRepo::participants_of(&self.0, keys)
            .await
            .map_err(Arc::new)
    }
}

/// Loads the documents of activities.
pub struct DocumentsLoader(Db);

impl Loader<ActivityId> for DocumentsLoader {
    type Value = Vec<Document>;
    type Error = Arc<StorageError>;

    async fn load(
        &self,
        keys: &[ActivityId],
    ) -> Result<HashMap<ActivityId, Vec<Document>>, Self::Error> {
        ActivityRepo::documents_of(&self.0, keys)
            .await
            .map_err(Arc::new)
    }
}

/// Loads the invitations of activities (every one: the resolver keeps
/// those its reader may see).
pub struct InvitationsLoader(Db);

impl Loader<ActivityId> for InvitationsLoader {
    type Value = Vec<Invitation>;
    type Error = Arc<StorageError>;

    async fn load(
        &self,
        keys: &[ActivityId],
    ) -> Result<HashMap<ActivityId, Vec<Invitation>>, Self::Error> {
        InvitationRepo::of_activities(&self.0, keys)
            .await
            .map_err(Arc::new)
    }
}

/// Loads the source items activities were imported from.
pub struct SourceItemLoader(Db);

impl Loader<ActivityId> for SourceItemLoader {
    type Value = StoredItem;
    type Error = Arc<StorageError>;

    async fn load(
        &self,
        keys: &[ActivityId],
    ) -> Result<HashMap<ActivityId, StoredItem>, Self::Error> {
        SourceRepo::items_of_activities(self.0.conn(), keys)
            .await
            .map_err(Arc::new)
    }
}

/// Loads sources by id.
pub struct SourceLoader(Db);

impl Loader<SourceId> for SourceLoader {
    type Value = Source;
    type Error = Arc<StorageError>;

    async fn load(&self, keys: &[SourceId]) -> Result<HashMap<SourceId, Source>, Self::Error> {
        SourceRepo::find_many(self.0.conn(), keys)
            .await
            .map_err(Arc::new)
    }
}

/// What a page's own statement read beside its items, which
/// [`Loaders::prefetch`] then does not read again.
#[derive(Debug, Default)]
pub struct ReadWithPage {
    /// The `cities_version` the statement saw: the items' cities then come
    /// from the directory in memory ([`Db::cities`]) instead of a query.
    pub cities_version: Option<i64>,
    /// Every item's documents.
    pub documents: Option<HashMap<ActivityId, Vec<Document>>>,
    /// Every item's participant cities.
    pub participants: Option<HashMap<ActivityId, Vec<CityId>>>,
}

impl ReadWithPage {
    /// What `page`'s statement read beside its items (taken from it).
    pub fn take_from<T>(page: &mut cityhub_storage::Page<T>) -> Self {
        Self {
            cities_version: page.cities_version,
            documents: page.documents.take(),
            participants: page.participants.take(),
        }
    }
}

/// The loaders of one request.
pub struct Loaders {
    /// The source item each imported activity came from.
    pub source_items: DataLoader<SourceItemLoader, HashMapCache>,
    /// Sources by id.
    pub sources: DataLoader<SourceLoader, HashMapCache>,
    /// Cities by id.
    pub cities: DataLoader<CityLoader, HashMapCache>,
    /// Participants by activity.
    pub participants: DataLoader<ParticipantsLoader, HashMapCache>,
    /// Documents by activity.
    pub documents: DataLoader<DocumentsLoader, HashMapCache>,
    /// Invitations by activity.
    pub invitations: DataLoader<InvitationsLoader, HashMapCache>,
}

impl Loaders {
    /// Fresh loaders with empty caches.
    pub fn new(db: &Db) -> Self {
        Self {
            source_items: DataLoader::with_cache(
                SourceItemLoader(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            sources: DataLoader::with_cache(
                SourceLoader(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            cities: DataLoader::with_cache(
                CityLoader(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            participants: DataLoader::with_cache(
                ParticipantsLoader(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            documents: DataLoader::with_cache(
                DocumentsLoader(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            invitations: DataLoader::with_cache(
                InvitationsLoader(db.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
        }
    }

    /// Loads, in one query per kind, the relations a query selects on
    /// `items` (`wants` answers whether a field of the activities is
    /// selected), and primes these loaders with them: a page then costs the
    /// same number of queries whatever its size, and no field waits for a
    /// DataLoader batch to close. What the items' statement read already
    /// (`read`) is not read again.
    pub async fn prefetch(
        &self,
        db: &Db,
        read: ReadWithPage,
        items: &[Activity],
        wants: impl Fn(&str) -> bool,
    ) -> Result<(), StorageError> {
        let ReadWithPage {
            cities_version,
            documents,
            participants,
        } = read;
        if items.is_empty() {
            return Ok(());
        }
        let ids: Vec<ActivityId> = items.iter().map(|a| a.id).collect();
        let mut city_ids: Vec<CityId> = Vec::new();
        if wants("participants") {
            let mut found = match participants {
                Some(found) => found,
                None => ActivityRepo::participants_of(db, &ids).await?,
            };
            let all: Vec<(ActivityId, Vec<CityId>)> = ids
                .iter()
                .map(|id| (*id, found.remove(id).unwrap_or_default()))
                .collect();
            city_ids.extend(all.iter().flat_map(|(_, p)| p.iter().copied()));
            self.participants.feed_many(all).await;
        }
        if wants("documents") {
            let mut found = match documents {
                Some(found) => found,
                None => ActivityRepo::documents_of(db, &ids).await?,
            };
            self.documents
                .feed_many(
                    ids.iter()
                        .map(|id| (*id, found.remove(id).unwrap_or_default())),
                )
                .await;
        }
        if wants("invitations") {
            let mut found = InvitationRepo::of_activities(db, &ids).await?;
            let all: Vec<(ActivityId, Vec<Invitation>)> = ids
                .iter()
                .map(|id| (*id, found.remove(id).unwrap_or_default()))
                .collect();
            city_ids.extend(all.iter().flat_map(|(_, i)| i.iter().map(|i| i.city)));
            self.invitations.feed_many(all).await;
        }
        if wants("hosts") {
            city_ids.extend(items.iter().flat_map(|a| a.hosts.iter().copied()));
        }
        if wants("venueCity") {
            city_ids.extend(items.iter().filter_map(|a| a.venue_city_id));
        }
        if wants("publishedBy") {
            city_ids.extend(items.iter().filter_map(|a| a.published_by));
        }
        if !city_ids.is_empty() {
            city_ids.sort_unstable();
            city_ids.dedup();
            let cities = db
                .cities()
                .find_by_ids(db, &city_ids, cities_version)
                .await?;
            self.cities.feed_many(cities).await;
        }
        Ok(())
    }
}
