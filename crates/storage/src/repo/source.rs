//! Sources (a city's connected calendars), their run state and schedule,
//! the identity of the items they imported and the items they skipped.
//!
//! Claiming a source for a run is one statement that sets its lease only
//! while no other lease holds it; on PostgreSQL the due source is picked
//! with `FOR UPDATE SKIP LOCKED`, so instances sharing a database never
//! fetch one source at once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cityhub_domain::{
    ActivityId, CityId, SkippedItem, Source, SourceDefaults, SourceId, SourceKind, SourceStatus,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, Statement,
};

use crate::entities::{source, source_item, source_skipped};
use crate::error::StorageError;

/// A source as it is connected.
#[derive(Debug, Clone)]
pub struct NewSource {
    /// The city whose calendar it is.
    pub city_id: CityId,
    /// What it publishes.
    pub kind: SourceKind,
    /// Where it is fetched.
    pub url: String,
    /// What items that say nothing get.
    pub defaults: SourceDefaults,
    /// When its first run is due (microseconds).
    pub first_run_at: i64,
    /// Now (microseconds).
    pub now: i64,
}

/// An item a source imported, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// The source it came from.
    pub source_id: SourceId,
    /// Its identity in the feed.
    pub key: String,
    /// The activity it became.
    pub activity_id: ActivityId,
    /// The hash of the content it was last imported with.
    pub content_hash: String,
    /// The item's own page.
    pub url: Option<String>,
    /// It left its feed.
    pub gone: bool,
    /// Its city made the activity its own: runs leave it alone.
    pub detached: bool,
}

/// How a run ended, as stored.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The status it ends with.
    pub status: SourceStatus,
    /// Why it failed, or what it could not read.
    pub error: Option<String>,
    /// Whether it changed any activity.
    pub changed: bool,
    /// The answer's `ETag` (kept from before when `None` and not modified).
    pub etag: Option<String>,
    /// The answer's `Last-Modified`.
    pub last_modified: Option<String>,
    /// The hash of the body read.
    pub body_hash: Option<String>,
    /// Whether validators and body hash are replaced (false: kept).
    pub replace_validators: bool,
    /// When the next run is due (microseconds).
    pub next_run_at: i64,
    /// Failed runs in a row after this one.
    pub failures: i32,
}

/// The repository of sources.
pub struct SourceRepo;

fn micros(value: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
}

fn corrupt(table: &'static str, column: &'static str, id: &str) -> StorageError {
    StorageError::Corrupt {
        table,
        column,
        id: id.to_owned(),
        detail: "a value no version writes".into(),
    }
}

fn to_source(m: source::Model) -> Result<Source, StorageError> {
    let id = m.id.to_string();
    let time = |column: &'static str, value: i64| {
        micros(value).ok_or_else(|| corrupt("sources", column, &id))
    };
    Ok(Source {
        id: SourceId(m.id),
        city_id: CityId(m.city_id),
        kind: SourceKind::parse(&m.kind).ok_or_else(|| corrupt("sources", "kind", &id))?,
        url: m.url,
        defaults: serde_json::from_str(&m.defaults)
            .map_err(|_| corrupt("sources", "defaults", &id))?,
        paused: m.paused,
        last_run_at: m.last_run_at.map(|v| time("last_run_at", v)).transpose()?,
        last_change_at: m
            .last_change_at
            .map(|v| time("last_change_at", v))
            .transpose()?,
        last_status: SourceStatus::parse(&m.last_status)
            .ok_or_else(|| corrupt("sources", "last_status", &id))?,
        last_error: m.last_error,
        next_run_at: time("next_run_at", m.next_run_at)?,
        failures: m.failures,
        etag: m.etag,
        last_modified: m.last_modified,
        body_hash: m.body_hash,
        lease_until: m.lease_until.map(|v| time("lease_until", v)).transpose()?,
    })
}

fn to_item(m: source_item::Model) -> StoredItem {
    StoredItem {
        source_id: SourceId(m.source_id),
        key: m.item_key,
        activity_id: ActivityId(m.activity_id),
        content_hash: m.content_hash,
        url: m.item_url,
        gone: m.gone,
        detached: m.detached,
    }
}

