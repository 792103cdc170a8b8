//! Per-request DataLoaders: every relation of a page of activities is
//! fetched in one batched query per kind, whatever the page size. Loaders
//! are built for each request (and each subscription event), so their
//! caches never carry one viewer's data into another's response.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use cityhub_domain::{ActivityId, City, CityId, Document};
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

/// The loaders of one request.
pub struct Loaders {
    /// Cities by id.
    pub cities: DataLoader<CityLoader, HashMapCache>,
    /// Participants by activity.
    pub participants: DataLoader<ParticipantsLoader, HashMapCache>,
    /// Documents by activity.
    pub documents: DataLoader<DocumentsLoader, HashMapCache>,
}

impl Loaders {
    /// Fresh loaders with empty caches.
    pub fn new(db: &Db) -> Self {
        Self {
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
        }
    }
}
