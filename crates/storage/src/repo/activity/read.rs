//! Activity reads: scoped finders, filtered keyset listings (one city's
//! through `city_activities`), counts, and relations loaded in batches.

use std::collections::HashMap;

use cityhub_domain::{
    Activity, ActivityFilter, ActivityId, ActivityOrder, CityId, DatePrecision, Document,
    DocumentKind, InvitationState, ReadScope,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, DatabaseBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Statement,
};

use super::sql::{ActivityTexts, BoundSql, PageColumns, RelationRead, select_texts};
use super::{ActivityRepo, HOST, PARTICIPANT, to_activity};
use crate::cursor::{Cursor, CursorKey};
use crate::db::ReadConnection;
use crate::decode::Row;
use crate::entities::{activity, activity_city, document};
use crate::error::StorageError;
use crate::repo::conditions::{ScopeCondition, ScopedRows, filter_condition, scope_sql};
use crate::repo::stats::StatsRepo;
use crate::repo::{Page, count_all, find_all};
use crate::sqlite_read::{Columns, FromSqliteRow};

/// For the start-date orders, whether the latest come first.
fn start_date_descending(order: ActivityOrder) -> Option<bool> {
    match order {
        ActivityOrder::StartDateDesc => Some(true),
        ActivityOrder::StartDateAsc => Some(false),
        ActivityOrder::UpdatedAtDesc | ActivityOrder::TitleAsc => None,
    }
}

/// The city whose `city_activities` range answers this filter: exactly one
/// city and nothing but statuses and dates besides.
fn city_index_slug(filter: &ActivityFilter) -> Option<&str> {
    match filter.cities.as_slice() {
        [city]
            if filter.kinds.is_empty()
                && filter.fields.is_empty()
                && filter.formats.is_empty()
                && filter.themes.is_empty()
                && filter.countries.is_empty()
                && filter.text.is_none() =>
        {
            Some(city)
        }
        _ => None,
    }
}
fn keyset(order: ActivityOrder, cursor: &Cursor) -> Condition {
    use activity::Column as C;
    let id = cursor.id;
    let (column, descending) = match order {
        ActivityOrder::StartDateDesc => (C::StartKey, true),
        ActivityOrder::StartDateAsc => (C::StartKey, false),
        ActivityOrder::UpdatedAtDesc => (C::UpdatedAt, true),
        ActivityOrder::TitleAsc => (C::TitleKey, false),
    };
    let value: sea_orm::Value = match &cursor.key {
        CursorKey::Int(k) => (*k).into(),
        CursorKey::Text(k) => k.clone().into(),
    };
    if descending {
        Condition::any()
            .add(column.lt(value.clone()))
            .add(Condition::all().add(column.eq(value)).add(C::Id.lt(id)))
    } else {
        Condition::any()
            .add(column.gt(value.clone()))
            .add(Condition::all().add(column.eq(value)).add(C::Id.gt(id)))
    }
}

fn ordered(query: Select<activity::Entity>, order: ActivityOrder) -> Select<activity::Entity> {
    use activity::Column as C;
    match order {
        ActivityOrder::StartDateDesc => query.order_by_desc(C::StartKey).order_by_desc(C::Id),
        ActivityOrder::StartDateAsc => query.order_by_asc(C::StartKey).order_by_asc(C::Id),
        ActivityOrder::UpdatedAtDesc => query.order_by_desc(C::UpdatedAt).order_by_desc(C::Id),
        ActivityOrder::TitleAsc => query.order_by_asc(C::TitleKey).order_by_asc(C::Id),
    }
}

impl ActivityRepo {
    async fn with_hosts(
        db: &impl ReadConnection,
        models: Vec<activity::Model>,
    ) -> Result<Vec<Activity>, StorageError> {
        let ids: Vec<ActivityId> = models.iter().map(|m| ActivityId(m.id)).collect();
        let mut hosts = Self::cities_of(db, &ids, HOST).await?;
        models
            .into_iter()
            .map(|m| {
                let h = hosts.remove(&ActivityId(m.id)).unwrap_or_default();
                to_activity(m, h)
            })
            .collect()
    }

