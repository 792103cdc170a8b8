//! Repositories, one per aggregate. Every method takes `&impl
//! ConnectionTrait`, so the same call works on the pool or inside a
//! service's transaction; none begins a transaction of its own.

pub mod activity;
pub mod audit;
pub mod city;
pub mod events;
pub mod tokens;

use sea_orm::Value;

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
pub(crate) fn in_list<V: Into<Value>>(values: impl IntoIterator<Item = V>) -> (String, Vec<Value>) {
    let values: Vec<Value> = values.into_iter().map(Into::into).collect();
    let marks = vec!["?"; values.len()].join(", ");
    (format!("({marks})"), values)
}

/// Decodes a JSON list column.
pub(crate) fn json_list<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Encodes a list for a JSON list column.
pub(crate) fn to_json<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".to_owned())
}
