//! Activity statistics for dashboards and `network`: counts by field, kind,
//! country, year and format, the total and the distinct cities involved.
//!
//! The counts are kept by database triggers (migration
//! `m20261201_000002_stats`) and read from `stats_pair_counts`: for every
//! pair of facts, how many activities of a status and visibility scope have
//! both. On PostgreSQL that view adds the deltas writers append
//! (`m20261208_000002_stats_deltas`, so no publish waits on a shared
//! counter row) to the kept pairs, and [`StatsRepo::fold`] moves them in
//! the background; on SQLite it is the kept pairs. A filter on
//! at most one of kinds, formats, fields, countries or cities (one value for
//! the last three, which an activity can have several of) is then answered
//! by summing a few hundred kept rows, whatever the number of activities
//! ([`StatsSource::Kept`]) until the hub has every live activity's facts
//! in memory (read when it starts), brought up to date from the event
//! log before each answer ([`FactIndex`], [`StatsSource::Indexed`]):
//! from then on they answer every filter but text, themes and dates,
//! two or more dimensions at once and several values of a many-valued
//! one included (a tally kept in memory costs less than summing kept rows
//! in the database; the kept counts stay for `network`, a listing's
//! `totalCount` and the hub's first seconds). A
//! filter on text, themes or dates, which the facts do not hold, falls
//! back to counting the facts of the activities the listing's own filter
//! selects ([`StatsSource::Scanned`]), which costs what that listing's
//! filter costs. All three read the same facts, so they agree.

use std::collections::HashMap;

use cityhub_domain::{
    ActivityFilter, ActivityFormat, ActivityKind, ActivityStatus, CreativeField, ReadScope,
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait, Statement, TransactionTrait, Value,
};

use super::city::{CityRepo, FieldCount, NetworkCounts};
use super::city_directory::CITIES_VERSION_NOW;
use super::conditions::{ScopeCondition, ScopedRows, filter_condition, scope_sql};
use super::fact_index::{FactIndex, FactRow, LOAD_CHUNK, Read};
use super::{in_list, mark};
use crate::db::{Db, ReadConnection};
use crate::entities::activity;
use crate::error::StorageError;
use crate::sqlite_read::reader_error;

/// Counts of the activities a filter selects, as a viewer may see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityCounts {
    /// Matching activities.
    pub total: i64,
    /// Distinct member cities hosting, joining or receiving them.
    pub city_count: i64,
    /// Per creative field, every field in vocabulary order (an activity in
    /// two fields counts in both).
    pub by_field: Vec<(CreativeField, i64)>,
    /// Per kind, every kind in vocabulary order.
    pub by_kind: Vec<(ActivityKind, i64)>,
    /// Per country (ISO code) of the venue city or a host city, most
    /// activities first, then by code; countries without any are left out.
    pub by_country: Vec<(String, i64)>,
    /// Per year of the start date, oldest first; undated activities are not
    /// counted here.
    pub by_year: Vec<(i32, i64)>,
    /// Per format, every format in vocabulary order.
    pub by_format: Vec<(ActivityFormat, i64)>,
}

/// Which path answered a statistics request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsSource {
    /// The kept counts: constant time in the number of activities. For
    /// filters on at most one dimension, until the facts are in memory.
    Kept,
    /// The facts of every live activity in memory ([`FactIndex`]), brought
    /// up to date from the event log: a filter of at most two dimensions
    /// with one value each from a kept tally, any other by matching.
    Indexed,
    /// The facts of the activities the filter selects, counted per request.
    Scanned,
}

