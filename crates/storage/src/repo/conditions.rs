//! The SQL translations of the domain's activity rules: who sees a draft
//! ([`ReadScope`], whose rule is `ReadScope::sees`: [`scope_sql`], the one
//! translation) and which activities a filter selects ([`ActivityFilter`],
//! whose rule is `ActivityFilter::matches`). Activity finders and listings
//! (`repo/activity/`, the city index included) and the kept counts
//! (`repo/stats.rs`) all apply them.

use cityhub_domain::{ActivityFilter, ActivityStatus, ReadScope};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DatabaseBackend, Value};

use super::{in_list, mark};
use crate::entities::activity;
use crate::time::date_key;

/// The rows a scoped query reads, each of which says in its own columns
/// whether everyone may see a row and, for a draft, which city published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScopedRows<'a> {
    /// `activities` itself, soft-deleted rows included (left out here).
    Activities,
    /// The city index `city_activities` under this alias (it holds no
    /// deleted activity).
    CityIndex(&'a str),
    /// The kept counts (`stats_pair_counts`), whose `scope` column is 0 for
    /// what everyone sees and a draft's publishing city otherwise
    /// (migration `m20261201_000002_stats`: `CASE WHEN status = 'DRAFT' THEN
    /// COALESCE(published_by, -1) ELSE 0 END`).
    KeptCounts,
}

/// Who sees a draft, as SQL: the one translation of `ReadScope::sees`
/// every scoped query uses. The condition on `rows` that leaves out
/// soft-deleted activities and the drafts `scope` may not see, to be joined
/// to the rest with `AND`; empty when it lets everything through. `bind`
/// binds the scope's city id and returns its placeholder.
pub(crate) fn scope_sql(
    scope: ReadScope,
    rows: ScopedRows<'_>,
    bind: impl FnOnce(i64) -> String,
) -> String {
    let draft = ActivityStatus::Draft.as_str();
    let visible = match (scope, rows) {
        (ReadScope::All, _) => None,
        (ReadScope::Public, ScopedRows::KeptCounts) => Some("scope = 0".to_owned()),
        (ReadScope::City(id), ScopedRows::KeptCounts) => {
            Some(format!("scope IN (0, {})", bind(id.get())))
        }
        (ReadScope::Public, ScopedRows::Activities) => {
            Some(format!("activities.status <> '{draft}'"))
        }
        (ReadScope::City(id), ScopedRows::Activities) => Some(format!(
            "(activities.status <> '{draft}' OR activities.published_by = {})",
            bind(id.get())
        )),
        (ReadScope::Public, ScopedRows::CityIndex(alias)) => {
            Some(format!("{alias}.status <> '{draft}'"))
        }
        (ReadScope::City(id), ScopedRows::CityIndex(alias)) => Some(format!(
            "({alias}.status <> '{draft}' OR {alias}.published_by = {})",
            bind(id.get())
        )),
    };
    let live = matches!(rows, ScopedRows::Activities).then_some("activities.deleted_at IS NULL");
    match (live, visible) {
        (Some(live), Some(visible)) => format!("{live} AND {visible}"),
        (Some(live), None) => live.to_owned(),
        (None, Some(visible)) => visible,
        (None, None) => String::new(),
    }
}

/// [`scope_sql`] on `activities` as a sea-query condition, for the
/// finders and listings that build their statements with sea-query.
pub(crate) trait ScopeCondition {
    /// The scope as a condition on `activities`.
    fn condition(self, backend: DatabaseBackend) -> Condition;
}

impl ScopeCondition for ReadScope {
    fn condition(self, backend: DatabaseBackend) -> Condition {
        let mut values: Vec<Value> = Vec::new();
        let text = scope_sql(self, ScopedRows::Activities, |id| {
            values.push(id.into());
            mark(backend, values.len())
        });
        // sea-query parenthesizes a custom expression it joins to others.
        Condition::all().add(Expr::cust_with_values(text, values))
    }
}

/// `('A', 'B')`: a list of the hub's own enumerated words as SQL
/// literals. Only for closed sets whose words are upper-case ASCII letters
/// and underscores (checked in debug builds), never for anything a
/// client wrote.
fn word_list<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = words
        .into_iter()
        .map(|w| {
            debug_assert!(
                !w.is_empty() && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "not an enumerated word: {w:?}"
            );
            format!("'{w}'")
        })
        .collect();
    format!("({})", quoted.join(", "))
}

