//! Sources: a city's connected calendars. `sources` and `source` read
//! them; `connectSource`, `syncSource`, `pauseSource`, `resumeSource`,
//! `removeSource` and `detachFromSource` change them, each one
//! transaction with its audit record (a run's imports are the write
//! service's ordinary writes, with their events).

use async_graphql::{Context, ID, Object, Result};

use crate::error::ResultExt;
use crate::inputs::SourceInput;
use crate::objects::activity::ActivityObject;
use crate::objects::parse_activity_id;
use crate::objects::parse_source_id;
use crate::objects::source::SourceObject;
use crate::state::{actor, hub};

/// Reads of connected calendars.
#[derive(Default)]
pub struct SourceQuery;

/// Reads of connected calendars.
#[Object]
impl SourceQuery {
    /// The calendars a city connected: a city's token sees its own (another city's is `FORBIDDEN`); the secretariat sees every city's, or one city's with `city` (a slug).
    async fn sources(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "A city's slug (the secretariat); a city's token sees its own sources whatever this says."
        )]
        city: Option<String>,
    ) -> Result<Vec<SourceObject>> {
        let list = hub(ctx)
            .service
            .sources(actor(ctx), city.as_deref())
            .await
            .api()?;
        Ok(list.into_iter().map(SourceObject).collect())
    }

    /// One connected calendar, for its city's token or the secretariat; null for any other.
    async fn source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source's `id`.")] id: ID,
    ) -> Result<Option<SourceObject>> {
        let id = parse_source_id(&id, "id")?;
        match hub(ctx).service.source(actor(ctx), id).await {
            Ok(source) => Ok(Some(SourceObject(source))),
            Err(cityhub_app::service::ServiceError::NotFound(_)) => Ok(None),
            Err(e) => Err(crate::error::service(e)),
        }
    }
}

/// Connecting and running a city's calendars.
#[derive(Default)]
pub struct SourceMutation;

/// Connecting and running a city's calendars.
#[Object]
impl SourceMutation {
    /// Connects a calendar the token's city already publishes (the secretariat names the city with `input.city`). The hub fetches it at once and then on its schedule, importing its events as the city's activities. Connecting the same URL twice is a `CONFLICT`.
    async fn connect_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The calendar: its kind, its URL, and defaults for items that say nothing."
        )]
        input: SourceInput,
    ) -> Result<SourceObject> {
        let h = hub(ctx);
        let source = h
            .service
            .connect_source(actor(ctx), input.into(), h.sources.first_run_at())
            .await
            .api()?;
        Ok(SourceObject(source))
    }

    /// Runs a source now. Answers once the run ended, or, if it goes on longer, with `lastStatus: RUNNING` (the source then reports the run's outcome). A source another run holds is not fetched twice. A paused source is a `CONFLICT`.
    async fn sync_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source's `id`.")] id: ID,
    ) -> Result<SourceObject> {
        let id = parse_source_id(&id, "id")?;
        let source = hub(ctx).sources.sync(actor(ctx), id).await.api()?;
        Ok(SourceObject(source))
    }

    /// Pauses a source: it is not fetched until resumed; its activities stay as they are.
    async fn pause_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source's `id`.")] id: ID,
    ) -> Result<SourceObject> {
        let id = parse_source_id(&id, "id")?;
        let source = hub(ctx)
            .service
            .set_source_paused(actor(ctx), id, true)
            .await
            .api()?;
        Ok(SourceObject(source))
    }

    /// Resumes a paused source; its next run is due at once.
    async fn resume_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source's `id`.")] id: ID,
    ) -> Result<SourceObject> {
        let id = parse_source_id(&id, "id")?;
        let source = hub(ctx)
            .service
            .set_source_paused(actor(ctx), id, false)
            .await
            .api()?;
        Ok(SourceObject(source))
    }

    /// Removes a source. Its upcoming imported activities are cancelled, or, with `keepActivities: true`, kept as the city's own (editable, no longer synced). Returns its id.
    async fn remove_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source's `id`.")] id: ID,
        #[graphql(
            default_with = "Some(false)",
            desc = "Keep its upcoming activities as the city's own instead of cancelling them."
        )]
        keep_activities: Option<bool>,
    ) -> Result<ID> {
        let source_id = parse_source_id(&id, "id")?;
        let removed = hub(ctx)
            .service
            .remove_source(
                actor(ctx),
                source_id,
                keep_activities.unwrap_or(false),
                chrono::Utc::now().date_naive(),
            )
            .await
            .api()?;
        Ok(ID(removed.to_string()))
    }

    /// Detaches an imported activity from its source: it becomes the city's own, editable through the API again, and later runs of the source leave it alone. For the activity's hosts (and the secretariat); an activity that was not imported is a `CONFLICT`.
    async fn detach_from_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The imported activity's `id`.")] activity: ID,
    ) -> Result<ActivityObject> {
        let id = parse_activity_id(&activity, "activity")?;
        let detached = hub(ctx)
            .service
            .detach_from_source(actor(ctx), id)
            .await
            .api()?;
        Ok(ActivityObject::new(detached))
    }
}
