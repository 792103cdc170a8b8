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
use cityhub_domain::{City, CityId};
use sea_orm::{EntityTrait, Statement};

use super::city::CityRepo;
use super::find_all;
use crate::db::{CityDirectory, CitySnapshot, ReadConnection};
use crate::entities::city;
use crate::error::StorageError;

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
        let mut snapshot = self.current();
        if snapshot.version < cities_version {
            let _reading = self.reload.lock().await;
            snapshot = self.current();
            if snapshot.version < cities_version {
                snapshot = Arc::new(Self::read(db).await?);
                *write(&self.snapshot) = Arc::clone(&snapshot);
            }
        }
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

    /// The version, then every city (so the cities are at least that new).
    async fn read(db: &impl ReadConnection) -> Result<CitySnapshot, StorageError> {
        let backend = db.get_database_backend();
        let version = db
            .query_one_raw(Statement::from_string(
                backend,
                "SELECT COALESCE(MAX(value), 0) AS v FROM hub_meta WHERE key = 'cities_version'",
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "v"))
            .transpose()?
            .unwrap_or(0);
        let cities = find_all(db, city::Entity::find())
            .await?
            .into_iter()
            .map(|m| {
                let city = super::city::to_city(m)?;
                Ok((city.id, city))
            })
            .collect::<Result<HashMap<_, _>, StorageError>>()?;
        Ok(CitySnapshot { version, cities })
    }
}
