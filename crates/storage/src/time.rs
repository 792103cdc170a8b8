//! Timestamps are stored as microseconds since the Unix epoch (BIGINT), so
//! they sort and compare the same on SQLite and PostgreSQL.

use chrono::{Datelike, NaiveDate, Utc};

/// Now, in stored form.
pub fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// A date as the integer `yyyymmdd`, used for ordering and range filters;
/// `0` for no date.
pub fn date_key(date: Option<NaiveDate>) -> i32 {
    date.map_or(0, |d| {
        d.year() * 10_000 + d.month() as i32 * 100 + d.day() as i32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_like_dates() {
        let a = NaiveDate::from_ymd_opt(2009, 12, 31);
        let b = NaiveDate::from_ymd_opt(2010, 1, 1);
        assert!(date_key(a) < date_key(b));
        assert_eq!(date_key(b), 20_100_101);
        assert_eq!(date_key(None), 0);
    }
}
