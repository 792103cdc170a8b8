//! The schema's roots, by area: each area's queries, mutations and
//! subscriptions are small objects merged here into `Query`, `Mutation`
//! and `Subscription` (async-graphql's `MergedObject` and
//! `MergedSubscription`). The order of the parts is the order of the
//! fields in the schema.

pub mod activities;
pub mod events;
pub mod network;
pub mod nodes;
pub mod publishing;
pub mod sources;
pub mod tokens;

use async_graphql::{MergedObject, MergedSubscription};

/// The root of every read.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct Query(
    network::NetworkQuery,
    activities::ActivityQuery,
    tokens::TokenQuery,
    nodes::NodeQuery,
    sources::SourceQuery,
);

/// The root of every write. Each mutation is one transaction with its audit record and its event.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct Mutation(
    publishing::PublishingMutation,
    network::CityMutation,
    tokens::TokenMutation,
    sources::SourceMutation,
);

/// The root of live updates, over WebSocket.
#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct Subscription(events::EventSubscription);