/// The one dimension (and its values) a kept-count query filters on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeptDimension {
    /// No filter on any dimension.
    All,
    /// Any of these values of a dimension an activity has exactly one of.
    Single(&'static str, Vec<String>),
    /// This one value of a dimension an activity may have several of.
    Multi(&'static str, String),
    /// These city slugs (one), resolved to ids when queried.
    City(String),
}

/// Repository of activity statistics.
pub struct StatsRepo;

/// The `dim` of the row that carries `cities_version` in the network's
/// counts statement.
const VERSION_ROW: &str = "cities_version";

fn other(message: String) -> StorageError {
    StorageError::Other(DbErr::Custom(message))
}

fn dedup(mut values: Vec<String>) -> Vec<String> {
    values.sort_unstable();
    values.dedup();
    values
}

/// The kept-count plan for a filter, if the kept counts can answer it.
fn kept_dimension(filter: &ActivityFilter) -> Option<KeptDimension> {
    if filter.text.is_some()
        || !filter.themes.is_empty()
        || filter.from.is_some()
        || filter.to.is_some()
    {
        return None;
    }
    let kinds = dedup(filter.kinds.iter().map(|k| k.as_str().to_owned()).collect());
    let formats = dedup(
        filter
            .formats
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect(),
    );
    let fields = dedup(
        filter
            .fields
            .iter()
            .map(|f| f.as_str().to_owned())
            .collect(),
    );
    let countries = dedup(filter.country_codes());
    let cities = dedup(filter.cities.clone());
    let given = [&kinds, &formats, &fields, &countries, &cities]
        .iter()
        .filter(|v| !v.is_empty())
        .count();
    match given {
        0 => Some(KeptDimension::All),
        1 if !kinds.is_empty() => Some(KeptDimension::Single("kind", kinds)),
        1 if !formats.is_empty() => Some(KeptDimension::Single("format", formats)),
        // An activity may have several fields, countries or cities: with
        // two values asked, summing per value would count it twice.
        1 if fields.len() == 1 => fields
            .into_iter()
            .next()
            .map(|f| KeptDimension::Multi("field", f)),
        1 if countries.len() == 1 => countries
            .into_iter()
            .next()
            .map(|c| KeptDimension::Multi("country", c)),
        1 if cities.len() == 1 => cities.into_iter().next().map(KeptDimension::City),
        _ => None,
    }
}

/// Which path a filter is answered by before the facts are in memory (for
/// documentation, metrics and tests; once they are, every filter not
/// [`Scanned`](StatsSource::Scanned) is [`Indexed`](StatsSource::Indexed)).
pub fn source_for(filter: &ActivityFilter) -> StatsSource {
    if kept_dimension(filter).is_some() {
        StatsSource::Kept
    } else if FactIndex::answers(filter) {
        StatsSource::Indexed
    } else {
        StatsSource::Scanned
    }
}

/// Builds the counts from `(dim, val, n)` rows.
fn assemble(rows: Vec<(String, String, i64)>) -> Result<ActivityCounts, StorageError> {
    let mut counts = ActivityCounts::default();
    let mut fields: HashMap<CreativeField, i64> = HashMap::new();
    let mut kinds: HashMap<ActivityKind, i64> = HashMap::new();
    let mut formats: HashMap<ActivityFormat, i64> = HashMap::new();
    for (dim, val, n) in rows {
        if n <= 0 {
            continue;
        }
        let bad = || other(format!("stats: unknown {dim} value {val:?}"));
        match dim.as_str() {
            "all" => counts.total += n,
            "cities" => counts.city_count += n,
            "kind" => {
                *kinds
                    .entry(ActivityKind::parse(&val).ok_or_else(bad)?)
                    .or_default() += n
            }
            "format" => {
                *formats
                    .entry(ActivityFormat::parse(&val).ok_or_else(bad)?)
                    .or_default() += n;
            }
            "field" => {
                *fields
                    .entry(CreativeField::parse(&val).ok_or_else(bad)?)
                    .or_default() += n;
            }
            "country" => counts.by_country.push((val, n)),
            "year" => counts
                .by_year
                .push((val.parse::<i32>().map_err(|_| bad())?, n)),
            _ => return Err(bad()),
        }
    }
    counts.by_field = CreativeField::ALL
        .iter()
        .map(|f| (*f, fields.get(f).copied().unwrap_or(0)))
        .collect();
    counts.by_kind = ActivityKind::ALL
        .iter()
        .map(|k| (*k, kinds.get(k).copied().unwrap_or(0)))
        .collect();
    counts.by_format = ActivityFormat::ALL
        .iter()
        .map(|f| (*f, formats.get(f).copied().unwrap_or(0)))
        .collect();
    counts
        .by_country
        .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.by_year.sort_unstable();
    Ok(counts)
}

/// The `(dim, val, n)` rows of a counting statement, on SQLite's read
/// connections when `db` has them.
async fn rows(
    db: &impl ReadConnection,
    statement: Statement,
) -> Result<Vec<(String, String, i64)>, StorageError> {
    if let Some(reader) = db.sqlite_reader() {
        return reader.query(&statement, |row| {
            Ok((
                row.get::<_, String>(0).map_err(reader_error)?,
                row.get::<_, String>(1).map_err(reader_error)?,
                row.get::<_, i64>(2).map_err(reader_error)?,
            ))
        });
    }
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "dim")?,
                r.try_get::<String>("", "val")?,
                r.try_get::<i64>("", "n")?,
            ))
        })
        .collect()
}