    /// The activity with this id, if the scope may see it, with its hosts
    /// (one statement, [`Self::find_with`]).
    pub async fn find_by_id(
        db: &impl ReadConnection,
        scope: ReadScope,
        id: ActivityId,
    ) -> Result<Option<Activity>, StorageError> {
        let mut page =
            Self::find_with(db, scope, ActivityKey::Id(id), ActivityTexts::All.into()).await?;
        Ok(page.items.pop())
    }

    /// The activity with this slug, if the scope may see it, with its hosts
    /// (one statement, [`Self::find_with`]).
    pub async fn find_by_slug(
        db: &impl ReadConnection,
        scope: ReadScope,
        slug: &str,
    ) -> Result<Option<Activity>, StorageError> {
        let mut page = Self::find_with(
            db,
            scope,
            ActivityKey::Slug(slug),
            ActivityTexts::All.into(),
        )
        .await?;
        Ok(page.items.pop())
    }

    /// The activity with this id, including deleted ones and every draft,
    /// locked for update on PostgreSQL (for the services' permission checks).
    pub async fn find_for_update(
        db: &impl ReadConnection,
        id: ActivityId,
    ) -> Result<Option<(Activity, bool)>, StorageError> {
        let mut query = activity::Entity::find_by_id(id.get());
        if db.get_database_backend() == DatabaseBackend::Postgres {
            query = query.lock_exclusive();
        }
        let Some(model) = query.one(db).await? else {
            return Ok(None);
        };
        let deleted = model.deleted_at.is_some();
        Ok(Self::with_hosts(db, vec![model])
            .await?
            .pop()
            .map(|a| (a, deleted)))
    }