impl SourceRepo {
    /// Connects a source. A city connecting the same URL twice is a
    /// `Conflict`.
    pub async fn insert(
        db: &impl ConnectionTrait,
        new: &NewSource,
    ) -> Result<Source, StorageError> {
        let defaults = serde_json::to_string(&new.defaults)
            .map_err(|e| StorageError::Other(sea_orm::DbErr::Custom(e.to_string())))?;
        let model = source::ActiveModel {
            city_id: Set(new.city_id.get()),
            kind: Set(new.kind.as_str().to_owned()),
            url: Set(new.url.clone()),
            defaults: Set(defaults),
            paused: Set(false),
            created_at: Set(new.now),
            last_run_at: Set(None),
            last_change_at: Set(None),
            last_status: Set(SourceStatus::NeverRun.as_str().to_owned()),
            last_error: Set(None),
            etag: Set(None),
            last_modified: Set(None),
            body_hash: Set(None),
            next_run_at: Set(new.first_run_at),
            failures: Set(0),
            lease_until: Set(None),
            lease_owner: Set(None),
            ..Default::default()
        }
        .insert(db)
        .await;
        match model {
            Ok(model) => to_source(model),
            Err(e) => {
                let e = StorageError::from(e);
                if e.is_unique_violation() {
                    Err(StorageError::Conflict(
                        "this city has already connected this URL".into(),
                    ))
                } else {
                    Err(e)
                }
            }
        }
    }

    /// A source by id.
    pub async fn find(
        db: &impl ConnectionTrait,
        id: SourceId,
    ) -> Result<Option<Source>, StorageError> {
        source::Entity::find_by_id(id.get())
            .one(db)
            .await?
            .map(to_source)
            .transpose()
    }

    /// The sources of a city, or of every city, oldest first.
    pub async fn list(
        db: &impl ConnectionTrait,
        city: Option<CityId>,
    ) -> Result<Vec<Source>, StorageError> {
        let mut query = source::Entity::find().order_by_asc(source::Column::Id);
        if let Some(city) = city {
            query = query.filter(source::Column::CityId.eq(city.get()));
        }
        query.all(db).await?.into_iter().map(to_source).collect()
    }

    /// Pauses or resumes a source; a resumed source is due at `next_run_at`.
    pub async fn set_paused(
        db: &impl ConnectionTrait,
        id: SourceId,
        paused: bool,
        next_run_at: Option<i64>,
    ) -> Result<(), StorageError> {
        let mut update = source::Entity::update_many()
            .col_expr(source::Column::Paused, Expr::value(paused))
            .filter(source::Column::Id.eq(id.get()));
        if let Some(at) = next_run_at {
            update = update.col_expr(source::Column::NextRunAt, Expr::value(at));
        }
        update.exec(db).await?;
        Ok(())
    }

    /// Removes a source with its items and skipped items.
    pub async fn delete(db: &impl ConnectionTrait, id: SourceId) -> Result<(), StorageError> {
        source_item::Entity::delete_many()
            .filter(source_item::Column::SourceId.eq(id.get()))
            .exec(db)
            .await?;
        source_skipped::Entity::delete_many()
            .filter(source_skipped::Column::SourceId.eq(id.get()))
            .exec(db)
            .await?;
        source::Entity::delete_by_id(id.get()).exec(db).await?;
        Ok(())
    }

