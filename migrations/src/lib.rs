//! cityhub's database migrations: frozen history. Each migration is written
//! as it was on its day, in plain SQL per backend, and never imports the
//! storage crate's entities.

pub use sea_orm_migration::prelude::*;

mod m20261127_000001_initial;
mod m20261201_000001_city_listing;
mod m20261201_000002_persisted_queries;
mod m20261201_000002_stats;
mod m20261201_000003_event_order;
mod m20261201_000004_stats_lock_order;
mod m20261201_000005_stats_refresh_any;
mod m20261206_000001_search_by_listing_order;
mod m20261206_000002_stats_refresh_once;
mod m20261207_000001_event_horizon_own_writers;
mod m20261208_000001_invitations;
mod m20261208_000002_stats_deltas;
mod m20261209_000001_sources;
mod m20261210_000001_stats_refresh_by_key;

/// Runs cityhub's migrations in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_initial::Migration),
            Box::new(m20261201_000001_city_listing::Migration),
            Box::new(m20261201_000002_persisted_queries::Migration),
            Box::new(m20261201_000002_stats::Migration),
            Box::new(m20261201_000003_event_order::Migration),
            Box::new(m20261201_000004_stats_lock_order::Migration),
            Box::new(m20261201_000005_stats_refresh_any::Migration),
            Box::new(m20261206_000001_search_by_listing_order::Migration),
            Box::new(m20261206_000002_stats_refresh_once::Migration),
            Box::new(m20261207_000001_event_horizon_own_writers::Migration),
            Box::new(m20261208_000001_invitations::Migration),
            Box::new(m20261208_000002_stats_deltas::Migration),
            Box::new(m20261209_000001_sources::Migration),
            Box::new(m20261210_000001_stats_refresh_by_key::Migration),
        ]
    }
}

/// Runs each `;`-separated statement of `sql` on the migration's connection,
/// with `{pk}`, `{ctext}`, `{bytes}` and `{bool}` spelled for the backend.
pub(crate) async fn run_sql(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    let postgres = manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres;
    let sql = if postgres {
        sql.replace("{pk}", "BIGSERIAL PRIMARY KEY")
            .replace("{ctext}", "TEXT COLLATE \"C\"")
            .replace("{bytes}", "BYTEA")
    } else {
        sql.replace("{pk}", "INTEGER PRIMARY KEY AUTOINCREMENT")
            .replace("{ctext}", "TEXT")
            .replace("{bytes}", "BLOB")
    };
    let conn = manager.get_connection();
    for statement in split_statements(&sql) {
        conn.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Splits a script on `;` at the end of a line, keeping trigger bodies
/// (whose inner statements end in `;` followed by more indented text) whole:
/// a statement ends only at a line that is exactly `;` or ends in `);`/`;`
/// outside a `BEGIN … END` block.
fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_block = false;
    let mut offset = 0;
    for line in sql.split_inclusive('\n') {
        let trimmed = line.trim();
        let upper = trimmed.to_ascii_uppercase();
        if upper.ends_with("BEGIN") {
            in_block = true;
        }
        if in_block && upper.starts_with("END;") {
            in_block = false;
        }
        offset += line.len();
        if !in_block && trimmed.ends_with(';') {
            let statement = sql[start..offset].trim();
            if !statement.trim_end_matches(';').trim().is_empty() {
                out.push(statement);
            }
            start = offset;
        }
    }
    let rest = sql[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn splits_on_statement_ends_but_not_inside_triggers() {
        let sql = "CREATE TABLE a (x INT);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN\n  INSERT INTO b VALUES (1);\n  INSERT INTO b VALUES (2);\nEND;\nCREATE INDEX i ON a(x);\n";
        let parts = split_statements(sql);
        assert_eq!(parts.len(), 3, "{parts:?}");
        assert!(parts[1].starts_with("CREATE TRIGGER") && parts[1].ends_with("END;"));
    }
}
