//! Activity writes the services compose into transactions: slugs (and
//! their advisory locks on PostgreSQL), inserts, replacements, status,
//! participants, cities, and the relations written with an activity.

use cityhub_domain::filter::theme_key;
use cityhub_domain::timing::format_local_time;
use cityhub_domain::{Activity, ActivityId, ActivityStatus, Cities, CityId, Participation, text};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QuerySelect, Set, Statement,
};

use super::{ActivityRepo, ActivityWrite, HOST, PARTICIPANT, dedup_in_order, to_activity};
use crate::entities::{activity, activity_city, activity_field, activity_theme, document};
use crate::error::StorageError;
use crate::repo::invitation::InvitationRepo;
use crate::repo::to_json;
use crate::time::{date_key, now_micros};

/// The first key of the advisory locks that serialize slug choices.
const SLUG_LOCK_CLASS: i32 = 0x736c_7567;

/// The second key of a slug base's advisory lock (the two-key form: its key
/// space is apart from the event log's single-key lock): the base's FNV-1a
/// hash.
fn slug_lock_key(base: &str) -> i32 {
    let hash = base.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

impl ActivityRepo {
    /// [`ActivityRepo::lock_slug_base`] for several bases at once, in one
    /// statement (a batch of imports): the locks are taken in the order of
    /// their keys, as every batch takes them, so two batches cannot wait on
    /// each other.
    pub async fn lock_slug_bases(
        db: &impl ConnectionTrait,
        bases: &[String],
    ) -> Result<(), StorageError> {
        if db.get_database_backend() != DatabaseBackend::Postgres || bases.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<i32> = bases.iter().map(|b| slug_lock_key(b)).collect();
        keys.sort_unstable();
        keys.dedup();
        let list = keys
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        db.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, k) FROM unnest(string_to_array($2, ',')::int[]) AS t(k)",
            [SLUG_LOCK_CLASS.into(), list.into()],
        ))
        .await?;
        Ok(())
    }

    /// [`ActivityRepo::slugs_with_base`] for several bases, in one query.
    pub async fn slugs_with_bases(
        db: &impl ConnectionTrait,
        bases: &[String],
    ) -> Result<Vec<String>, StorageError> {
        if bases.is_empty() {
            return Ok(Vec::new());
        }
        let mut any = Condition::any();
        for base in bases {
            any = any.add(activity::Column::Slug.eq(base.as_str())).add(
                Condition::all()
                    .add(activity::Column::Slug.gt(format!("{base}-")))
                    .add(activity::Column::Slug.lt(format!("{base}."))),
            );
        }
        Ok(activity::Entity::find()
            .select_only()
            .column(activity::Column::Slug)
            .filter(any)
            .into_tuple::<String>()
            .all(db)
            .await?)
    }

    /// Serializes, until the transaction ends, the choice of slugs derived
    /// from `base` on PostgreSQL: concurrent publications of one title then
    /// see each other's slug instead of all taking the same free one and
    /// failing on the unique index. (SQLite has one writer at a time.)
    pub async fn lock_slug_base(db: &impl ConnectionTrait, base: &str) -> Result<(), StorageError> {
        if db.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        db.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, $2)",
            [SLUG_LOCK_CLASS.into(), slug_lock_key(base).into()],
        ))
        .await?;
        Ok(())
    }

    /// Every slug (deleted activities' too) equal to `base` or of the form
    /// `base-…`, for picking the next free suffix in one query.
    pub async fn slugs_with_base(
        db: &impl ConnectionTrait,
        base: &str,
    ) -> Result<Vec<String>, StorageError> {
        Ok(activity::Entity::find()
            .select_only()
            .column(activity::Column::Slug)
            .filter(
                Condition::any()
                    .add(activity::Column::Slug.eq(base))
                    // `base-…` as a range, which the unique index serves on
                    // both backends (slugs are compared bytewise: '.' follows '-').
                    .add(
                        Condition::all()
                            .add(activity::Column::Slug.gt(format!("{base}-")))
                            .add(activity::Column::Slug.lt(format!("{base}."))),
                    ),
            )
            .into_tuple::<String>()
            .all(db)
            .await?)
    }

    /// Whether an activity (deleted or not) has this slug.
    pub async fn slug_taken(db: &impl ConnectionTrait, slug: &str) -> Result<bool, StorageError> {
        Ok(activity::Entity::find()
            .filter(activity::Column::Slug.eq(slug))
            .count(db)
            .await?
            > 0)
    }

    fn columns(write: &ActivityWrite) -> activity::ActiveModel {
        let i = &write.input;
        // The input was validated: a timing it names is a valid one.
        let timing = i.timing();
        activity::ActiveModel {
            slug: Set(write.slug.clone()),
            kind: Set(i.kind.as_str().to_owned()),
            format: Set(i.format.as_str().to_owned()),
            title: Set(i.title.clone()),
            title_key: Set(text::fold(&i.title)),
            summary: Set(i.summary.clone()),
            description: Set(i.description.clone()),
            start_date: Set(i.start_date),
            end_date: Set(i.end_date),
            date_precision: Set(i.date_precision.as_str().to_owned()),
            start_key: Set(date_key(i.start_date)),
            end_key: Set(date_key(i.end_date.or(i.start_date))),
            venue: Set(i.venue.clone()),
            venue_city_id: Set(write.venue_city_id.map(CityId::get)),
            organizations: Set(to_json(&i.organizations)),
            fields: Set(to_json(&i.fields)),
            themes: Set(to_json(&i.themes)),
            objectives: Set(to_json(&i.objectives)),
            search_text: Set(i.search_document()),
            start_time: Set(timing.map(|t| format_local_time(t.start_time))),
            end_time: Set(timing.and_then(|t| t.end_time).map(format_local_time)),
            time_zone: Set(timing.map(|t| t.zone_name().to_owned())),
            starts_at: Set(timing.map(|t| t.starts_at.timestamp_micros())),
            ends_at: Set(timing
                .and_then(|t| t.ends_at)
                .map(|at| at.timestamp_micros())),
            ..Default::default()
        }
    }

    /// The row of a new activity (version 1, created now).
    fn new_row(
        write: &ActivityWrite,
        status: ActivityStatus,
        published_by: Option<CityId>,
        now: i64,
    ) -> activity::ActiveModel {
        let mut model = Self::columns(write);
        model.status = Set(status.as_str().to_owned());
        model.published_by = Set(published_by.map(CityId::get));
        model.published_at = Set((status != ActivityStatus::Draft).then_some(now));
        model.created_at = Set(now);
        model.updated_at = Set(now);
        model.version = Set(1);
        model
    }

    /// Inserts a new activity with its relations; returns it as stored
    /// (from the insert's `RETURNING`, without reading it back).
    pub async fn insert_returning(
        db: &impl ConnectionTrait,
        write: &ActivityWrite,
        status: ActivityStatus,
        published_by: Option<CityId>,
    ) -> Result<Activity, StorageError> {
        let model = Self::new_row(write, status, published_by, now_micros())
            .insert(db)
            .await?;
        Self::write_relations(db, &[(ActivityId(model.id), write)]).await?;
        let mut hosts = write.hosts.clone();
        dedup_in_order(&mut hosts);
        to_activity(model, hosts)
    }

    /// Inserts new activities with their relations in one statement per
    /// table whatever their number (a batch of imports); returns them as
    /// stored, in the order of `writes`. Their slugs must differ.
    pub async fn insert_many_returning(
        db: &impl ConnectionTrait,
        writes: &[&ActivityWrite],
        status: ActivityStatus,
        published_by: Option<CityId>,
    ) -> Result<Vec<Activity>, StorageError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_micros();
        let rows = writes
            .iter()
            .map(|write| Self::new_row(write, status, published_by, now));
        // `RETURNING` promises no order: rows are matched by their slug.
        let mut by_slug: std::collections::HashMap<String, activity::Model> =
            activity::Entity::insert_many(rows)
                .exec_with_returning(db)
                .await?
                .into_iter()
                .map(|m| (m.slug.clone(), m))
                .collect();
        let mut stored = Vec::with_capacity(writes.len());
        for write in writes {
            // Every row was inserted or the statement failed: a row missing
            // from `RETURNING` is the database breaking its word, an
            // internal error (never a conflict the caller could retry).
            let model = by_slug.remove(&write.slug).ok_or_else(|| {
                StorageError::Other(sea_orm::DbErr::Custom(format!(
                    "the insert of {:?} returned no row for it",
                    write.slug
                )))
            })?;
            stored.push((model, *write));
        }
        let relations: Vec<(ActivityId, &ActivityWrite)> = stored
            .iter()
            .map(|(model, write)| (ActivityId(model.id), *write))
            .collect();
        Self::write_relations(db, &relations).await?;
        stored
            .into_iter()
            .map(|(model, write)| {
                let mut hosts = write.hosts.clone();
                dedup_in_order(&mut hosts);
                to_activity(model, hosts)
            })
            .collect()
    }

    /// Inserts a new activity with its relations; returns its id.
    pub async fn insert(
        db: &impl ConnectionTrait,
        write: &ActivityWrite,
        status: ActivityStatus,
        published_by: Option<CityId>,
    ) -> Result<ActivityId, StorageError> {
        let id = ActivityId(
            Self::new_row(write, status, published_by, now_micros())
                .insert(db)
                .await?
                .id,
        );
        Self::write_relations(db, &[(id, write)]).await?;
        Ok(id)
    }

    /// Replaces an activity's values and relations if its version is still
    /// `version`; returns the new version, or a conflict.
    pub async fn replace(
        db: &impl ConnectionTrait,
        id: ActivityId,
        write: &ActivityWrite,
        version: i32,
    ) -> Result<i32, StorageError> {
        let mut model = Self::columns(write);
        model.updated_at = Set(now_micros());
        model.version = Set(version + 1);
        let update = activity::Entity::update_many().set(model);
        let version = Self::bump_checked(db, update, id, version).await?;
        Self::clear_relations(db, id).await?;
        Self::write_relations(db, &[(id, write)]).await?;
        Ok(version)
    }

    /// Changes status (and what goes with it) if the version is still
    /// `version`; returns the new version.
    pub async fn set_status(
        db: &impl ConnectionTrait,
        id: ActivityId,
        version: i32,
        status: ActivityStatus,
        cancel_reason: Option<String>,
        first_publication: bool,
    ) -> Result<i32, StorageError> {
        let now = now_micros();
        let mut update = activity::Entity::update_many()
            .col_expr(activity::Column::Status, Expr::value(status.as_str()))
            .col_expr(activity::Column::CancelReason, Expr::value(cancel_reason))
            .col_expr(activity::Column::UpdatedAt, Expr::value(now))
            .col_expr(activity::Column::Version, Expr::value(version + 1));
        if first_publication {
            update = update.col_expr(activity::Column::PublishedAt, Expr::value(now));
        }
        Self::bump_checked(db, update, id, version).await
    }

    /// Marks an activity deleted (it disappears from every read); frees
    /// nothing, so its id and slug are never reused.
    pub async fn soft_delete(
        db: &impl ConnectionTrait,
        id: ActivityId,
        version: i32,
    ) -> Result<i32, StorageError> {
        let now = now_micros();
        let update = activity::Entity::update_many()
            .col_expr(activity::Column::DeletedAt, Expr::value(now))
            .col_expr(activity::Column::UpdatedAt, Expr::value(now))
            .col_expr(activity::Column::Version, Expr::value(version + 1));
        Self::bump_checked(db, update, id, version).await
    }

    /// Adds (or removes) a participant; returns the new version, or the
    /// same one when nothing changed.
    pub async fn set_participant(
        db: &impl ConnectionTrait,
        id: ActivityId,
        version: i32,
        city: CityId,
        participation: Participation,
    ) -> Result<i32, StorageError> {
        let join = participation == Participation::Join;
        let existing = activity_city::Entity::find()
            .filter(activity_city::Column::ActivityId.eq(id.get()))
            .filter(activity_city::Column::Role.eq(PARTICIPANT))
            .all(db)
            .await?;
        let present = existing.iter().any(|r| r.city_id == city.get());
        if present == join {
            return Ok(version);
        }
        if join {
            let position = existing.iter().map(|r| r.position).max().unwrap_or(-1) + 1;
            activity_city::Entity::insert(activity_city::ActiveModel {
                activity_id: Set(id.get()),
                role: Set(PARTICIPANT.to_owned()),
                city_id: Set(city.get()),
                position: Set(position),
            })
            .exec_without_returning(db)
            .await?;
        } else {
            activity_city::Entity::delete_many()
                .filter(activity_city::Column::ActivityId.eq(id.get()))
                .filter(activity_city::Column::Role.eq(PARTICIPANT))
                .filter(activity_city::Column::CityId.eq(city.get()))
                .exec(db)
                .await?;
        }
        let update = activity::Entity::update_many()
            .col_expr(activity::Column::UpdatedAt, Expr::value(now_micros()))
            .col_expr(activity::Column::Version, Expr::value(version + 1));
        Self::bump_checked(db, update, id, version).await
    }

    async fn bump_checked(
        db: &impl ConnectionTrait,
        update: sea_orm::UpdateMany<activity::Entity>,
        id: ActivityId,
        version: i32,
    ) -> Result<i32, StorageError> {
        let result = update
            .filter(activity::Column::Id.eq(id.get()))
            .filter(activity::Column::Version.eq(version))
            .exec(db)
            .await?;
        if result.rows_affected != 1 {
            return Err(StorageError::Conflict(
                "the activity changed meanwhile".into(),
            ));
        }
        Ok(version + 1)
    }

    /// Deletes what [`Self::write_relations`] writes (hosts, invitations,
    /// fields, themes, documents; participants stay).
    async fn clear_relations(
        db: &impl ConnectionTrait,
        id: ActivityId,
    ) -> Result<(), StorageError> {
        Self::clear_hosts(db, id).await?;
        InvitationRepo::clear(db, id).await?;
        activity_field::Entity::delete_many()
            .filter(activity_field::Column::ActivityId.eq(id.get()))
            .exec(db)
            .await?;
        activity_theme::Entity::delete_many()
            .filter(activity_theme::Column::ActivityId.eq(id.get()))
            .exec(db)
            .await?;
        document::Entity::delete_many()
            .filter(document::Column::ActivityId.eq(id.get()))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Deletes an activity's host rows.
    async fn clear_hosts(db: &impl ConnectionTrait, id: ActivityId) -> Result<(), StorageError> {
        activity_city::Entity::delete_many()
            .filter(activity_city::Column::ActivityId.eq(id.get()))
            .filter(activity_city::Column::Role.eq(HOST))
            .exec(db)
            .await?;
        Ok(())
    }

    /// Inserts an activity's host rows, in order (it has none).
    async fn insert_hosts(
        db: &impl ConnectionTrait,
        id: ActivityId,
        hosts: &[CityId],
    ) -> Result<(), StorageError> {
        insert_rows(db, Self::host_rows(id, hosts)).await
    }

    /// An activity's host rows, in order, each city once.
    fn host_rows(id: ActivityId, hosts: &[CityId]) -> Vec<activity_city::ActiveModel> {
        let mut hosts = hosts.to_vec();
        dedup_in_order(&mut hosts);
        hosts
            .iter()
            .enumerate()
            .map(|(i, city)| activity_city::ActiveModel {
                activity_id: Set(id.get()),
                role: Set(HOST.to_owned()),
                city_id: Set(city.get()),
                position: Set(i as i32),
            })
            .collect()
    }

    /// Sets an activity's cities after an invited city's answer — its
    /// venue city, its hosts and its invitations — if its version is
    /// still `version`; returns the new version, or a conflict.
    pub async fn set_cities(
        db: &impl ConnectionTrait,
        id: ActivityId,
        version: i32,
        cities: &Cities,
    ) -> Result<i32, StorageError> {
        let update = activity::Entity::update_many()
            .col_expr(
                activity::Column::VenueCityId,
                Expr::value(cities.venue.map(CityId::get)),
            )
            .col_expr(activity::Column::UpdatedAt, Expr::value(now_micros()))
            .col_expr(activity::Column::Version, Expr::value(version + 1));
        let version = Self::bump_checked(db, update, id, version).await?;
        Self::clear_hosts(db, id).await?;
        Self::insert_hosts(db, id, &cities.hosts).await?;
        InvitationRepo::clear(db, id).await?;
        InvitationRepo::insert(db, id, &cities.invitations).await?;
        Ok(version)
    }

    /// Inserts the hosts, invitations, fields, themes and documents of
    /// new (or cleared) activities: one statement per table for them all.
    async fn write_relations(
        db: &impl ConnectionTrait,
        writes: &[(ActivityId, &ActivityWrite)],
    ) -> Result<(), StorageError> {
        let mut hosts = Vec::new();
        let mut fields = Vec::new();
        let mut themes = Vec::new();
        let mut documents = Vec::new();
        for (id, write) in writes {
            let id = *id;
            hosts.extend(Self::host_rows(id, &write.hosts));
            InvitationRepo::insert(db, id, &write.invitations).await?;
            fields.extend(
                write
                    .input
                    .fields
                    .iter()
                    .map(|f| activity_field::ActiveModel {
                        activity_id: Set(id.get()),
                        field: Set(f.as_str().to_owned()),
                    }),
            );
            let mut theme_keys: Vec<String> =
                write.input.themes.iter().map(|t| theme_key(t)).collect();
            dedup_in_order(&mut theme_keys);
            themes.extend(theme_keys.into_iter().map(|k| activity_theme::ActiveModel {
                activity_id: Set(id.get()),
                theme_key: Set(k),
            }));
            documents.extend(write.input.documents.iter().enumerate().map(|(i, d)| {
                document::ActiveModel {
                    activity_id: Set(id.get()),
                    position: Set(i as i32),
                    kind: Set(d.kind.as_str().to_owned()),
                    title: Set(d.title.clone()),
                    url: Set(d.url.clone()),
                    issued_on: Set(d.issued_on),
                    issued_precision: Set(d.issued_precision.as_str().to_owned()),
                    editors: Set(to_json(&d.editors)),
                    ..Default::default()
                }
            }));
        }
        insert_rows(db, hosts).await?;
        insert_rows(db, fields).await?;
        insert_rows(db, themes).await?;
        insert_rows(db, documents).await?;
        Ok(())
    }
}

/// Inserts `rows` in one statement (none when there are none).
async fn insert_rows<A>(db: &impl ConnectionTrait, rows: Vec<A>) -> Result<(), StorageError>
where
    A: ActiveModelTrait + Send,
{
    if !rows.is_empty() {
        A::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}
