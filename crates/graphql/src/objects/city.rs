//! `City`.

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain as d;

use crate::enums::{ActivityOrder, CreativeField};
use crate::inputs::ActivityFilterInput;
use crate::objects::connection::ActivityConnection;
use crate::objects::node::GlobalId;

/// A member city of the network.
pub struct CityObject(pub d::City);

/// A member city of the UNESCO Creative Cities Network.
#[Object(name = "City")]
impl CityObject {
    /// Stable identifier, the city's own (unique among cities; an activity may have the same). `globalId` is unique across types.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Opaque id unique across every type of the schema, for `node(id:)`, `nodes(ids:)` and normalised client caches.
    pub(crate) async fn global_id(&self) -> ID {
        GlobalId::City(self.0.id).encode()
    }

    /// Stable, URL-safe name, e.g. `santa-fe`.
    async fn slug(&self) -> &str {
        &self.0.slug
    }

    /// Name as the city writes it, e.g. `Montréal`.
    async fn name(&self) -> &str {
        &self.0.name
    }

    /// ISO 3166-1 alpha-2 country code.
    async fn country(&self) -> &str {
        &self.0.country
    }

    /// Creative fields of its designation.
    async fn fields(&self) -> Vec<CreativeField> {
        self.0.fields.iter().map(|f| (*f).into()).collect()
    }

    /// Year it joined the network.
    async fn member_since(&self) -> i32 {
        self.0.member_since
    }

    /// Official website.
    async fn website(&self) -> Option<&str> {
        self.0.website.as_deref()
    }

    /// Latitude in degrees.
    async fn latitude(&self) -> Option<f64> {
        self.0.latitude
    }

    /// Longitude in degrees.
    async fn longitude(&self) -> Option<f64> {
        self.0.longitude
    }

    /// Activities this city hosts, is the venue of, or joined.
    #[graphql(
        complexity = "first.unwrap_or(cityhub_domain::page::ACTIVITIES).clamp(0, cityhub_domain::page::MOST_COUNTED) as usize * child_complexity + 2"
    )]
    async fn activities(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Which of the city's activities; `statuses` defaults to `[PUBLISHED]`.")]
        filter: Option<ActivityFilterInput>,
        #[graphql(
            desc = "Order of the listing; ties are broken by id.",
            default_with = "Some(ActivityOrder::StartDateDesc)"
        )]
        order_by: Option<ActivityOrder>,
        #[graphql(
            desc = "Page size, from 0 to `api.max_page_size` (100).",
            default_with = "Some(cityhub_domain::page::ACTIVITIES)"
        )]
        first: Option<i32>,
        #[graphql(desc = "`pageInfo.endCursor` of the previous page, with the same `orderBy`.")]
        after: Option<String>,
    ) -> Result<ActivityConnection> {
        ActivityConnection::list(
            ctx,
            filter,
            order_by.unwrap_or(ActivityOrder::StartDateDesc),
            first.unwrap_or(cityhub_domain::page::ACTIVITIES),
            after,
            Some(&self.0.slug),
        )
        .await
    }
}