    /// Activities by id regardless of scope (the caller filters visibility).
    pub async fn find_by_ids_unscoped(
        db: &impl ReadConnection,
        ids: &[ActivityId],
    ) -> Result<HashMap<ActivityId, Activity>, StorageError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let models =
            find_all(
                db,
                select_texts(activity::Entity::find(), ActivityTexts::All).filter(
                    crate::repo::id_in(db.get_database_backend(), "activities.id", ids),
                ),
            )
            .await?;
        Ok(Self::with_hosts(db, models)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect())
    }

    /// The activities waiting for `city`'s answer (a pending invitation),
    /// that `scope` sees, latest start first, at most `limit`.
    pub async fn awaiting_answer(
        db: &impl ReadConnection,
        scope: ReadScope,
        city: CityId,
        limit: u64,
    ) -> Result<Vec<Activity>, StorageError> {
        let backend = db.get_database_backend();
        let (city_mark, state_mark) =
            (crate::repo::mark(backend, 1), crate::repo::mark(backend, 2));
        let invited = Expr::cust_with_values(
            format!(
                "activities.id IN (SELECT activity_id FROM activity_invitations \
                 WHERE city_id = {city_mark} AND state = {state_mark})"
            ),
            [
                sea_orm::Value::from(city.get()),
                InvitationState::Pending.as_str().into(),
            ],
        );
        let query = activity::Entity::find()
            .filter(scope.condition(db.get_database_backend()))
            .filter(invited);
        let models = find_all(
            db,
            ordered(query, ActivityOrder::StartDateDesc).limit(limit),
        )
        .await?;
        Self::with_hosts(db, models).await
    }

    /// One page of matching activities in `order`, strictly after `after`.
    /// Two queries, whatever the page size: the rows and their hosts.
    pub async fn page(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
        order: ActivityOrder,
        first: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<Activity>, StorageError> {
        Self::page_of(
            db,
            scope,
            filter,
            order,
            first,
            after,
            ActivityTexts::All.into(),
        )
        .await
    }

    /// [`Self::page`], reading only the long texts `columns` names, and
    /// the documents in the page's statement where it asks and the page
    /// is one city's or a search ([`Page::documents`]).
    pub async fn page_of(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
        order: ActivityOrder,
        first: u64,
        after: Option<&Cursor>,
        columns: PageColumns,
    ) -> Result<Page<Activity>, StorageError> {
        if let Some(city) = city_index_slug(filter) {
            if let Some(descending) = start_date_descending(order) {
                let statement = Self::city_page_statement(
                    db.get_database_backend(),
                    scope,
                    filter,
                    city,
                    descending,
                    first,
                    after,
                    columns,
                );
                return Self::page_rows(db, statement, first, columns).await;
            }
            if order == ActivityOrder::UpdatedAtDesc {
                let statement = Self::city_updated_statement(
                    db.get_database_backend(),
                    scope,
                    filter,
                    city,
                    first,
                    after,
                    columns,
                );
                return Self::page_rows(db, statement, first, columns).await;
            }
        }
        if filter.text.is_some()
            && db.get_database_backend() == DatabaseBackend::Sqlite
            && let Some(descending) = start_date_descending(order)
        {
            return Self::search_page(db, scope, filter, descending, first, after, columns).await;
        }
        let mut query = select_texts(activity::Entity::find(), columns.texts)
            .filter(scope.condition(db.get_database_backend()))
            .filter(filter_condition(filter, db.get_database_backend()));
        if let Some(cursor) = after {
            query = query.filter(keyset(order, cursor));
        }
        // sea-query writes the filter; the relation columns go in before
        // the table, as in the city statements, and the limit after the
        // order, written (`BoundSql::limit`): one statement.
        let backend = db.get_database_backend();
        let mut statement = sea_orm::QueryTrait::build(&ordered(query, order), backend);
        let from = " FROM \"activities\"";
        let Some(at) = statement.sql.find(from) else {
            return Err(StorageError::Other(sea_orm::DbErr::Custom(format!(
                "the activity page statement has no `{from}`"
            ))));
        };
        let mut relations = String::new();
        super::sql::push_relation_columns(&mut relations, backend, columns);
        statement.sql.insert_str(at, &relations);
        statement.sql.push_str(" LIMIT ");
        statement.sql.push_str(&BoundSql::limit(first));
        Self::page_rows(db, statement, first, columns).await
    }

    /// How many activities match (for `totalCount`).
    pub async fn count(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
    ) -> Result<u64, StorageError> {
        if let Some(city) = city_index_slug(filter) {
            let mut sql = BoundSql::new(db.get_database_backend());
            sql.text
                .push_str("SELECT COUNT(*) AS n FROM city_activities ca WHERE ");
            sql.city_conditions(scope, filter, city);
            return crate::repo::count(db, sql.statement()).await;
        }
        if let Some(total) = StatsRepo::kept_total(db, scope, filter).await? {
            return Ok(u64::try_from(total).unwrap_or(0));
        }
        count_all(
            db,
            activity::Entity::find()
                .filter(scope.condition(db.get_database_backend()))
                .filter(filter_condition(filter, db.get_database_backend())),
        )
        .await
    }

    /// The page a statement's rows make: the activity's columns, then the
    /// columns `push_relation_columns` wrote (`host_ids`, `cities_version`,
    /// and the documents and participants `columns` asks for).
    pub(super) async fn page_rows(
        db: &impl ReadConnection,
        statement: Statement,
        first: u64,
        columns: PageColumns,
    ) -> Result<Page<Activity>, StorageError> {
        let documents_in_page = columns.documents == RelationRead::InPage;
        let participants_in_page = columns.participants == RelationRead::InPage;
        let mut documents: HashMap<ActivityId, Vec<Document>> = HashMap::new();
        let mut participants: HashMap<ActivityId, Vec<CityId>> = HashMap::new();
        let mut cities_version = None;
        // The columns after the model's, in `push_relation_columns`' order.
        let mut relations = |model: activity::Model,
                             hosts: Option<&str>,
                             version: i64,
                             docs: Option<&str>,
                             participant_ids: Option<&str>| {
            let id = ActivityId(model.id);
            cities_version = Some(version);
            if documents_in_page {
                documents.insert(id, decode_documents(model.id, docs)?);
            }
            if participants_in_page {
                participants.insert(id, city_ids(model.id, participant_ids)?);
            }
            let hosts = city_ids(model.id, hosts)?;
            to_activity(model, hosts)
        };
        let mut items = if let Some(reader) = db.sqlite_reader() {
            let first_column = activity::Model::columns().len();
            let documents_column = first_column + 2;
            let participants_column = documents_column + usize::from(documents_in_page);
            reader.query_models_with(&statement, |model: activity::Model, row| {
                let c = Columns::new("activities", row)?;
                relations(
                    model,
                    c.str_opt(first_column, "host_ids")?,
                    c.int(first_column + 1, "cities_version")?,
                    if documents_in_page {
                        c.str_opt(documents_column, "documents")?
                    } else {
                        None
                    },
                    if participants_in_page {
                        c.str_opt(participants_column, "participant_ids")?
                    } else {
                        None
                    },
                )
            })?
        } else {
            let rows = db.query_all_raw(statement).await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                let model =
                    <activity::Model as sea_orm::FromQueryResult>::from_query_result(row, "")?;
                let text = |name: &str, read: bool| -> Result<Option<String>, StorageError> {
                    Ok(if read { row.try_get("", name)? } else { None })
                };
                items.push(relations(
                    model,
                    text("host_ids", true)?.as_deref(),
                    row.try_get::<i64>("", "cities_version")?,
                    text("documents", documents_in_page)?.as_deref(),
                    text("participant_ids", participants_in_page)?.as_deref(),
                )?);
            }
            items
        };
        let has_next = items.len() as u64 > first;
        items.truncate(first as usize);
        Ok(Page {
            items,
            has_next,
            cities_version,
            documents: documents_in_page.then_some(documents),
            participants: participants_in_page.then_some(participants),
        })
    }

    /// The activity whose `column` (`id` or `slug`) is `value`, if the
    /// scope may see it, with its hosts, the `cities_version` and the
    /// relations `columns` names, in one statement: a page of at most one.
    pub async fn find_with(
        db: &impl ReadConnection,
        scope: ReadScope,
        key: ActivityKey<'_>,
        columns: PageColumns,
    ) -> Result<Page<Activity>, StorageError> {
        let backend = db.get_database_backend();
        let mut sql = BoundSql::new(backend);
        sql.text.push_str("SELECT ");
        sql.text
            .push_str(super::sql::activity_columns(columns.texts));
        super::sql::push_relation_columns(&mut sql.text, backend, columns);
        let value = match key {
            ActivityKey::Id(id) => sql.bind(id.get()),
            ActivityKey::Slug(slug) => sql.bind(slug.to_owned()),
        };
        let column = match key {
            ActivityKey::Id(_) => "id",
            ActivityKey::Slug(_) => "slug",
        };
        sql.text.push_str(&format!(
            " FROM activities WHERE activities.{column} = {value}"
        ));
        let visible = scope_sql(scope, ScopedRows::Activities, |id| sql.bind(id));
        if !visible.is_empty() {
            sql.text.push_str(" AND ");
            sql.text.push_str(&visible);
        }
        Self::page_rows(db, sql.statement(), 1, columns).await
    }

    /// The statement of [`Self::page`] for one city by start date, through
    /// the `city_activities` index: a range scan of `first + 1` entries,
    /// then the rows by primary key, the page's hosts included (in order,
    /// as `host_ids` "1,2,3"): one statement. The inner query is limited
    /// before the join, so the plan cannot depend on table statistics.
    /// Public so tests can `EXPLAIN` exactly what runs.
    #[expect(
        clippy::too_many_arguments,
        reason = "a page's backend, scope, filter, city, order, size, cursor and columns"
    )]
    pub fn city_page_statement(
        backend: DatabaseBackend,
        scope: ReadScope,
        filter: &ActivityFilter,
        city: &str,
        descending: bool,
        first: u64,
        after: Option<&Cursor>,
        columns: PageColumns,
    ) -> Statement {
        let mut sql = BoundSql::city_rows(backend, scope, filter, city, ", ca.start_key", columns);
        let dir = if descending { "DESC" } else { "ASC" };
        if let Some(cursor) = after {
            let op = if descending { "<" } else { ">" };
            let (k, id) = sql.bind_cursor(cursor);
            sql.text.push_str(&format!(
                " AND (ca.start_key, ca.activity_id) {op} ({k}, {id})"
            ));
        }
        let limit = BoundSql::limit(first);
        sql.text.push_str(&format!(
            " ORDER BY ca.start_key {dir}, ca.activity_id {dir} LIMIT {limit}) ca \
             JOIN activities ON activities.id = ca.activity_id \
             ORDER BY ca.start_key {dir}, ca.activity_id {dir}"
        ));
        sql.statement()
    }

    /// One city's activities, latest change first: the city's entries of
    /// `city_activities` (one index range, a few hundred rows at most)
    /// select the rows by primary key, which are then sorted. Without it the
    /// database walks the whole network's `updated_at` order testing each
    /// activity for the city.
    fn city_updated_statement(
        backend: DatabaseBackend,
        scope: ReadScope,
        filter: &ActivityFilter,
        city: &str,
        first: u64,
        after: Option<&Cursor>,
        columns: PageColumns,
    ) -> Statement {
        let mut sql = BoundSql::city_rows(backend, scope, filter, city, "", columns);
        sql.text
            .push_str(") ca JOIN activities ON activities.id = ca.activity_id");
        if let Some(cursor) = after {
            let (k, id) = sql.bind_cursor(cursor);
            sql.text.push_str(&format!(
                " WHERE (activities.updated_at < {k} OR (activities.updated_at = {k} AND activities.id < {id}))"
            ));
        }
        let limit = BoundSql::limit(first);
        // `+` keeps SQLite from walking `activities_by_updated` in order
        // (the whole network) instead of the city's few rows.
        sql.text.push_str(&format!(
            " ORDER BY +activities.updated_at DESC, activities.id DESC LIMIT {limit}"
        ));
        sql.statement()
    }

    async fn cities_of(
        db: &impl ReadConnection,
        ids: &[ActivityId],
        role: &str,
    ) -> Result<HashMap<ActivityId, Vec<CityId>>, StorageError> {
        let mut out: HashMap<ActivityId, Vec<CityId>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let rows = find_all(
            db,
            activity_city::Entity::find()
                .filter(crate::repo::id_in(
                    db.get_database_backend(),
                    "activity_cities.activity_id",
                    ids,
                ))
                .filter(activity_city::Column::Role.eq(role))
                .order_by_asc(activity_city::Column::ActivityId)
                .order_by_asc(activity_city::Column::Position),
        )
        .await?;
        for row in rows {
            out.entry(ActivityId(row.activity_id))
                .or_default()
                .push(CityId(row.city_id));
        }
        Ok(out)
    }

    /// Participant city ids of these activities (one query).
    pub async fn participants_of(
        db: &impl ReadConnection,
        ids: &[ActivityId],
    ) -> Result<HashMap<ActivityId, Vec<CityId>>, StorageError> {
        Self::cities_of(db, ids, PARTICIPANT).await
    }

    /// Documents of these activities, in order (one query).
    pub async fn documents_of(
        db: &impl ReadConnection,
        ids: &[ActivityId],
    ) -> Result<HashMap<ActivityId, Vec<Document>>, StorageError> {
        let mut out: HashMap<ActivityId, Vec<Document>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let rows = find_all(
            db,
            document::Entity::find()
                .filter(crate::repo::id_in(
                    db.get_database_backend(),
                    "documents.activity_id",
                    ids,
                ))
                .order_by_asc(document::Column::ActivityId)
                .order_by_asc(document::Column::Position),
        )
        .await?;
        for m in rows {
            out.entry(ActivityId(m.activity_id))
                .or_default()
                .push(to_document(m)?);
        }
        Ok(out)
    }
}

