//! The member cities held in memory: a few hundred rows that change a few
//! times a year, which every page of activities names (hosts, venue,
//! publisher). Reading them per request was one statement of every
//! listing's three.
//!
//! Never stale: the directory is tagged with the `hub_meta.cities_version`
//! it was read at (a trigger moves it with every city write, on whichever
//! instance or CLI made it). A read that knows the version it saw — the
//! page statements read it in the same statement as the page
//! ([`crate::Page::cities_version`]) — asks for cities *at least* that new;
//! an older directory is read again first, once for all the requests
//! waiting on it. A read that knows no version reads the database, as
//! before. The directory itself is state of the pool ([`crate::Db::cities`],
//! declared beside it); this module reads and serves it.

use std::collections::HashMap;
use std::sync::Arc;

use cityhub_domain::sync::write;
use cityhub_domain::{City, CityId, CreativeField};
use sea_orm::{EntityTrait, Statement};

use super::city::CityRepo;
use super::{Page, find_all};
use crate::cursor::{Cursor, CursorKey};
use crate::db::{CityDirectory, CitySnapshot, ReadConnection};
use crate::entities::city;
use crate::error::StorageError;

/// What `network` counts of the member cities.
pub(crate) struct Members {
    /// Member cities.
    pub(crate) cities: i64,
    /// Their distinct countries.
    pub(crate) countries: i64,
    /// Member cities per creative field.
    pub(crate) fields: HashMap<CreativeField, i64>,
}

/// `hub_meta.cities_version` now (0 before any city was written): what
/// [`CityDirectory`] reads, and `network`'s counts read beside theirs.
pub(crate) const CITIES_VERSION_NOW: &str =
    "SELECT COALESCE(MAX(value), 0) AS v FROM hub_meta WHERE key = 'cities_version'";

/// `SELECT value FROM hub_meta WHERE key = 'cities_version'` as a column
/// of another statement: the version that statement's snapshot saw.
pub(crate) const CITIES_VERSION_COLUMN: &str =
    ", (SELECT value FROM hub_meta WHERE key = 'cities_version') AS cities_version";

impl CityDirectory {
    /// The cities with these ids, at least as new as `cities_version`
    /// (read from the database first if the directory is older); without
    /// a version, from the database. Ids the directory does not hold (a
    /// city created after it was read) are read from the database.
    pub async fn find_by_ids(
        &self,
        db: &impl ReadConnection,
        ids: &[CityId],
        cities_version: Option<i64>,
    ) -> Result<HashMap<CityId, City>, StorageError> {
        let Some(cities_version) = cities_version else {
            return CityRepo::find_by_ids(db, ids).await;
        };
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let snapshot = self.at_least(db, cities_version).await?;
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match snapshot.cities.get(id) {
                Some(city) => {
                    found.insert(*id, city.clone());
                }
                None => missing.push(*id),
            }
        }
        if !missing.is_empty() {
            found.extend(CityRepo::find_by_ids(db, &missing).await?);
        }
        Ok(found)
    }

    /// The directory at least as new as `cities_version`: read again first
    /// (once for all the requests waiting on it) when it is older.
    pub(crate) async fn at_least(
        &self,
        db: &impl ReadConnection,
        cities_version: i64,
    ) -> Result<Arc<CitySnapshot>, StorageError> {
        let mut snapshot = self.current();
        if snapshot.version < cities_version {
            let _reading = self.reload.lock().await;
            snapshot = self.current();
            if snapshot.version < cities_version {
                snapshot = Arc::new(Self::read(db).await?);
                *write(&self.snapshot) = Arc::clone(&snapshot);
            }
        }
        Ok(snapshot)
    }

    /// One page of every member city in name order (as
    /// [`CityRepo::page`] with a filter that selects every city), and how
    /// many there are: from memory, after one small statement that reads
    /// the version.
    pub async fn page_of_all(
        &self,
        db: &impl ReadConnection,
        first: u64,
        after: Option<&Cursor>,
    ) -> Result<(Page<City>, u64), StorageError> {
        let version = Self::version(db).await?;
        let snapshot = self.at_least(db, version).await?;
        // Keyset: strictly after (name_key, id), as the SQL compares them
        // (`name_key` is compared byte by byte on both backends).
        let start = match after {
            Some(Cursor {
                key: CursorKey::Text(key),
                id,
                ..
            }) => snapshot
                .by_name
                .partition_point(|(name, city)| (name.as_str(), city.get()) <= (key.as_str(), *id)),
            _ => 0,
        };
        let rest = snapshot.by_name.get(start..).unwrap_or_default();
        let take = usize::try_from(first).unwrap_or(usize::MAX);
        let items = rest
            .iter()
            .take(take)
            .filter_map(|(_, id)| snapshot.cities.get(id).cloned())
            .collect();
        let page = Page {
            items,
            has_next: rest.len() > take,
            cities_version: Some(snapshot.version),
            documents: None,
            participants: None,
        };
        Ok((page, snapshot.by_name.len() as u64))
    }

    /// The member cities, their countries and the cities per creative
    /// field, from memory at least as new as `cities_version`.
    pub(crate) async fn members(
        &self,
        db: &impl ReadConnection,
        cities_version: i64,
    ) -> Result<Members, StorageError> {
        let snapshot = self.at_least(db, cities_version).await?;
        let mut countries = std::collections::HashSet::new();
        let mut fields: HashMap<CreativeField, i64> = HashMap::new();
        for city in snapshot.cities.values() {
            countries.insert(city.country.as_str());
            for field in &city.fields {
                *fields.entry(*field).or_default() += 1;
            }
        }
        Ok(Members {
            cities: snapshot.cities.len() as i64,
            countries: countries.len() as i64,
            fields,
        })
    }

    /// `hub_meta.cities_version` now.
    async fn version(db: &impl ReadConnection) -> Result<i64, StorageError> {
        Ok(db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                CITIES_VERSION_NOW,
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "v"))
            .transpose()?
            .unwrap_or(0))
    }

    /// The version, then every city (so the cities are at least that new).
    async fn read(db: &impl ReadConnection) -> Result<CitySnapshot, StorageError> {
        let version = Self::version(db).await?;
        let models = find_all(db, city::Entity::find()).await?;
        let mut by_name: Vec<(String, CityId)> = models
            .iter()
            .map(|m| (m.name_key.clone(), CityId(m.id)))
            .collect();
        by_name.sort_unstable_by(|a, b| (a.0.as_str(), a.1.get()).cmp(&(b.0.as_str(), b.1.get())));
        let cities = models
            .into_iter()
            .map(|m| {
                let city = super::city::to_city(m)?;
                Ok((city.id, city))
            })
            .collect::<Result<HashMap<_, _>, StorageError>>()?;
        Ok(CitySnapshot {
            version,
            cities,
            by_name,
        })
    }
}