    /// Takes the lease of source `id` for `owner` until `until`, unless
    /// another run holds it; marks it `RUNNING`. Returns whether it did.
    pub async fn claim(
        db: &impl ConnectionTrait,
        id: SourceId,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StorageError> {
        let backend = db.get_database_backend();
        let sql = match backend {
            DatabaseBackend::Postgres => {
                "UPDATE sources SET lease_until = $1, lease_owner = $2, last_status = 'RUNNING' \
                 WHERE id = $3 AND (lease_until IS NULL OR lease_until < $4) RETURNING id"
            }
            _ => {
                "UPDATE sources SET lease_until = ?, lease_owner = ?, last_status = 'RUNNING' \
                 WHERE id = ? AND (lease_until IS NULL OR lease_until < ?) RETURNING id"
            }
        };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [until.into(), owner.into(), id.get().into(), now.into()],
            ))
            .await?;
        Ok(row.is_some())
    }

    /// Takes the lease of the source due first (not paused, due by `now`,
    /// no lease holding it), for `owner` until `until`; marks it `RUNNING`.
    pub async fn claim_due(
        db: &impl ConnectionTrait,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<Option<SourceId>, StorageError> {
        let backend = db.get_database_backend();
        let sql = match backend {
            DatabaseBackend::Postgres => {
                "UPDATE sources SET lease_until = $1, lease_owner = $2, last_status = 'RUNNING' \
                 WHERE id = (SELECT id FROM sources WHERE paused = FALSE AND next_run_at <= $3 \
                 AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_run_at, id LIMIT 1 \
                 FOR UPDATE SKIP LOCKED) RETURNING id"
            }
            _ => {
                "UPDATE sources SET lease_until = ?1, lease_owner = ?2, last_status = 'RUNNING' \
                 WHERE id = (SELECT id FROM sources WHERE paused = FALSE AND next_run_at <= ?3 \
                 AND (lease_until IS NULL OR lease_until < ?3) ORDER BY next_run_at, id LIMIT 1) \
                 RETURNING id"
            }
        };
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [until.into(), owner.into(), now.into()],
            ))
            .await?;
        match row {
            Some(row) => Ok(Some(SourceId(row.try_get::<i64>("", "id")?))),
            None => Ok(None),
        }
    }

    /// Records how a run of `id` ended and releases `owner`'s lease.
    pub async fn finish(
        db: &impl ConnectionTrait,
        id: SourceId,
        owner: &str,
        now: i64,
        outcome: &RunOutcome,
    ) -> Result<(), StorageError> {
        let mut update = source::Entity::update_many()
            .col_expr(source::Column::LastRunAt, Expr::value(now))
            .col_expr(
                source::Column::LastStatus,
                Expr::value(outcome.status.as_str()),
            )
            .col_expr(
                source::Column::LastError,
                Expr::value(outcome.error.clone()),
            )
            .col_expr(source::Column::NextRunAt, Expr::value(outcome.next_run_at))
            .col_expr(source::Column::Failures, Expr::value(outcome.failures))
            .col_expr(source::Column::LeaseUntil, Expr::value(Option::<i64>::None))
            .col_expr(
                source::Column::LeaseOwner,
                Expr::value(Option::<String>::None),
            )
            .filter(source::Column::Id.eq(id.get()))
            .filter(source::Column::LeaseOwner.eq(owner));
        if outcome.changed {
            update = update.col_expr(source::Column::LastChangeAt, Expr::value(now));
        }
        if outcome.replace_validators {
            update = update
                .col_expr(source::Column::Etag, Expr::value(outcome.etag.clone()))
                .col_expr(
                    source::Column::LastModified,
                    Expr::value(outcome.last_modified.clone()),
                )
                .col_expr(
                    source::Column::BodyHash,
                    Expr::value(outcome.body_hash.clone()),
                );
        }
        update.exec(db).await?;
        Ok(())
    }

    /// The items a source imported.
    pub async fn items(
        db: &impl ConnectionTrait,
        id: SourceId,
    ) -> Result<Vec<StoredItem>, StorageError> {
        Ok(source_item::Entity::find()
            .filter(source_item::Column::SourceId.eq(id.get()))
            .all(db)
            .await?
            .into_iter()
            .map(to_item)
            .collect())
    }

    /// The items of a city's sources with these keys (another source of the
    /// city may have imported the same event).
    pub async fn items_of_city(
        db: &impl ConnectionTrait,
        city: CityId,
        keys: &[String],
    ) -> Result<HashMap<String, StoredItem>, StorageError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(500) {
            let rows = source_item::Entity::find()
                .filter(source_item::Column::CityId.eq(city.get()))
                .filter(source_item::Column::ItemKey.is_in(chunk.iter().cloned()))
                .all(db)
                .await?;
            for row in rows {
                found.insert(row.item_key.clone(), to_item(row));
            }
        }
        Ok(found)
    }

    /// The item an activity was imported from, if it was.
    pub async fn item_of_activity(
        db: &impl ConnectionTrait,
        activity: ActivityId,
    ) -> Result<Option<StoredItem>, StorageError> {
        Ok(source_item::Entity::find()
            .filter(source_item::Column::ActivityId.eq(activity.get()))
            .filter(source_item::Column::Detached.eq(false))
            .one(db)
            .await?
            .map(to_item))
    }

    /// The items these activities were imported from, by activity.
    pub async fn items_of_activities(
        db: &impl ConnectionTrait,
        ids: &[ActivityId],
    ) -> Result<HashMap<ActivityId, StoredItem>, StorageError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(500) {
            let rows = source_item::Entity::find()
                .filter(source_item::Column::ActivityId.is_in(chunk.iter().map(|id| id.get())))
                .filter(source_item::Column::Detached.eq(false))
                .all(db)
                .await?;
            for row in rows {
                found.insert(ActivityId(row.activity_id), to_item(row));
            }
        }
        Ok(found)
    }

    /// The sources with these ids, by id.
    pub async fn find_many(
        db: &impl ConnectionTrait,
        ids: &[SourceId],
    ) -> Result<HashMap<SourceId, Source>, StorageError> {
        let rows = source::Entity::find()
            .filter(source::Column::Id.is_in(ids.iter().map(|id| id.get())))
            .all(db)
            .await?;
        rows.into_iter()
            .map(|m| to_source(m).map(|s| (s.id, s)))
            .collect()
    }

    /// Records that `item` became (or still is) its activity with this content.
    pub async fn upsert_item(
        db: &impl ConnectionTrait,
        city: CityId,
        item: &StoredItem,
        exists: bool,
    ) -> Result<(), StorageError> {
        if exists {
            source_item::Entity::update_many()
                .col_expr(
                    source_item::Column::ContentHash,
                    Expr::value(item.content_hash.clone()),
                )
                .col_expr(source_item::Column::ItemUrl, Expr::value(item.url.clone()))
                .col_expr(source_item::Column::Gone, Expr::value(item.gone))
                .filter(source_item::Column::SourceId.eq(item.source_id.get()))
                .filter(source_item::Column::ItemKey.eq(item.key.clone()))
                .exec(db)
                .await?;
        } else {
            Self::insert_items(db, city, std::slice::from_ref(item)).await?;
        }
        Ok(())
    }

    /// Stores several new items in one statement (a batch of imports).
    pub async fn insert_items(
        db: &impl ConnectionTrait,
        city: CityId,
        items: &[StoredItem],
    ) -> Result<(), StorageError> {
        if items.is_empty() {
            return Ok(());
        }
        source_item::Entity::insert_many(items.iter().map(|item| source_item::ActiveModel {
            source_id: Set(item.source_id.get()),
            item_key: Set(item.key.clone()),
            city_id: Set(city.get()),
            activity_id: Set(item.activity_id.get()),
            content_hash: Set(item.content_hash.clone()),
            item_url: Set(item.url.clone()),
            gone: Set(item.gone),
            detached: Set(item.detached),
        }))
        .exec_without_returning(db)
        .await?;
        Ok(())
    }

    /// Marks an imported activity as its city's own: its item keeps its
    /// identity (later runs leave the activity alone and do not import
    /// the item again), but the activity is no longer the source's.
    pub async fn detach(
        db: &impl ConnectionTrait,
        activity: ActivityId,
    ) -> Result<(), StorageError> {
        source_item::Entity::update_many()
            .col_expr(source_item::Column::Detached, Expr::value(true))
            .filter(source_item::Column::ActivityId.eq(activity.get()))
            .exec(db)
            .await?;
        Ok(())
    }

    /// How many activities a source imported that are still in its feed.
    pub async fn imported_count(
        db: &impl ConnectionTrait,
        id: SourceId,
    ) -> Result<i64, StorageError> {
        use sea_orm::PaginatorTrait;
        Ok(source_item::Entity::find()
            .filter(source_item::Column::SourceId.eq(id.get()))
            .filter(source_item::Column::Gone.eq(false))
            .filter(source_item::Column::Detached.eq(false))
            .count(db)
            .await? as i64)
    }

    /// The items of a source's last run that were not imported.
    pub async fn skipped(
        db: &impl ConnectionTrait,
        id: SourceId,
    ) -> Result<Vec<SkippedItem>, StorageError> {
        Ok(source_skipped::Entity::find()
            .filter(source_skipped::Column::SourceId.eq(id.get()))
            .order_by_asc(source_skipped::Column::Position)
            .all(db)
            .await?
            .into_iter()
            .map(|m| SkippedItem {
                uid: m.uid,
                reason: m.reason,
            })
            .collect())
    }

    /// Replaces the skipped items of a source.
    pub async fn replace_skipped(
        db: &impl ConnectionTrait,
        id: SourceId,
        items: &[SkippedItem],
    ) -> Result<(), StorageError> {
        source_skipped::Entity::delete_many()
            .filter(source_skipped::Column::SourceId.eq(id.get()))
            .exec(db)
            .await?;
        for (n, chunk) in items.chunks(200).enumerate() {
            let models = chunk
                .iter()
                .enumerate()
                .map(|(i, item)| source_skipped::ActiveModel {
                    source_id: Set(id.get()),
                    position: Set(i32::try_from(n * 200 + i).unwrap_or(i32::MAX)),
                    uid: Set(item.uid.clone()),
                    reason: Set(item.reason.clone()),
                });
            source_skipped::Entity::insert_many(models).exec(db).await?;
        }
        Ok(())
    }
}
