//! `Network` and `FieldStats`.

use async_graphql::{Context, Object, Result, SimpleObject};
use cityhub_storage::{NetworkCounts, StatsRepo};
use tokio::sync::OnceCell;

use crate::enums::CreativeField;
use crate::error::ResultExt;
use crate::state::hub;

/// The UNESCO Creative Cities Network as a whole.
#[derive(Default)]
pub struct Network {
    counts: OnceCell<NetworkCounts>,
}

/// Counts for one creative field.
#[derive(SimpleObject)]
pub struct FieldStats {
    /// The field.
    pub field: CreativeField,
    /// Member cities designated in it.
    pub city_count: i32,
    /// Published activities concerning it.
    pub activity_count: i32,
}

impl Network {
    async fn counts(&self, ctx: &Context<'_>) -> Result<&NetworkCounts> {
        self.counts
            .get_or_try_init(|| async {
                // Kept counts: constant time whatever the number of activities.
                StatsRepo::network_counts(hub(ctx).service.db()).await.api()
            })
            .await
    }
}

fn small(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The UNESCO Creative Cities Network as a whole.
#[Object]
impl Network {
    /// The network's name.
    async fn name(&self, ctx: &Context<'_>) -> String {
        hub(ctx).settings.network_name.clone()
    }

    /// The year the network was founded (2004).
    async fn founded_year(&self, ctx: &Context<'_>) -> i32 {
        hub(ctx).settings.founded_year
    }

    /// Member cities in the hub.
    async fn city_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(small(self.counts(ctx).await?.cities))
    }

    /// Countries of the member cities in the hub.
    async fn country_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(small(self.counts(ctx).await?.countries))
    }

    /// Published activities.
    async fn activity_count(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(small(self.counts(ctx).await?.activities))
    }

    /// Counts per creative field, every field listed.
    async fn fields(&self, ctx: &Context<'_>) -> Result<Vec<FieldStats>> {
        Ok(self
            .counts(ctx)
            .await?
            .fields
            .iter()
            .map(|f| FieldStats {
                field: f.field.into(),
                city_count: small(f.cities),
                activity_count: small(f.activities),
            })
            .collect())
    }
}
