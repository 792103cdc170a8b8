//! The event horizon waits only for the hub's own writers (issue 20).
//!
//! `m20261201_000003_event_order` numbers events `(xid + shift) * 65536 +
//! k` from the writing transaction's id, and its read horizon was `(xmin +
//! shift) * 65536`, `xmin` of the server-wide snapshot: any transaction
//! holding an id anywhere on the PostgreSQL server (a migration, a batch
//! job, a session left idle in transaction, another application's
//! database) held back every live event committed after it began, for as
//! long as it stayed open.
//!
//! Only the hub's own writers can append events, so only they need to be
//! waited for. Every connection the hub opens sets `application_name` to
//! `cityhub` when it connects, before it can take a transaction id, and the
//! trigger that numbers events now refuses a connection without that name,
//! so every transaction that can ever add an event is visible in
//! `pg_stat_activity` as a `cityhub` backend of this database, with its id
//! in `backend_xid`, for as long as it runs. `cityhub_event_horizon()` is
//! now a VOLATILE function that:
//!
//! 1. takes a snapshot `S` (`pg_current_snapshot()`);
//! 2. then reads `pg_stat_activity` (`A`), after discarding the copy a
//!    transaction keeps of it (`pg_stat_clear_snapshot()`), so that `A` is
//!    read after `S` even inside a transaction that read it before;
//! 3. returns `(h + shift) * 65536` where `h` is the smallest id running
//!    in `S` that `A` shows as the `backend_xid` of a `cityhub` backend of
//!    this database, or `pg_snapshot_xmax(S)` when there is none (`A` holds
//!    32-bit ids: they are compared with the low 32 bits of `S`'s).
//!
//! Readers compute the horizon in one statement and read the events in a
//! later one (READ COMMITTED: a later snapshot `R`), and treat as final
//! the events below the horizon. That is sound: an event below it was
//! appended by a transaction `W` with id `X < h <= xmax(S)`, and
//!
//! - if `X` was not running in `S`, `W` had ended before `S`: its events
//!   are committed and visible to `R`, or never will be;
//! - if `X` was running in `S`, it is below `h`, so `A` did not show it as
//!   a `cityhub` backend's `backend_xid`; `W` is a `cityhub` backend of
//!   this database (the trigger's check), whose `backend_xid` was `X` from
//!   before `S` until `W` ended; so `W` ended between `S` and `A`. A
//!   backend's `backend_xid` is cleared at commit in the same step that
//!   takes it out of the running transactions, under `ProcArrayLock`, so
//!   `R`, taken after `A`, sees `W` committed (or rolled back);
//! - an id assigned after `S` is at least `xmax(S) >= h`: its events are
//!   above the horizon and wait for the next read.
//!
//! So every event below the horizon that will ever exist is visible to `R`,
//! and a reader that delivers them and stops at the first one above the
//! horizon never skips one. A transaction of another database or of a
//! connection that is not the hub's delays nothing; the hub's own
//! writers still hold back the events committed after them until they
//! end, which is what keeps the delivery in sequence order.
//!
//! The price of the exactness: the horizon must be computed on the
//! primary the hub writes to (a standby's `pg_stat_activity` does not show
//! the primary's writers), writers must not use two-phase commit (a
//! prepared transaction has no backend), and a connection that appends
//! events must be named `cityhub` before its transaction takes an id.
//!
//! `shift` is read back from the old function (it returns `(xmin + shift)
//! * 65536` for the snapshot of the statement that calls it) and kept in
//! `hub_meta.event_seq_shift`, from which down restores both functions as
//! `m20261201_000003_event_order` wrote them. SQLite is unchanged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{self, ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Events one transaction may append (the low bits of `seq`).
const PER_TRANSACTION: i64 = 65_536;

/// The `application_name` of every connection the hub opens.
const HUB_APPLICATION_NAME: &str = "cityhub";

/// The horizon: the oldest transaction of a `cityhub` backend of this
/// database running in the snapshot, else the snapshot's `xmax`.
fn horizon_function(shift: i64) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION cityhub_event_horizon() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    snap pg_snapshot;
    oldest bigint;
BEGIN
    -- The snapshot first, the hub's writers after it.
    snap := pg_current_snapshot();
    -- pg_stat_activity is read once per transaction and then kept: read it afresh.
    PERFORM pg_stat_clear_snapshot();
    SELECT min(running::text::bigint) INTO oldest
        FROM pg_snapshot_xip(snap) AS running
        WHERE running::text::bigint % 4294967296 IN (
            SELECT backend_xid::text::bigint FROM pg_stat_activity
            WHERE datname = current_database()
              AND application_name = '{HUB_APPLICATION_NAME}'
              AND backend_xid IS NOT NULL);
    RETURN (COALESCE(oldest, pg_snapshot_xmax(snap)::text::bigint) + {shift}) * {PER_TRANSACTION};
END
$$"
    )
}

