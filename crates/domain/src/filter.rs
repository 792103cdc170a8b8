//! Which activities a listing, a count or a subscription selects: the one
//! rule. [`PreparedFilter::matches`] evaluates it in memory (live events,
//! replays); storage translates the same [`ActivityFilter`] to SQL
//! (`storage::repo::conditions::filter_condition`), and a test
//! (`tests/e2e/filter_agreement.rs`) runs generated filters both ways over
//! the same data and proves they select the same activities.

use std::collections::HashMap;

use chrono::NaiveDate;

use crate::{
    Activity, ActivityFormat, ActivityKind, ActivityStatus, City, CityId, CreativeField,
    DomainError, text,
};

/// Checks a country code as filters take it: ISO 3166-1 alpha-2, two ASCII
/// letters in any case. GraphQL's `countries` and the web's `country`
/// parameter both call it, so they refuse alike.
pub fn check_country(field: &str, code: &str) -> Result<(), DomainError> {
    if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            "must be an ISO 3166-1 alpha-2 code like FR",
        ))
    }
}

/// Checks a filter's dates: each within the accepted years
/// ([`crate::activity::check_year`]), and `to` not before `from`. The
/// fields name them as the caller's input does (`filter.from`,
/// `query.to`); GraphQL's inputs and the web's parameters both call it.
pub fn check_dates(
    (from_field, from): (&str, Option<NaiveDate>),
    (to_field, to): (&str, Option<NaiveDate>),
    limits: &crate::Limits,
) -> Result<(), DomainError> {
    if let Some(from) = from {
        crate::activity::check_year(from_field, from, limits)?;
    }
    if let Some(to) = to {
        crate::activity::check_year(to_field, to, limits)?;
    }
    if let (Some(from), Some(to)) = (from, to)
        && to < from
    {
        return Err(DomainError::invalid(to_field, "must not be before `from`"));
    }
    Ok(())
}

/// Most search terms a text query is split into.
pub const MAX_SEARCH_TERMS: usize = 16;

/// Which activities a listing returns. Lists match any of their values;
/// the filter's parts all apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivityFilter {
    /// Any of these kinds.
    pub kinds: Vec<ActivityKind>,
    /// Concerning any of these fields.
    pub fields: Vec<CreativeField>,
    /// Hosted by, held in, or joined by any of these city slugs: the
    /// activity's `hosts`, `venue_city_id` and participants, so a city
    /// only invited as co-host or venue city (not yet accepted) is not one
    /// of its cities (`invitation.rs`).
    pub cities: Vec<String>,
    /// Held in or hosted from any of these countries (ISO codes, any case).
    pub countries: Vec<String>,
    /// Ending on or after this day (an activity without an end date ends
    /// on its start date; one with no date at all never matches).
    pub from: Option<NaiveDate>,
    /// Starting on or before this day (an activity without a start date
    /// never matches).
    pub to: Option<NaiveDate>,
    /// Any of these formats.
    pub formats: Vec<ActivityFormat>,
    /// Any of these statuses; `None` means published only.
    pub statuses: Option<Vec<ActivityStatus>>,
    /// Having any of these themes (case, accents and surrounding spaces
    /// folded).
    pub themes: Vec<String>,
    /// Full-text query over title, summary, description and themes: every
    /// term (alphanumeric run, folded) must begin a word of them. A query
    /// without any term matches nothing.
    pub text: Option<String>,
}

/// The cities around an activity that a filter looks at.
#[derive(Debug, Clone, Copy)]
pub struct Surroundings<'a> {
    /// Ids of the cities that joined it.
    pub participants: &'a [CityId],
    /// City records by id: at least its hosts, its venue city and its
    /// participants (a city missing here matches no city or country).
    pub cities: &'a HashMap<CityId, City>,
}

impl ActivityFilter {
    /// The statuses this filter selects: its `statuses`, or published only.
    pub fn statuses(&self) -> &[ActivityStatus] {
        self.statuses
            .as_deref()
            .unwrap_or(&[ActivityStatus::Published])
    }

    /// Whether an activity with this status can match.
    pub fn admits_status(&self, status: ActivityStatus) -> bool {
        self.statuses().contains(&status)
    }

    /// The themes as compared: folded and trimmed.
    pub fn theme_keys(&self) -> Vec<String> {
        self.themes.iter().map(|t| theme_key(t)).collect()
    }

