//! Full-text search pages by start date on SQLite: `activity_search` walked
//! in its rowid order, prefix terms expanded through `search_vocab`.

use cityhub_domain::{Activity, ActivityFilter, ReadScope};
use sea_orm::{Condition, DatabaseBackend, Statement};

use super::ActivityRepo;
use super::sql::{BoundSql, PageColumns, activity_columns, push_relation_columns};
use crate::cursor::{Cursor, CursorKey};
use crate::db::ReadConnection;
use crate::entities::activity;
use crate::error::StorageError;
use crate::repo::Page;
use crate::repo::conditions::{SEARCH_ID_MASK, ScopeCondition, filter_condition, fts_prefix};
use crate::sqlite_read::reader_error;

/// A search term that expands to more words than this keeps FTS5's prefix
/// form (`"t"*`): correct, but it merges every word's matches first.
const MAX_TERM_WORDS: usize = 64;

impl ActivityRepo {
    /// A search page by start date on SQLite: `activity_search` is walked in
    /// its rowid order, which is the listing's, and each match joins its
    /// row by primary key, where the scope and the other filters apply; the
    /// walk stops after the page. Prefix terms are expanded to the words
    /// they cover (`search_vocab`), which FTS5 reads lazily, in rowid order.
    pub(super) async fn search_page(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
        descending: bool,
        first: u64,
        after: Option<&Cursor>,
        columns: PageColumns,
    ) -> Result<Page<Activity>, StorageError> {
        let terms = filter.search_terms().unwrap_or_default();
        if terms.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                has_next: false,
                cities_version: None,
                documents: None,
                participants: None,
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
            columns,
        );
        Self::page_rows(db, statement, first, columns).await
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
        columns: PageColumns,
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
                    .add(scope.condition(backend))
                    .add(filter_condition(&rest, backend)),
            )
            .build(sea_orm::sea_query::SqliteQueryBuilder);
        let conditions = conditions
            .split_once(" WHERE ")
            .map_or("1 = 1", |(_, c)| c)
            .to_owned();
        let mut sql = BoundSql::new(backend);
        sql.text.push_str("SELECT ");
        sql.text.push_str(activity_columns(columns.texts));
        push_relation_columns(&mut sql.text, backend, columns);
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
        let limit = BoundSql::limit(first);
        let dir = if descending { "DESC" } else { "ASC" };
        sql.text.push_str(&format!(
            " ORDER BY activity_search.rowid {dir} LIMIT {limit}"
        ));
        sql.statement()
    }
}
