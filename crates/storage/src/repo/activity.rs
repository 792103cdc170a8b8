//! Activities: scoped finders, filtered keyset listings, relations loaded in
//! batches, and the writes the services compose into transactions.

use std::collections::HashMap;

use cityhub_domain::filter::{MAX_SEARCH_TERMS, theme_key};
use cityhub_domain::timing::format_local_time;
use cityhub_domain::{
    Activity, ActivityFormat, ActivityId, ActivityInput, ActivityKind, ActivityOrder,
    ActivityStatus, Cities, CityId, DatePrecision, Document, DocumentKind, Invitation,
    InvitationState, Participation, text,
};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set, Statement,
};

use super::invitation::InvitationRepo;
use super::{Page, count_all, find_all, find_one, in_list, to_json};
use crate::cursor::{Cursor, CursorKey};
use crate::db::ReadConnection;
use crate::decode::{Row, TimingColumns};
use crate::entities::{activity, activity_city, activity_field, activity_theme, document};
use crate::error::StorageError;
use crate::sqlite_read::{Columns, FromSqliteRow, reader_error};
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

/// Role of a city in `activity_cities`.
const HOST: &str = "HOST";
/// Role of a city in `activity_cities`.
const PARTICIPANT: &str = "PARTICIPANT";

pub use cityhub_domain::{ActivityFilter, ReadScope};

/// The SQL translation of [`ReadScope`] (the rule itself is
/// `ReadScope::sees`, in the domain): soft-deleted rows and the drafts the
/// scope may not see are left out.
pub(crate) trait ScopeCondition {
    /// The scope as a condition on `activities`.
    fn condition(self) -> Condition;
}

impl ScopeCondition for ReadScope {
    fn condition(self) -> Condition {
        let base = Condition::all().add(activity::Column::DeletedAt.is_null());
        match self {
            ReadScope::All => base,
            ReadScope::Public => {
                base.add(activity::Column::Status.ne(ActivityStatus::Draft.as_str()))
            }
            ReadScope::City(id) => base.add(
                Condition::any()
                    .add(activity::Column::Status.ne(ActivityStatus::Draft.as_str()))
                    .add(activity::Column::PublishedBy.eq(id.get())),
            ),
        }
    }
}

/// Repository of activities.
pub struct ActivityRepo;

/// Everything written for an activity, resolved to ids.
#[derive(Debug, Clone)]
pub struct ActivityWrite {
    /// The validated input.
    pub input: ActivityInput,
    /// The slug to store.
    pub slug: String,
    /// Venue city id, as it counts (the publisher's own, or accepted).
    pub venue_city_id: Option<CityId>,
    /// Host city ids in order, the publisher first, then the co-hosts that
    /// accepted.
    pub hosts: Vec<CityId>,
    /// The invitations of the cities the input names, in order.
    pub invitations: Vec<Invitation>,
}

impl ActivityWrite {
    /// A write of `input` with this slug and these cities (the domain's
    /// settlement of what the input names).
    pub fn new(input: ActivityInput, slug: String, cities: Cities) -> Self {
        Self {
            input,
            slug,
            venue_city_id: cities.venue,
            hosts: cities.hosts,
            invitations: cities.invitations,
        }
    }
}

fn to_activity(m: activity::Model, hosts: Vec<CityId>) -> Result<Activity, StorageError> {
    let row = Row::new("activities", &m.id);
    Ok(Activity {
        id: ActivityId(m.id),
        kind: row.enumeration("kind", &m.kind, ActivityKind::parse)?,
        format: row.enumeration("format", &m.format, ActivityFormat::parse)?,
        status: row.enumeration("status", &m.status, ActivityStatus::parse)?,
        date_precision: row.enumeration(
            "date_precision",
            &m.date_precision,
            DatePrecision::parse,
        )?,
        organizations: row.json_list("organizations", &m.organizations)?,
        fields: row.json_list("fields", &m.fields)?,
        themes: row.json_list("themes", &m.themes)?,
        objectives: row.json_list("objectives", &m.objectives)?,
        timing: row.timing(TimingColumns {
            start_time: m.start_time.as_deref(),
            end_time: m.end_time.as_deref(),
            time_zone: m.time_zone.as_deref(),
            starts_at: m.starts_at,
            ends_at: m.ends_at,
        })?,
        published_at: row.micros_opt("published_at", m.published_at)?,
        updated_at: row.micros("updated_at", m.updated_at)?,
        slug: m.slug,
        title: m.title,
        summary: m.summary,
        description: m.description,
        start_date: m.start_date,
        end_date: m.end_date,
        venue: m.venue,
        venue_city_id: m.venue_city_id.map(CityId),
        published_by: m.published_by.map(CityId),
        hosts,
        version: m.version,
        cancel_reason: m.cancel_reason,
    })
}

