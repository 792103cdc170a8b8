//! SQLite reads stepped on the calling thread.
//!
//! sqlx-sqlite runs every statement on its connection's own OS thread and
//! sends each row back through a channel, after copying every column value
//! (`sqlite3_value_dup`). For the hub's hot reads (a city's listing, an
//! activity, their relations) that hand-off and those copies were most of
//! the hub's CPU per request (BENCHMARKS.md, issue 9): SQLite itself needs
//! a few hundred microseconds for a listing page. [`SqliteReader`] keeps a
//! few read-only connections (rusqlite, the same bundled SQLite) and steps
//! statements where the caller runs, decoding columns in place into the
//! entity models the sea-orm path returns, so both paths feed the same
//! domain decoding (`decode.rs`).
//!
//! It only reads: writes, transactions and every other query keep going
//! through sea-orm. A statement that runs longer than the configured
//! statement timeout is interrupted (a SQLite progress handler), so a
//! pathological read cannot hold a worker thread. The SQL is the one the
//! sea-orm path builds (the same `Statement`), so both paths read the same
//! rows; `tests` in `repo` prove it on generated data.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sea_orm::{DbErr, Statement, Value};

use crate::decode::Row;
use crate::entities::{activity, activity_city, activity_invitation, city, document};
use crate::error::StorageError;

/// A few read-only SQLite connections, each used by one caller at a time.
pub struct SqliteReader {
    connections: Box<[std::sync::Mutex<Reading>]>,
    next: AtomicUsize,
    timeout: Duration,
    queries: Arc<AtomicU64>,
}

/// One connection and the deadline its progress handler checks.
struct Reading {
    connection: Connection,
    /// Microseconds since `epoch` after which the running statement stops.
    deadline: Arc<AtomicU64>,
    epoch: Instant,
}

impl std::fmt::Debug for SqliteReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteReader")
            .field("connections", &self.connections.len())
            .finish_non_exhaustive()
    }
}

/// SQLite virtual-machine steps between two deadline checks.
const PROGRESS_STEPS: std::os::raw::c_int = 4_000;

/// A rusqlite error as a storage error: interrupted (past the statement
/// timeout), busy or I/O failures are `Unavailable`, the rest `Other`.
pub(crate) fn reader_error(err: rusqlite::Error) -> StorageError {
    match err {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::OperationInterrupted
                    | rusqlite::ErrorCode::SystemIoFailure
            ) =>
        {
            StorageError::Unavailable(DbErr::Custom(format!("sqlite read: {e}")))
        }
        other => StorageError::Other(DbErr::Custom(format!("sqlite read: {other}"))),
    }
}

impl SqliteReader {
    /// Opens `count` read-only connections to the database file at `path`
    /// (which must exist), with the pool's pragmas.
    pub fn open(
        path: &std::path::Path,
        count: usize,
        mmap_mib: u64,
        timeout: Duration,
        queries: Arc<AtomicU64>,
    ) -> Result<Self, StorageError> {
        let connections = (0..count.max(1))
            .map(|_| {
                let connection = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(reader_error)?;
                connection
                    .execute_batch(&format!(
                        "PRAGMA query_only = ON; PRAGMA mmap_size = {}; \
                         PRAGMA cache_size = -32000; PRAGMA temp_store = memory;",
                        mmap_mib.saturating_mul(1 << 20)
                    ))
                    .map_err(reader_error)?;
                connection
                    .busy_timeout(Duration::from_secs(2))
                    .map_err(reader_error)?;
                connection.set_prepared_statement_cache_capacity(64);
                // Query planner stability: plans do not depend on the bound
                // values. Without it, a statement that STAT4 planned with a
                // bound value is re-parsed and re-planned after every new
                // binding (`sqlite3Reprepare`, 8 % of the overview's CPU),
                // so "prepared once" was not true. The hot statements pin
                // their plans anyway (`+`, limits before joins).
                connection
                    .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
                    .map_err(reader_error)?;
                let deadline = Arc::new(AtomicU64::new(u64::MAX));
                let epoch = Instant::now();
                let watched = deadline.clone();
                connection
                    .progress_handler(
                        PROGRESS_STEPS,
                        Some(move || {
                            // True interrupts the statement (SQLITE_INTERRUPT).
                            epoch.elapsed().as_micros() as u64 > watched.load(Ordering::Relaxed)
                        }),
                    )
                    .map_err(reader_error)?;
                Ok(std::sync::Mutex::new(Reading {
                    connection,
                    deadline,
                    epoch,
                }))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Self {
            connections: connections.into_boxed_slice(),
            next: AtomicUsize::new(0),
            timeout,
            queries,
        })
    }

    /// Runs `statement` (SQLite placeholders, sea-orm values) and decodes
    /// each row with `decode`, on this thread.
    pub fn query<T>(
        &self,
        statement: &Statement,
        decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        self.query_checked(statement, &[], decode)
    }

    /// The models of `statement`'s rows, whose first columns must be the
    /// model's, in order (checked: a changed entity fails loudly instead
    /// of decoding shifted columns).
    pub(crate) fn models<M: FromSqliteRow>(
        &self,
        statement: &Statement,
    ) -> Result<Vec<M>, StorageError> {
        self.query_checked(statement, M::columns(), M::from_row)
    }

    /// Like [`Self::models`], then `finish` turns each model and its row
    /// (for the columns after the model's) into the result.
    pub(crate) fn query_models_with<M: FromSqliteRow, T>(
        &self,
        statement: &Statement,
        mut finish: impl FnMut(M, &rusqlite::Row<'_>) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        self.query_checked(statement, M::columns(), |row| {
            finish(M::from_row(row)?, row)
        })
    }

