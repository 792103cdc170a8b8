//! The permission policy: who may do what to which activity. A pure
//! function of the actor, the action and the facts about the resource, so
//! the whole table is tested here, without a server.

use crate::CityId;
use crate::enums::ActivityStatus;
use crate::visibility::ReadScope;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// No token.
    Anonymous,
    /// A member city's token.
    City {
        /// The city's id.
        id: CityId,
        /// The city's slug.
        slug: String,
    },
    /// The network secretariat.
    Secretariat,
}

impl Actor {
    /// The acting city's id, if the actor is a city.
    pub fn city_id(&self) -> Option<CityId> {
        match self {
            Actor::City { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// What the actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read network data (published activities, cities).
    ReadNetwork,
    /// Read a specific activity (drafts need more).
    ReadActivity,
    /// Publish an activity with the actor's city as publisher and host.
    Publish,
    /// Publish a network activity with no city publisher.
    PublishForNetwork,
    /// Change an activity.
    Update,
    /// Cancel an activity.
    Cancel,
    /// Delete an activity.
    Delete,
    /// Join as a participant.
    Join,
    /// Leave as a participant.
    Leave,
    /// Accept or decline the actor city's invitation to an activity.
    AnswerInvitation,
    /// Create or change member cities.
    ManageCities,
    /// Issue or revoke tokens.
    ManageTokens,
}

/// The facts about an activity that permissions depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityFacts {
    /// Its status.
    pub status: ActivityStatus,
    /// The publishing city; `None` for the secretariat's.
    pub published_by: Option<CityId>,
    /// Its host cities (the publisher is one; invited co-hosts are not,
    /// until they accept).
    pub hosts: Vec<CityId>,
    /// The cities invited to it, whatever their invitations' state.
    pub invited: Vec<CityId>,
}

/// Why an action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The action needs a token.
    #[error("this operation needs a token")]
    Unauthenticated,
    /// The token does not allow it.
    #[error("this token may not do that")]
    Forbidden,
    /// The resource is invisible to the actor (a draft of another city):
    /// report it as not found rather than reveal that it exists.
    #[error("not found")]
    Hidden,
}

/// The policy's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether anonymous clients may read published data.
    pub public_read: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self { public_read: true }
    }
}