/// The placeholder of the `n`th value, repeatable within one statement
/// (SQLite's `?NNN`). Not [`mark`]: its bare `?` is for fragments
/// sea-query numbers itself, and cannot be repeated.
fn numbered(backend: DbBackend, n: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    }
}

/// A statement of [`FactIndex::refresh`] (the module documentation of
/// `fact_index` says what each part is for).
fn refresh_statement(backend: DbBackend, read: Read) -> Statement {
    let (p, v) = (numbered(backend, 1), numbered(backend, 2));
    let facts =
        "SELECT activity_id AS id, dim, val, status, scope AS n FROM stats_facts WHERE fresh = 0";
    if let Read::Chunk { after } = read {
        let next = format!(
            "SELECT id FROM activities WHERE id > {p} AND deleted_at IS NULL ORDER BY id LIMIT {LOAD_CHUNK}"
        );
        return Statement::from_sql_and_values(
            backend,
            format!(
                "{facts} AND activity_id IN ({next}) \
                 UNION ALL SELECT COALESCE(MAX(id), -1), '~last', '', '', 0 FROM ({next}) chunk"
            ),
            [after.into()],
        );
    }
    let changed = format!("SELECT activity_id FROM activity_events WHERE seq > {p}");
    // The newest event that no transaction can precede any more; while
    // nothing is new, the position itself (PostgreSQL's horizon reads
    // `pg_stat_activity`: only worth it when there is something to move to).
    let head = match backend {
        DbBackend::Postgres => format!(
            "CASE WHEN EXISTS ({changed}) THEN (SELECT COALESCE(MAX(seq), 0) FROM activity_events \
             WHERE seq < (SELECT cityhub_event_horizon())) ELSE {p} END"
        ),
        _ => "(SELECT COALESCE(MAX(seq), 0) FROM activity_events)".to_owned(),
    };
    let (changes, position, cities) = match read {
        Read::Changes { position, cities } => (
            format!(
                "{facts} AND activity_id IN ({changed}) \
                 UNION ALL SELECT DISTINCT activity_id, '~changed', '', '', 0 FROM activity_events WHERE seq > {p} \
                 UNION ALL "
            ),
            position,
            cities,
        ),
        _ => (String::new(), -1, -1),
    };
    let sql = format!(
        "{changes}SELECT 0 AS id, '~head' AS dim, '' AS val, '' AS status, {head} AS n \
         UNION ALL SELECT 0, '~pruned', '', '', \
           COALESCE((SELECT value FROM hub_meta WHERE key = 'events_pruned_through'), 0) \
         UNION ALL SELECT 0, '~cities', '', '', v FROM ({CITIES_VERSION_NOW}) cv \
         UNION ALL SELECT id, '~country', country, '', 0 FROM cities \
           WHERE ({CITIES_VERSION_NOW}) <> {v}"
    );
    Statement::from_sql_and_values(backend, sql, [position.into(), cities.into()])
}

