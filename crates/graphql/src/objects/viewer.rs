//! `Viewer`, `IssuedToken` and `TokenInfo`.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use cityhub_domain::Actor;
use cityhub_storage::repo::tokens::TokenRecord;

use crate::auth::Principal;
use crate::enums::Role;
use crate::error::ResultExt;
use crate::objects::city::CityObject;
use crate::scalars::DateTime;
use crate::state::loaders;

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
