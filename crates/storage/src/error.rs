//! Storage errors: what went wrong with the database, classified so the API
//! can answer with the right code and never show SQL to a client.

use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The row does not exist (or is invisible to the caller).
    #[error("not found")]
    NotFound,
    /// A uniqueness rule or a version check failed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached right now.
    #[error("database unavailable")]
    Unavailable(#[source] DbErr),
    /// The database refused a value the caller sent (PostgreSQL class 22
    /// "data exception", SQLite's range and mismatch errors): a bad input,
    /// never an internal error.
    #[error("invalid data")]
    InvalidData(#[source] DbErr),
    /// A stored row holds a value no version of cityhub writes (unknown
    /// enum name, malformed JSON list, timestamp out of range). Answered as
    /// an internal error; the message names the row for the operator.
    #[error("corrupt row: {table}.{column} of id {id}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The row's id.
        id: String,
        /// What is wrong with the value.
        detail: String,
    },
    /// Anything else; logged in full, shown to clients as an internal error.
    #[error("database error")]
    Other(#[source] DbErr),
}

impl StorageError {
    /// True if the error is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StorageError::Other(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))))
    }

    /// True if a lock was not had within `lock_timeout` (PostgreSQL's
    /// `lock_not_available`, 55P03).
    pub fn is_lock_timeout(&self) -> bool {
        self.database_code().is_some_and(|c| c == "55P03")
    }

    /// True if retrying the whole transaction may succeed (a serialization
    /// failure or a lock that could not be taken in time).
    pub fn is_retryable(&self) -> bool {
        // PostgreSQL serialization_failure and deadlock_detected; SQLite
        // BUSY and LOCKED (and their extended codes).
        self.database_code().is_some_and(|c| {
            matches!(c.as_ref(), "40001" | "40P01")
                || matches!(c.parse::<i32>(), Ok(code) if code & 0xff == 5 || code & 0xff == 6)
        })
    }

    /// The database's own error code (SQLSTATE on PostgreSQL, the result
    /// code on SQLite), when the database refused a statement.
    fn database_code(&self) -> Option<std::borrow::Cow<'_, str>> {
        let StorageError::Other(
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)),
        ) = self
        else {
            return None;
        };
        match e.as_ref() {
            sea_orm::sqlx::Error::Database(db) => db.code(),
            _ => None,
        }
    }
}

impl From<DbErr> for StorageError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            StorageError::Unavailable(err)
        } else if is_data_exception(&err) {
            StorageError::InvalidData(err)
        } else if matches!(err, DbErr::RecordNotFound(_)) {
            StorageError::NotFound
        } else {
            StorageError::Other(err)
        }
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(err: serde_json::Error) -> Self {
        StorageError::Other(DbErr::Json(err.to_string()))
    }
}

/// PostgreSQL's class 22 (data exception: invalid byte sequence, value out
/// of range, invalid datetime…), SQLite's TOOBIG (18), MISMATCH (20) and
/// RANGE (25).
fn is_data_exception(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    match e.as_ref() {
        sea_orm::sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            (c.len() == 5 && c.starts_with("22"))
                || (c.len() < 5
                    && matches!(c.parse::<i32>(), Ok(code) if matches!(code & 0xff, 18 | 20 | 25)))
        }),
        _ => false,
    }
}

fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    let runtime = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(e) => match e.as_ref() {
            Sqlx::Io(_)
            | Sqlx::PoolTimedOut
            | Sqlx::PoolClosed
            | Sqlx::WorkerCrashed
            | Sqlx::Tls(_) => true,
            Sqlx::Protocol(_) => true,
            // PostgreSQL's admin_shutdown / cannot_connect_now / connection failures.
            Sqlx::Database(db) => db.code().is_some_and(|c| {
                c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
            }),
            _ => false,
        },
        RuntimeErr::Internal(_) => false,
    }
}
