//! The read side: `network`, `viewer`, `cities`, `city`, `activities`,
//! `activity`, `tokens`, and the federation entity resolvers.

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain::{Action, ActivityOrder as Order};
use cityhub_storage::cursor::KeyKind;
use cityhub_storage::repo::tokens::TokenRepo;
use cityhub_storage::{ActivityRepo, CityRepo, Cursor, ReadScope};

use crate::enums::ActivityOrder;
use crate::error::{ResultExt, bad_input, cursor, denied};
use crate::inputs::{ActivityFilterInput, CityFilterInput};
use crate::objects::activity::ActivityObject;
use crate::objects::city::CityObject;
use crate::objects::connection::{ActivityConnection, CityConnection};
use crate::objects::network::Network;
use crate::objects::parse_id;
use crate::objects::stats::{ActivityStats, activity_stats};
use crate::objects::viewer::{TokenInfo, Viewer};
use crate::state::{actor, hub, loaders, principal};

/// Refuses reads when anonymous reading is off and there is no token.
fn may_read(ctx: &Context<'_>) -> Result<ReadScope> {
    let h = hub(ctx);
    let actor = actor(ctx);
    h.service
        .policy()
        .authorize(actor, Action::ReadNetwork, None)
        .map_err(denied)?;
    Ok(ReadScope::for_actor(actor))
}

/// Checks a slug argument's characters and length (`BAD_USER_INPUT`
/// naming `field`); a well-formed text that is no slug simply finds nothing.
pub fn check_slug_arg(ctx: &Context<'_>, field: &str, slug: &str) -> Result<()> {
    let max = hub(ctx).service.limits().slug_chars;
    cityhub_domain::chars::check_line(field, slug, max).map_err(crate::error::domain)
}

fn page_size(ctx: &Context<'_>, first: i32) -> Result<u64> {
    let max = hub(ctx).settings.max_page_size;
    match u64::try_from(first) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(bad_input("first", format!("must be between 0 and {max}"))),
    }
}

/// Lists activities; `city` narrows to one city's (for `City.activities`).
pub async fn list_activities(
    ctx: &Context<'_>,
    filter: Option<ActivityFilterInput>,
    order: ActivityOrder,
    first: i32,
    after: Option<String>,
    city: Option<&str>,
) -> Result<ActivityConnection> {
    let scope = may_read(ctx)?;
    let h = hub(ctx);
    let first = page_size(ctx, first)?;
    let mut filter = filter
        .unwrap_or_default()
        .into_filter("filter", h.service.limits())?;
    if let Some(slug) = city {
        filter.cities = vec![slug.to_owned()];
    }
    let order: Order = order.into();
    let after_cursor = match &after {
        Some(text) => {
            let kind = match order {
                Order::TitleAsc => KeyKind::Text,
                _ => KeyKind::Int,
            };
            Some(Cursor::decode(text, order.as_str(), kind).map_err(cursor)?)
        }
        None => None,
    };
    let page = ActivityRepo::page(
        h.service.db(),
        scope,
        &filter,
        order,
        first,
        after_cursor.as_ref(),
    )
    .await
    .api()?;
    let look = ctx.look_ahead();
    prefetch(
        ctx,
        &page.items,
        &[look.field("nodes"), look.field("edges").field("node")],
    )
    .await?;
    Ok(ActivityConnection::new(
        page,
        order,
        after_cursor.is_some(),
        scope,
        filter,
    ))
}

/// Loads, in one query per kind, the relations the query selects on
/// `items` (as seen through `nodes`, the selections of the activities),
/// and primes the request's loaders with them: a page then costs the same
/// number of queries whatever its size, and no field waits for a
/// DataLoader batch to close.
async fn prefetch(
    ctx: &Context<'_>,
    items: &[cityhub_domain::Activity],
    nodes: &[async_graphql::Lookahead<'_>],
) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let wants = |name: &str| nodes.iter().any(|n| n.field(name).exists());
    let db = hub(ctx).service.db();
    let l = loaders(ctx);
    let ids: Vec<i64> = items.iter().map(|a| a.id).collect();
    let mut city_ids: Vec<i64> = Vec::new();
    if wants("participants") {
        let mut found = ActivityRepo::participants_of(db, &ids).await.api()?;
        let all: Vec<(i64, Vec<i64>)> = ids
            .iter()
            .map(|id| (*id, found.remove(id).unwrap_or_default()))
            .collect();
        city_ids.extend(all.iter().flat_map(|(_, p)| p.iter().copied()));
        l.participants.feed_many(all).await;
    }
    if wants("documents") {
        let mut found = ActivityRepo::documents_of(db, &ids).await.api()?;
        l.documents
            .feed_many(
                ids.iter()
                    .map(|id| (*id, found.remove(id).unwrap_or_default())),
            )
            .await;
    }
    if wants("hosts") {
        city_ids.extend(items.iter().flat_map(|a| a.hosts.iter().copied()));
    }
    if wants("venueCity") {
        city_ids.extend(items.iter().filter_map(|a| a.venue_city_id));
    }
    if wants("publishedBy") {
        city_ids.extend(items.iter().filter_map(|a| a.published_by));
    }
    if !city_ids.is_empty() {
        city_ids.sort_unstable();
        city_ids.dedup();
        let cities = CityRepo::find_by_ids(db, &city_ids).await.api()?;
        l.cities.feed_many(cities).await;
    }
    Ok(())
}

