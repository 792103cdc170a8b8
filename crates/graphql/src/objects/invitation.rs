//! `Invitation`.

use std::sync::Arc;

use async_graphql::{Context, Object, Result};
use cityhub_domain as d;
use cityhub_events::Related;

use crate::enums::{InvitationRole, InvitationState};
use crate::error::{Code, ResultExt, coded};
use crate::objects::city::CityObject;
use crate::state::loaders;

/// A member city's invitation to an activity, in one role.
pub struct InvitationObject {
    invitation: d::Invitation,
    /// The cities of a live event, loaded once for every subscriber.
    related: Option<Arc<Related>>,
}

impl InvitationObject {
    /// An invitation whose city loads through the request's loaders, or
    /// from a live event's relations.
    pub fn new(invitation: d::Invitation, related: Option<Arc<Related>>) -> Self {
        Self {
            invitation,
            related,
        }
    }
}

/// A member city invited to co-host an activity or to be its venue city, and its answer. Until it accepts, the activity is not on that city's surfaces (listings, calendar, feed, widget, counts), does not name it among its hosts or as its venue city, and the city may not edit it.
#[Object(name = "Invitation")]
impl InvitationObject {
    /// The invited member city.
    async fn city(&self, ctx: &Context<'_>) -> Result<CityObject> {
        let id = self.invitation.city;
        let city = match &self.related {
            Some(r) => r.cities.get(&id).cloned(),
            None => loaders(ctx).cities.load_one(id).await.api()?,
        };
        city.map(CityObject)
            .ok_or_else(|| coded(Code::NotFound, format!("no member city with id {id}")))
    }

    /// What the city is invited to be.
    async fn role(&self) -> InvitationRole {
        self.invitation.role.into()
    }

    /// Where the invitation stands.
    async fn state(&self) -> InvitationState {
        self.invitation.state.into()
    }
}
