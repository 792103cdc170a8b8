//! cityhub's GraphQL layer: the one schema (queries, mutations,
//! subscriptions), the HTTP and WebSocket handlers that serve it, token
//! authentication, per-request DataLoaders and metrics.

pub mod auth;
pub mod cache;
pub mod enums;
pub mod error;
pub mod guard;
pub mod http;
pub mod inputs;
pub mod loaders;
pub mod metrics;
pub mod mutation;
pub mod objects;
pub mod persisted;
pub mod query;
pub mod scalars;
pub mod schema;
pub mod state;
pub mod subscription;
pub mod ws;

pub use auth::{Authenticator, Principal};
pub use cache::CacheSettings;
pub use guard::{ClientAddr, Limiters, RateLimitSettings};
pub use http::{GraphqlService, HttpSettings};
pub use metrics::Metrics;
pub use schema::{HubSchema, build_fast_schema, build_schema, request_guard, sdl};
pub use state::{ApiSettings, HubState};
pub use subscription::{EventBus, EventSettings};
