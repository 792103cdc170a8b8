//! The SQL translations of the domain's activity rules: who sees a draft
//! ([`ReadScope`], whose rule is `ReadScope::sees`) and which activities a
//! filter selects ([`ActivityFilter`], whose rule is
//! `ActivityFilter::matches`). Activity listings (`repo/activity/`) and the
//! kept counts (`repo/stats.rs`) both apply them.

use cityhub_domain::{ActivityFilter, ActivityStatus, ReadScope};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DatabaseBackend};

use super::in_list;
use crate::entities::activity;
use crate::time::date_key;

/// The SQL translation of [`ReadScope`] (the rule itself is
/// `ReadScope::sees`, in the domain): soft-deleted rows and the drafts the
/// scope may not see are left out.
pub(crate) trait ScopeCondition {
    /// The scope as a condition on `activities`.
    fn condition(self) -> Condition;
}

impl ScopeCondition for ReadScope {
    fn condition(self) -> Condition {
        let base = Condition::all().add(activity::Column::DeletedAt.is_null());
        match self {
            ReadScope::All => base,
            ReadScope::Public => {
                base.add(activity::Column::Status.ne(ActivityStatus::Draft.as_str()))
            }
            ReadScope::City(id) => base.add(
                Condition::any()
                    .add(activity::Column::Status.ne(ActivityStatus::Draft.as_str()))
                    .add(activity::Column::PublishedBy.eq(id.get())),
            ),
        }
    }
}

pub(crate) fn filter_condition(filter: &ActivityFilter, backend: DatabaseBackend) -> Condition {
    let mut cond = Condition::all();
    cond = cond.add(activity::Column::Status.is_in(filter.statuses().iter().map(|s| s.as_str())));
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
