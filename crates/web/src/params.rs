//! The query parameters of calendars and feeds: the `activities` filter in
//! URL form (`city`, `field`, `kind`, `country`, `format`, `status`, `from`,
//! `to`, repeatable where a list makes sense; values as in GraphQL, e.g.
//! `field=MUSIC`), plus `include=approximate` for calendars. Validation is
//! GraphQL's own (`ActivityFilter` limits), so both reject the same input.

use chrono::NaiveDate;
use cityhub_domain::{
    ActivityFormat, ActivityKind, ActivityStatus, CreativeField, Limits, ReadScope,
};
use cityhub_storage::ActivityFilter;

/// Parsed parameters.
#[derive(Debug, Clone, Default)]
pub struct WebQuery {
    /// The filter, validated.
    pub filter: ActivityFilter,
    /// Whether month- and year-only dates appear in calendars
    /// (`include=approximate`).
    pub approximate: ApproximateDates,
    /// Whether `status` was given (else the reader's default applies).
    pub statuses_given: bool,
}

/// What a calendar does with dates known only to the month or the year.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ApproximateDates {
    /// Left out (the default): a calendar entry needs a day.
    #[default]
    LeaveOut,
    /// Included as all-day entries spanning the month or the year.
    Include,
}

/// A parameter the request got wrong: its name and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter (`query.field`).
    pub field: String,
    /// Why it is refused.
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ParamError {
    ParamError {
        field: format!("query.{field}"),
        message: message.into(),
    }
}

/// A domain rule's refusal, named as the parameter `name`.
fn refused(name: &str, refusal: cityhub_domain::DomainError) -> ParamError {
    match refusal {
        cityhub_domain::DomainError::Invalid(e) => err(name, e.message),
    }
}

fn enum_value<T>(name: &str, raw: &str, parse: fn(&str) -> Option<T>) -> Result<T, ParamError> {
    parse(raw).ok_or_else(|| err(name, format!("unknown value `{raw}`")))
}

fn date(name: &str, raw: &str) -> Result<NaiveDate, ParamError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| err(name, format!("`{raw}` is not a date like 2014-09-15")))
}

/// Parses a query string. Unknown parameters are refused (a typo such as
/// `fields=` must not silently widen a calendar to the whole network).
pub fn parse(
    query: Option<&str>,
    limits: &Limits,
    max_values: usize,
) -> Result<WebQuery, ParamError> {
    let mut out = WebQuery::default();
    let mut statuses = Vec::new();
    let mut count = 0usize;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        count += 1;
        if count > max_values {
            return Err(err(&key, format!("at most {max_values} parameters")));
        }
        let value = value.trim();
        match key.as_ref() {
            "city" => {
                cityhub_domain::chars::check_line("city", value, limits.slug_chars)
                    .map_err(|e| refused("city", e))?;
                out.filter.cities.push(value.to_owned());
            }
            "country" => {
                cityhub_domain::filter::check_country("country", value)
                    .map_err(|e| refused("country", e))?;
                out.filter.countries.push(value.to_ascii_uppercase());
            }
            "field" => out
                .filter
                .fields
                .push(enum_value("field", value, CreativeField::parse)?),
            "kind" => out
                .filter
                .kinds
                .push(enum_value("kind", value, ActivityKind::parse)?),
            "format" => {
                out.filter
                    .formats
                    .push(enum_value("format", value, ActivityFormat::parse)?)
            }
            "status" => statuses.push(enum_value("status", value, ActivityStatus::parse)?),
            "from" => out.filter.from = Some(date("from", value)?),
            "to" => out.filter.to = Some(date("to", value)?),
            "include" => match value {
                "approximate" => out.approximate = ApproximateDates::Include,
                other => {
                    return Err(err(
                        "include",
                        format!("unknown value `{other}` (only `approximate`)"),
                    ));
                }
            },
            other => {
                return Err(err(
                    other,
                    "unknown parameter (city, field, kind, country, format, status, from, to, include)",
                ));
            }
        }
    }
    cityhub_domain::filter::check_dates(("from", out.filter.from), ("to", out.filter.to), limits)
        .map_err(|e| match e {
        cityhub_domain::DomainError::Invalid(e) => err(&e.field, e.message),
    })?;
    if !statuses.is_empty() {
        out.statuses_given = true;
        out.filter.statuses = Some(statuses);
    }
    Ok(out)
}