    fn query_checked<T>(
        &self,
        statement: &Statement,
        expected: &[&str],
        mut decode: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StorageError>,
    ) -> Result<Vec<T>, StorageError> {
        let started = Instant::now();
        self.queries.fetch_add(1, Ordering::Relaxed);
        let guard = self.connection();
        let reading: &Reading = &guard;
        let limit = reading.epoch.elapsed() + self.timeout;
        reading
            .deadline
            .store(limit.as_micros() as u64, Ordering::Relaxed);
        let result = (|| {
            let mut prepared = reading
                .connection
                .prepare_cached(&statement.sql)
                .map_err(reader_error)?;
            for (i, name) in expected.iter().enumerate() {
                if prepared.column_name(i).ok() != Some(*name) {
                    return Err(StorageError::Other(DbErr::Custom(format!(
                        "sqlite read: column {i} is {:?}, the model expects {name:?}",
                        prepared.column_name(i).ok()
                    ))));
                }
            }
            if let Some(values) = &statement.values {
                for (i, value) in values.0.iter().enumerate() {
                    prepared
                        .raw_bind_parameter(i + 1, Bound(value))
                        .map_err(reader_error)?;
                }
            }
            let mut rows = prepared.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(reader_error)? {
                out.push(decode(row)?);
            }
            Ok(out)
        })();
        reading.deadline.store(u64::MAX, Ordering::Relaxed);
        drop(guard);
        tracing::trace!(
            target: "cityhub::sql",
            elapsed_us = started.elapsed().as_micros() as u64,
            failed = result.is_err(),
            reader = true,
            sql = %statement.sql
        );
        result
    }

    /// A free connection, or the next one in turn when all are busy.
    fn connection(&self) -> std::sync::MutexGuard<'_, Reading> {
        let n = self.connections.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(guard) = self.connections[(start + i) % n].try_lock() {
                return guard;
            }
        }
        // A panic while decoding cannot leave a connection half-used: the
        // statement is reset when its handle drops.
        cityhub_domain::sync::lock(&self.connections[start % n])
    }
}

/// A sea-orm value bound as sqlx-sqlite binds it (dates as `YYYY-MM-DD`
/// text, booleans as integers, JSON as text).
struct Bound<'a>(&'a Value);

impl rusqlite::ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        let value = match self.0 {
            Value::Bool(v) => v.map(|b| SqlValue::Integer(i64::from(b))),
            Value::TinyInt(v) => v.map(|n| SqlValue::Integer(n.into())),
            Value::SmallInt(v) => v.map(|n| SqlValue::Integer(n.into())),
            Value::Int(v) => v.map(|n| SqlValue::Integer(n.into())),
            Value::BigInt(v) => v.map(SqlValue::Integer),
            Value::TinyUnsigned(v) => v.map(|n| SqlValue::Integer(n.into())),
            Value::SmallUnsigned(v) => v.map(|n| SqlValue::Integer(n.into())),
            Value::Unsigned(v) => v.map(|n| SqlValue::Integer(n.into())),
            Value::BigUnsigned(v) => match v {
                Some(n) => {
                    Some(SqlValue::Integer(i64::try_from(*n).map_err(|e| {
                        rusqlite::Error::ToSqlConversionFailure(Box::new(e))
                    })?))
                }
                None => None,
            },
            Value::Float(v) => v.map(|n| SqlValue::Real(n.into())),
            Value::Double(v) => v.map(SqlValue::Real),
            Value::String(v) => {
                return Ok(match v {
                    Some(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
                    None => ToSqlOutput::Owned(SqlValue::Null),
                });
            }
            Value::Char(v) => v.map(|c| SqlValue::Text(c.to_string())),
            Value::Bytes(v) => {
                return Ok(match v {
                    Some(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
                    None => ToSqlOutput::Owned(SqlValue::Null),
                });
            }
            Value::Json(v) => v.as_ref().map(|j| SqlValue::Text(j.to_string())),
            Value::ChronoDate(v) => v.map(|d| SqlValue::Text(d.format("%F").to_string())),
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("no SQLite binding for {other:?}").into(),
                ));
            }
        };
        Ok(ToSqlOutput::Owned(value.unwrap_or(SqlValue::Null)))
    }
}