fn to_document(m: document::Model) -> Result<Document, StorageError> {
    let row = Row::new("documents", &m.id);
    Ok(Document {
        id: m.id,
        activity_id: ActivityId(m.activity_id),
        kind: row.enumeration("kind", &m.kind, DocumentKind::parse)?,
        issued_precision: row.enumeration(
            "issued_precision",
            &m.issued_precision,
            DatePrecision::parse,
        )?,
        editors: row.json_list("editors", &m.editors)?,
        title: m.title,
        url: m.url,
        issued_on: m.issued_on,
    })
}

/// One document as the page statements' `documents` column holds it:
/// `[id, kind, title, url, issued_on, issued_precision, editors]`.
type DocumentColumns = (
    i64,
    String,
    String,
    Option<String>,
    Option<chrono::NaiveDate>,
    String,
    String,
);

/// An activity's documents from a page statement's `documents` column
/// (NULL or `[]`: none).
fn decode_documents(activity: i64, text: Option<&str>) -> Result<Vec<Document>, StorageError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let rows: Vec<DocumentColumns> = serde_json::from_str(text).map_err(|e| {
        Row::new("documents", &activity).corrupt("activity_id", format!("documents column: {e}"))
    })?;
    rows.into_iter()
        .enumerate()
        .map(
            |(position, (id, kind, title, url, issued_on, issued_precision, editors))| {
                to_document(document::Model {
                    id,
                    activity_id: activity,
                    position: i32::try_from(position).unwrap_or(i32::MAX),
                    kind,
                    title,
                    url,
                    issued_on,
                    issued_precision,
                    editors,
                })
            },
        )
        .collect()
}

