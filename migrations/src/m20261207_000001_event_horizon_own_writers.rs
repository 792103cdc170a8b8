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
//! so every transaction that can ever add an event shows in
//! `pg_stat_activity` as a `cityhub` backend of this database, with its id
//! in `backend_xid`, for as long as it runs. `cityhub_event_horizon()` is
//! now a STABLE plpgsql function (it runs on the snapshot `S` of the
//! statement that calls it) that:
//!
//! 1. takes `S` (`pg_current_snapshot()`);
//! 2. then reads the `backend_xid`s of the `cityhub` backends of this
//!    database from `pg_stat_activity` (`A`), after discarding the copy a
//!    transaction keeps of it (`pg_stat_clear_snapshot()`), so that `A` is
//!    read after `S` even in a transaction that read it before;
//! 3. then returns `(h + shift) * 65536`, where `h` is the smallest id
//!    running in `S` that either is in `A` (a hub writer still running) or
//!    has ended by now (`pg_xact_status`: it may have been a hub writer that
//!    ended before `A`), or `pg_snapshot_xmax(S)` when there is none. `A`
//!    holds 32-bit ids: they are compared with the low 32 bits of `S`'s.
//!
//! Every event below that horizon that will ever be committed is visible
//! in `S` itself, so a reader may compare in the very statement that reads
//! the events, at any isolation level. An event below it was appended by a
//! transaction `W` with id `X < h <= xmax(S)`, and
//!
//! - if `X` was not running in `S`, `W` had ended before `S`: its events
//!   are visible in `S` (or were rolled back);
//! - if `X` was running in `S`: `W` is a `cityhub` backend of this
//!   database (the trigger's check), whose `backend_xid` is `X` from before
//!   `S` until it ends. Had it ended before `A` was read, the check after
//!   `A` would find it ended; had it not, `A` would show it. Either way
//!   `h <= X`, a contradiction: no such event exists. The running ids
//!   below `h` are others' transactions, still running after `A` was read
//!   and absent from it, which write no events;
//! - an id assigned after `S` is at least `xmax(S) >= h`: its events are
//!   above the horizon and wait for a later read.
//!
//! So a reader that delivers the events below the horizon and stops at the
//! first one above it never skips one, and delivers them in sequence
//! order. A transaction of another database or of a connection that is not
//! the hub's delays nothing (only a read that races with its end waits for
//! the next read); the hub's own writers still hold back the events
//! committed after them until they end.
//!
//! The hub's connections that hold an id, and so hold delivery back while
//! they do: writers, for their transaction; a migration run (one
//! transaction under the migration lock), which may write events and is
//! rightly waited for; the announcer's `pg_notify`, which takes one only
//! while it commits. Readers and the `LISTEN` connection take none.
//!
//! STABLE, not VOLATILE: a volatile function would take a snapshot of its
//! own, later than the calling statement's, which could then miss events
//! below the horizon. Readers evaluate it once per statement (a scalar
//! subquery); an instance still running the previous release during a
//! rolling deploy calls it per row, which stays exact, only slower.
//!
//! The price of the exactness: the horizon must be computed on the
//! primary the hub writes to (a standby's `pg_stat_activity` does not show
//! the primary's writers), writers must not use two-phase commit (a
//! prepared transaction has no backend), and a connection that appends
//! events must be named `cityhub` before its transaction takes an id.
//!
//! The old function returns `(xmin + shift) * 65536` on the snapshot of
//! the statement that calls it, so `shift` is read back from it and kept
//! in `hub_meta.event_seq_shift`, from which down restores both functions
//! as `m20261201_000003_event_order` wrote them. SQLite is unchanged.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{self, ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Events one transaction may append (the low bits of `seq`).
const PER_TRANSACTION: i64 = 65_536;

/// The `application_name` of every connection the hub opens.
const HUB_APPLICATION_NAME: &str = "cityhub";

/// The horizon: the oldest transaction running in the caller's snapshot
/// that is a `cityhub` backend's of this database or has ended since, else
/// the snapshot's `xmax`.
fn horizon_function(shift: i64) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION cityhub_event_horizon() RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    -- The calling statement's snapshot (a STABLE function takes none of its own).
    snap pg_snapshot := pg_current_snapshot();
    hub_xids bigint[];
    oldest bigint;
BEGIN
    -- Then the hub's writers: pg_stat_activity is read once per
    -- transaction and kept, so read it afresh.
    PERFORM pg_stat_clear_snapshot();
    SELECT array_agg(backend_xid::text::bigint) INTO hub_xids FROM pg_stat_activity
        WHERE datname = current_database()
          AND application_name = '{HUB_APPLICATION_NAME}'
          AND backend_xid IS NOT NULL;
    -- Then which of the snapshot's running transactions have ended since.
    SELECT min(running::text::bigint) INTO oldest
        FROM pg_snapshot_xip(snap) AS running
        WHERE running::text::bigint % 4294967296 = ANY (hub_xids)
           OR pg_xact_status(running) <> 'in progress';
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
        assert!(horizon.contains("LANGUAGE plpgsql STABLE"));
        // The snapshot, then the hub's writers, then what has ended.
        let snapshot = horizon.find("snap pg_snapshot := pg_current_snapshot()");
        let activity = horizon.find("FROM pg_stat_activity");
        let ended = horizon.find("pg_xact_status(running)");
        assert!(snapshot.is_some() && snapshot < activity && activity < ended);
        let seq = seq_function(7);
        assert!(seq.contains("IS DISTINCT FROM 'cityhub'"));
        assert!(seq.contains("(pg_current_xact_id()::text::bigint + 7) * 65536"));
    }
}