impl Policy {
    /// Decides whether `actor` may perform `action` on `activity` (for the
    /// activity-scoped actions).
    pub fn authorize(
        &self,
        actor: &Actor,
        action: Action,
        activity: Option<&ActivityFacts>,
    ) -> Result<(), Denied> {
        use Action::*;
        let city = match actor {
            Actor::Secretariat => return Ok(()),
            Actor::Anonymous => {
                return match action {
                    ReadNetwork if self.public_read => Ok(()),
                    ReadActivity if self.public_read => match activity {
                        Some(a) if !ReadScope::Public.sees(a.status, a.published_by) => {
                            Err(Denied::Hidden)
                        }
                        _ => Ok(()),
                    },
                    _ => Err(Denied::Unauthenticated),
                };
            }
            Actor::City { id, .. } => *id,
        };
        // A draft of another city is invisible to this city for every action.
        if let Some(a) = activity
            && !ReadScope::City(city).sees(a.status, a.published_by)
        {
            return Err(Denied::Hidden);
        }
        let hosts =
            activity.is_some_and(|a| a.hosts.contains(&city) || a.published_by == Some(city));
        let publisher = activity.is_some_and(|a| a.published_by == Some(city));
        let allowed = match action {
            ReadNetwork | ReadActivity | Publish => true,
            Update | Cancel => hosts,
            Delete => publisher,
            Join | Leave => activity.is_some_and(|a| a.status != ActivityStatus::Draft),
            AnswerInvitation => activity.is_some_and(|a| a.invited.contains(&city)),
            PublishForNetwork | ManageCities | ManageTokens => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Denied::Forbidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActivityStatus::*;

    const A: CityId = CityId(1);
    const B: CityId = CityId(2);
    const C: CityId = CityId(3);
    const D: CityId = CityId(4);

    fn city(id: CityId) -> Actor {
        Actor::City {
            id,
            slug: format!("c{id}"),
        }
    }

    /// An activity published by A, co-hosted by C, to which D is invited
    /// (and has not accepted).
    fn by_a(status: ActivityStatus) -> ActivityFacts {
        ActivityFacts {
            status,
            published_by: Some(A),
            hosts: vec![A, C],
            invited: vec![C, D],
        }
    }

    fn network(status: ActivityStatus) -> ActivityFacts {
        ActivityFacts {
            status,
            published_by: None,
            hosts: vec![],
            invited: vec![],
        }
    }

    fn code(r: Result<(), Denied>) -> &'static str {
        match r {
            Ok(()) => "ok",
            Err(Denied::Unauthenticated) => "UNAUTHENTICATED",
            Err(Denied::Forbidden) => "FORBIDDEN",
            Err(Denied::Hidden) => "NOT_FOUND",
        }
    }

    #[test]
    fn full_table() {
        use Action::*;
        let p = Policy::default();
        let closed = Policy { public_read: false };
        let anon = Actor::Anonymous;
        let sec = Actor::Secretariat;
        let pubd = by_a(Published);
        let (a, b, c, d) = (city(A), city(B), city(C), city(D));
        let net = network(Published);
        let draft = by_a(Draft);
        // (policy, actor, action, facts, expected)
        let table: Vec<(Policy, &Actor, Action, Option<&ActivityFacts>, &str)> = vec![
            (p, &anon, ReadNetwork, None, "ok"),
            (closed, &anon, ReadNetwork, None, "UNAUTHENTICATED"),
            (p, &anon, ReadActivity, Some(&pubd), "ok"),
            (p, &anon, ReadActivity, Some(&draft), "NOT_FOUND"),
            (closed, &anon, ReadActivity, Some(&pubd), "UNAUTHENTICATED"),
            (p, &anon, Publish, None, "UNAUTHENTICATED"),
            (p, &anon, Update, Some(&pubd), "UNAUTHENTICATED"),
            (p, &anon, Cancel, Some(&pubd), "UNAUTHENTICATED"),
            (p, &anon, Delete, Some(&pubd), "UNAUTHENTICATED"),
            (p, &anon, Join, Some(&pubd), "UNAUTHENTICATED"),
            (p, &anon, Leave, Some(&pubd), "UNAUTHENTICATED"),
            (p, &anon, ManageCities, None, "UNAUTHENTICATED"),
            (p, &anon, ManageTokens, None, "UNAUTHENTICATED"),
            // City A: the publisher.
            (closed, &a, ReadNetwork, None, "ok"),
            (p, &a, ReadActivity, Some(&draft), "ok"),
            (p, &a, Publish, None, "ok"),
            (p, &a, PublishForNetwork, None, "FORBIDDEN"),
            (p, &a, Update, Some(&pubd), "ok"),
            (p, &a, Update, Some(&draft), "ok"),
            (p, &a, Cancel, Some(&pubd), "ok"),
            (p, &a, Delete, Some(&pubd), "ok"),
            (p, &a, Delete, Some(&draft), "ok"),
            (p, &a, Join, Some(&pubd), "ok"),
            (p, &a, Join, Some(&draft), "FORBIDDEN"),
            (p, &a, ManageCities, None, "FORBIDDEN"),
            (p, &a, ManageTokens, None, "FORBIDDEN"),
            // City B: neither publisher nor host.
            (p, &b, ReadActivity, Some(&pubd), "ok"),
            (p, &b, ReadActivity, Some(&draft), "NOT_FOUND"),
            (p, &b, Update, Some(&pubd), "FORBIDDEN"),
            (p, &b, Update, Some(&draft), "NOT_FOUND"),
            (p, &b, Cancel, Some(&pubd), "FORBIDDEN"),
            (p, &b, Delete, Some(&pubd), "FORBIDDEN"),
            (p, &b, Join, Some(&pubd), "ok"),
            (p, &b, Leave, Some(&pubd), "ok"),
            (p, &b, Join, Some(&draft), "NOT_FOUND"),
            (p, &b, Update, Some(&net), "FORBIDDEN"),
            (p, &b, Join, Some(&net), "ok"),
            // City C: a co-host, not the publisher.
            (p, &c, Update, Some(&pubd), "ok"),
            (p, &c, Cancel, Some(&pubd), "ok"),
            (p, &c, Delete, Some(&pubd), "FORBIDDEN"),
            (p, &c, ReadActivity, Some(&draft), "NOT_FOUND"),
            (p, &c, AnswerInvitation, Some(&pubd), "ok"),
            // City D: invited, not accepted: it may answer, not edit.
            (p, &d, AnswerInvitation, Some(&pubd), "ok"),
            (p, &d, Update, Some(&pubd), "FORBIDDEN"),
            (p, &d, Cancel, Some(&pubd), "FORBIDDEN"),
            (p, &d, Delete, Some(&pubd), "FORBIDDEN"),
            (p, &d, AnswerInvitation, Some(&draft), "NOT_FOUND"),
            (p, &b, AnswerInvitation, Some(&pubd), "FORBIDDEN"),
            (p, &a, AnswerInvitation, Some(&pubd), "FORBIDDEN"),
            (p, &anon, AnswerInvitation, Some(&pubd), "UNAUTHENTICATED"),
            // The secretariat does everything.
            (closed, &sec, ReadActivity, Some(&draft), "ok"),
            (p, &sec, PublishForNetwork, None, "ok"),
            (p, &sec, Update, Some(&net), "ok"),
            (p, &sec, Delete, Some(&pubd), "ok"),
            (p, &sec, ManageCities, None, "ok"),
            (p, &sec, ManageTokens, None, "ok"),
        ];
        for (i, (policy, actor, action, facts, expected)) in table.into_iter().enumerate() {
            assert_eq!(
                code(policy.authorize(actor, action, facts)),
                expected,
                "row {i}: {actor:?} {action:?}"
            );
        }
    }
}