    /// The countries as compared: upper-cased.
    pub fn country_codes(&self) -> Vec<String> {
        self.countries
            .iter()
            .map(|c| c.to_ascii_uppercase())
            .collect()
    }

    /// The search terms of `text`, if there is a text query.
    pub fn search_terms(&self) -> Option<Vec<String>> {
        self.text
            .as_deref()
            .map(|q| text::search_terms(q, MAX_SEARCH_TERMS))
    }

    /// Whether `activity` matches (preparing the filter for this one call;
    /// prepare it once with [`PreparedFilter::new`] to match many).
    pub fn matches(&self, activity: &Activity, around: &Surroundings<'_>) -> bool {
        PreparedFilter::new(self.clone()).matches(activity, around)
    }
}

/// How a theme is compared: folded, surrounding spaces dropped.
pub fn theme_key(theme: &str) -> String {
    text::fold(theme.trim())
}

/// A filter prepared for matching many activities in memory: themes
/// folded, countries upper-cased and search terms built once, so matching
/// allocates nothing for the common filters.
#[derive(Debug, Clone)]
pub struct PreparedFilter {
    filter: ActivityFilter,
    themes: Vec<String>,
    countries: Vec<String>,
    terms: Option<Vec<String>>,
}

impl PreparedFilter {
    /// Prepares `filter`.
    pub fn new(filter: ActivityFilter) -> Self {
        Self {
            themes: filter.theme_keys(),
            countries: filter.country_codes(),
            terms: filter.search_terms(),
            filter,
        }
    }

    /// The filter.
    pub fn filter(&self) -> &ActivityFilter {
        &self.filter
    }

    /// Whether `activity` matches.
    pub fn matches(&self, activity: &Activity, around: &Surroundings<'_>) -> bool {
        self.filter.admits_status(activity.status) && self.matches_besides_status(activity, around)
    }

    /// Whether `activity` matches every part of the filter but its
    /// statuses (for callers that judge the status at another moment than
    /// the content, such as an event's status after it happened).
    pub fn matches_besides_status(&self, a: &Activity, around: &Surroundings<'_>) -> bool {
        let filter = &self.filter;
        if !filter.kinds.is_empty() && !filter.kinds.contains(&a.kind) {
            return false;
        }
        if !filter.formats.is_empty() && !filter.formats.contains(&a.format) {
            return false;
        }
        if !filter.fields.is_empty() && !a.fields.iter().any(|f| filter.fields.contains(f)) {
            return false;
        }
        if !self.themes.is_empty() && !a.themes.iter().any(|t| self.themes.contains(&theme_key(t)))
        {
            return false;
        }
        let city = |id: &CityId| around.cities.get(id);
        if !filter.cities.is_empty() {
            let mut involved = a
                .hosts
                .iter()
                .chain(a.venue_city_id.iter())
                .chain(around.participants.iter())
                .filter_map(city);
            if !involved.any(|c| filter.cities.contains(&c.slug)) {
                return false;
            }
        }
        if !self.countries.is_empty() {
            // Hosts and the venue city locate an activity; participants do not.
            let mut located = a
                .hosts
                .iter()
                .chain(a.venue_city_id.iter())
                .filter_map(city);
            if !located.any(|c| self.countries.contains(&c.country)) {
                return false;
            }
        }
        let start = a.start_date;
        let end = a.end_date.or(start);
        if let Some(from) = filter.from
            && end.is_none_or(|e| e < from)
        {
            return false;
        }
        if let Some(to) = filter.to
            && start.is_none_or(|s| s > to)
        {
            return false;
        }
        if let Some(terms) = &self.terms {
            let document = a.search_document();
            let words: Vec<&str> = document.split(' ').collect();
            if terms.is_empty()
                || !terms
                    .iter()
                    .all(|t| words.iter().any(|w| w.starts_with(t.as_str())))
            {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_country_is_two_ascii_letters_in_any_case() {
        for code in ["FR", "fr", "Jp"] {
            assert!(check_country("countries[0]", code).is_ok(), "{code}");
        }
        for code in ["", "F", "FRA", "F1", "1F", "  ", "É1", "ÉT", "F-"] {
            let refused = check_country("countries[0]", code).expect_err(code);
            assert_eq!(
                refused,
                DomainError::invalid("countries[0]", "must be an ISO 3166-1 alpha-2 code like FR"),
                "{code}"
            );
        }
    }
}
