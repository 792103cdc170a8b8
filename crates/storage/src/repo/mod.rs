//! Repositories, one per aggregate. Every method takes `&impl
//! ConnectionTrait`, so the same call works on the pool or inside a
//! service's transaction; none begins a transaction of its own.

pub mod activity;
pub mod audit;
pub mod city;
pub mod city_directory;
pub(crate) mod conditions;
pub mod events;
pub mod fact_index;
pub mod invitation;
pub mod persisted;
pub mod source;
pub mod stats;
pub mod tokens;
pub mod version;

use cityhub_domain::{ActivityId, Document};
use sea_orm::{DatabaseBackend, EntityTrait, QuerySelect, QueryTrait, Select, Statement, Value};

use crate::db::ReadConnection;
use crate::error::StorageError;
use crate::sqlite_read::FromSqliteRow;

/// The models `select` finds: stepped on SQLite's read connections when
/// `db` has them (`sqlite_read.rs`), else through sea-orm. Same statement,
/// same rows.
pub(crate) async fn find_all<E>(
    db: &impl ReadConnection,
    select: Select<E>,
) -> Result<Vec<E::Model>, StorageError>
where
    E: EntityTrait,
    E::Model: FromSqliteRow,
{
    if let Some(reader) = db.sqlite_reader() {
        return reader.models(&select.build(DatabaseBackend::Sqlite));
    }
    Ok(select.all(db).await?)
}

/// The first model `select` finds (see [`find_all`]).
pub(crate) async fn find_one<E>(
    db: &impl ReadConnection,
    select: Select<E>,
) -> Result<Option<E::Model>, StorageError>
where
    E: EntityTrait,
    E::Model: FromSqliteRow,
{
    Ok(find_all(db, select.limit(1)).await?.pop())
}

/// How many rows `select` finds (see [`find_all`]).
pub(crate) async fn count_all<E: EntityTrait>(
    db: &impl ReadConnection,
    select: Select<E>,
) -> Result<u64, StorageError> {
    let inner = select.build(db.get_database_backend());
    count(
        db,
        Statement {
            sql: format!("SELECT COUNT(*) AS n FROM ({}) AS counted", inner.sql),
            ..inner
        },
    )
    .await
}

/// The count a `SELECT COUNT(*) AS n …` statement answers, on SQLite's
/// read connections when `db` has them.
pub(crate) async fn count(
    db: &impl ReadConnection,
    statement: Statement,
) -> Result<u64, StorageError> {
    let n = if let Some(reader) = db.sqlite_reader() {
        reader
            .query(&statement, |row| {
                row.get::<_, i64>(0)
                    .map_err(crate::sqlite_read::reader_error)
            })?
            .first()
            .copied()
            .unwrap_or(0)
    } else {
        match db.query_one_raw(statement).await? {
            Some(row) => row.try_get::<i64>("", "n")?,
            None => 0,
        }
    };
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in order.
    pub items: Vec<T>,
    /// Whether rows follow the last one.
    pub has_next: bool,
    /// The `hub_meta.cities_version` the page's statement saw, when it read
    /// it: the cities its rows name are then read from
    /// [`crate::Db::cities`] at least that new, without a statement.
    pub cities_version: Option<i64>,
    /// The documents of a page of activities, when its statement read them
    /// ([`activity::RelationRead::InPage`]): every item's, in order.
    pub documents: Option<std::collections::HashMap<ActivityId, Vec<Document>>>,
    /// The participant cities of a page of activities, when its statement
    /// read them: every item's, in order.
    pub participants: Option<std::collections::HashMap<ActivityId, Vec<cityhub_domain::CityId>>>,
}

/// `(?, ?, ?)` with one placeholder per value, and the values, for `IN`
/// lists inside custom SQL fragments.
/// sea-query spells custom-fragment placeholders per backend (`?` on
/// SQLite, `$n` on PostgreSQL); `first` is the 1-based number of the first.
pub(crate) fn in_list<V: Into<Value>>(
    backend: DatabaseBackend,
    first: usize,
    values: impl IntoIterator<Item = V>,
) -> (String, Vec<Value>) {
    let values: Vec<Value> = values.into_iter().map(Into::into).collect();
    let marks: Vec<String> = (0..values.len())
        .map(|i| mark(backend, first + i))
        .collect();
    (format!("({})", marks.join(", ")), values)
}

/// `column` is one of `ids`, with the ids bound as ONE parameter, so the
/// statement's text is the same for any number of ids and its prepared form
/// is reused. An `IN (?, ?, …)` list makes a different statement for every
/// length, which SQLite parsed and planned again on most requests
/// (`sqlite3RunParser`, `whereLoopAddBtreeIndex` in the listing's profile,
/// BENCHMARKS.md) and which evicts other statements from sqlx's cache.
/// SQLite reads the set with `json_each`, PostgreSQL as a `bigint[]`;
/// both use the column's index for each id.
pub(crate) fn id_in(
    backend: DatabaseBackend,
    column: &str,
    ids: &[impl Copy + Into<i64>],
) -> sea_orm::sea_query::Expr {
    let list = ids
        .iter()
        .map(|&id| id.into().to_string())
        .collect::<Vec<_>>()
        .join(",");
    match backend {
        DatabaseBackend::Postgres => sea_orm::sea_query::Expr::cust_with_values(
            format!("{column} = ANY(string_to_array($1, ',')::bigint[])"),
            [list],
        ),
        _ => sea_orm::sea_query::Expr::cust_with_values(
            format!("{column} IN (SELECT value FROM json_each(?))"),
            [format!("[{list}]")],
        ),
    }
}

/// The placeholder for the `n`th (1-based) value of a custom fragment.
pub(crate) fn mark(backend: DatabaseBackend, n: usize) -> String {
    match backend {
        DatabaseBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// Encodes a list for a JSON list column.
pub(crate) fn to_json<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}