impl WebQuery {
    /// The request in one canonical form: lists sorted and without
    /// repeats, and statuses that are the reader's default left out, so
    /// variants of one request (parameter order, repeated parameters,
    /// defaults spelled out or not) share one cache entry.
    pub fn canonical(&self, scope: ReadScope) -> String {
        fn set<T: Ord + Clone + std::fmt::Debug>(items: &[T]) -> Vec<T> {
            let mut items = items.to_vec();
            items.sort();
            items.dedup();
            items
        }
        let f = &self.filter;
        let statuses = f.statuses.as_deref().map(set).filter(|given| {
            let mut default = default_statuses(scope);
            default.sort();
            *given != default
        });
        format!(
            "k{:?}f{:?}c{:?}n{:?}from{:?}to{:?}fm{:?}s{:?}t{:?}q{:?}a{:?}",
            set(&f.kinds),
            set(&f.fields),
            set(&f.cities),
            set(&f.countries),
            f.from,
            f.to,
            set(&f.formats),
            statuses,
            set(&f.themes),
            f.text,
            self.approximate,
        )
    }
}

/// The statuses a calendar or feed shows when `status` is not given:
/// published and cancelled ones, plus drafts the reader may see when its
/// scope is wider than the public's (the scope still hides other cities'
/// drafts).
pub fn default_statuses(scope: ReadScope) -> Vec<ActivityStatus> {
    let mut statuses = vec![ActivityStatus::Published, ActivityStatus::Cancelled];
    if scope != ReadScope::Public {
        statuses.push(ActivityStatus::Draft);
    }
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(q: &str) -> Result<WebQuery, ParamError> {
        parse(Some(q), &Limits::default(), 50)
    }

    #[test]
    fn repeated_values_and_enums() {
        let q = p("field=MUSIC&field=DESIGN&kind=ANNUAL_MEETING&city=lyon&country=fr&from=2010-01-01&include=approximate")
            .expect("valid");
        assert_eq!(
            q.filter.fields,
            vec![CreativeField::Music, CreativeField::Design]
        );
        assert_eq!(q.filter.kinds, vec![ActivityKind::AnnualMeeting]);
        assert_eq!(q.filter.cities, vec!["lyon"]);
        assert_eq!(q.filter.countries, vec!["FR"]);
        assert_eq!(q.approximate, ApproximateDates::Include);
        assert!(q.filter.statuses.is_none());
    }

    #[test]
    fn variants_of_one_request_are_one_canonical_form() {
        let scope = ReadScope::Public;
        let a = p("field=MUSIC&city=lyon&field=DESIGN").expect("valid");
        let b = p("city=lyon&field=DESIGN&field=MUSIC&field=MUSIC").expect("valid");
        assert_eq!(a.canonical(scope), b.canonical(scope));
        let spelled = p("city=lyon&field=DESIGN&field=MUSIC&status=CANCELLED&status=PUBLISHED")
            .expect("valid");
        assert_eq!(a.canonical(scope), spelled.canonical(scope));
        let other = p("city=lyon&field=DESIGN&field=MUSIC&status=PUBLISHED").expect("valid");
        assert_ne!(a.canonical(scope), other.canonical(scope));
        assert_ne!(
            a.canonical(scope),
            p("field=MUSIC&city=lyon&field=DESIGN&include=approximate")
                .expect("valid")
                .canonical(scope)
        );
    }

    #[test]
    fn bad_input_names_the_parameter() {
        assert_eq!(p("field=music").expect_err("bad").field, "query.field");
        assert_eq!(p("fields=MUSIC").expect_err("bad").field, "query.fields");
        assert_eq!(p("from=2014-13-01").expect_err("bad").field, "query.from");
        assert_eq!(
            p("from=2014-02-01&to=2014-01-01").expect_err("bad").field,
            "query.to"
        );
        assert_eq!(p("country=FRA").expect_err("bad").field, "query.country");
        assert_eq!(p("country=F1").expect_err("bad").field, "query.country");
        assert_eq!(p("from=1066-10-14").expect_err("bad").field, "query.from");
        assert_eq!(p("city=ly%00on").expect_err("bad").field, "query.city");
        assert_eq!(p("include=all").expect_err("bad").field, "query.include");
        let many = vec!["city=a"; 51].join("&");
        assert_eq!(p(&many).expect_err("too many").field, "query.city");
    }
}
