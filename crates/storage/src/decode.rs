//! Decoding stored rows into domain records. A value no version of cityhub
//! writes (an unknown enum name, a JSON list that does not parse, a
//! timestamp out of range) is an error naming the table, column and row id
//! ([`StorageError::Corrupt`]), never a silent default: the API answers
//! `INTERNAL_SERVER_ERROR` and `graphql::error::internal` logs the cause
//! once with its error id.

use std::fmt::Display;

use chrono::{DateTime, Utc};

use crate::error::StorageError;

/// The row being decoded: its table and id, for errors.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    table: &'static str,
    id: &'a dyn Display,
}

impl<'a> Row<'a> {
    /// The row `id` of `table`.
    pub(crate) fn new(table: &'static str, id: &'a dyn Display) -> Self {
        Self { table, id }
    }

    /// The error for `column` of this row.
    pub(crate) fn corrupt(&self, column: &'static str, detail: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            table: self.table,
            column,
            id: self.id.to_string(),
            detail: detail.into(),
        }
    }

    /// An enum column, by its stored name.
    pub(crate) fn enumeration<T>(
        &self,
        column: &'static str,
        text: &str,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, StorageError> {
        parse(text).ok_or_else(|| self.corrupt(column, format!("unknown value {text:?}")))
    }

    /// A JSON list column.
    pub(crate) fn json_list<T: serde::de::DeserializeOwned>(
        &self,
        column: &'static str,
        text: &str,
    ) -> Result<Vec<T>, StorageError> {
        serde_json::from_str(text)
            .map_err(|e| self.corrupt(column, format!("not a JSON list: {e}")))
    }

    /// A timestamp column (microseconds since the Unix epoch).
    pub(crate) fn micros(
        &self,
        column: &'static str,
        micros: i64,
    ) -> Result<DateTime<Utc>, StorageError> {
        DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| self.corrupt(column, format!("timestamp {micros} out of range")))
    }

    /// The timing columns of an activity (`start_time`, `end_time`,
    /// `time_zone`, `starts_at`, `ends_at`): `None` without a start time.
    pub(crate) fn timing(
        &self,
        columns: TimingColumns<'_>,
    ) -> Result<Option<cityhub_domain::Timing>, StorageError> {
        use cityhub_domain::timing::{parse_local_time, parse_zone};
        let Some(start_time) = columns.start_time else {
            return Ok(None);
        };
        let start_time = parse_local_time("start_time", start_time)
            .map_err(|e| self.corrupt("start_time", e.to_string()))?;
        let end_time = columns
            .end_time
            .map(|t| parse_local_time("end_time", t))
            .transpose()
            .map_err(|e| self.corrupt("end_time", e.to_string()))?;
        let zone = columns
            .time_zone
            .ok_or_else(|| self.corrupt("time_zone", "missing beside start_time"))
            .and_then(|z| {
                parse_zone("time_zone", z).map_err(|e| self.corrupt("time_zone", e.to_string()))
            })?;
        let starts_at = columns
            .starts_at
            .ok_or_else(|| self.corrupt("starts_at", "missing beside start_time"))
            .and_then(|m| self.micros("starts_at", m))?;
        let ends_at = self.micros_opt("ends_at", columns.ends_at)?;
        Ok(Some(cityhub_domain::Timing {
            start_time,
            end_time,
            zone,
            starts_at,
            ends_at,
        }))
    }

    /// A nullable timestamp column.
    pub(crate) fn micros_opt(
        &self,
        column: &'static str,
        micros: Option<i64>,
    ) -> Result<Option<DateTime<Utc>>, StorageError> {
        micros.map(|m| self.micros(column, m)).transpose()
    }
}

/// The stored timing columns of an activity row, as read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimingColumns<'a> {
    /// `start_time`, `HH:MM`.
    pub(crate) start_time: Option<&'a str>,
    /// `end_time`, `HH:MM`.
    pub(crate) end_time: Option<&'a str>,
    /// `time_zone`, an IANA name.
    pub(crate) time_zone: Option<&'a str>,
    /// `starts_at`, microseconds since the epoch.
    pub(crate) starts_at: Option<i64>,
    /// `ends_at`, microseconds since the epoch.
    pub(crate) ends_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use cityhub_domain::ActivityStatus;

    use super::*;

    #[test]
    fn names_table_column_and_id() {
        let row = Row::new("activities", &42);
        let err = row
            .enumeration("status", "PUBLISHD", ActivityStatus::parse)
            .expect_err("unknown status");
        assert_eq!(
            err.to_string(),
            "corrupt row: activities.status of id 42: unknown value \"PUBLISHD\""
        );
        assert!(row.json_list::<String>("themes", "[\"a\",").is_err());
        assert!(row.micros("updated_at", i64::MAX).is_err());
        assert_eq!(
            row.enumeration("status", "PUBLISHED", ActivityStatus::parse)
                .expect("known"),
            ActivityStatus::Published
        );
    }
}
