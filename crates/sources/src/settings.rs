//! `[sources]`: every limit of fetching and importing cities' calendars,
//! explicit and configurable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of connected calendars (`[sources]` in `cityhub.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SourceSettings {
    /// Run sources on their schedule in the background (`cityhub serve`).
    /// Off: sources run only when asked (`syncSource`, `cityhub source sync`).
    pub scheduler: bool,
    /// Fetch from loopback, private, link-local, unique-local and cloud
    /// metadata addresses too. Off by default: a source is never a door
    /// into the hub's own network. For tests and intranets.
    pub allow_private_networks: bool,
    /// How often a source is fetched, e.g. `1h` (humantime).
    pub default_interval: String,
    /// The shortest interval any source is fetched at, e.g. `5m`.
    pub min_interval: String,
    /// The longest back-off after failures, e.g. `1d`.
    pub max_backoff: String,
    /// Seconds to establish a connection.
    pub connect_timeout_secs: u64,
    /// Seconds a whole fetch may take (every redirect and the body
    /// included): a server that trickles bytes is cut off.
    pub total_timeout_secs: u64,
    /// Most redirects followed (each hop's address is checked).
    pub max_redirects: usize,
    /// Largest body read, in bytes, counted after decompression.
    pub max_body_bytes: usize,
    /// Most items imported from one source per run.
    pub max_items: usize,
    /// Days ahead (and behind) within which recurrences are expanded.
    pub recurrence_window_days: u32,
    /// Most instances one recurring event expands to.
    pub max_instances_per_event: u16,
    /// Milliseconds between two looks of the scheduler for due sources.
    pub poll_interval_ms: u64,
    /// Seconds a run holds its source (longer than a fetch may take).
    pub lease_secs: u64,
    /// Runs at once on one instance (one per host at a time in any case).
    pub max_concurrent_runs: usize,
    /// Milliseconds `syncSource` waits for its run before answering
    /// `RUNNING`.
    pub sync_wait_ms: u64,
    /// The `User-Agent` the hub fetches with.
    pub user_agent: String,
}

impl Default for SourceSettings {
    fn default() -> Self {
        Self {
            scheduler: true,
            allow_private_networks: false,
            default_interval: "1h".into(),
            min_interval: "5m".into(),
            max_backoff: "1d".into(),
            connect_timeout_secs: 10,
            total_timeout_secs: 60,
            max_redirects: 5,
            max_body_bytes: 10 * 1024 * 1024,
            max_items: 5_000,
            recurrence_window_days: 365,
            max_instances_per_event: 1_000,
            poll_interval_ms: 5_000,
            lease_secs: 300,
            max_concurrent_runs: 4,
            sync_wait_ms: 10_000,
            user_agent: concat!(
                "cityhub/",
                env!("CARGO_PKG_VERSION"),
                " (UNESCO Creative Cities Network hub; calendar import)"
            )
            .into(),
        }
    }
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("sources.{key}: {message}")]
pub struct SettingsError {
    /// The key.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn duration(key: &'static str, value: &str) -> Result<Duration, SettingsError> {
    humantime::parse_duration(value).map_err(|e| SettingsError {
        key,
        message: format!("'{value}' is not a duration like 30m or 1h ({e})"),
    })
}

impl SourceSettings {
    /// Checks every value; the hub refuses to start on a bad one.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let interval = duration("default_interval", &self.default_interval)?;
        let min = self.min_interval()?;
        if interval < min {
            return Err(SettingsError {
                key: "default_interval",
                message: format!(
                    "must not be below sources.min_interval ({})",
                    self.min_interval
                ),
            });
        }
        self.max_backoff()?;
        let positive = [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("total_timeout_secs", self.total_timeout_secs),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_items", self.max_items as u64),
            (
                "recurrence_window_days",
                u64::from(self.recurrence_window_days),
            ),
            (
                "max_instances_per_event",
                u64::from(self.max_instances_per_event),
            ),
            ("poll_interval_ms", self.poll_interval_ms),
            ("max_concurrent_runs", self.max_concurrent_runs as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(SettingsError {
                    key,
                    message: "must be positive".into(),
                });
            }
        }
        if self.lease_secs <= self.total_timeout_secs {
            return Err(SettingsError {
                key: "lease_secs",
                message: "must be longer than sources.total_timeout_secs".into(),
            });
        }
        if self.max_redirects > 20 {
            return Err(SettingsError {
                key: "max_redirects",
                message: "must be at most 20".into(),
            });
        }
        Ok(())
    }

    /// `default_interval`, never below `min_interval`.
    pub fn interval(&self) -> Result<Duration, SettingsError> {
        Ok(duration("default_interval", &self.default_interval)?.max(self.min_interval()?))
    }

    /// `min_interval`.
    pub fn min_interval(&self) -> Result<Duration, SettingsError> {
        duration("min_interval", &self.min_interval)
    }

    /// `max_backoff`.
    pub fn max_backoff(&self) -> Result<Duration, SettingsError> {
        duration("max_backoff", &self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        SourceSettings::default().validate().expect("valid");
        assert_eq!(
            SourceSettings::default().interval().expect("interval"),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn an_interval_below_the_minimum_is_refused() {
        let settings = SourceSettings {
            default_interval: "1m".into(),
            ..SourceSettings::default()
        };
        assert!(settings.validate().is_err());
        let bad = SourceSettings {
            default_interval: "soon".into(),
            ..SourceSettings::default()
        };
        assert!(bad.validate().is_err());
    }
}