pub(crate) fn filter_condition(filter: &ActivityFilter, backend: DatabaseBackend) -> Condition {
    let mut cond = Condition::all();
    // The statuses are written into the SQL, not bound: they are a closed
    // set of our own words (at most seven lists), and a bound `status IN
    // ($1)` made PostgreSQL plan a network-wide page again on every
    // execution, its generic plan costed for a status as rare as any.
    let statuses = filter.statuses();
    cond = cond.add(Expr::cust(if statuses.is_empty() {
        "1 = 0".to_owned()
    } else {
        format!(
            "activities.status IN {}",
            word_list(statuses.iter().map(|s| s.as_str()))
        )
    }));
    if !filter.kinds.is_empty() {
        cond = cond.add(activity::Column::Kind.is_in(filter.kinds.iter().map(|k| k.as_str())));
    }
    if !filter.formats.is_empty() {
        cond = cond.add(activity::Column::Format.is_in(filter.formats.iter().map(|f| f.as_str())));
    }
    if !filter.fields.is_empty() {
        let (marks, values) = in_list(backend, 1, filter.fields.iter().map(|f| f.as_str()));
        cond = cond.add(Expr::cust_with_values(
            format!(
                "activities.id IN (SELECT activity_id FROM activity_fields WHERE field IN {marks})"
            ),
            values,
        ));
    }
    if !filter.themes.is_empty() {
        let (marks, values) = in_list(backend, 1, filter.theme_keys());
        cond = cond.add(Expr::cust_with_values(
            format!("activities.id IN (SELECT activity_id FROM activity_themes WHERE theme_key IN {marks})"),
            values,
        ));
    }
    if !filter.cities.is_empty() {
        // One id set (a UNION of two indexed lookups) rather than an OR of
        // subqueries: the planner then tests membership instead of
        // fetching every wide row in order to test the city.
        let n = filter.cities.len();
        let (marks, mut values) = in_list(backend, 1, filter.cities.iter().cloned());
        let (marks2, values2) = in_list(backend, n + 1, filter.cities.iter().cloned());
        values.extend(values2);
        cond = cond.add(Expr::cust_with_values(
            format!(
                "activities.id IN (SELECT ac.activity_id FROM activity_cities ac JOIN cities c ON c.id = ac.city_id \
                 WHERE c.slug IN {marks} \
                 UNION SELECT v.id FROM activities v JOIN cities vc ON vc.id = v.venue_city_id WHERE vc.slug IN {marks2})"
            ),
            values,
        ));
    }
    if !filter.countries.is_empty() {
        let countries = filter.country_codes();
        let n = countries.len();
        let (marks, mut values) = in_list(backend, 1, countries.iter().cloned());
        let (marks2, values2) = in_list(backend, n + 1, countries);
        values.extend(values2);
        cond = cond.add(Expr::cust_with_values(
            format!(
                "activities.id IN (SELECT ac.activity_id FROM activity_cities ac JOIN cities c ON c.id = ac.city_id \
                 WHERE ac.role = 'HOST' AND c.country IN {marks} \
                 UNION SELECT v.id FROM activities v JOIN cities vc ON vc.id = v.venue_city_id WHERE vc.country IN {marks2})"
            ),
            values,
        ));
    }
    if let Some(from) = filter.from {
        cond = cond.add(activity::Column::EndKey.gte(date_key(Some(from))));
    }
    if let Some(to) = filter.to {
        cond = cond
            .add(activity::Column::StartKey.lte(date_key(Some(to))))
            .add(activity::Column::StartKey.gt(0));
    }
    if let Some(terms) = filter.search_terms() {
        if terms.is_empty() {
            // Nothing searchable (only punctuation): matches nothing, as a
            // search for nothing should.
            cond = cond.add(Expr::cust("1 = 0"));
        } else if backend == DatabaseBackend::Postgres {
            let tsquery = terms
                .iter()
                .map(|t| format!("{t}:*"))
                .collect::<Vec<_>>()
                .join(" & ");
            cond = cond.add(Expr::cust_with_values(
                "activities.search @@ to_tsquery('simple', $1)",
                [tsquery],
            ));
        } else {
            let fts = terms
                .iter()
                .map(|t| fts_prefix(t))
                .collect::<Vec<_>>()
                .join(" AND ");
            // Orders other than the start date (and counts): `+` keeps
            // SQLite from driving the query by the matches' rowids
            // (fetching every matching wide row, then sorting them all): it
            // walks the ordered, covering `activities_by_*` index instead,
            // testing each entry against the match set built once, and
            // stops after the page. 71 ms → 3 ms for a word in 7,000 of
            // 10,000 activities (BENCHMARKS.md). By start date, see
            // `ActivityRepo::search_page`.
            cond = cond.add(Expr::cust_with_values(
                format!(
                    "+activities.id IN (SELECT rowid & {SEARCH_ID_MASK} FROM activity_search \
                     WHERE activity_search MATCH ?)"
                ),
                [fts],
            ));
        }
    }
    cond
}