/// Column access for decoding one row: each error names the table, column
/// and row id, as the sea-orm path's decoding does.
pub(crate) struct Columns<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    table: &'static str,
    id: i64,
}

impl<'r, 's> Columns<'r, 's> {
    /// The row, whose id is its first column.
    pub(crate) fn new(
        table: &'static str,
        row: &'r rusqlite::Row<'s>,
    ) -> Result<Self, StorageError> {
        let id = row.get::<_, i64>(0).map_err(|e| StorageError::Corrupt {
            table,
            column: "id",
            id: "?".to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Self { row, table, id })
    }

    /// The row's id.
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    fn value(&self, i: usize, column: &'static str) -> Result<ValueRef<'r>, StorageError> {
        self.row
            .get_ref(i)
            .map_err(|e| Row::new(self.table, &self.id).corrupt(column, e.to_string()))
    }

    fn wrong(&self, column: &'static str, found: ValueRef<'_>) -> StorageError {
        Row::new(self.table, &self.id)
            .corrupt(column, format!("unexpected {} value", found.data_type()))
    }

    /// A nullable integer column.
    pub(crate) fn int_opt(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<i64>, StorageError> {
        match self.value(i, column)? {
            ValueRef::Integer(n) => Ok(Some(n)),
            ValueRef::Null => Ok(None),
            other => Err(self.wrong(column, other)),
        }
    }

    /// An integer column.
    pub(crate) fn int(&self, i: usize, column: &'static str) -> Result<i64, StorageError> {
        self.int_opt(i, column)?
            .ok_or_else(|| Row::new(self.table, &self.id).corrupt(column, "null"))
    }

    /// A 32-bit integer column.
    pub(crate) fn int32(&self, i: usize, column: &'static str) -> Result<i32, StorageError> {
        let n = self.int(i, column)?;
        i32::try_from(n).map_err(|_| {
            Row::new(self.table, &self.id).corrupt(column, format!("{n} out of range"))
        })
    }

    /// A nullable real column (integers are widened, as SQLite stores
    /// whole numbers of REAL columns as integers on disk).
    pub(crate) fn real_opt(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<f64>, StorageError> {
        match self.value(i, column)? {
            ValueRef::Real(x) => Ok(Some(x)),
            ValueRef::Integer(n) => Ok(Some(n as f64)),
            ValueRef::Null => Ok(None),
            other => Err(self.wrong(column, other)),
        }
    }

    /// A nullable text column, borrowed.
    pub(crate) fn str_opt(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<&'r str>, StorageError> {
        match self.value(i, column)? {
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Row::new(self.table, &self.id).corrupt(column, "not UTF-8")),
            ValueRef::Null => Ok(None),
            other => Err(self.wrong(column, other)),
        }
    }

    /// A nullable text column.
    pub(crate) fn text_opt(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<String>, StorageError> {
        Ok(self.str_opt(i, column)?.map(str::to_owned))
    }

    /// A text column.
    pub(crate) fn text(&self, i: usize, column: &'static str) -> Result<String, StorageError> {
        self.text_opt(i, column)?
            .ok_or_else(|| Row::new(self.table, &self.id).corrupt(column, "null"))
    }

    /// A nullable date column (`YYYY-MM-DD`).
    pub(crate) fn date_opt(
        &self,
        i: usize,
        column: &'static str,
    ) -> Result<Option<NaiveDate>, StorageError> {
        self.str_opt(i, column)?
            .map(|s| {
                NaiveDate::parse_from_str(s, "%F").map_err(|_| {
                    Row::new(self.table, &self.id).corrupt(column, format!("not a date: {s:?}"))
                })
            })
            .transpose()
    }
}

/// An entity model read from a row whose columns are the entity's, in the
/// entity's order (what `Entity::find()` selects), possibly followed by
/// others.
pub(crate) trait FromSqliteRow: Sized {
    /// The table, for errors.
    const TABLE: &'static str;
    /// The entity's column names, in order.
    fn columns() -> &'static [&'static str];
    /// Decodes the model from the first columns of `row`.
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StorageError>;
}

impl FromSqliteRow for activity::Model {
    fn columns() -> &'static [&'static str] {
        static COLUMNS: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(model_columns::<activity::Entity>);
        &COLUMNS
    }
    const TABLE: &'static str = "activities";
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StorageError> {
        let c = Columns::new(Self::TABLE, row)?;
        Ok(Self {
            id: c.id(),
            slug: c.text(1, "slug")?,
            kind: c.text(2, "kind")?,
            format: c.text(3, "format")?,
            status: c.text(4, "status")?,
            title: c.text(5, "title")?,
            title_key: c.text(6, "title_key")?,
            summary: c.text_opt(7, "summary")?,
            description: c.text_opt(8, "description")?,
            start_date: c.date_opt(9, "start_date")?,
            end_date: c.date_opt(10, "end_date")?,
            date_precision: c.text(11, "date_precision")?,
            start_key: c.int32(12, "start_key")?,
            end_key: c.int32(13, "end_key")?,
            venue: c.text_opt(14, "venue")?,
            venue_city_id: c.int_opt(15, "venue_city_id")?,
            organizations: c.text(16, "organizations")?,
            fields: c.text(17, "fields")?,
            themes: c.text(18, "themes")?,
            objectives: c.text(19, "objectives")?,
            published_by: c.int_opt(20, "published_by")?,
            published_at: c.int_opt(21, "published_at")?,
            created_at: c.int(22, "created_at")?,
            updated_at: c.int(23, "updated_at")?,
            version: c.int32(24, "version")?,
            cancel_reason: c.text_opt(25, "cancel_reason")?,
            deleted_at: c.int_opt(26, "deleted_at")?,
            // Folded text for search only; no read needs it back.
            search_text: String::new(),
            start_time: c.text_opt(28, "start_time")?,
            end_time: c.text_opt(29, "end_time")?,
            time_zone: c.text_opt(30, "time_zone")?,
            starts_at: c.int_opt(31, "starts_at")?,
            ends_at: c.int_opt(32, "ends_at")?,
        })
    }
}

impl FromSqliteRow for document::Model {
    fn columns() -> &'static [&'static str] {
        static COLUMNS: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(model_columns::<document::Entity>);
        &COLUMNS
    }
    const TABLE: &'static str = "documents";
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StorageError> {
        let c = Columns::new(Self::TABLE, row)?;
        Ok(Self {
            id: c.id(),
            activity_id: c.int(1, "activity_id")?,
            position: c.int32(2, "position")?,
            kind: c.text(3, "kind")?,
            title: c.text(4, "title")?,
            url: c.text_opt(5, "url")?,
            issued_on: c.date_opt(6, "issued_on")?,
            issued_precision: c.text(7, "issued_precision")?,
            editors: c.text(8, "editors")?,
        })
    }
}

impl FromSqliteRow for city::Model {
    fn columns() -> &'static [&'static str] {
        static COLUMNS: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(model_columns::<city::Entity>);
        &COLUMNS
    }
    const TABLE: &'static str = "cities";
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StorageError> {
        let c = Columns::new(Self::TABLE, row)?;
        Ok(Self {
            id: c.id(),
            slug: c.text(1, "slug")?,
            name: c.text(2, "name")?,
            name_key: c.text(3, "name_key")?,
            country: c.text(4, "country")?,
            fields: c.text(5, "fields")?,
            member_since: c.int32(6, "member_since")?,
            website: c.text_opt(7, "website")?,
            latitude: c.real_opt(8, "latitude")?,
            longitude: c.real_opt(9, "longitude")?,
            created_at: c.int(10, "created_at")?,
            updated_at: c.int(11, "updated_at")?,
        })
    }
}