/// The rows of a refresh statement, on SQLite's read connections when
/// `db` has them.
async fn fact_rows(db: &Db, read: Read) -> Result<Vec<FactRow>, StorageError> {
    let statement = refresh_statement(db.get_database_backend(), read);
    if let Some(reader) = db.sqlite_reader() {
        return reader.query(&statement, |row| {
            Ok(FactRow {
                id: row.get(0).map_err(reader_error)?,
                dim: row.get(1).map_err(reader_error)?,
                val: row.get(2).map_err(reader_error)?,
                status: row.get(3).map_err(reader_error)?,
                n: row.get(4).map_err(reader_error)?,
            })
        });
    }
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|r| {
            Ok(FactRow {
                id: r.try_get_by_index(0)?,
                dim: r.try_get_by_index(1)?,
                val: r.try_get_by_index(2)?,
                status: r.try_get_by_index(3)?,
                n: r.try_get_by_index(4)?,
            })
        })
        .collect()
}

/// The size of `stats_pair_deltas` past which [`StatsRepo::reclaim_deltas`]
/// gives its file back (a fold reads every page of it: 8 MiB is about 2 ms
/// a fold).
pub const RECLAIM_PAST_BYTES: i64 = 8 << 20;

/// What [`StatsRepo::reclaim_deltas`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim {
    /// The file was small (or the backend has none).
    NotNeeded,
    /// The file was given back.
    GivenBack,
    /// The table's lock was not had in time: nothing changed.
    Busy,
}

/// How long [`StatsRepo::reclaim_deltas`] waits for the deltas' exclusive
/// lock (and so, at most, how long a read or a publish queued behind it
/// waits).
pub const RECLAIM_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

