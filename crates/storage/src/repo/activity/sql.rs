//! The hand-written activity statements' builder: the model's columns, an
//! activity's hosts as one column, and SQL text with its values bound in
//! order (the city statements over `city_activities`, the search page).

use cityhub_domain::{ActivityFilter, ReadScope};
use sea_orm::{DatabaseBackend, Statement};

use crate::cursor::{Cursor, CursorKey};
use crate::entities::activity;
use crate::repo::city_directory::CITIES_VERSION_COLUMN;
use crate::repo::conditions::{ScopedRows, scope_sql};
use crate::repo::mark;
use crate::time::date_key;

/// Which of an activity's long texts a read returns. Every read leaves
/// out the folded search text, which none returns and which is as long as
/// the description; a listing whose query selects no `description` leaves
/// that out too (a page of 21 rows then moves about 25 KB less from the
/// database, and decodes it less).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivityTexts {
    /// The description too.
    #[default]
    All,
    /// `description` read as NULL: for reads whose callers never look at it.
    WithoutDescription,
}

/// Whether a statement that reads activities (a one-city or search page,
/// a detail) reads one of their relations too, as one column per
/// activity, instead of leaving it to a query of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelationRead {
    /// Not read by the statement.
    #[default]
    Apart,
    /// Read by it, in order, into the [`crate::Page`]'s field of that name.
    InPage,
}

/// What a page statement reads beside the activities' own short columns
/// and hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageColumns {
    /// The long texts.
    pub texts: ActivityTexts,
    /// The documents (`documents`, JSON).
    pub documents: RelationRead,
    /// The participant cities (`participant_ids`, "1,2,3").
    pub participants: RelationRead,
}

impl From<ActivityTexts> for PageColumns {
    fn from(texts: ActivityTexts) -> Self {
        Self {
            texts,
            ..Self::default()
        }
    }
}

/// `activities.id, activities.slug, …`: the model's columns (never `*`,
/// which on PostgreSQL would also fetch the `tsvector`), the texts `texts`
/// leaves out as empty values of the same shape (`'' AS search_text`,
/// `CAST(NULL AS TEXT) AS description`).
pub(super) fn activity_columns(texts: ActivityTexts) -> &'static str {
    fn build(texts: ActivityTexts) -> String {
        use sea_orm::{IdenStatic, Iterable};
        activity::Column::iter()
            .map(|c| match left_out(c, texts) {
                Some(empty) => format!("{empty} AS {}", c.as_str()),
                None => format!("activities.{}", c.as_str()),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    static ALL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| build(ActivityTexts::All));
    static LEAN: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| build(ActivityTexts::WithoutDescription));
    match texts {
        ActivityTexts::All => &ALL,
        ActivityTexts::WithoutDescription => &LEAN,
    }
}

/// The empty value read instead of column `c`, if `texts` leaves it out.
fn left_out(c: activity::Column, texts: ActivityTexts) -> Option<&'static str> {
    match (c, texts) {
        (activity::Column::SearchText, _) => Some("''"),
        (activity::Column::Description, ActivityTexts::WithoutDescription) => {
            Some("CAST(NULL AS TEXT)")
        }
        _ => None,
    }
}

/// `query` reading the columns of [`activity_columns`] instead of every
/// column of the table.
pub(super) fn select_texts(
    query: sea_orm::Select<activity::Entity>,
    texts: ActivityTexts,
) -> sea_orm::Select<activity::Entity> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{IdenStatic, Iterable, QuerySelect};
    activity::Column::iter().fold(query.select_only(), |query, c| match left_out(c, texts) {
        Some(empty) => query.expr_as(Expr::cust(empty), c.as_str()),
        None => query.column(c),
    })
}

/// `, (…) AS host_ids, (…) AS cities_version`: an activity's hosts in order
/// ("1,2,3"), per backend, and the `cities_version` the statement saw
/// (for [`crate::Db::cities`]); then the documents and participants
/// `columns` asks for: the columns [`ActivityRepo::page_rows`] reads after
/// the model's, in this order.
///
/// [`ActivityRepo::page_rows`]: super::ActivityRepo
pub(super) fn push_relation_columns(
    text: &mut String,
    backend: DatabaseBackend,
    columns: PageColumns,
) {
    push_city_ids(text, backend, "HOST", "host_ids");
    text.push_str(CITIES_VERSION_COLUMN);
    if columns.documents == RelationRead::InPage {
        // Each document as `[id, kind, title, url, issued_on,
        // issued_precision, editors]`, in order (`decode_documents`).
        text.push_str(match backend {
            DatabaseBackend::Postgres => {
                ", (SELECT json_agg(json_build_array(d.id, d.kind, d.title, d.url, d.issued_on, \
                 d.issued_precision, d.editors) ORDER BY d.position)::text FROM documents d \
                 WHERE d.activity_id = activities.id) AS documents"
            }
            _ => {
                ", (SELECT json_group_array(json_array(d.id, d.kind, d.title, d.url, d.issued_on, \
                 d.issued_precision, d.editors)) FROM (SELECT * FROM documents d \
                 WHERE d.activity_id = activities.id ORDER BY d.position) d) AS documents"
            }
        });
    }
    if columns.participants == RelationRead::InPage {
        push_city_ids(text, backend, "PARTICIPANT", "participant_ids");
    }
}

