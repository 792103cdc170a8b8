//! Tokens (secretariat only): `tokens`; `issueToken` and `revokeToken`,
//! each one transaction with its audit record.

use async_graphql::{Context, ID, Object, Result};
use cityhub_app::AuditActor;
use cityhub_app::service::actor_label;
use cityhub_domain::{Action, Role as DomainRole};
use cityhub_storage::CityRepo;
use cityhub_storage::repo::tokens::TokenRepo;

use crate::enums::Role;
use crate::error::{Code, ResultExt, bad_input, coded, denied, internal};
use crate::objects::viewer::{IssuedToken, TokenInfo};
use crate::scalars::DateTime;
use crate::state::{actor, hub};

/// Reads of issued tokens.
#[derive(Default)]
pub struct TokenQuery;

/// Reads of issued tokens.
#[Object]
impl TokenQuery {
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
}

/// Issuing and revoking tokens.
#[derive(Default)]
pub struct TokenMutation;

/// Issuing and revoking tokens.
#[Object]
impl TokenMutation {
    /// Issues a token (secretariat only): `role: CITY` with `city` (a slug), or `role: SECRETARIAT`. `ttlSeconds` defaults to the configured TTL and is capped by the configured maximum.
    async fn issue_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "The member city's slug, with `role: CITY`; absent with `role: SECRETARIAT`."
        )]
        city: Option<String>,
        #[graphql(
            desc = "What the token may do: `CITY` (its city's activities) or `SECRETARIAT` (everything)."
        )]
        role: Role,
        #[graphql(
            desc = "Lifetime in seconds; default `auth.default_ttl_secs` (30 days), at most `auth.max_ttl_secs`."
        )]
        ttl_seconds: Option<i32>,
        #[graphql(desc = "A label to recognise the token by in `tokens`.")] label: Option<String>,
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
                cityhub_app::KeyError::Storage(s) => crate::error::storage(s),
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
    async fn revoke_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The token's id (`IssuedToken.id`, `Token.id`, its `jti`).")] id: ID,
    ) -> Result<bool> {
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
