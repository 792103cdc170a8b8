//! cityhub application layer: the use cases every surface (GraphQL, the web
//! pages and feeds, the dashboard, the publishing desk, the importers and
//! the CLI) calls, and none of them implements again.
//!
//! Each write is one service call that is one transaction: the service
//! authorises it (the domain's policy), validates it, applies the
//! idempotency rule, and appends the audit record and the activity event
//! beside the change. Storage below holds only repositories and the
//! database; nothing here knows GraphQL or HTTP.

pub mod credentials;
pub mod fingerprint;
pub mod keys;
pub mod seed;
pub mod service;

pub use credentials::{AuditActor, CredentialService};
pub use keys::{FirstKey, KeyError, KeyListing, KeyStore, RewrapReport};
pub use service::{HubService, ServiceError};