impl StatsRepo {
    /// Moves the pair deltas writers appended into the kept pairs, in one
    /// statement (PostgreSQL; SQLite upserts its pairs at once and has
    /// nothing to fold). Counts read the same before and after. Returns how
    /// many delta rows moved.
    pub async fn fold(db: &impl ConnectionTrait) -> Result<u64, StorageError> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(0);
        }
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT stats_fold() AS moved",
            ))
            .await?;
        let moved = match row {
            Some(row) => row.try_get::<i64>("", "moved")?,
            None => 0,
        };
        Ok(u64::try_from(moved).unwrap_or(0))
    }

    /// Vacuums the tables every write appends to and the fold or the
    /// commit empties again (PostgreSQL): the pair deltas and the pending
    /// notes. Their dead rows would otherwise make each fold scan every
    /// delta ever written wherever autovacuum is off or lags. A no-op on
    /// SQLite.
    ///
    /// Without truncation: both tables fill again at once, and truncating
    /// needs an exclusive lock that writers always hold against it, so
    /// VACUUM retried it for up to 5 s each time (4.1 s on average, 52 runs
    /// in 100,000 publishes, `pg_stat_statements`), blocking writers when it
    /// got it.
    ///
    /// First, when the deltas' file has grown past [`RECLAIM_PAST_BYTES`],
    /// it is given back ([`Self::reclaim_deltas`]), whose outcome this
    /// returns.
    pub async fn vacuum_churn(db: &DatabaseConnection) -> Result<Reclaim, StorageError> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(Reclaim::NotNeeded);
        }
        let reclaim = Self::reclaim_deltas(db).await?;
        db.execute_unprepared(
            "VACUUM (SKIP_LOCKED, TRUNCATE false) stats_pair_deltas, stats_pending",
        )
        .await?;
        Ok(reclaim)
    }

    /// Gives back the file of `stats_pair_deltas` when it has grown past
    /// [`RECLAIM_PAST_BYTES`] (deltas that piled up faster than the fold
    /// took them: a bulk import, a generator, instances down for a while):
    /// every fold reads the whole file, empty pages included, so an idle
    /// hub on 100,000 generated activities read 53,000 blocks a second
    /// (423 MB) and the listing at 100k ran at 0.75 of 10k's
    /// (BENCHMARKS.md). VACUUM cannot be relied on to truncate it: its
    /// truncation needs the table's exclusive lock, which it only tries
    /// for, and readers of the counts hold the table nearly always.
    ///
    /// So, in one transaction: the exclusive lock, waited for at most
    /// [`RECLAIM_LOCK_TIMEOUT`] (requests arriving meanwhile queue behind
    /// it, so a read or a publish may wait that long once), every delta
    /// folded, then `TRUNCATE` (the table is empty by then; writers wait
    /// for the lock and append to the new, empty file). When the lock is
    /// not had in time, nothing changed ([`Reclaim::Busy`]): the caller
    /// tries again later.
    pub async fn reclaim_deltas(db: &DatabaseConnection) -> Result<Reclaim, StorageError> {
        if db.get_database_backend() != DbBackend::Postgres {
            return Ok(Reclaim::NotNeeded);
        }
        let big = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_relation_size('stats_pair_deltas') > $1 AS big",
                [RECLAIM_PAST_BYTES.into()],
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "big"))
            .transpose()?
            .unwrap_or(false);
        if !big {
            return Ok(Reclaim::NotNeeded);
        }
        let txn = db.begin().await?;
        txn.execute_unprepared(&format!(
            "SET LOCAL lock_timeout = '{}ms'",
            RECLAIM_LOCK_TIMEOUT.as_millis()
        ))
        .await?;
        if let Err(e) = txn
            .execute_unprepared("LOCK TABLE stats_pair_deltas IN ACCESS EXCLUSIVE MODE")
            .await
        {
            let e = StorageError::from(e);
            if !e.is_lock_timeout() {
                return Err(e);
            }
            // Readers and writers held it throughout.
            txn.rollback().await?;
            tracing::debug!("the kept counts' deltas were busy: given back later");
            return Ok(Reclaim::Busy);
        }
        txn.execute_unprepared("SELECT stats_fold()").await?;
        txn.execute_unprepared("TRUNCATE stats_pair_deltas").await?;
        txn.commit().await?;
        tracing::info!("the kept counts' deltas file was given back");
        Ok(Reclaim::GivenBack)
    }

    /// Counts the activities `filter` selects as `scope` sees them, and
    /// says which path answered.
    pub async fn counts(
        db: &Db,
        scope: ReadScope,
        filter: &ActivityFilter,
    ) -> Result<(ActivityCounts, StatsSource), StorageError> {
        let statuses = filter.statuses();
        // Once the facts are in memory they answer one dimension too (a
        // kept tally costs less than summing kept rows in the database);
        // until then the kept counts do.
        let answers = FactIndex::answers(filter);
        let in_memory = answers && db.facts().loaded();
        if let Some(dimension) = kept_dimension(filter).filter(|_| !in_memory) {
            return Ok((
                Self::kept(db, scope, statuses, dimension).await?,
                StatsSource::Kept,
            ));
        }
        if answers {
            Self::read_facts(db).await?;
            let facts = db.facts();
            let cities = if filter.cities.is_empty() {
                None
            } else {
                // The cities at least as new as the facts (a slug the
                // index's cities did not know yet is then known).
                let snapshot = db.cities().at_least(db, facts.cities_version()).await?;
                Some(
                    snapshot
                        .cities
                        .values()
                        .filter(|city| filter.cities.contains(&city.slug))
                        .map(|city| city.id.get())
                        .collect::<Vec<_>>(),
                )
            };
            return Ok((
                assemble(facts.count(scope, filter, cities.as_deref()))?,
                StatsSource::Indexed,
            ));
        }
        Ok((
            Self::scanned(db, scope, filter).await?,
            StatsSource::Scanned,
        ))
    }

    /// Brings the facts held in memory ([`FactIndex`]) up to date: at
    /// start, so that `stats` answers from memory from the first seconds
    /// and no request waits for the index to be read whole.
    pub async fn read_facts(db: &Db) -> Result<(), StorageError> {
        db.facts().refresh(|read| fact_rows(db, read)).await
    }

    /// How many activities `filter` selects as `scope` sees them, from the
    /// kept counts, when the filter is one they answer (`None` otherwise):
    /// `totalCount` of a network-wide listing then costs a few index rows
    /// instead of a scan of every activity.
    pub async fn kept_total(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
    ) -> Result<Option<i64>, StorageError> {
        let Some(dimension) = kept_dimension(filter) else {
            return Ok(None);
        };
        if matches!(dimension, KeptDimension::City(_)) {
            return Ok(None);
        }
        let statuses = filter.statuses();
        Ok(Some(Self::kept_sum(db, scope, statuses, dimension).await?))
    }

    /// Sums kept pair counts: one indexed range per status and scope.
    async fn kept(
        db: &impl ReadConnection,
        scope: ReadScope,
        statuses: &[ActivityStatus],
        dimension: KeptDimension,
    ) -> Result<ActivityCounts, StorageError> {
        // The cities are counted in the database: one row instead of one
        // per city (a few hundred of the result's rows otherwise).
        assemble(
            Self::kept_rows(db, scope, statuses, dimension, |condition| {
                format!(
                    "WITH g AS (SELECT odim, oval, CAST(SUM(n) AS BIGINT) AS n FROM stats_pair_counts \
                     WHERE {condition} GROUP BY odim, oval HAVING SUM(n) > 0) \
                     SELECT odim AS dim, oval AS val, n FROM g WHERE odim <> 'city' \
                     UNION ALL SELECT 'cities' AS dim, '' AS val, COUNT(*) AS n FROM g WHERE odim = 'city'"
                )
            })
            .await?,
        )
    }

    /// The total alone of [`Self::kept`]: the `all` rows of the range.
    async fn kept_sum(
        db: &impl ReadConnection,
        scope: ReadScope,
        statuses: &[ActivityStatus],
        dimension: KeptDimension,
    ) -> Result<i64, StorageError> {
        let rows = Self::kept_rows(db, scope, statuses, dimension, |condition| {
            format!(
                "SELECT 'all' AS dim, '' AS val, CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n \
                 FROM stats_pair_counts WHERE {condition} AND odim = 'all'"
            )
        })
        .await?;
        Ok(rows.iter().map(|(_, _, n)| n).sum())
    }

    /// The `(dim, val, n)` rows of a kept-count statement, which `sql`
    /// writes around the range's condition; none when the range can match
    /// nothing.
    async fn kept_rows(
        db: &impl ReadConnection,
        scope: ReadScope,
        statuses: &[ActivityStatus],
        dimension: KeptDimension,
        sql: impl FnOnce(&str) -> String,
    ) -> Result<Vec<(String, String, i64)>, StorageError> {
        let Some((condition, values)) =
            Self::kept_condition(db, scope, statuses, dimension).await?
        else {
            return Ok(Vec::new());
        };
        let statement =
            Statement::from_sql_and_values(db.get_database_backend(), sql(&condition), values);
        rows(db, statement).await
    }

    /// The `stats_pair_counts` condition of a kept-count query and its values;
    /// `None` when it can match nothing (no status, an unknown city).
    async fn kept_condition(
        db: &impl ReadConnection,
        scope: ReadScope,
        statuses: &[ActivityStatus],
        dimension: KeptDimension,
    ) -> Result<Option<(String, Vec<Value>)>, StorageError> {
        let backend = db.get_database_backend();
        let (fdim, fvals): (&str, Vec<String>) = match dimension {
            KeptDimension::All => ("all", vec![String::new()]),
            KeptDimension::Single(dim, values) => (dim, values),
            KeptDimension::Multi(dim, value) => (dim, vec![value]),
            KeptDimension::City(slug) => match CityRepo::find_by_slug(db, &slug).await? {
                Some(city) => ("city", vec![city.id.to_string()]),
                // An unknown city is involved in nothing.
                None => return Ok(None),
            },
        };
        let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        if statuses.is_empty() {
            return Ok(None);
        }
        let mut values: Vec<Value> = vec![fdim.into()];
        let (fval_marks, v) = in_list(backend, values.len() + 1, fvals);
        values.extend(v);
        let (status_marks, v) = in_list(backend, values.len() + 1, statuses);
        values.extend(v);
        let visible = scope_sql(scope, ScopedRows::KeptCounts, |id| {
            values.push(id.into());
            mark(backend, values.len())
        });
        let scope_condition = if visible.is_empty() {
            String::new()
        } else {
            format!(" AND {visible}")
        };
        Ok(Some((
            format!(
                "fdim = {} AND fval IN {fval_marks} AND status IN {status_marks}{scope_condition}",
                mark(backend, 1)
            ),
            values,
        )))
    }

    /// Counts the facts of the activities the listing's filter selects.
    async fn scanned(
        db: &impl ReadConnection,
        scope: ReadScope,
        filter: &ActivityFilter,
    ) -> Result<ActivityCounts, StorageError> {
        let backend = db.get_database_backend();
        let ids = activity::Entity::find()
            .select_only()
            .column(activity::Column::Id)
            .filter(scope.condition(backend))
            .filter(filter_condition(filter, backend))
            .build(backend);
        let values = ids.values.map(|v| v.0).unwrap_or_default();
        let sql = format!(
            "WITH g AS (SELECT dim, val, COUNT(*) AS n FROM stats_facts \
             WHERE fresh = 0 AND o = 1 AND activity_id IN ({}) GROUP BY dim, val) \
             SELECT dim, val, n FROM g WHERE dim <> 'city' \
             UNION ALL SELECT 'cities' AS dim, '' AS val, COUNT(*) AS n FROM g WHERE dim = 'city'",
            ids.sql
        );
        assemble(rows(db, Statement::from_sql_and_values(backend, sql, values)).await?)
    }

    /// What `network` answers: member cities, their countries and the
    /// cities per field (from the member cities in memory), and published
    /// activities in all and per field from the kept counts. One
    /// statement: the kept counts, and the `cities_version` their snapshot
    /// saw, so the cities in memory are at least that new.
    pub async fn network_counts(db: &Db) -> Result<NetworkCounts, StorageError> {
        // Only the totals `network` shows (all and per field), not every
        // country, year, kind and city that `stats` aggregates: nine
        // groups instead of ≈ 140, 14–38 µs instead of ≈ 630 (BENCHMARKS.md).
        let mut rows = Self::kept_rows(
            db,
            ReadScope::Public,
            &[ActivityStatus::Published],
            KeptDimension::All,
            |condition| {
                format!(
                    "SELECT odim AS dim, oval AS val, CAST(SUM(n) AS BIGINT) AS n \
                     FROM stats_pair_counts WHERE {condition} AND odim IN ('all', 'field') \
                     GROUP BY odim, oval \
                     UNION ALL SELECT '{VERSION_ROW}' AS dim, '' AS val, CAST(v AS BIGINT) AS n \
                     FROM ({CITIES_VERSION_NOW}) cv"
                )
            },
        )
        .await?;
        let at = rows
            .iter()
            .position(|(dim, _, _)| dim == VERSION_ROW)
            .ok_or_else(|| other("network counts: no cities_version row".to_owned()))?;
        let (_, _, cities_version) = rows.swap_remove(at);
        let members = db.cities().members(db, cities_version).await?;
        let published = assemble(rows)?;
        let fields = published
            .by_field
            .iter()
            .map(|(field, activities)| FieldCount {
                field: *field,
                cities: members.fields.get(field).copied().unwrap_or(0),
                activities: *activities,
            })
            .collect();
        Ok(NetworkCounts {
            cities: members.cities,
            countries: members.countries,
            activities: published.total,
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> ActivityFilter {
        ActivityFilter::default()
    }

    #[test]
    fn kept_counts_answer_one_dimension() {
        assert_eq!(kept_dimension(&filter()), Some(KeptDimension::All));
        let f = ActivityFilter {
            kinds: vec![
                ActivityKind::Festival,
                ActivityKind::Workshop,
                ActivityKind::Festival,
            ],
            ..filter()
        };
        assert_eq!(
            kept_dimension(&f),
            Some(KeptDimension::Single(
                "kind",
                vec!["FESTIVAL".into(), "WORKSHOP".into()]
            ))
        );
        let f = ActivityFilter {
            countries: vec!["fr".into()],
            statuses: Some(vec![ActivityStatus::Draft]),
            ..filter()
        };
        assert_eq!(
            kept_dimension(&f),
            Some(KeptDimension::Multi("country", "FR".into()))
        );
        let f = ActivityFilter {
            cities: vec!["lyon".into()],
            ..filter()
        };
        assert_eq!(kept_dimension(&f), Some(KeptDimension::City("lyon".into())));
    }

    #[test]
    fn other_filters_fall_back() {
        let two_fields = ActivityFilter {
            fields: vec![CreativeField::Music, CreativeField::Film],
            ..filter()
        };
        assert_eq!(source_for(&two_fields), StatsSource::Indexed);
        let two_dimensions = ActivityFilter {
            fields: vec![CreativeField::Music],
            kinds: vec![ActivityKind::Festival],
            ..filter()
        };
        assert_eq!(source_for(&two_dimensions), StatsSource::Indexed);
        let themes = ActivityFilter {
            fields: vec![CreativeField::Music],
            themes: vec!["jazz".into()],
            ..filter()
        };
        assert_eq!(source_for(&themes), StatsSource::Scanned);
        let text = ActivityFilter {
            text: Some("jazz".into()),
            ..filter()
        };
        assert_eq!(source_for(&text), StatsSource::Scanned);
        let dates = ActivityFilter {
            from: chrono::NaiveDate::from_ymd_opt(2020, 1, 1),
            ..filter()
        };
        assert_eq!(source_for(&dates), StatsSource::Scanned);
    }

    #[test]
    fn rows_assemble_in_vocabulary_order() {
        let rows = vec![
            ("all".into(), String::new(), 3),
            ("cities".into(), String::new(), 2),
            ("kind".into(), "FESTIVAL".into(), 3),
            ("country".into(), "KR".into(), 1),
            ("country".into(), "FR".into(), 2),
            ("country".into(), "IT".into(), 1),
            ("year".into(), "2024".into(), 2),
            ("year".into(), "2009".into(), 1),
            ("field".into(), "MUSIC".into(), 0),
        ];
        let c = assemble(rows).expect("valid rows");
        assert_eq!(c.total, 3);
        assert_eq!(c.city_count, 2);
        assert_eq!(c.by_year, vec![(2009, 1), (2024, 2)]);
        assert_eq!(
            c.by_country,
            vec![("FR".into(), 2), ("IT".into(), 1), ("KR".into(), 1)]
        );
        assert_eq!(c.by_field.len(), CreativeField::ALL.len());
        assert!(c.by_field.iter().all(|(_, n)| *n == 0));
        assert!(assemble(vec![("kind".into(), "NOPE".into(), 1)]).is_err());
    }
}
