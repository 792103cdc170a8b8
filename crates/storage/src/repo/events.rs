//! The activity event log: one row per committed change, appended in the
//! change's own transaction, read by subscriptions from a sequence on.

use cityhub_domain::{ActivityEventType, ActivityId, ActivityStatus, CityId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};

use crate::decode::Row;
use crate::entities::activity_event;
use crate::error::StorageError;
use crate::time::now_micros;

/// The PostgreSQL channel on which instances announce new events.
pub const NOTIFY_CHANNEL: &str = "cityhub_events";

/// One event of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Strictly increasing sequence number.
    pub seq: i64,
    /// The activity concerned.
    pub activity_id: ActivityId,
    /// What happened.
    pub event_type: ActivityEventType,
    /// When.
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// The acting city; `None` for the secretariat.
    pub actor_city_id: Option<CityId>,
    /// The activity's status after the change.
    pub status: ActivityStatus,
    /// The activity's publisher (for draft visibility).
    pub published_by: Option<CityId>,
}

/// Repository of the event log.
pub struct EventLog;

/// An event to append, named field by field: the acting city and the
/// publisher are both city ids and often the same one, so a positional
/// call could swap them unnoticed.
#[derive(Debug, Clone, Copy)]
pub struct NewEvent {
    /// The activity concerned.
    pub activity: ActivityId,
    /// What happened.
    pub event_type: ActivityEventType,
    /// The acting city; `None` for the secretariat.
    pub actor: Option<CityId>,
    /// The activity's status after the change.
    pub status: ActivityStatus,
    /// The activity's publisher (for draft visibility).
    pub published_by: Option<CityId>,
}

fn to_record(m: activity_event::Model) -> Result<EventRecord, StorageError> {
    let row = Row::new("activity_events", &m.seq);
    Ok(EventRecord {
        seq: m.seq,
        activity_id: ActivityId(m.activity_id),
        event_type: row.enumeration("event_type", &m.event_type, ActivityEventType::parse)?,
        occurred_at: row.micros("occurred_at", m.occurred_at)?,
        actor_city_id: m.actor_city_id.map(CityId),
        status: row.enumeration("status", &m.status, ActivityStatus::parse)?,
        published_by: m.published_by.map(CityId),
    })
}

impl EventLog {
    /// Appends an event inside the change's transaction. On PostgreSQL the
    /// row's `seq` is set by the trigger of migration
    /// `m20261201_000003_event_order` from the transaction id, so readers
    /// that stay below [`EventLog`]'s read horizon never see sequence N+1
    /// before N, and concurrent writers are not serialized; the commit is
    /// announced to other instances after it, by [`EventLog::announce`].
    pub async fn append(db: &impl ConnectionTrait, event: NewEvent) -> Result<i64, StorageError> {
        let NewEvent {
            activity,
            event_type,
            actor,
            status,
            published_by,
        } = event;
        let seq = activity_event::ActiveModel {
            activity_id: Set(activity.get()),
            event_type: Set(event_type.as_str().to_owned()),
            occurred_at: Set(now_micros()),
            actor_city_id: Set(actor.map(CityId::get)),
            status: Set(status.as_str().to_owned()),
            published_by: Set(published_by.map(CityId::get)),
            ..Default::default()
        }
        .insert(db)
        .await?
        .seq;
        Ok(seq)
    }

    /// Appends several events in one statement, in their order (a batch of
    /// imports), as [`EventLog::append`] appends each.
    pub async fn append_many(
        db: &impl ConnectionTrait,
        events: &[NewEvent],
    ) -> Result<(), StorageError> {
        if events.is_empty() {
            return Ok(());
        }
        let at = now_micros();
        activity_event::Entity::insert_many(events.iter().map(|e| activity_event::ActiveModel {
            activity_id: Set(e.activity.get()),
            event_type: Set(e.event_type.as_str().to_owned()),
            occurred_at: Set(at),
            actor_city_id: Set(e.actor.map(CityId::get)),
            status: Set(e.status.as_str().to_owned()),
            published_by: Set(e.published_by.map(CityId::get)),
            ..Default::default()
        }))
        .exec_without_returning(db)
        .await?;
        Ok(())
    }

