//! cityhub storage: sea-orm repositories over SQLite and PostgreSQL, and
//! the database. The use cases that compose them into transactions are the
//! application layer's (`cityhub-app`).
//!
//! Invariants kept here, not at call sites: soft-deleted activities never
//! come back from a read; drafts are visible only within a [`ReadScope`]
//! that allows them; no repository begins a transaction: the application
//! layer's services do, and append the audit record and the activity event.

pub mod cursor;
pub mod db;
mod decode;
pub mod entities;
pub mod error;
pub mod repo;
pub mod sqlite_read;
pub mod time;

pub use cursor::{Cursor, CursorError};
pub use db::{CityDirectory, Db, DbConfig, ReadConnection};
pub use error::StorageError;
pub use repo::Page;
pub use repo::activity::{
    ActivityFilter, ActivityRepo, ActivityTexts, PageColumns, ReadScope, RelationRead,
};
pub use repo::city::{CityFilter, CityRepo, FieldCount, NetworkCounts};
pub use repo::stats::{ActivityCounts, StatsRepo, StatsSource};