/// The root of every read.
#[derive(Default)]
pub struct Query;

/// The root of every read.
#[Object]
impl Query {
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
    #[graphql(complexity = "first.unwrap_or(50).clamp(0, 1000) as usize * child_complexity + 2")]
    async fn cities(
        &self,
        ctx: &Context<'_>,
        filter: Option<CityFilterInput>,
        #[graphql(default_with = "Some(50)")] first: Option<i32>,
        after: Option<String>,
    ) -> Result<CityConnection> {
        may_read(ctx)?;
        let h = hub(ctx);
        let first = page_size(ctx, first.unwrap_or(50))?;
        let filter = filter.unwrap_or_default().into_filter(h.service.limits())?;
        let after_cursor = match &after {
            Some(text) => Some(
                Cursor::decode(text, cityhub_storage::repo::city::CITY_ORDER, KeyKind::Text)
                    .map_err(cursor)?,
            ),
            None => None,
        };
        let page = CityRepo::page(h.service.db().conn(), &filter, first, after_cursor.as_ref())
            .await
            .api()?;
        Ok(CityConnection::new(page, after_cursor.as_ref(), filter))
    }

    /// One member city, by slug or by id (exactly one of them).
    async fn city(
        &self,
        ctx: &Context<'_>,
        slug: Option<String>,
        id: Option<ID>,
    ) -> Result<Option<CityObject>> {
        may_read(ctx)?;
        let db = hub(ctx).service.db();
        let city = match (slug, id) {
            (Some(slug), None) => {
                check_slug_arg(ctx, "slug", &slug)?;
                CityRepo::find_by_slug(db, &slug).await.api()?
            }
            (None, Some(id)) => CityRepo::find_by_id(db, parse_id(&id, "id")?).await.api()?,
            _ => return Err(bad_input("slug", "give exactly one of `slug` and `id`")),
        };
        Ok(city.map(CityObject))
    }

    /// Activities matching the filter (published ones by default), a page at a time.
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 1000) as usize * child_complexity + 2")]
    async fn activities(
        &self,
        ctx: &Context<'_>,
        filter: Option<ActivityFilterInput>,
        #[graphql(default_with = "Some(ActivityOrder::StartDateDesc)")] order_by: Option<
            ActivityOrder,
        >,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
    ) -> Result<ActivityConnection> {
        list_activities(
            ctx,
            filter,
            order_by.unwrap_or(ActivityOrder::StartDateDesc),
            first.unwrap_or(20),
            after,
            None,
        )
        .await
    }

    /// One activity, by id or by slug (exactly one of them); null if it does not exist or is not visible.
    async fn activity(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        slug: Option<String>,
    ) -> Result<Option<ActivityObject>> {
        let scope = may_read(ctx)?;
        let db = hub(ctx).service.db();
        let found = match (id, slug) {
            (Some(id), None) => ActivityRepo::find_by_id(db, scope, parse_id(&id, "id")?)
                .await
                .api()?,
            (None, Some(slug)) => {
                check_slug_arg(ctx, "slug", &slug)?;
                ActivityRepo::find_by_slug(db, scope, &slug).await.api()?
            }
            _ => return Err(bad_input("id", "give exactly one of `id` and `slug`")),
        };
        if let Some(activity) = &found {
            prefetch(ctx, std::slice::from_ref(activity), &[ctx.look_ahead()]).await?;
        }
        Ok(found.map(ActivityObject::new))
    }

    /// Counts of the activities the filter selects (published ones by
    /// default), by field, kind, country, year and format, for dashboards.
    /// Honours visibility like `activities`. Constant-time in the number of
    /// activities when the filter names at most one of kinds, formats, one
    /// field, one country or one city; other filters count the selected rows.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        filter: Option<ActivityFilterInput>,
    ) -> Result<ActivityStats> {
        let scope = may_read(ctx)?;
        activity_stats(ctx, scope, filter).await
    }

    /// Every issued token's record, newest first (secretariat only).
    async fn tokens(&self, ctx: &Context<'_>) -> Result<Vec<TokenInfo>> {
        hub(ctx)
            .service
            .policy()
            .authorize(actor(ctx), Action::ManageTokens, None)
            .map_err(denied)?;
        let list = TokenRepo::list(hub(ctx).service.db().conn()).await.api()?;
        Ok(list.into_iter().map(TokenInfo).collect())
    }

    /// Federation: resolves a `City` entity by id.
    #[graphql(entity)]
    async fn find_city_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<CityObject>> {
        may_read(ctx)?;
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        Ok(CityRepo::find_by_id(hub(ctx).service.db(), id)
            .await
            .api()?
            .map(CityObject))
    }

    /// Federation: resolves an `Activity` entity by id.
    #[graphql(entity)]
    async fn find_activity_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<Option<ActivityObject>> {
        let scope = may_read(ctx)?;
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        Ok(ActivityRepo::find_by_id(hub(ctx).service.db(), scope, id)
            .await
            .api()?
            .map(ActivityObject::new))
    }
}