    /// Tells every instance listening on PostgreSQL that events were
    /// committed (`NOTIFY`, empty payload; a no-op elsewhere). Sent outside
    /// the writers' transactions: a `NOTIFY` inside one would take
    /// PostgreSQL's notification queue lock and hold it through the commit,
    /// serializing every writer again.
    pub async fn announce(db: &impl ConnectionTrait) -> Result<(), StorageError> {
        if db.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_notify($1, '')",
                [NOTIFY_CHANNEL.into()],
            ))
            .await?;
        }
        Ok(())
    }

    /// Up to `limit` events after `seq`, in order, all final: on
    /// PostgreSQL only those below the read horizon (every transaction that
    /// could still add an event before them has ended).
    pub async fn after(
        db: &impl ConnectionTrait,
        seq: i64,
        limit: u64,
    ) -> Result<Vec<EventRecord>, StorageError> {
        Ok(Self::read(db, seq, limit).await?.0)
    }

    /// Like [`EventLog::after`], and whether committed events wait above
    /// the read horizon (PostgreSQL: a transaction of the hub that began
    /// before them is still running); the caller reads again shortly.
    ///
    /// On PostgreSQL the horizon is computed once per statement (a scalar
    /// subquery) on the statement's own snapshot, which sees every event
    /// below it that will ever be committed (migration
    /// `m20261207_000001_event_horizon_own_writers` says why), so this
    /// holds on the pool and in a transaction alike.
    pub async fn read(
        db: &impl ConnectionTrait,
        seq: i64,
        limit: u64,
    ) -> Result<(Vec<EventRecord>, bool), StorageError> {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            let rows = activity_event::Entity::find()
                .filter(activity_event::Column::Seq.gt(seq))
                .order_by_asc(activity_event::Column::Seq)
                .limit(limit)
                .all(db)
                .await?;
            let records = rows
                .into_iter()
                .map(to_record)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((records, false));
        }
        let rows = db
            .query_all_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT seq, activity_id, event_type, occurred_at, actor_city_id, status, \
                 published_by, seq < (SELECT cityhub_event_horizon()) AS final \
                 FROM activity_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                [seq.into(), i64::try_from(limit).unwrap_or(i64::MAX).into()],
            ))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut pending = false;
        for row in rows {
            if !row.try_get::<bool>("", "final")? {
                pending = true;
                break;
            }
            // The entity's own decoding, as on SQLite's path: one way to
            // read an event row whichever backend answers.
            out.push(to_record(
                <activity_event::Model as sea_orm::FromQueryResult>::from_query_result(&row, "")?,
            )?);
        }
        Ok((out, pending))
    }

    /// The newest visible sequence number (0 when the log is empty): where
    /// a new subscriber starts. On PostgreSQL an event still being
    /// committed below it (its transaction began earlier) lies before that
    /// start in the log's order, so it is not new for that subscriber.
    pub async fn head(db: &impl ConnectionTrait) -> Result<i64, StorageError> {
        let last = activity_event::Entity::find()
            .order_by_desc(activity_event::Column::Seq)
            .limit(1)
            .one(db)
            .await?;
        Ok(last.map_or(0, |m| m.seq))
    }

    /// The newest final sequence number: where a reader of every event
    /// (the pump) may start without skipping one. On PostgreSQL the newest
    /// below the read horizon; elsewhere [`EventLog::head`].
    pub async fn final_head(db: &impl ConnectionTrait) -> Result<i64, StorageError> {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return Self::head(db).await;
        }
        let row = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT COALESCE(MAX(seq), 0) AS head FROM activity_events \
                 WHERE seq < (SELECT cityhub_event_horizon())",
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64>("", "head")?,
            None => 0,
        })
    }

    /// Deletes events older than `cutoff_micros`, keeping the newest one so
    /// the sequence never appears to restart, and records the highest
    /// sequence deleted (run it in a transaction). Returns how many went.
    pub async fn prune(db: &impl ConnectionTrait, cutoff_micros: i64) -> Result<u64, StorageError> {
        let head = Self::head(db).await?;
        let backend = db.get_database_backend();
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                "SELECT MAX(seq) AS last FROM activity_events WHERE occurred_at < $1 AND seq < $2",
                [cutoff_micros.into(), head.into()],
            ))
            .await?;
        let Some(last) = row.and_then(|r| r.try_get::<Option<i64>>("", "last").ok().flatten())
        else {
            return Ok(0);
        };
        let result = activity_event::Entity::delete_many()
            .filter(activity_event::Column::Seq.lte(last))
            .exec(db)
            .await?;
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "INSERT INTO hub_meta (key, value) VALUES ('events_pruned_through', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [last.into()],
        ))
        .await?;
        Ok(result.rows_affected)
    }

    /// Which of `ids` are activities that were deleted (soft): their events
    /// replay as tombstones, without content.
    pub async fn deleted_among(
        db: &impl ConnectionTrait,
        ids: &[ActivityId],
    ) -> Result<std::collections::HashSet<ActivityId>, StorageError> {
        if ids.is_empty() {
            return Ok(std::collections::HashSet::new());
        }
        let rows: Vec<i64> = crate::entities::activity::Entity::find()
            .select_only()
            .column(crate::entities::activity::Column::Id)
            .filter(crate::entities::activity::Column::Id.is_in(ids.iter().map(|id| id.get())))
            .filter(crate::entities::activity::Column::DeletedAt.is_not_null())
            .into_tuple()
            .all(db)
            .await?;
        Ok(rows.into_iter().map(ActivityId).collect())
    }

    /// The highest sequence number pruned so far (0 when none was): a
    /// cursor before it can no longer be resumed.
    pub async fn pruned_through(db: &impl ConnectionTrait) -> Result<i64, StorageError> {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT value FROM hub_meta WHERE key = 'events_pruned_through'",
            ))
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64>("", "value")?,
            None => 0,
        })
    }
}
