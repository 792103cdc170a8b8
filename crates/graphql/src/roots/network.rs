//! The network and its cities: `network`, `viewer`, `cities`, `city` and
//! the `City` entity resolver; `createCity` and `updateCity`.

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain::CityId;
use cityhub_storage::CityRepo;
use cityhub_storage::Cursor;
use cityhub_storage::cursor::KeyKind;

use crate::access::{check_slug_arg, may_read, page_size};
use crate::error::{ResultExt, bad_input, cursor};
use crate::inputs::{CityFilterInput, CityInput, CityPatch};
use crate::objects::city::CityObject;
use crate::objects::connection::CityConnection;
use crate::objects::network::Network;
use crate::objects::parse_city_id;
use crate::objects::viewer::Viewer;
use crate::state::{actor, hub, principal};

/// Reads of the network and its member cities.
#[derive(Default)]
pub struct NetworkQuery;

/// Reads of the network and its member cities.
#[Object]
impl NetworkQuery {
    /// The network as a whole: name, founding year, counts.
    async fn network(&self, ctx: &Context<'_>) -> Result<Network> {
        may_read(ctx)?;
        Ok(Network::default())
    }

    /// Who the request's token speaks for; null when anonymous.
    async fn viewer(&self, ctx: &Context<'_>) -> Option<Viewer> {
        principal(ctx).cloned().map(Viewer)
    }

    /// Member cities, ordered by name.
    #[graphql(
        complexity = "first.unwrap_or(cityhub_domain::page::CITIES).clamp(0, cityhub_domain::page::MOST_COUNTED) as usize * child_complexity + 2"
    )]
    async fn cities(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Which cities: by creative field, country or name text; every city when absent."
        )]
        filter: Option<CityFilterInput>,
        #[graphql(
            desc = "Page size, from 0 to `api.max_page_size` (100).",
            default_with = "Some(cityhub_domain::page::CITIES)"
        )]
        first: Option<i32>,
        #[graphql(desc = "`pageInfo.endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<CityConnection> {
        may_read(ctx)?;
        let h = hub(ctx);
        let first = page_size(ctx, first.unwrap_or(cityhub_domain::page::CITIES))?;
        let filter = filter.unwrap_or_default().into_filter(h.service.limits())?;
        let after_cursor = match &after {
            Some(text) => Some(
                Cursor::decode(text, cityhub_storage::repo::city::CITY_ORDER, KeyKind::Text)
                    .map_err(cursor)?,
            ),
            None => None,
        };
        let db = h.service.db();
        if filter.selects_every_city() {
            // Every city: from the member cities in memory, at least as
            // new as the version read now (one small statement).
            let (page, total) = db
                .cities()
                .page_of_all(db, first, after_cursor.as_ref())
                .await
                .api()?;
            return Ok(CityConnection::new(page, after_cursor.as_ref(), filter).with_total(total));
        }
        let page = CityRepo::page(db, &filter, first, after_cursor.as_ref())
            .await
            .api()?;
        Ok(CityConnection::new(page, after_cursor.as_ref(), filter))
    }

    /// One member city, by slug or by id (exactly one of them).
    async fn city(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The city's slug, e.g. `lyon` (give `slug` or `id`, not both).")]
        slug: Option<String>,
        #[graphql(desc = "The city's `id` (give `slug` or `id`, not both).")] id: Option<ID>,
    ) -> Result<Option<CityObject>> {
        may_read(ctx)?;
        let db = hub(ctx).service.db();
        let city = match (slug, id) {
            (Some(slug), None) => {
                check_slug_arg(ctx, "slug", &slug)?;
                CityRepo::find_by_slug(db, &slug).await.api()?
            }
            (None, Some(id)) => CityRepo::find_by_id(db, parse_city_id(&id, "id")?)
                .await
                .api()?,
            _ => return Err(bad_input("slug", "give exactly one of `slug` and `id`")),
        };
        Ok(city.map(CityObject))
    }

    /// Federation: resolves a `City` entity by id.
    #[graphql(entity)]
    async fn find_city_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<CityObject>> {
        may_read(ctx)?;
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        Ok(CityRepo::find_by_id(hub(ctx).service.db(), CityId(id))
            .await
            .api()?
            .map(CityObject))
    }
}

/// Changes to the network's member cities (secretariat only).
#[derive(Default)]
pub struct CityMutation;

/// Changes to the network's member cities (secretariat only).
#[Object]
impl CityMutation {
    /// Registers a member city (secretariat only).
    async fn create_city(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The city: slug, name, country, creative fields and year of designation at least."
        )]
        input: CityInput,
    ) -> Result<CityObject> {
        Ok(CityObject(
            hub(ctx)
                .service
                .create_city(actor(ctx), input.into())
                .await
                .api()?,
        ))
    }

    /// Changes a member city (secretariat only).
    async fn update_city(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The city's slug (it never changes).")] slug: String,
        #[graphql(desc = "The fields to change; a field left out keeps its value.")]
        patch: CityPatch,
    ) -> Result<CityObject> {
        check_slug_arg(ctx, "slug", &slug)?;
        Ok(CityObject(
            hub(ctx)
                .service
                .update_city(actor(ctx), &slug, patch.into())
                .await
                .api()?,
        ))
    }
}
