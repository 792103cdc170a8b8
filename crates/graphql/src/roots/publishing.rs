//! Publishing: `publishActivity`, `updateActivity`, `publishDraft`,
//! `cancelActivity`, `deleteActivity`, `joinActivity`, `leaveActivity`,
//! and the invited cities' answers `acceptInvitation` and
//! `declineInvitation`. Each is one service call, which is one transaction
//! with its audit record and its event.

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain::{Answer, Participation, PublishAs};

use crate::error::ResultExt;
use crate::inputs::{ActivityInput, ActivityPatch};
use crate::objects::activity::ActivityObject;
use crate::objects::parse_activity_id;
use crate::state::{actor, hub};

/// The writes of activities.
#[derive(Default)]
pub struct PublishingMutation;

/// The writes of activities.
#[Object]
impl PublishingMutation {
    /// Publishes an activity with the token's city as publisher and first host (the secretariat publishes network activities with no city publisher). The member cities named in `coHosts` and `venueCity` are invited: each becomes a host or the venue city only once it accepts (`acceptInvitation`); the secretariat's names are accepted at once. `draft: true` keeps it visible only to its city and the secretariat. With an `idempotencyKey`, retrying the same request returns the first result and creates nothing; the same key with another input is a `CONFLICT`.
    async fn publish_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The activity: kind and title at least.")] input: ActivityInput,
        #[graphql(
            desc = "True keeps it a draft, seen only by its city and the secretariat, until `publishDraft`.",
            default_with = "Some(false)"
        )]
        draft: Option<bool>,
        #[graphql(
            desc = "A key of the client's choosing: retrying with the same key and input returns the first result and creates nothing; the same key with another input is a `CONFLICT`."
        )]
        idempotency_key: Option<String>,
    ) -> Result<ActivityObject> {
        if let Some(key) = &idempotency_key {
            cityhub_domain::chars::check_text(
                "idempotencyKey",
                key,
                cityhub_domain::chars::TextKind::Line,
            )
            .map_err(crate::error::domain)?;
        }
        let activity = hub(ctx)
            .service
            .publish(
                actor(ctx),
                input.into(),
                PublishAs::from_draft_flag(draft.unwrap_or(false)),
                idempotency_key.as_deref(),
            )
            .await
            .api()?;
        Ok(ActivityObject::new(activity))
    }

    /// Changes an activity the token's city hosts (an invited city hosts it only once it accepted). Naming a new member city in `coHosts` or `venueCity` invites it (the secretariat's names are accepted at once); dropping a name drops its invitation, and the city if it had accepted. With `expectedVersion`, a concurrent change makes this a `CONFLICT` instead of overwriting it.
    async fn update_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The activity's `id`.")] id: ID,
        #[graphql(desc = "The fields to change; a field left out keeps its value.")]
        patch: ActivityPatch,
        #[graphql(
            desc = "The `version` the change is based on: a `CONFLICT` if the activity changed since. Without it, the change applies to whatever version is current."
        )]
        expected_version: Option<i32>,
    ) -> Result<ActivityObject> {
        let id = parse_activity_id(&id, "id")?;
        let activity = hub(ctx)
            .service
            .update(actor(ctx), id, patch.into(), expected_version)
            .await
            .api()?;
        Ok(ActivityObject::new(activity))
    }

    /// Makes a draft public (a `PUBLISHED` event for everyone).
    async fn publish_draft(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The draft's `id`.")] id: ID,
        #[graphql(
            desc = "The `version` the publication is based on: a `CONFLICT` if the draft changed since."
        )]
        expected_version: Option<i32>,
    ) -> Result<ActivityObject> {
        let id = parse_activity_id(&id, "id")?;
        let activity = hub(ctx)
            .service
            .publish_draft(actor(ctx), id, expected_version)
            .await
            .api()?;
        Ok(ActivityObject::new(activity))
    }

    /// Cancels a published activity the token's city hosts; it stays visible as cancelled.
    async fn cancel_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The activity's `id`.")] id: ID,
        #[graphql(desc = "Why it is cancelled, shown as `cancelReason`.")] reason: Option<String>,
    ) -> Result<ActivityObject> {
        if let Some(reason) = &reason {
            cityhub_domain::chars::check_text(
                "reason",
                reason,
                cityhub_domain::chars::TextKind::Prose,
            )
            .map_err(crate::error::domain)?;
        }
        let id = parse_activity_id(&id, "id")?;
        let activity = hub(ctx)
            .service
            .cancel(actor(ctx), id, reason)
            .await
            .api()?;
        Ok(ActivityObject::new(activity))
    }

    /// Deletes an activity the token's city published; it disappears from every read, and its events become tombstones (`deleted: true`). Returns the deleted activity's `id`, for clients to evict it from their caches (Apollo: `cache.evict({ id: cache.identify({ __typename: "Activity", id }) })`).
    async fn delete_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The activity's `id`.")] id: ID,
    ) -> Result<ID> {
        let id = parse_activity_id(&id, "id")?;
        let deleted = hub(ctx).service.delete(actor(ctx), id).await.api()?;
        Ok(ID(deleted.to_string()))
    }

    /// The token's city joins a published activity as a participant.
    async fn join_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The activity's `id`.")] id: ID,
    ) -> Result<ActivityObject> {
        let id = parse_activity_id(&id, "id")?;
        Ok(ActivityObject::new(
            hub(ctx)
                .service
                .participate(actor(ctx), id, Participation::Join)
                .await
                .api()?,
        ))
    }

    /// The token's city stops participating in an activity.
    async fn leave_activity(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The activity's `id`.")] id: ID,
    ) -> Result<ActivityObject> {
        let id = parse_activity_id(&id, "id")?;
        Ok(ActivityObject::new(
            hub(ctx)
                .service
                .participate(actor(ctx), id, Participation::Leave)
                .await
                .api()?,
        ))
    }

    /// Accepts the token's city's invitation to an activity, as co-host, as venue city, or both: the activity becomes the city's — it appears in the city's listings, calendar, feed and counts, names the city among its hosts (or as its venue city), and the city may edit it as its other hosts do. One `UPDATED` event. `NOT_FOUND` for an activity the token cannot see, `FORBIDDEN` for a city that is not invited, `CONFLICT` when nothing is pending (already accepted, or declined: only its hosts can invite the city again).
    async fn accept_invitation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The `id` of the activity the city is invited to.")] activity: ID,
    ) -> Result<ActivityObject> {
        let id = parse_activity_id(&activity, "activity")?;
        Ok(ActivityObject::new(
            hub(ctx)
                .service
                .answer(actor(ctx), id, Answer::Accept)
                .await
                .api()?,
        ))
    }

    /// Declines the token's city's invitation to an activity, or, after accepting it, leaves the activity: the city stops hosting it (or being its venue city), and it leaves the city's surfaces. The declined invitation stays visible to the hosts as the city's answer. One `UPDATED` event. `NOT_FOUND` for an activity the token cannot see, `FORBIDDEN` for a city that is not invited, `CONFLICT` when it is already declined.
    async fn decline_invitation(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The `id` of the activity the city is invited to (or hosts after accepting)."
        )]
        activity: ID,
    ) -> Result<ActivityObject> {
        let id = parse_activity_id(&activity, "activity")?;
        Ok(ActivityObject::new(
            hub(ctx)
                .service
                .answer(actor(ctx), id, Answer::Decline)
                .await
                .api()?,
        ))
    }
}
