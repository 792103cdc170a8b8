//! End-to-end tests: a real hub per test over real HTTP and WebSocket, on
//! SQLite and on PostgreSQL. One module per capability.

#[allow(
    dead_code,
    reason = "the harness serves every module; not each uses all of it"
)]
mod support;

#[allow(
    dead_code,
    reason = "the browser harness serves every browser test; not each uses all of it"
)]
mod browser;

mod abuse;
mod cache;
mod cities_in_memory;
mod cli;
mod dashboard;
mod database_tls;
mod deploy;
mod desk;
mod federation;
mod filter_agreement;
mod hardening;
mod horizon;
mod integrity;
mod invitations;
mod keys_at_rest;
mod live_hardening;
mod nodes;
mod observability;
mod one_statement_pages;
mod planner_statistics;
mod publishing;
mod read_api;
mod resilience;
mod search;
mod shutdown;
mod sources;
mod sqlite_reads;
mod stats;
mod subscriptions;
mod text_safety;
mod timed;
mod tokens;
mod traces;
mod web;
mod ws;
mod ws_raw;