/// City ids from a statement's "1,2,3" column (NULL: none), for the
/// activity `activity`.
fn city_ids(activity: i64, text: Option<&str>) -> Result<Vec<CityId>, StorageError> {
    text.unwrap_or_default()
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse().map(CityId).map_err(|_| {
                Row::new("activity_cities", &activity)
                    .corrupt("city_id", format!("not an id: {id:?}"))
            })
        })
        .collect()
}

/// How [`ActivityRepo::find_with`] finds its activity.
#[derive(Debug, Clone, Copy)]
pub enum ActivityKey<'a> {
    /// By id.
    Id(ActivityId),
    /// By slug.
    Slug(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page's size is written into the statement, never bound (see
    /// `BoundSql::limit`), on both city statements and both backends.
    #[test]
    fn city_pages_write_their_limit() {
        let filter = ActivityFilter {
            cities: vec!["lyon".into()],
            ..ActivityFilter::default()
        };
        for backend in [DatabaseBackend::Postgres, DatabaseBackend::Sqlite] {
            let by_date = ActivityRepo::city_page_statement(
                backend,
                ReadScope::Public,
                &filter,
                "lyon",
                true,
                20,
                None,
                PageColumns::default(),
            );
            let by_update = ActivityRepo::city_updated_statement(
                backend,
                ReadScope::Public,
                &filter,
                "lyon",
                20,
                None,
                PageColumns::default(),
            );
            for statement in [by_date, by_update] {
                assert!(statement.sql.contains("LIMIT 21"), "{}", statement.sql);
                let values = statement.values.map(|v| v.0).unwrap_or_default();
                assert!(
                    !values.contains(&sea_orm::Value::BigInt(Some(21))),
                    "{values:?}"
                );
            }
        }
    }

    #[test]
    fn documents_columns_decode_in_order_and_refuse_garbage() {
        let docs = decode_documents(
            7,
            Some(r#"[[3,"REPORT","Bilan",null,"2027-01-01","MONTH","[]"],[1,"PROGRAMME","Days","https://x.example/","2027-02-01","DAY","[\"Ana\"]"]]"#),
        )
        .expect("decoded");
        assert_eq!(docs.iter().map(|d| d.id).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(docs[1].editors, ["Ana"]);
        assert!(decode_documents(7, None).expect("none").is_empty());
        assert!(decode_documents(7, Some("[[1]]")).is_err());
    }
}
