//! The hand-written activity statements' builder: the model's columns, an
//! activity's hosts as one column, and SQL text with its values bound in
//! order (the city statements over `city_activities`, the search page).

use cityhub_domain::{ActivityFilter, ReadScope};
use sea_orm::{DatabaseBackend, Statement};

use crate::cursor::{Cursor, CursorKey};
use crate::entities::activity;
use crate::repo::mark;
use crate::time::date_key;

/// `activities.id, activities.slug, …`: the model's columns (never `*`,
/// which on PostgreSQL would also fetch the `tsvector`), except the folded
/// search text, which no read returns and which is as long as the
/// description: `'' AS search_text` keeps the model's shape without
/// reading it (a city's calendar of 300 rows moved about 300 KB less).
pub(super) static ACTIVITY_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
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
pub(super) fn host_ids_column(backend: DatabaseBackend) -> &'static str {
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
    pub(super) fn bind_cursor(&mut self, cursor: &Cursor) -> (String, String) {
        let key = match cursor.key {
            CursorKey::Int(k) => k,
            CursorKey::Text(_) => 0,
        };
        (self.bind(key), self.bind(cursor.id))
    }

    /// Binds the `first + 1` rows a page reads; returns the placeholder.
    pub(super) fn bind_limit(&mut self, first: u64) -> String {
        self.bind(i64::try_from(first + 1).unwrap_or(i64::MAX))
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
