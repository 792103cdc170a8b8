//! Repositories, one per aggregate. Every method takes `&impl
//! ConnectionTrait`, so the same call works on the pool or inside a
//! service's transaction; none begins a transaction of its own.

pub mod activity;
pub mod audit;
pub mod city;
pub mod events;
pub mod persisted;
pub mod stats;
pub mod tokens;
pub mod version;

use sea_orm::{DatabaseBackend, Value};

/// One page of a keyset-paginated listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, in order.
    pub items: Vec<T>,
    /// Whether rows follow the last one.
    pub has_next: bool,
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