/// `activity_search`'s rowid is `(start_key << 36) | id` (migration
/// `m20261206_000001_search_by_listing_order`): its order is the listing's
/// by start date; this mask takes the id back out.
pub(crate) const SEARCH_ID_MASK: i64 = (1 << 36) - 1;

/// A search term in FTS5's prefix form, `"term"*` (terms are alphanumeric
/// runs, `text::search_terms`: nothing in them needs quoting).
pub(crate) fn fts_prefix(term: &str) -> String {
    format!("\"{term}\"*")
}

#[cfg(test)]
mod tests {
    use super::*;
    use cityhub_domain::CityId;

    fn sql(scope: ReadScope, rows: ScopedRows<'_>) -> String {
        scope_sql(scope, rows, |id| format!("${id}"))
    }

    #[test]
    fn every_scoped_query_gets_its_condition_from_one_rule() {
        let city = ReadScope::City(CityId(7));
        assert_eq!(
            sql(ReadScope::All, ScopedRows::Activities),
            "activities.deleted_at IS NULL"
        );
        assert_eq!(
            sql(ReadScope::Public, ScopedRows::Activities),
            "activities.deleted_at IS NULL AND activities.status <> 'DRAFT'"
        );
        assert_eq!(
            sql(city, ScopedRows::Activities),
            "activities.deleted_at IS NULL AND \
             (activities.status <> 'DRAFT' OR activities.published_by = $7)"
        );
        assert_eq!(sql(ReadScope::All, ScopedRows::CityIndex("ca")), "");
        assert_eq!(
            sql(ReadScope::Public, ScopedRows::CityIndex("ca")),
            "ca.status <> 'DRAFT'"
        );
        assert_eq!(
            sql(city, ScopedRows::CityIndex("ca")),
            "(ca.status <> 'DRAFT' OR ca.published_by = $7)"
        );
        assert_eq!(sql(ReadScope::All, ScopedRows::KeptCounts), "");
        assert_eq!(sql(ReadScope::Public, ScopedRows::KeptCounts), "scope = 0");
        assert_eq!(sql(city, ScopedRows::KeptCounts), "scope IN (0, $7)");
    }

    #[test]
    fn statuses_are_written_as_words_and_none_matches_nothing() {
        use sea_orm::sea_query::{PostgresQueryBuilder, Query};
        let built = |statuses: Vec<ActivityStatus>| {
            let filter = ActivityFilter {
                statuses: Some(statuses),
                ..ActivityFilter::default()
            };
            Query::select()
                .column(activity::Column::Id)
                .from(activity::Entity)
                .cond_where(filter_condition(&filter, DatabaseBackend::Postgres))
                .to_owned()
                .build(PostgresQueryBuilder)
        };
        let (sql, values) = built(vec![ActivityStatus::Published, ActivityStatus::Cancelled]);
        assert!(
            sql.ends_with("WHERE activities.status IN ('PUBLISHED', 'CANCELLED')"),
            "{sql}"
        );
        assert!(values.0.is_empty());
        let (none, _) = built(vec![]);
        assert!(none.ends_with("WHERE 1 = 0"), "{none}");
    }

    #[test]
    fn the_sea_query_form_numbers_its_own_placeholder() {
        use sea_orm::sea_query::{PostgresQueryBuilder, Query, SqliteQueryBuilder};
        let query = |backend| {
            Query::select()
                .column(activity::Column::Id)
                .from(activity::Entity)
                .and_where(activity::Column::Kind.eq("TALK"))
                .cond_where(ReadScope::City(CityId(7)).condition(backend))
                .to_owned()
        };
        let (pg, values) = query(DatabaseBackend::Postgres).build(PostgresQueryBuilder);
        assert!(
            pg.ends_with(
                "\"activities\".\"kind\" = $1 AND (activities.deleted_at IS NULL AND \
                 (activities.status <> 'DRAFT' OR activities.published_by = $2))"
            ),
            "{pg}"
        );
        assert_eq!(values.0.len(), 2);
        let (lite, _) = query(DatabaseBackend::Sqlite).build(SqliteQueryBuilder);
        assert!(lite.ends_with("activities.published_by = ?))"), "{lite}");
    }
}
