//! `stats`: counts of activities for dashboards (`ActivityStats` and its
//! per-dimension counts), answered from the kept counts when the filter
//! allows, else from the facts held in memory or counted by the database
//! (see `cityhub_storage::repo::stats`).

use async_graphql::{Context, Result, SimpleObject};
use cityhub_storage::{ActivityCounts, ReadScope, StatsRepo};

use crate::enums::{ActivityFormat, ActivityKind, CreativeField};
use crate::error::ResultExt;
use crate::inputs::ActivityFilterInput;
use crate::state::hub;

/// Counts of the activities a filter selects, as the viewer may see them
/// (published ones by default; a city's token adds its drafts when the
/// filter asks for drafts; the secretariat sees every draft).
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct ActivityStats {
    /// Matching activities.
    pub total: i32,
    /// Distinct member cities involved in them: hosts, participants and venue cities.
    pub city_count: i32,
    /// Per creative field, every field listed (an activity in two fields counts in both).
    pub by_field: Vec<FieldCount>,
    /// Per kind, every kind listed.
    pub by_kind: Vec<KindCount>,
    /// Per country of the venue city or of a host city, most activities first; countries with none are left out.
    pub by_country: Vec<CountryCount>,
    /// Per year of the start date, oldest first; undated activities are not counted here.
    pub by_year: Vec<YearCount>,
    /// Per format, every format listed.
    pub by_format: Vec<FormatCount>,
}

/// Activities in one creative field.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct FieldCount {
    /// The field.
    pub field: CreativeField,
    /// Matching activities concerning it.
    pub count: i32,
}

/// Activities of one kind.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct KindCount {
    /// The kind.
    pub kind: ActivityKind,
    /// Matching activities of this kind.
    pub count: i32,
}

/// Activities held in or hosted from one country.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct CountryCount {
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    /// Matching activities held in it or hosted by one of its cities.
    pub count: i32,
}

/// Activities starting in one year.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct YearCount {
    /// The year.
    pub year: i32,
    /// Matching activities starting in it.
    pub count: i32,
}

/// Activities in one format.
#[derive(SimpleObject, Debug, Clone, PartialEq)]
pub struct FormatCount {
    /// The format.
    pub format: ActivityFormat,
    /// Matching activities in this format.
    pub count: i32,
}

fn small(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl From<ActivityCounts> for ActivityStats {
    fn from(c: ActivityCounts) -> Self {
        ActivityStats {
            total: small(c.total),
            city_count: small(c.city_count),
            by_field: c
                .by_field
                .into_iter()
                .map(|(field, n)| FieldCount {
                    field: field.into(),
                    count: small(n),
                })
                .collect(),
            by_kind: c
                .by_kind
                .into_iter()
                .map(|(kind, n)| KindCount {
                    kind: kind.into(),
                    count: small(n),
                })
                .collect(),
            by_country: c
                .by_country
                .into_iter()
                .map(|(country, n)| CountryCount {
                    country,
                    count: small(n),
                })
                .collect(),
            by_year: c
                .by_year
                .into_iter()
                .map(|(year, n)| YearCount {
                    year,
                    count: small(n),
                })
                .collect(),
            by_format: c
                .by_format
                .into_iter()
                .map(|(format, n)| FormatCount {
                    format: format.into(),
                    count: small(n),
                })
                .collect(),
        }
    }
}

/// Answers `stats(filter)` for a reader whose scope is already checked.
pub async fn activity_stats(
    ctx: &Context<'_>,
    scope: ReadScope,
    filter: Option<ActivityFilterInput>,
) -> Result<ActivityStats> {
    let h = hub(ctx);
    let filter = filter
        .unwrap_or_default()
        .into_filter("filter", h.service.limits())?;
    let (counts, source) = StatsRepo::counts(h.service.db(), scope, &filter)
        .await
        .api()?;
    tracing::debug!(?source, "stats answered");
    Ok(counts.into())
}
