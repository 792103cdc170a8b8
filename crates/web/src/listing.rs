//! Loading what a calendar or feed lists: the request's reader and
//! parameters, the city of a `/cities/{slug}/…` path, the matching
//! activities (one keyset page through `ActivityRepo`, the reader's scope
//! applied) and the cities they name.

use std::collections::HashMap;

use axum::response::Response;
use cityhub_domain::{Activity, ActivityOrder, City, CityId};
use cityhub_storage::{ActivityRepo, ActivityTexts, CityRepo};

use crate::WebState;
use crate::http::{Reader, bad_input, not_found, storage_failure};
use crate::params::{self, WebQuery};

/// A loaded listing.
pub struct Listing {
    /// Who asked.
    pub reader: Reader,
    /// The parameters.
    pub query: WebQuery,
    /// The city of the path, if any.
    pub city: Option<City>,
    /// The activities, in the order asked.
    pub activities: Vec<Activity>,
    /// Cities the activities name (hosts, venue cities), by id.
    pub cities: HashMap<CityId, City>,
}

/// What to list.
pub struct ListingRequest<'a> {
    /// `/cities/{slug}/…`: only this city's activities.
    pub city_slug: Option<&'a str>,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// Order.
    pub order: ActivityOrder,
    /// At most this many.
    pub limit: u64,
    /// Leave undated activities out (in SQL, so they take no slot).
    pub dated_only: bool,
    /// The long texts the representation shows (a calendar shows no
    /// description, so it is not read).
    pub texts: ActivityTexts,
}

/// Loads a listing for `reader`, or the error answer.
pub async fn load(
    state: &WebState,
    reader: Reader,
    request: ListingRequest<'_>,
) -> Result<Listing, Response> {
    let mut query = params::parse(
        request.query,
        &state.limits,
        state.settings.max_query_values,
    )
    .map_err(|e| bad_input(&e.field, &e.message))?;
    let db = &state.db;
    let city = match request.city_slug {
        Some(slug) => {
            let city = CityRepo::find_by_slug(db, slug)
                .await
                .map_err(|e| storage_failure(&e))?
                .ok_or_else(|| not_found(&format!("no member city `{slug}`")))?;
            query.filter.cities = vec![city.slug.clone()];
            Some(city)
        }
        None => None,
    };
    let mut filter = query.filter.clone();
    if !query.statuses_given {
        filter.statuses = Some(params::default_statuses(reader.scope));
    }
    if request.dated_only && filter.to.is_none() {
        // `to` leaves undated activities out; the last representable day
        // keeps every dated one.
        filter.to = chrono::NaiveDate::from_ymd_opt(9999, 12, 31);
    }
    let page = ActivityRepo::page_of(
        db,
        reader.scope,
        &filter,
        request.order,
        request.limit,
        None,
        request.texts.into(),
    )
    .await
    .map_err(|e| storage_failure(&e))?;
    let mut ids: Vec<CityId> = page
        .items
        .iter()
        .flat_map(|a| a.hosts.iter().copied().chain(a.venue_city_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let cities = db
        .cities()
        .find_by_ids(db, &ids, page.cities_version)
        .await
        .map_err(|e| storage_failure(&e))?;
    Ok(Listing {
        reader,
        query,
        city,
        activities: page.items,
        cities,
    })
}