/// The trigger numbering events, refusing connections that are not the
/// hub's: the horizon would not wait for them.
fn seq_function(shift: i64) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION cityhub_event_seq() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    base bigint;
    last bigint;
BEGIN
    IF current_setting('application_name') IS DISTINCT FROM '{HUB_APPLICATION_NAME}' THEN
        RAISE EXCEPTION 'activity events are appended only by connections named {HUB_APPLICATION_NAME}, not %',
            quote_literal(current_setting('application_name'))
            USING HINT = 'SET application_name = ''{HUB_APPLICATION_NAME}'' before the transaction begins: live delivery waits only for those connections.';
    END IF;
    base := (pg_current_xact_id()::text::bigint + {shift}) * {PER_TRANSACTION};
    SELECT MAX(seq) INTO last FROM activity_events
        WHERE seq >= base AND seq < base + {PER_TRANSACTION};
    IF last IS NULL THEN
        NEW.seq := base;
    ELSIF last + 1 < base + {PER_TRANSACTION} THEN
        NEW.seq := last + 1;
    ELSE
        RAISE EXCEPTION 'more than {PER_TRANSACTION} events in one transaction';
    END IF;
    RETURN NEW;
END
$$"
    )
}

/// `m20261201_000003_event_order`'s horizon, as it wrote it.
fn old_horizon_function(shift: i64) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION cityhub_event_horizon() RETURNS bigint LANGUAGE sql STABLE AS \
         $$ SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {shift}) * {PER_TRANSACTION} $$"
    )
}

/// `m20261201_000003_event_order`'s trigger function, as it wrote it.
fn old_seq_function(shift: i64) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION cityhub_event_seq() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    base bigint := (pg_current_xact_id()::text::bigint + {shift}) * {PER_TRANSACTION};
    last bigint;
BEGIN
    SELECT MAX(seq) INTO last FROM activity_events
        WHERE seq >= base AND seq < base + {PER_TRANSACTION};
    IF last IS NULL THEN
        NEW.seq := base;
    ELSIF last + 1 < base + {PER_TRANSACTION} THEN
        NEW.seq := last + 1;
    ELSE
        RAISE EXCEPTION 'more than {PER_TRANSACTION} events in one transaction';
    END IF;
    RETURN NEW;
END
$$"
    )
}

/// Runs `sql` (one statement) and reads the bigint column `shift` of its
/// only row.
async fn read_shift(conn: &impl ConnectionTrait, sql: &str) -> Result<i64, DbErr> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Postgres,
            sql,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("the event sequence's shift was not found".into()))?;
    let shift: Option<i64> = row.try_get("", "shift")?;
    shift.ok_or_else(|| DbErr::Custom("the event sequence's shift was not found".into()))
}

#[async_trait::async_trait]
#[expect(
    elided_lifetimes_in_paths,
    reason = "async_trait needs the trait's exact (elided) signature"
)]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let conn = manager.get_connection();
        // The old horizon is a STABLE SQL function: it runs on the calling
        // statement's snapshot, so this difference is exactly its shift.
        let shift = read_shift(
            conn,
            &format!(
                "SELECT cityhub_event_horizon() / {PER_TRANSACTION} \
                 - pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS shift"
            ),
        )
        .await?;
        let statements = [
            format!(
                "INSERT INTO hub_meta (key, value) VALUES ('event_seq_shift', {shift}) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            horizon_function(shift),
            seq_function(shift),
        ];
        for sql in statements {
            conn.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
            return Ok(());
        }
        let conn = manager.get_connection();
        let shift = read_shift(
            conn,
            "SELECT value AS shift FROM hub_meta WHERE key = 'event_seq_shift'",
        )
        .await?;
        let statements = [
            old_horizon_function(shift),
            old_seq_function(shift),
            "DELETE FROM hub_meta WHERE key = 'event_seq_shift'".to_owned(),
        ];
        for sql in statements {
            conn.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_restores_what_event_order_wrote() {
        // The old texts differ from `m20261201_000003_event_order`'s only
        // by `OR REPLACE`.
        assert!(old_horizon_function(7).contains(
            "LANGUAGE sql STABLE AS $$ SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + 7) * 65536 $$"
        ));
        assert!(
            old_seq_function(7)
                .contains("base bigint := (pg_current_xact_id()::text::bigint + 7) * 65536;")
        );
    }

    #[test]
    fn the_new_functions_keep_the_shift_and_the_marker() {
        let horizon = horizon_function(7);
        assert!(horizon.contains("+ 7) * 65536"));
        assert!(horizon.contains("application_name = 'cityhub'"));
        // The snapshot is taken before pg_stat_activity is read.
        let snapshot = horizon.find("snap := pg_current_snapshot()");
        let activity = horizon.find("FROM pg_stat_activity");
        assert!(snapshot.is_some() && activity.is_some() && snapshot < activity);
        let seq = seq_function(7);
        assert!(seq.contains("IS DISTINCT FROM 'cityhub'"));
        assert!(seq.contains("(pg_current_xact_id()::text::bigint + 7) * 65536"));
    }
}