impl FromSqliteRow for activity_city::Model {
    fn columns() -> &'static [&'static str] {
        static COLUMNS: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(model_columns::<activity_city::Entity>);
        &COLUMNS
    }
    const TABLE: &'static str = "activity_cities";
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StorageError> {
        let c = Columns::new(Self::TABLE, row)?;
        Ok(Self {
            activity_id: c.id(),
            role: c.text(1, "role")?,
            city_id: c.int(2, "city_id")?,
            position: c.int32(3, "position")?,
        })
    }
}

impl FromSqliteRow for activity_invitation::Model {
    fn columns() -> &'static [&'static str] {
        static COLUMNS: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(model_columns::<activity_invitation::Entity>);
        &COLUMNS
    }
    const TABLE: &'static str = "activity_invitations";
    fn from_row(row: &rusqlite::Row<'_>) -> Result<Self, StorageError> {
        let c = Columns::new(Self::TABLE, row)?;
        Ok(Self {
            activity_id: c.id(),
            role: c.text(1, "role")?,
            city_id: c.int(2, "city_id")?,
            state: c.text(3, "state")?,
            position: c.int32(4, "position")?,
        })
    }
}

/// The column names of an entity, in the order `Entity::find()` selects.
fn model_columns<E: sea_orm::EntityTrait>() -> Vec<&'static str> {
    use sea_orm::{IdenStatic, Iterable};
    E::Column::iter().map(|c| c.as_str()).collect()
}
