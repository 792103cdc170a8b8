//! The `cityhub` binary's library: configuration, wiring and the command
//! line's operations, so tests can run a real hub in-process on port 0.

pub mod app;
pub mod config;
pub mod ops;
pub mod request_id;
pub mod telemetry;

#[cfg(test)]
mod crate_graph;

/// The network's dataset (member cities and activities), as shipped.
pub const DATASET: &str = include_str!("../data/network.toml");
