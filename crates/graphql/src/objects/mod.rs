//! GraphQL output types, built from domain records.

pub mod activity;
pub mod city;
pub mod connection;
pub mod invitation;
pub mod network;
pub mod node;
pub mod source;
pub mod stats;
pub mod viewer;

use async_graphql::ID;
use cityhub_domain::{ActivityId, CityId};

use crate::error::bad_input;

/// Parses a GraphQL `ID` argument into a database id.
fn parse_raw(id: &ID, field: &str) -> async_graphql::Result<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| bad_input(field, format!("'{}' is not an id of this hub", id.as_str())))
}

/// Parses a GraphQL `ID` argument naming an activity.
pub fn parse_activity_id(id: &ID, field: &str) -> async_graphql::Result<ActivityId> {
    parse_raw(id, field).map(ActivityId)
}

/// Parses a GraphQL `ID` argument naming a source.
pub fn parse_source_id(id: &ID, field: &str) -> async_graphql::Result<cityhub_domain::SourceId> {
    parse_raw(id, field).map(cityhub_domain::SourceId)
}

/// Parses a GraphQL `ID` argument naming a member city.
pub fn parse_city_id(id: &ID, field: &str) -> async_graphql::Result<CityId> {
    parse_raw(id, field).map(CityId)
}
