//! Commit-ordered event sequence numbers on PostgreSQL (issue 10), without
//! serializing writers.
//!
//! Until now every append took a transaction-scoped advisory lock held
//! through commit, so that sequence order was commit order. Now an event's
//! `seq` is derived from its transaction id: `(xid + shift) * 65536 + k`
//! (`k` counts the transaction's own events). Transaction ids only grow,
//! and every transaction whose id is below `pg_snapshot_xmin` of a snapshot
//! has ended, so every event with `seq < (xmin + shift) * 65536` (the read
//! horizon, `cityhub_event_horizon()`) is final: nothing will ever be
//! committed below it. Readers only read below the horizon, so no reader
//! sees sequence N+1 before N is visible, and writers commit concurrently.
//! `shift` is chosen once here so that every new number is above every old
//! one. SQLite has one writer at a time, so its sequence is already in
//! commit order: nothing changes there.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{self, ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Events one transaction may append (the low bits of `seq`).
const PER_TRANSACTION: i64 = 65_536;

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
        // The shift puts the first new number above every existing one:
        // later transactions have ids above this migration's.
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!(
                    "SELECT GREATEST(0, COALESCE((SELECT MAX(seq) FROM activity_events), 0) / {PER_TRANSACTION} + 1 \
                     - pg_current_xact_id()::text::bigint)::bigint AS shift"
                ),
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("no shift computed".into()))?;
        let shift: i64 = row.try_get("", "shift")?;
        let statements = [
            format!(
                "CREATE FUNCTION cityhub_event_horizon() RETURNS bigint LANGUAGE sql STABLE AS \
                 $$ SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + {shift}) * {PER_TRANSACTION} $$"
            ),
            format!(
                "CREATE FUNCTION cityhub_event_seq() RETURNS trigger LANGUAGE plpgsql AS $$
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
            ),
            "CREATE TRIGGER activity_events_seq BEFORE INSERT ON activity_events \
             FOR EACH ROW EXECUTE FUNCTION cityhub_event_seq()"
                .to_owned(),
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
        for sql in [
            "DROP TRIGGER IF EXISTS activity_events_seq ON activity_events",
            "DROP FUNCTION IF EXISTS cityhub_event_seq()",
            "DROP FUNCTION IF EXISTS cityhub_event_horizon()",
            // The plain sequence continues above every number handed out.
            "SELECT setval(pg_get_serial_sequence('activity_events', 'seq'), \
             GREATEST((SELECT MAX(seq) FROM activity_events), 1))",
        ] {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}
