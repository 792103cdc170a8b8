//! cityhub application layer: the use cases every surface (GraphQL, the web
//! pages and feeds, the dashboard, the publishing desk, the importers and
//! the CLI) calls, and none of them implements again.
//!
//! Each write is one service call that is one transaction: the service
//! authorises it (the domain's policy), validates it, applies the
//! idempotency rule, and appends the audit record and the activity event
//! beside the change. Storage below holds only repositories and the
//! database. Reading a principal from a request (`auth`, `http`), the
//! contract's error codes with their HTTP form (`code`, `http`), the
//! response cache (`cache`) and the rate limiters (`rate_limit`) live here
//! too, so GraphQL and the web pages share them without importing each
//! other; nothing here knows GraphQL.

pub mod auth;
pub mod cache;
pub mod code;
pub mod credentials;
pub mod fingerprint;
pub mod http;
pub mod keys;
pub mod rate_limit;
pub mod seed;
pub mod service;

pub use auth::{Authenticator, Principal};
pub use cache::{ResponseCache, ResponseCacheSettings};
pub use code::Code;
pub use credentials::{AuditActor, CredentialService};
pub use keys::{FirstKey, KeyError, KeyListing, KeyStore, RewrapReport};
pub use rate_limit::{Limiters, RateLimitSettings};
pub use service::{HubService, ServiceError};