/// `, (…) AS <name>`: the ids of an activity's cities in `role`, in order
/// ("1,2,3"), per backend.
fn push_city_ids(text: &mut String, backend: DatabaseBackend, role: &str, name: &str) {
    text.push_str(&match backend {
        DatabaseBackend::Postgres => format!(
            ", (SELECT string_agg(h.city_id::text, ',' ORDER BY h.position) FROM activity_cities h \
             WHERE h.activity_id = activities.id AND h.role = '{role}') AS {name}"
        ),
        _ => format!(
            ", (SELECT group_concat(city_id) FROM (SELECT h.city_id FROM activity_cities h \
             WHERE h.activity_id = activities.id AND h.role = '{role}' ORDER BY h.position)) AS {name}"
        ),
    });
}

/// Hand-written SQL (the city statements over `city_activities ca`, the
/// search page) with its values bound in order.
pub(super) struct BoundSql {
    pub(super) backend: DatabaseBackend,
    pub(super) text: String,
    pub(super) values: Vec<sea_orm::Value>,
}

impl BoundSql {
    pub(super) fn new(backend: DatabaseBackend) -> Self {
        Self {
            backend,
            text: String::with_capacity(512),
            values: Vec::with_capacity(8),
        }
    }

    /// Binds a value; returns its placeholder.
    pub(super) fn bind(&mut self, value: impl Into<sea_orm::Value>) -> String {
        self.values.push(value.into());
        mark(self.backend, self.values.len())
    }

    /// `SELECT <activity columns>, <host_ids> FROM (SELECT ca.activity_id
    /// <inner> FROM city_activities ca WHERE <the city's conditions>`: the
    /// start of both city statements, which close the subquery themselves.
    pub(super) fn city_rows(
        backend: DatabaseBackend,
        scope: ReadScope,
        filter: &ActivityFilter,
        city: &str,
        inner: &str,
        columns: PageColumns,
    ) -> Self {
        let mut sql = Self::new(backend);
        sql.text.push_str("SELECT ");
        sql.text.push_str(activity_columns(columns.texts));
        push_relation_columns(&mut sql.text, backend, columns);
        sql.text.push_str(" FROM (SELECT ca.activity_id");
        sql.text.push_str(inner);
        sql.text.push_str(" FROM city_activities ca WHERE ");
        sql.city_conditions(scope, filter, city);
        sql
    }

    /// Binds a cursor's integer key and id; returns their placeholders (a
    /// start-date or update cursor always holds an integer key).
    pub(super) fn bind_cursor(&mut self, cursor: &Cursor) -> (String, String) {
        let key = match cursor.key {
            CursorKey::Int(k) => k,
            CursorKey::Text(_) => 0,
        };
        (self.bind(key), self.bind(cursor.id))
    }

    /// The `first + 1` rows a page reads, written into the statement, not
    /// bound: PostgreSQL estimates a generic plan's `LIMIT $n` at a tenth
    /// of the rows, so past some 100,000 activities the generic plan
    /// looked dearer than a custom one and every execution was planned
    /// again (8,398 plans in 8,382 listings at 100k, 0.37 ms each, against
    /// 96 at 10k: `pg_stat_statements`). A literal keeps the estimate at
    /// the page; page sizes are bounded (`api.max_page_size`), so each
    /// connection prepares a handful of texts at most.
    pub(super) fn limit(first: u64) -> String {
        first.saturating_add(1).to_string()
    }

    /// The statement built so far.
    pub(super) fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }

    /// The city, statuses, scope and date range, as `ca` conditions.
    pub(super) fn city_conditions(
        &mut self,
        scope: ReadScope,
        filter: &ActivityFilter,
        city: &str,
    ) {
        let slug = self.bind(city.to_owned());
        self.text.push_str(&format!(
            "ca.city_id = (SELECT id FROM cities WHERE slug = {slug})"
        ));
        let marks: Vec<String> = filter
            .statuses()
            .iter()
            .map(|s| self.bind(s.as_str()))
            .collect();
        match marks.as_slice() {
            // No status selects nothing (PostgreSQL refuses `IN ()`).
            [] => self.text.push_str(" AND 1 = 0"),
            [mark] => self.text.push_str(&format!(" AND ca.status = {mark}")),
            _ => self
                .text
                .push_str(&format!(" AND ca.status IN ({})", marks.join(", "))),
        }
        let visible = scope_sql(scope, ScopedRows::CityIndex("ca"), |id| self.bind(id));
        if !visible.is_empty() {
            self.text.push_str(" AND ");
            self.text.push_str(&visible);
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
