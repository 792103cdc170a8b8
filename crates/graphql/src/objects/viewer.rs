//! `Viewer`, `IssuedToken` and `TokenInfo`.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use cityhub_domain::{Actor, ReadScope};
use cityhub_storage::ActivityRepo;
use cityhub_storage::repo::tokens::TokenRecord;

use crate::enums::Role;
use crate::error::ResultExt;
use crate::objects::activity::ActivityObject;
use crate::objects::city::CityObject;
use crate::scalars::DateTime;
use crate::state::{hub, loaders};
use cityhub_app::auth::Principal;

/// Who the request's token speaks for.
pub struct Viewer(pub Principal);

/// Who the request's token speaks for.
#[Object]
impl Viewer {
    /// The token's role.
    async fn role(&self) -> Role {
        self.0.role.into()
    }

    /// The token's city; null for the secretariat.
    async fn city(&self, ctx: &Context<'_>) -> Result<Option<CityObject>> {
        match &self.0.actor {
            Actor::City { id, .. } => Ok(loaders(ctx)
                .cities
                .load_one(*id)
                .await
                .api()?
                .map(CityObject)),
            _ => Ok(None),
        }
    }

    /// Activities waiting for the token's city to answer its invitation (as co-host or venue city) with `acceptInvitation` or `declineInvitation`: pending invitations to activities it can see, latest start first, at most `api.max_page_size` of them. Empty for the secretariat, which no one invites.
    async fn invitations(&self, ctx: &Context<'_>) -> Result<Vec<ActivityObject>> {
        let Actor::City { id, .. } = &self.0.actor else {
            return Ok(Vec::new());
        };
        let h = hub(ctx);
        let waiting = ActivityRepo::awaiting_answer(
            h.service.db(),
            ReadScope::for_actor(&self.0.actor),
            *id,
            h.settings.max_page_size,
        )
        .await
        .api()?;
        Ok(waiting.into_iter().map(ActivityObject::new).collect())
    }

    /// The token's id (pass it to `revokeToken`).
    async fn token_id(&self) -> ID {
        ID(self.0.token_id.clone())
    }

    /// When the token expires.
    async fn expires_at(&self) -> DateTime {
        DateTime(self.0.expires_at)
    }
}

/// A token just issued. The token itself is shown only here, once.
#[derive(SimpleObject)]
pub struct IssuedToken {
    /// The token's id.
    pub id: ID,
    /// The JWT, for `Authorization: Bearer <token>`.
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime,
}

/// The record of an issued token (never the token itself).
pub struct TokenInfo(pub TokenRecord);

/// The record of an issued token (never the token itself).
#[Object]
impl TokenInfo {
    /// The token's id.
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    /// `city:<slug>` or `secretariat`.
    async fn subject(&self) -> &str {
        &self.0.subject
    }

    /// Role.
    async fn role(&self) -> Role {
        self.0.role.into()
    }

    /// Free label given at issue.
    async fn label(&self) -> Option<&str> {
        self.0.label.as_deref()
    }

    /// When it was issued.
    async fn issued_at(&self) -> DateTime {
        DateTime(self.0.issued_at)
    }

    /// When it expires.
    async fn expires_at(&self) -> DateTime {
        DateTime(self.0.expires_at)
    }

    /// When it was revoked; null while valid.
    async fn revoked_at(&self) -> Option<DateTime> {
        self.0.revoked_at.map(DateTime)
    }
}
