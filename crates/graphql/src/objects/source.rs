//! `Source` and `SkippedItem`: a city's connected calendar and what its
//! last run could not import.

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain as d;
use cityhub_storage::repo::source::SourceRepo;

use crate::enums::{SourceKind, SourceStatus};
use crate::error::{Code, ResultExt, coded};
use crate::objects::city::CityObject;
use crate::scalars::DateTime;
use crate::state::{hub, loaders};

/// A city's connected calendar.
pub struct SourceObject(pub d::Source);

/// A calendar a member city already publishes (an iCalendar feed, or pages with schema.org `Event` JSON-LD), connected once: the hub imports its events as the city's activities and keeps them in sync.
#[Object(name = "Source")]
impl SourceObject {
    /// Stable identifier.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// What it publishes.
    async fn kind(&self) -> SourceKind {
        self.0.kind.into()
    }

    /// Where the hub fetches it.
    async fn url(&self) -> &str {
        &self.0.url
    }

    /// The city whose calendar it is; its imported activities are the city's.
    async fn city(&self, ctx: &Context<'_>) -> Result<CityObject> {
        loaders(ctx)
            .cities
            .load_one(self.0.city_id)
            .await
            .api()?
            .map(CityObject)
            .ok_or_else(|| coded(Code::NotFound, "the source's city is gone"))
    }

    /// Paused by its city: not fetched until resumed.
    async fn paused(&self) -> bool {
        self.0.paused
    }

    /// When the last run ended; null before the first.
    async fn last_run_at(&self) -> Option<DateTime> {
        self.0.last_run_at.map(DateTime)
    }

    /// When a run last changed an activity.
    async fn last_change_at(&self) -> Option<DateTime> {
        self.0.last_change_at.map(DateTime)
    }

    /// How the last run went (`RUNNING` while one goes on, `PAUSED` while paused).
    async fn last_status(&self) -> SourceStatus {
        self.0.status().into()
    }

    /// Why the last run failed, or how many items it could not import; null after a clean run.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }

    /// How many activities it imported that are still in it.
    async fn imported_count(&self, ctx: &Context<'_>) -> Result<i32> {
        let count = SourceRepo::imported_count(hub(ctx).service.db().conn(), self.0.id)
            .await
            .api()?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// The items of its last run that were not imported, and why.
    async fn skipped_items(&self, ctx: &Context<'_>) -> Result<Vec<SkippedItemObject>> {
        let items = SourceRepo::skipped(hub(ctx).service.db().conn(), self.0.id)
            .await
            .api()?;
        Ok(items.into_iter().map(SkippedItemObject).collect())
    }

    /// When its next scheduled run is due; null while paused.
    async fn next_run_at(&self) -> Option<DateTime> {
        (!self.0.paused).then_some(DateTime(self.0.next_run_at))
    }
}

/// An item of a source that was not imported.
pub struct SkippedItemObject(pub d::SkippedItem);

/// An item of a city's calendar that the last run did not import, and why.
#[Object(name = "SkippedItem")]
impl SkippedItemObject {
    /// The item's identity in its calendar: its `UID` (with the instance's `RECURRENCE-ID`), JSON-LD `@id` or `url`, or its place in the feed.
    async fn uid(&self) -> &str {
        &self.0.uid
    }

    /// Why it was not imported.
    async fn reason(&self) -> &str {
        &self.0.reason
    }
}