/// The cursor of an activity in `order`.
pub fn cursor_of(activity: &Activity, order: ActivityOrder) -> Cursor {
    let key = match order {
        ActivityOrder::StartDateDesc | ActivityOrder::StartDateAsc => {
            CursorKey::Int(i64::from(date_key(activity.start_date)))
        }
        ActivityOrder::UpdatedAtDesc => CursorKey::Int(activity.updated_at.timestamp_micros()),
        ActivityOrder::TitleAsc => CursorKey::Text(text::fold(&activity.title)),
    };
    Cursor {
        order: order.as_str().to_owned(),
        key,
        id: activity.id.get(),
    }
}

pub(crate) fn filter_condition(filter: &ActivityFilter, backend: DatabaseBackend) -> Condition {
    let mut cond = Condition::all();
    let statuses = filter
        .statuses
        .clone()
        .unwrap_or_else(|| vec![ActivityStatus::Published]);
    cond = cond.add(activity::Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
    if !filter.kinds.is_empty() {
        cond = cond.add(activity::Column::Kind.is_in(filter.kinds.iter().map(|k| k.as_str())));
    }
    if !filter.formats.is_empty() {
        cond = cond.add(activity::Column::Format.is_in(filter.formats.iter().map(|f| f.as_str())));
    }
    if !filter.fields.is_empty() {
        let (marks, values) = in_list(backend, 1, filter.fields.iter().map(|f| f.as_str()));
        cond = cond.add(Expr::cust_with_values(
            format!(
                "activities.id IN (SELECT activity_id FROM activity_fields WHERE field IN {marks})"
            ),
            values,
        ));
    }
    if !filter.themes.is_empty() {
        let (marks, values) = in_list(backend, 1, filter.themes.iter().map(|t| theme_key(t)));
        cond = cond.add(Expr::cust_with_values(
            format!("activities.id IN (SELECT activity_id FROM activity_themes WHERE theme_key IN {marks})"),
            values,
        ));
    }
    if !filter.cities.is_empty() {
        // One id set (a UNION of two indexed lookups) rather than an OR of
        // subqueries: the planner then tests membership instead of
        // fetching every wide row in order to test the city.
        let n = filter.cities.len();
        let (marks, mut values) = in_list(backend, 1, filter.cities.iter().cloned());
        let (marks2, values2) = in_list(backend, n + 1, filter.cities.iter().cloned());
        values.extend(values2);
        cond = cond.add(Expr::cust_with_values(
            format!(
                "activities.id IN (SELECT ac.activity_id FROM activity_cities ac JOIN cities c ON c.id = ac.city_id \
                 WHERE c.slug IN {marks} \
                 UNION SELECT v.id FROM activities v JOIN cities vc ON vc.id = v.venue_city_id WHERE vc.slug IN {marks2})"
            ),
            values,
        ));
    }
    if !filter.countries.is_empty() {
        let n = filter.countries.len();
        let (marks, mut values) = in_list(
            backend,
            1,
            filter.countries.iter().map(|c| c.to_ascii_uppercase()),
        );
        let (marks2, values2) = in_list(
            backend,
            n + 1,
            filter.countries.iter().map(|c| c.to_ascii_uppercase()),
        );
        values.extend(values2);
        cond = cond.add(Expr::cust_with_values(
            format!(
                "activities.id IN (SELECT ac.activity_id FROM activity_cities ac JOIN cities c ON c.id = ac.city_id \
                 WHERE ac.role = 'HOST' AND c.country IN {marks} \
                 UNION SELECT v.id FROM activities v JOIN cities vc ON vc.id = v.venue_city_id WHERE vc.country IN {marks2})"
            ),
            values,
        ));
    }
    if let Some(from) = filter.from {
        cond = cond.add(activity::Column::EndKey.gte(date_key(Some(from))));
    }
    if let Some(to) = filter.to {
        cond = cond
            .add(activity::Column::StartKey.lte(date_key(Some(to))))
            .add(activity::Column::StartKey.gt(0));
    }
    if let Some(query) = &filter.text {
        let terms = text::search_terms(query, MAX_SEARCH_TERMS);
        if terms.is_empty() {
            // Nothing searchable (only punctuation): matches nothing, as a
            // search for nothing should.
            cond = cond.add(Expr::cust("1 = 0"));
        } else if backend == DatabaseBackend::Postgres {
            let tsquery = terms
                .iter()
                .map(|t| format!("{t}:*"))
                .collect::<Vec<_>>()
                .join(" & ");
            cond = cond.add(Expr::cust_with_values(
                "activities.search @@ to_tsquery('simple', $1)",
                [tsquery],
            ));
        } else {
            let fts = terms
                .iter()
                .map(|t| fts_prefix(t))
                .collect::<Vec<_>>()
                .join(" AND ");
            // Orders other than the start date (and counts): `+` keeps
            // SQLite from driving the query by the matches' rowids
            // (fetching every matching wide row, then sorting them all): it
            // walks the ordered, covering `activities_by_*` index instead,
            // testing each entry against the match set built once, and
            // stops after the page. 71 ms → 3 ms for a word in 7,000 of
            // 10,000 activities (BENCHMARKS.md). By start date, see
            // `ActivityRepo::search_page`.
            cond = cond.add(Expr::cust_with_values(
                format!(
                    "+activities.id IN (SELECT rowid & {SEARCH_ID_MASK} FROM activity_search \
                     WHERE activity_search MATCH ?)"
                ),
                [fts],
            ));
        }
    }
    cond
}

/// `activity_search`'s rowid is `(start_key << 36) | id` (migration
/// `m20261206_000001_search_by_listing_order`): its order is the listing's
/// by start date; this mask takes the id back out.
const SEARCH_ID_MASK: i64 = (1 << 36) - 1;

/// A search term that expands to more words than this keeps FTS5's prefix
/// form (`"t"*`): correct, but it merges every word's matches first.
const MAX_TERM_WORDS: usize = 64;

/// A search term in FTS5's prefix form, `"term"*` (terms are alphanumeric
/// runs, `text::search_terms`: nothing in them needs quoting).
fn fts_prefix(term: &str) -> String {
    format!("\"{term}\"*")
}

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

/// `activities.id, activities.slug, …`: the model's columns (never `*`,
/// which on PostgreSQL would also fetch the `tsvector`), except the folded
/// search text, which no read returns and which is as long as the
/// description: `'' AS search_text` keeps the model's shape without
/// reading it (a city's calendar of 300 rows moved about 300 KB less).
static ACTIVITY_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    use sea_orm::{IdenStatic, Iterable};
    activity::Column::iter()
        .map(|c| match c {
            activity::Column::SearchText => "'' AS search_text".to_owned(),
            c => format!("activities.{}", c.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
});

/// `, (…) AS host_ids`: an activity's hosts in order ("1,2,3"), per backend.
fn host_ids_column(backend: DatabaseBackend) -> &'static str {
    match backend {
        DatabaseBackend::Postgres => {
            ", (SELECT string_agg(h.city_id::text, ',' ORDER BY h.position) FROM activity_cities h \
             WHERE h.activity_id = activities.id AND h.role = 'HOST') AS host_ids"
        }
        _ => {
            ", (SELECT group_concat(city_id) FROM (SELECT h.city_id FROM activity_cities h \
             WHERE h.activity_id = activities.id AND h.role = 'HOST' ORDER BY h.position)) AS host_ids"
        }
    }
}

/// Hand-written SQL (the city statements over `city_activities ca`, the
/// search page) with its values bound in order.
struct BoundSql {
    backend: DatabaseBackend,
    text: String,
    values: Vec<sea_orm::Value>,
}

impl BoundSql {
    fn new(backend: DatabaseBackend) -> Self {
        Self {
            backend,
            text: String::with_capacity(512),
            values: Vec::with_capacity(8),
        }
    }

    /// Binds a value; returns its placeholder.
    fn bind(&mut self, value: impl Into<sea_orm::Value>) -> String {
        self.values.push(value.into());
        super::mark(self.backend, self.values.len())
    }

    /// `SELECT <activity columns>, <host_ids> FROM (SELECT ca.activity_id
    /// <inner> FROM city_activities ca WHERE <the city's conditions>`: the
    /// start of both city statements, which close the subquery themselves.
    fn city_rows(
        backend: DatabaseBackend,
        scope: ReadScope,
        filter: &ActivityFilter,
        city: &str,
        inner: &str,
    ) -> Self {
        let mut sql = Self::new(backend);
        sql.text.push_str("SELECT ");
        sql.text.push_str(&ACTIVITY_COLUMNS);
        sql.text.push_str(host_ids_column(backend));
        sql.text.push_str(" FROM (SELECT ca.activity_id");
        sql.text.push_str(inner);
        sql.text.push_str(" FROM city_activities ca WHERE ");
        sql.city_conditions(scope, filter, city);
        sql
    }

    /// Binds a cursor's integer key and id; returns their placeholders (a
    /// start-date or update cursor always holds an integer key).
    fn bind_cursor(&mut self, cursor: &Cursor) -> (String, String) {
        let key = match cursor.key {
            CursorKey::Int(k) => k,
            CursorKey::Text(_) => 0,
        };
        (self.bind(key), self.bind(cursor.id))
    }

    /// Binds the `first + 1` rows a page reads; returns the placeholder.
    fn bind_limit(&mut self, first: u64) -> String {
        self.bind(i64::try_from(first + 1).unwrap_or(i64::MAX))
    }

    /// The statement built so far.
    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }

    /// The city, statuses, scope and date range, as `ca` conditions.
    fn city_conditions(&mut self, scope: ReadScope, filter: &ActivityFilter, city: &str) {
        let slug = self.bind(city.to_owned());
        self.text.push_str(&format!(
            "ca.city_id = (SELECT id FROM cities WHERE slug = {slug})"
        ));
        let statuses = filter
            .statuses
            .clone()
            .unwrap_or_else(|| vec![ActivityStatus::Published]);
        let marks: Vec<String> = statuses.iter().map(|s| self.bind(s.as_str())).collect();
        match marks.as_slice() {
            // No status selects nothing (PostgreSQL refuses `IN ()`).
            [] => self.text.push_str(" AND 1 = 0"),
            [mark] => self.text.push_str(&format!(" AND ca.status = {mark}")),
            _ => self
                .text
                .push_str(&format!(" AND ca.status IN ({})", marks.join(", "))),
        }
        match scope {
            ReadScope::All => {}
            ReadScope::Public => self.text.push_str(" AND ca.status <> 'DRAFT'"),
            ReadScope::City(id) => {
                let id = self.bind(id.get());
                self.text.push_str(&format!(
                    " AND (ca.status <> 'DRAFT' OR ca.published_by = {id})"
                ));
            }
        }
        if let Some(from) = filter.from {
            let k = self.bind(date_key(Some(from)));
            self.text.push_str(&format!(" AND ca.end_key >= {k}"));
        }
        if let Some(to) = filter.to {
            let k = self.bind(date_key(Some(to)));
            self.text
                .push_str(&format!(" AND ca.start_key <= {k} AND ca.start_key > 0"));
        }
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

    /// The activity with this id, if the scope may see it.
    pub async fn find_by_id(
        db: &impl ReadConnection,
        scope: ReadScope,
        id: ActivityId,
    ) -> Result<Option<Activity>, StorageError> {
        let model = find_one(
            db,
            activity::Entity::find_by_id(id.get()).filter(scope.condition()),
        )
        .await?;
        Ok(Self::with_hosts(db, model.into_iter().collect())
            .await?
            .pop())
    }

    /// The activity with this slug, if the scope may see it.
    pub async fn find_by_slug(
        db: &impl ReadConnection,
        scope: ReadScope,
        slug: &str,
    ) -> Result<Option<Activity>, StorageError> {
        let model = find_one(
            db,
            activity::Entity::find()
                .filter(activity::Column::Slug.eq(slug))
                .filter(scope.condition()),
        )
        .await?;
        Ok(Self::with_hosts(db, model.into_iter().collect())
            .await?
            .pop())
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
        let models = find_all(
            db,
            activity::Entity::find().filter(super::id_in(
                db.get_database_backend(),
                "activities.id",
                ids,
            )),
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
        let (city_mark, state_mark) = (super::mark(backend, 1), super::mark(backend, 2));
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
            .filter(scope.condition())
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
        if let Some(city) = city_index_slug(filter) {
            if let Some(descending) = start_date_descending(order) {
                return Self::city_page(db, scope, filter, city, descending, first, after).await;
            }
            if order == ActivityOrder::UpdatedAtDesc {
                let statement = Self::city_updated_statement(
                    db.get_database_backend(),
                    scope,
                    filter,
                    city,
                    first,
                    after,
                );
                return Self::city_rows(db, statement, first).await;
            }
        }
        if filter.text.is_some()
            && db.get_database_backend() == DatabaseBackend::Sqlite
            && let Some(descending) = start_date_descending(order)
        {
            return Self::search_page(db, scope, filter, descending, first, after).await;
        }
        let mut query = activity::Entity::find()
            .filter(scope.condition())
            .filter(filter_condition(filter, db.get_database_backend()));
        if let Some(cursor) = after {
            query = query.filter(keyset(order, cursor));
        }
        let mut models = find_all(db, ordered(query, order).limit(first + 1)).await?;
        let has_next = models.len() as u64 > first;
        models.truncate(first as usize);
        Ok(Page {
            items: Self::with_hosts(db, models).await?,
            has_next,
        })
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
            return super::count(db, sql.statement()).await;
        }
        if let Some(total) = super::stats::StatsRepo::kept_total(db, scope, filter).await? {
            return Ok(u64::try_from(total).unwrap_or(0));
        }
        count_all(
            db,
            activity::Entity::find()
                .filter(scope.condition())
                .filter(filter_condition(filter, db.get_database_backend())),
        )
        .await
    }

    /// A page of one city's activities by start date, through the
    /// `city_activities` index: a range scan of `first + 1` entries, then
    /// the rows by primary key, in one statement. The inner query is limited
    /// before the join, so the plan cannot depend on table statistics.
    async fn city_page(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
        city: &str,
        descending: bool,
        first: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<Activity>, StorageError> {
        let statement = Self::city_page_statement(
            db.get_database_backend(),
            scope,
            filter,
            city,
            descending,
            first,
            after,
        );
        Self::city_rows(db, statement, first).await
    }

    /// A search page by start date on SQLite: `activity_search` is walked in
    /// its rowid order, which is the listing's, and each match joins its
    /// row by primary key, where the scope and the other filters apply; the
    /// walk stops after the page. Prefix terms are expanded to the words
    /// they cover (`search_vocab`), which FTS5 reads lazily, in rowid order.
    async fn search_page(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
        descending: bool,
        first: u64,
        after: Option<&Cursor>,
    ) -> Result<Page<Activity>, StorageError> {
        let terms =
            text::search_terms(filter.text.as_deref().unwrap_or_default(), MAX_SEARCH_TERMS);
        if terms.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                has_next: false,
            });
        }
        let mut groups = Vec::with_capacity(terms.len());
        for term in &terms {
            groups.push(Self::expand_term(db, term).await?);
        }
        let statement = Self::search_page_statement(
            scope,
            filter,
            &groups.join(" AND "),
            descending,
            first,
            after,
        );
        Self::city_rows(db, statement, first).await
    }

    /// One search term as an FTS5 expression: the words that start with it
    /// (`("design" OR "designers")`), or the prefix form when there are
    /// none (it then matches nothing, cheaply) or too many.
    async fn expand_term(db: &impl ReadConnection, term: &str) -> Result<String, StorageError> {
        let statement = Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "SELECT term FROM search_vocab WHERE term >= ?1 AND term < ?1 || char(1114111) \
             ORDER BY term LIMIT ?2",
            [
                term.into(),
                i64::try_from(MAX_TERM_WORDS + 1).unwrap_or(i64::MAX).into(),
            ],
        );
        let words: Vec<String> = if let Some(reader) = db.sqlite_reader() {
            reader.query(&statement, |row| {
                row.get::<_, String>(0).map_err(reader_error)
            })?
        } else {
            db.query_all_raw(statement)
                .await?
                .iter()
                .map(|r| r.try_get::<String>("", "term"))
                .collect::<Result<_, _>>()?
        };
        // Terms and words are alphanumeric runs (`text::search_terms`,
        // `text::search_document`): nothing in them needs quoting. A word
        // that is not (no version writes one) is left out rather than
        // quoted.
        let words: Vec<String> = words
            .into_iter()
            .filter(|w| w.chars().all(char::is_alphanumeric))
            .collect();
        Ok(match words.as_slice() {
            [] => fts_prefix(term),
            many if many.len() > MAX_TERM_WORDS => fts_prefix(term),
            [one] => format!("\"{one}\""),
            many => format!(
                "({})",
                many.iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
        })
    }

    /// The statement of [`Self::search_page`]. Public so tests can
    /// `EXPLAIN` exactly what runs.
    pub fn search_page_statement(
        scope: ReadScope,
        filter: &ActivityFilter,
        fts: &str,
        descending: bool,
        first: u64,
        after: Option<&Cursor>,
    ) -> Statement {
        let backend = DatabaseBackend::Sqlite;
        // The scope and every filter but the text, as conditions on the
        // joined row (sea-query renders them; we keep its WHERE clause).
        let rest = ActivityFilter {
            text: None,
            ..filter.clone()
        };
        let (conditions, rest_values) = sea_orm::sea_query::Query::select()
            .column((activity::Entity, activity::Column::Id))
            .from(activity::Entity)
            .cond_where(
                Condition::all()
                    .add(scope.condition())
                    .add(filter_condition(&rest, backend)),
            )
            .build(sea_orm::sea_query::SqliteQueryBuilder);
        let conditions = conditions
            .split_once(" WHERE ")
            .map_or("1 = 1", |(_, c)| c)
            .to_owned();
        let mut sql = BoundSql::new(backend);
        sql.text.push_str("SELECT ");
        sql.text.push_str(&ACTIVITY_COLUMNS);
        sql.text.push_str(host_ids_column(backend));
        // CROSS JOIN keeps `activity_search` the outer loop: its order is
        // the page's, so no sort and no reading past the page.
        sql.text.push_str(&format!(
            " FROM activity_search CROSS JOIN activities \
             ON activities.id = (activity_search.rowid & {SEARCH_ID_MASK}) \
             WHERE activity_search MATCH "
        ));
        let m = sql.bind(fts.to_owned());
        sql.text.push_str(&m);
        if let Some(cursor) = after {
            let key = match cursor.key {
                CursorKey::Int(k) => k.clamp(0, (1 << 27) - 1),
                CursorKey::Text(_) => 0,
            };
            let id = cursor.id.clamp(0, SEARCH_ID_MASK);
            let op = if descending { "<" } else { ">" };
            let k = sql.bind((key << 36) | id);
            sql.text
                .push_str(&format!(" AND activity_search.rowid {op} {k}"));
        }
        // sea-query's `?` placeholders are positional: its values follow
        // ours in the same order.
        sql.text.push_str(&format!(" AND ({conditions})"));
        sql.values.extend(rest_values.0);
        let limit = sql.bind_limit(first);
        let dir = if descending { "DESC" } else { "ASC" };
        sql.text.push_str(&format!(
            " ORDER BY activity_search.rowid {dir} LIMIT {limit}"
        ));
        sql.statement()
    }

    /// The page of a city statement's rows (the activity's columns and its
    /// `host_ids`).
    async fn city_rows(
        db: &impl ReadConnection,
        statement: Statement,
        first: u64,
    ) -> Result<Page<Activity>, StorageError> {
        let host_ids = |model: &activity::Model, text: Option<&str>| {
            text.unwrap_or_default()
                .split(',')
                .filter(|id| !id.is_empty())
                .map(|id| {
                    id.parse().map(CityId).map_err(|_| {
                        Row::new("activity_cities", &model.id)
                            .corrupt("city_id", format!("not an id: {id:?}"))
                    })
                })
                .collect::<Result<Vec<CityId>, _>>()
        };
        let mut items = if let Some(reader) = db.sqlite_reader() {
            let host_column = activity::Model::columns().len();
            reader.query_models_with(&statement, |model: activity::Model, row| {
                let text = Columns::new("activities", row)?.str_opt(host_column, "host_ids")?;
                let hosts = host_ids(&model, text)?;
                to_activity(model, hosts)
            })?
        } else {
            let rows = db.query_all_raw(statement).await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                let model =
                    <activity::Model as sea_orm::FromQueryResult>::from_query_result(row, "")?;
                let hosts: Option<String> = row.try_get("", "host_ids")?;
                let hosts = host_ids(&model, hosts.as_deref())?;
                items.push(to_activity(model, hosts)?);
            }
            items
        };
        let has_next = items.len() as u64 > first;
        items.truncate(first as usize);
        Ok(Page { items, has_next })
    }

    /// The statement of [`Self::page`] for one city by start date, the
    /// page's hosts included (in order, as `host_ids` "1,2,3"): one
    /// statement. Public so tests can `EXPLAIN` exactly what runs.
    pub fn city_page_statement(
        backend: DatabaseBackend,
        scope: ReadScope,
        filter: &ActivityFilter,
        city: &str,
        descending: bool,
        first: u64,
        after: Option<&Cursor>,
    ) -> Statement {
        let mut sql = BoundSql::city_rows(backend, scope, filter, city, ", ca.start_key");
        let dir = if descending { "DESC" } else { "ASC" };
        if let Some(cursor) = after {
            let op = if descending { "<" } else { ">" };
            let (k, id) = sql.bind_cursor(cursor);
            sql.text.push_str(&format!(
                " AND (ca.start_key, ca.activity_id) {op} ({k}, {id})"
            ));
        }
        let limit = sql.bind_limit(first);
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
    ) -> Statement {
        let mut sql = BoundSql::city_rows(backend, scope, filter, city, "");
        sql.text
            .push_str(") ca JOIN activities ON activities.id = ca.activity_id");
        if let Some(cursor) = after {
            let (k, id) = sql.bind_cursor(cursor);
            sql.text.push_str(&format!(
                " WHERE (activities.updated_at < {k} OR (activities.updated_at = {k} AND activities.id < {id}))"
            ));
        }
        let limit = sql.bind_limit(first);
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
                .filter(super::id_in(
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
                .filter(super::id_in(
                    db.get_database_backend(),
                    "documents.activity_id",
                    ids,
                ))
                .order_by_asc(document::Column::ActivityId)
                .order_by_asc(document::Column::Position),
        )
        .await?;
        for m in rows {
            let row = Row::new("documents", &m.id);
            let document = Document {
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
            };
            out.entry(ActivityId(m.activity_id))
                .or_default()
                .push(document);
        }
        Ok(out)
    }

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

    /// Inserts a new activity with its relations; returns it as stored
    /// (from the insert's `RETURNING`, without reading it back).
    pub async fn insert_returning(
        db: &impl ConnectionTrait,
        write: &ActivityWrite,
        status: ActivityStatus,
        published_by: Option<CityId>,
    ) -> Result<Activity, StorageError> {
        let now = now_micros();
        let mut model = Self::columns(write);
        model.status = Set(status.as_str().to_owned());
        model.published_by = Set(published_by.map(CityId::get));
        model.published_at = Set((status != ActivityStatus::Draft).then_some(now));
        model.created_at = Set(now);
        model.updated_at = Set(now);
        model.version = Set(1);
        let model = model.insert(db).await?;
        Self::write_relations(db, ActivityId(model.id), write).await?;
        let mut hosts = write.hosts.clone();
        dedup_in_order(&mut hosts);
        to_activity(model, hosts)
    }

    /// Inserts a new activity with its relations; returns its id.
    pub async fn insert(
        db: &impl ConnectionTrait,
        write: &ActivityWrite,
        status: ActivityStatus,
        published_by: Option<CityId>,
    ) -> Result<ActivityId, StorageError> {
        let now = now_micros();
        let mut model = Self::columns(write);
        model.status = Set(status.as_str().to_owned());
        model.published_by = Set(published_by.map(CityId::get));
        model.published_at = Set((status != ActivityStatus::Draft).then_some(now));
        model.created_at = Set(now);
        model.updated_at = Set(now);
        model.version = Set(1);
        let id = ActivityId(model.insert(db).await?.id);
        Self::write_relations(db, id, write).await?;
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
        let result = activity::Entity::update_many()
            .set(model)
            .filter(activity::Column::Id.eq(id.get()))
            .filter(activity::Column::Version.eq(version))
            .exec(db)
            .await?;
        if result.rows_affected != 1 {
            return Err(StorageError::Conflict(
                "the activity changed meanwhile".into(),
            ));
        }
        Self::clear_relations(db, id).await?;
        Self::write_relations(db, id, write).await?;
        Ok(version + 1)
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
        let mut hosts = hosts.to_vec();
        dedup_in_order(&mut hosts);
        if !hosts.is_empty() {
            let rows = hosts
                .iter()
                .enumerate()
                .map(|(i, city)| activity_city::ActiveModel {
                    activity_id: Set(id.get()),
                    role: Set(HOST.to_owned()),
                    city_id: Set(city.get()),
                    position: Set(i as i32),
                });
            activity_city::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await?;
        }
        Ok(())
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

    /// Inserts an activity's hosts, invitations, fields, themes and
    /// documents.
    async fn write_relations(
        db: &impl ConnectionTrait,
        id: ActivityId,
        write: &ActivityWrite,
    ) -> Result<(), StorageError> {
        Self::insert_hosts(db, id, &write.hosts).await?;
        InvitationRepo::insert(db, id, &write.invitations).await?;
        if !write.input.fields.is_empty() {
            let rows = write
                .input
                .fields
                .iter()
                .map(|f| activity_field::ActiveModel {
                    activity_id: Set(id.get()),
                    field: Set(f.as_str().to_owned()),
                });
            activity_field::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await?;
        }
        let mut theme_keys: Vec<String> = write.input.themes.iter().map(|t| theme_key(t)).collect();
        dedup_in_order(&mut theme_keys);
        if !theme_keys.is_empty() {
            let rows = theme_keys.into_iter().map(|k| activity_theme::ActiveModel {
                activity_id: Set(id.get()),
                theme_key: Set(k),
            });
            activity_theme::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await?;
        }
        if !write.input.documents.is_empty() {
            let rows =
                write
                    .input
                    .documents
                    .iter()
                    .enumerate()
                    .map(|(i, d)| document::ActiveModel {
                        activity_id: Set(id.get()),
                        position: Set(i as i32),
                        kind: Set(d.kind.as_str().to_owned()),
                        title: Set(d.title.clone()),
                        url: Set(d.url.clone()),
                        issued_on: Set(d.issued_on),
                        issued_precision: Set(d.issued_precision.as_str().to_owned()),
                        editors: Set(to_json(&d.editors)),
                        ..Default::default()
                    });
            document::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await?;
        }
        Ok(())
    }
}

fn dedup_in_order<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::with_capacity(items.len());
    items.retain(|x| {
        if seen.contains(x) {
            false
        } else {
            seen.push(x.clone());
            true
        }
    });
}
