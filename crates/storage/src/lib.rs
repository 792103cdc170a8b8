//! cityhub storage: sea-orm repositories over SQLite and PostgreSQL, and the
//! services that run each write as one transaction.
//!
//! Invariants kept here, not at call sites: soft-deleted activities never
//! come back from a read; drafts are visible only within a [`ReadScope`]
//! that allows them; every write runs inside a transaction begun by a
//! service, which also appends the audit record and the activity event.

pub mod credentials;
pub mod cursor;
pub mod db;
mod decode;
pub mod entities;
pub mod error;
pub mod fingerprint;
pub mod keys;
pub mod repo;
pub mod seed;
pub mod service;
pub mod sqlite_read;
pub mod time;

pub use credentials::{AuditActor, CredentialService};
pub use cursor::{Cursor, CursorError};
pub use db::{Db, DbConfig, ReadConnection};
pub use error::StorageError;
pub use keys::{FirstKey, KeyError, KeyListing, KeyStore, RewrapReport};
pub use repo::Page;
pub use repo::activity::{ActivityFilter, ActivityRepo, ActivityTexts, ReadScope};
pub use repo::city::{CityFilter, CityRepo, FieldCount, NetworkCounts};
pub use repo::stats::{ActivityCounts, StatsRepo, StatsSource};
