//! End-to-end tests: a real hub per test over real HTTP and WebSocket, on
//! SQLite and on PostgreSQL. One module per capability.

#[allow(
    dead_code,
    reason = "the harness serves every module; not each uses all of it"
)]
mod support;

mod cli;
mod live_hardening;
mod publishing;
mod read_api;
mod resilience;
mod subscriptions;
mod tokens;
