//! cityhub sources: the calendars member cities already publish — an
//! iCalendar feed, or pages carrying schema.org `Event` JSON-LD —
//! connected once and kept in sync.
//!
//! - [`fetch`]: polite, bounded, SSRF-safe HTTP (`reqwest`, rustls);
//!   [`address`] says which addresses are the hub's own network.
//! - [`ical`] and [`jsonld`]: what a feed says, as [`item::Item`]s.
//! - [`Sources`]: runs a source (fetch, read, reconcile through the write
//!   service, record the outcome) and schedules runs: one instance fetches
//!   a source at a time (a lease in the database), one request per host at
//!   a time on an instance, back-off with jitter after failures,
//!   `Retry-After` respected.

pub mod address;
pub mod fetch;
pub mod ical;
pub mod item;
pub mod jsonld;
mod run;
pub mod settings;

pub use run::{RunError, Sources};
pub use settings::{SettingsError, SourceSettings};
