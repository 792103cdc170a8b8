//! The write side. Each mutation is one service call, which is one
//! transaction with its audit record and its event.

use async_graphql::{Context, ID, Object, Result};
use cityhub_domain::{Action, Role as DomainRole};
use cityhub_storage::service::actor_label;
use cityhub_storage::{AuditActor, CityRepo};

use crate::enums::Role;
use crate::error::{Code, ResultExt, bad_input, coded, denied, internal};
use crate::inputs::{ActivityInput, ActivityPatch, CityInput, CityPatch};
use crate::objects::activity::ActivityObject;
use crate::objects::city::CityObject;
use crate::objects::parse_id;
use crate::objects::viewer::IssuedToken;
use crate::scalars::DateTime;
use crate::state::{actor, hub};

/// The root of every write.
#[derive(Default)]
pub struct Mutation;

/// The root of every write. Each mutation is one transaction with its audit record and its event.
#[Object]
impl Mutation {
    /// Publishes an activity with the token's city as publisher and first host (the secretariat publishes network activities with no city publisher). `draft: true` keeps it visible only to its city and the secretariat. With an `idempotencyKey`, retrying the same request returns the first result and creates nothing; the same key with another input is a `CONFLICT`.
    async fn publish_activity(
        &self,
        ctx: &Context<'_>,
        input: ActivityInput,
        #[graphql(default_with = "Some(false)")] draft: Option<bool>,
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
                draft.unwrap_or(false),
                idempotency_key.as_deref(),
            )
            .await
            .api()?;
        Ok(ActivityObject::new(activity))
    }

    /// Changes an activity the token's city hosts. With `expectedVersion`, a concurrent change makes this a `CONFLICT` instead of overwriting it.
    async fn update_activity(
        &self,
        ctx: &Context<'_>,
        id: ID,
        patch: ActivityPatch,
        expected_version: Option<i32>,
    ) -> Result<ActivityObject> {
        let id = parse_id(&id, "id")?;
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
        id: ID,
        expected_version: Option<i32>,
    ) -> Result<ActivityObject> {
        let id = parse_id(&id, "id")?;
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
        id: ID,
        reason: Option<String>,
    ) -> Result<ActivityObject> {
        if let Some(reason) = &reason {
            cityhub_domain::chars::check_text(
                "reason",
                reason,
                cityhub_domain::chars::TextKind::Prose,
            )
            .map_err(crate::error::domain)?;
        }
        let id = parse_id(&id, "id")?;
        let activity = hub(ctx)
            .service
            .cancel(actor(ctx), id, reason)
            .await
            .api()?;
        Ok(ActivityObject::new(activity))
    }

    /// Deletes an activity the token's city published; it disappears from every read. Returns its id.
    async fn delete_activity(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let id = parse_id(&id, "id")?;
        let deleted = hub(ctx).service.delete(actor(ctx), id).await.api()?;
        Ok(ID(deleted.to_string()))
    }

    /// The token's city joins a published activity as a participant.
    async fn join_activity(&self, ctx: &Context<'_>, id: ID) -> Result<ActivityObject> {
        let id = parse_id(&id, "id")?;
        Ok(ActivityObject::new(
            hub(ctx)
                .service
                .participate(actor(ctx), id, true)
                .await
                .api()?,
        ))
    }

    /// The token's city stops participating in an activity.
    async fn leave_activity(&self, ctx: &Context<'_>, id: ID) -> Result<ActivityObject> {
        let id = parse_id(&id, "id")?;
        Ok(ActivityObject::new(
            hub(ctx)
                .service
                .participate(actor(ctx), id, false)
                .await
                .api()?,
        ))
    }

    /// Registers a member city (secretariat only).
    async fn create_city(&self, ctx: &Context<'_>, input: CityInput) -> Result<CityObject> {
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
        slug: String,
        patch: CityPatch,
    ) -> Result<CityObject> {
        crate::query::check_slug_arg(ctx, "slug", &slug)?;
        Ok(CityObject(
            hub(ctx)
                .service
                .update_city(actor(ctx), &slug, patch.into())
                .await
                .api()?,
        ))
    }

    /// Issues a token (secretariat only): `role: CITY` with `city` (a slug), or `role: SECRETARIAT`. `ttlSeconds` defaults to the configured TTL and is capped by the configured maximum.
    async fn issue_token(
        &self,
        ctx: &Context<'_>,
        city: Option<String>,
        role: Role,
        ttl_seconds: Option<i32>,
        label: Option<String>,
    ) -> Result<IssuedToken> {
        let h = hub(ctx);
        h.service
            .policy()
            .authorize(actor(ctx), Action::ManageTokens, None)
            .map_err(denied)?;
        let role: DomainRole = role.into();
        let ttl = match ttl_seconds {
            Some(n) if n <= 0 => return Err(bad_input("ttlSeconds", "must be positive")),
            Some(n) => Some(u64::try_from(n).unwrap_or(1)),
            None => None,
        };
        if let Some(l) = &label {
            cityhub_domain::chars::check_line("label", l, h.service.limits().text_chars)
                .map_err(crate::error::domain)?;
        }
        let city = match (role, city) {
            (DomainRole::City, Some(slug)) => Some({
                cityhub_domain::Slug::parse(&slug, h.service.limits().slug_chars, "city")
                    .map_err(crate::error::domain)?;
                CityRepo::find_by_slug(h.service.db().conn(), &slug)
                    .await
                    .api()?
                    .ok_or_else(|| {
                        bad_input("city", format!("no member city has the slug '{slug}'"))
                    })?
            }),
            (DomainRole::City, None) => {
                return Err(bad_input("city", "a CITY token needs a city slug"));
            }
            (DomainRole::Secretariat, Some(_)) => {
                return Err(bad_input("city", "a SECRETARIAT token has no city"));
            }
            (DomainRole::Secretariat, None) => None,
        };
        let label_of_actor = actor_label(actor(ctx));
        let (issued, record) = h
            .auth
            .issue(AuditActor(&label_of_actor), city.as_ref(), role, ttl, label)
            .await
            .map_err(|e| match e {
                cityhub_storage::KeyError::Storage(s) => crate::error::storage(s),
                other => internal(&other),
            })?;
        tracing::info!(token_id = %record.id, subject = %record.subject, "token issued");
        Ok(IssuedToken {
            id: ID(record.id),
            token: issued.token,
            expires_at: DateTime(record.expires_at),
        })
    }

    /// Revokes a token (secretariat only); every instance refuses it within seconds.
    async fn revoke_token(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let h = hub(ctx);
        h.service
            .policy()
            .authorize(actor(ctx), Action::ManageTokens, None)
            .map_err(denied)?;
        cityhub_domain::chars::check_line("id", id.as_str(), 100).map_err(crate::error::domain)?;
        let label_of_actor = actor_label(actor(ctx));
        if h.auth
            .revoke(AuditActor(&label_of_actor), id.as_str())
            .await
            .api()?
        {
            tracing::info!(token_id = %id.as_str(), "token revoked");
            Ok(true)
        } else {
            Err(coded(
                Code::NotFound,
                format!("no token with id '{}'", id.as_str()),
            ))
        }
    }
}
