//! sea-orm entities, one per table. They mirror the migrations and stay
//! inside the storage crate: nothing above it sees a `Model`.

pub mod activity;
pub mod activity_city;
pub mod activity_event;
pub mod activity_field;
pub mod activity_invitation;
pub mod activity_theme;
pub mod audit_log;
pub mod city;
pub mod city_field;
pub mod document;
pub mod idempotency_key;
pub mod signing_key;
pub mod source;
pub mod source_item;
pub mod source_skipped;
pub mod token;
