//! GraphQL output types, built from domain records.

pub mod activity;
pub mod city;
pub mod connection;
pub mod network;
pub mod stats;
pub mod viewer;

use async_graphql::ID;

use crate::error::bad_input;

/// Parses a GraphQL `ID` argument into a database id.
pub fn parse_id(id: &ID, field: &str) -> async_graphql::Result<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad_input(field, format!("'{}' is not an id of this hub", id.as_str())))
}
