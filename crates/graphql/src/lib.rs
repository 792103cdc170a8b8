//! cityhub's GraphQL layer: the one schema (queries, mutations,
//! subscriptions), the HTTP and WebSocket handlers that serve it, token
//! authentication, per-request DataLoaders and metrics.

pub mod access;
pub mod cache;
pub mod document;
pub mod enums;
pub mod error;
pub mod guard;
pub mod http;
pub mod inputs;
pub mod live;
pub mod loaders;
pub mod metrics;
pub mod objects;
pub mod persisted;
pub mod roots;
pub mod scalars;
pub mod schema;
pub mod service;
pub mod state;
pub mod ws;

pub use cache::CacheSettings;
pub use cityhub_app::{Authenticator, Principal};
pub use cityhub_events::{EventBus, EventSettings};
pub use guard::ClientAddr;
pub use metrics::Metrics;
pub use schema::{HubSchema, build_fast_schema, build_schema, request_guard, sdl};
pub use service::{GraphqlService, HttpSettings};
pub use state::{ApiSettings, HubState};

#[cfg(test)]
mod module_graph;
