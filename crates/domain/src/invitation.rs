//! Invitations: naming another member city as co-host or venue city of an
//! activity asks that city, and only its acceptance makes the activity its
//! own. Who counts as an activity's city stays one rule, in one place: an
//! activity's cities are its [`Activity::hosts`], its
//! [`Activity::venue_city_id`] and its participants, which the filter
//! (`filter.rs`), the kept counts and every surface read. This module
//! decides what `hosts` and `venue_city_id` hold — the publisher, and the
//! cities that accepted — and how invitations change on a write and on an
//! answer. A city that is only invited is none of the activity's cities:
//! no listing, calendar, feed or count of that city shows it, and the
//! policy does not let it edit the activity.
//!
//! - A city's write invites every city it newly names (`PENDING`); the
//!   secretariat's write sets them at once (`ACCEPTED`), as does the
//!   seeded network, which the secretariat loads.
//! - A name a write keeps keeps its invitation's state; a name it drops
//!   drops the invitation (and, if it was accepted, the host or venue).
//! - A declined invitation stays, as the city's answer, while no write
//!   names the city again; naming it again invites it again.
//! - `acceptInvitation` accepts every pending invitation of the city to
//!   the activity; `declineInvitation` declines every pending or accepted
//!   one (after accepting, it is how a co-host or venue city leaves).
//!   Answering what is already answered that way is refused.

use crate::enums::{InvitationRole, InvitationState};
use crate::{Activity, Actor, CityId};

/// One city's invitation to an activity, in one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Invitation {
    /// The invited city.
    pub city: CityId,
    /// What it is invited to be.
    pub role: InvitationRole,
    /// Where the invitation stands.
    pub state: InvitationState,
}

/// How the cities a write newly names are asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// A city's write: each newly named city is invited (`PENDING`).
    Invite,
    /// The secretariat's write: each newly named city is set at once
    /// (`ACCEPTED`).
    Direct,
}

impl Naming {
    /// How `actor`'s writes name cities: the secretariat sets them, anyone
    /// else invites them.
    #[must_use]
    pub fn of(actor: &Actor) -> Self {
        match actor {
            Actor::Secretariat => Naming::Direct,
            Actor::Anonymous | Actor::City { .. } => Naming::Invite,
        }
    }

    /// The state of an invitation this naming creates.
    fn fresh_state(self) -> InvitationState {
        match self {
            Naming::Invite => InvitationState::Pending,
            Naming::Direct => InvitationState::Accepted,
        }
    }
}

/// The member cities an activity's input names (resolved to ids): what
/// `coHosts` and `venueCity` say, whether or not those cities accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// The co-hosts, in the order given.
    pub co_hosts: Vec<CityId>,
    /// The venue city.
    pub venue: Option<CityId>,
}

/// An activity's cities after a write or an answer: what storage writes
/// (its invitations, its host rows and its venue city).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cities {
    /// Its invitations, in order: the co-hosts as named, then the venue
    /// city, then declined invitations no write names any more.
    pub invitations: Vec<Invitation>,
    /// Its hosts: the publisher first, then the co-hosts that accepted, in
    /// the order named.
    pub hosts: Vec<CityId>,
    /// Its venue city as it counts: the publisher itself, or a city that
    /// accepted; `None` while the named venue city has not accepted.
    pub venue: Option<CityId>,
}

impl Cities {
    /// The cities that follow from `invitations` for an activity published
    /// by `publisher`; `own_venue` when the publisher is its own venue city
    /// (which needs no invitation).
    fn from_invitations(
        publisher: Option<CityId>,
        own_venue: bool,
        invitations: Vec<Invitation>,
    ) -> Self {
        let accepted = |role: InvitationRole| {
            invitations
                .iter()
                .filter(move |i| i.role == role && i.state == InvitationState::Accepted)
                .map(|i| i.city)
        };
        let mut hosts: Vec<CityId> = publisher.into_iter().collect();
        for city in accepted(InvitationRole::CoHost) {
            if !hosts.contains(&city) {
                hosts.push(city);
            }
        }
        let venue = if own_venue {
            publisher
        } else {
            accepted(InvitationRole::Venue).next()
        };
        Self {
            hosts,
            venue,
            invitations,
        }
    }

    /// The cities of `activity` once `city` gave `answer` to its
    /// invitations (`current`, the activity's invitations now).
    pub fn answer(
        activity: &Activity,
        current: &[Invitation],
        city: CityId,
        answer: Answer,
    ) -> Result<Self, AnswerRefused> {
        let mine: Vec<&Invitation> = current.iter().filter(|i| i.city == city).collect();
        if mine.is_empty() {
            return Err(AnswerRefused::NotInvited);
        }
        let (from, to): (&[InvitationState], InvitationState) = match answer {
            Answer::Accept => (&[InvitationState::Pending], InvitationState::Accepted),
            Answer::Decline => (
                &[InvitationState::Pending, InvitationState::Accepted],
                InvitationState::Declined,
            ),
        };
        if !mine.iter().any(|i| from.contains(&i.state)) {
            return Err(
                if mine.iter().any(|i| i.state == InvitationState::Accepted) {
                    AnswerRefused::AlreadyAccepted
                } else {
                    AnswerRefused::AlreadyDeclined
                },
            );
        }
        let invitations = current
            .iter()
            .map(|i| {
                if i.city == city && from.contains(&i.state) {
                    Invitation { state: to, ..*i }
                } else {
                    *i
                }
            })
            .collect();
        Ok(Self::from_invitations(
            activity.published_by,
            own_venue(activity.published_by, activity.venue_city_id),
            invitations,
        ))
    }
}

/// Whether the venue city is the publisher itself.
fn own_venue(publisher: Option<CityId>, venue: Option<CityId>) -> bool {
    publisher.is_some() && venue == publisher
}

/// An activity's invitations as they stand: its stored ones (`rows`, in
/// order), then an accepted one for each host other than the publisher,
/// and for a venue city other than the publisher, that has none. No write
/// of the hub leaves a host or venue city without its invitation, but a
/// row written before invitations existed (the migration records those)
/// or by a bulk loader could: it counts as the accepted city it is, never
/// as one to invite again.
#[must_use]
pub fn standing(activity: &Activity, rows: &[Invitation]) -> Vec<Invitation> {
    let mut all = rows.to_vec();
    let mut accepted = |city: CityId, role: InvitationRole| {
        if Some(city) != activity.published_by
            && !all.iter().any(|i| i.city == city && i.role == role)
        {
            all.push(Invitation {
                city,
                role,
                state: InvitationState::Accepted,
            });
        }
    };
    for host in &activity.hosts {
        accepted(*host, InvitationRole::CoHost);
    }
    if let Some(venue) = activity.venue_city_id {
        accepted(venue, InvitationRole::Venue);
    }
    all
}

impl Named {
    /// What `activity` names now, given its invitations as they
    /// [`standing`]: the co-hosts and venue city invited and not declined,
    /// and the publisher's own venue. This is what an update starts from.
    #[must_use]
    pub fn of(activity: &Activity, invitations: &[Invitation]) -> Self {
        let open = |role: InvitationRole| {
            invitations
                .iter()
                .filter(move |i| i.role == role && i.state != InvitationState::Declined)
                .map(|i| i.city)
        };
        let co_hosts: Vec<CityId> = open(InvitationRole::CoHost).collect();
        let own = activity
            .venue_city_id
            .filter(|v| own_venue(activity.published_by, Some(*v)));
        let venue = open(InvitationRole::Venue).next().or(own);
        Self { co_hosts, venue }
    }

    /// The cities of an activity published by `publisher` once a write
    /// naming these replaces `current` (its invitations now; none for a new
    /// activity): kept names keep their state, new ones are asked as
    /// `naming` says, dropped ones go, declined ones stay while unnamed.
    /// The publisher is never invited: it hosts, and may be its own venue.
    #[must_use]
    pub fn settle(
        &self,
        publisher: Option<CityId>,
        current: &[Invitation],
        naming: Naming,
    ) -> Cities {
        let mut invitations: Vec<Invitation> = Vec::new();
        let mut name = |city: CityId, role: InvitationRole| {
            if Some(city) == publisher
                || invitations.iter().any(|i| i.city == city && i.role == role)
            {
                return;
            }
            let state = match current.iter().find(|i| i.city == city && i.role == role) {
                Some(i) if i.state != InvitationState::Declined => i.state,
                _ => naming.fresh_state(),
            };
            invitations.push(Invitation { city, role, state });
        };
        for city in &self.co_hosts {
            name(*city, InvitationRole::CoHost);
        }
        if let Some(city) = self.venue {
            name(city, InvitationRole::Venue);
        }
        for declined in current
            .iter()
            .filter(|i| i.state == InvitationState::Declined)
        {
            if !invitations
                .iter()
                .any(|i| i.city == declined.city && i.role == declined.role)
            {
                invitations.push(*declined);
            }
        }
        Cities::from_invitations(publisher, own_venue(publisher, self.venue), invitations)
    }
}

/// An invited city's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `acceptInvitation`: every pending invitation of the city is accepted.
    Accept,
    /// `declineInvitation`: every pending or accepted invitation of the
    /// city is declined (after accepting, the city leaves).
    Decline,
}

impl Answer {
    /// The mutation's name, as audited.
    #[must_use]
    pub fn mutation(self) -> &'static str {
        match self {
            Answer::Accept => "acceptInvitation",
            Answer::Decline => "declineInvitation",
        }
    }
}

/// Why an answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerRefused {
    /// The city has no invitation to the activity.
    #[error("this city is not invited to this activity")]
    NotInvited,
    /// Accepting again: nothing is pending, and something was accepted.
    #[error("this city has already accepted its invitation to this activity")]
    AlreadyAccepted,
    /// Declining again, or accepting what was declined.
    #[error(
        "this city has declined its invitation to this activity; its hosts may name the city again to invite it again"
    )]
    AlreadyDeclined,
}

/// The invitations of `activity` that `actor` may see: every one for the
/// secretariat and for the activity's hosts (its publisher and the
/// co-hosts that accepted), its own for an invited city, none for anyone
/// else.
#[must_use]
pub fn visible_to(
    actor: &Actor,
    activity: &Activity,
    invitations: &[Invitation],
) -> Vec<Invitation> {
    match actor {
        Actor::Secretariat => invitations.to_vec(),
        Actor::City { id, .. }
            if activity.published_by == Some(*id) || activity.hosts.contains(id) =>
        {
            invitations.to_vec()
        }
        Actor::City { id, .. } => invitations
            .iter()
            .filter(|i| i.city == *id)
            .copied()
            .collect(),
        Actor::Anonymous => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InvitationRole::{CoHost, Venue};
    use InvitationState::{Accepted, Declined, Pending};

    const A: CityId = CityId(1);
    const B: CityId = CityId(2);
    const C: CityId = CityId(3);
    const D: CityId = CityId(4);

    fn inv(city: CityId, role: InvitationRole, state: InvitationState) -> Invitation {
        Invitation { city, role, state }
    }

    fn activity(publisher: Option<CityId>, cities: &Cities) -> Activity {
        Activity {
            id: crate::ActivityId(1),
            slug: "a".into(),
            kind: crate::ActivityKind::Workshop,
            format: crate::ActivityFormat::InPerson,
            status: crate::ActivityStatus::Published,
            title: "A".into(),
            summary: None,
            description: None,
            start_date: None,
            end_date: None,
            date_precision: crate::DatePrecision::Day,
            timing: None,
            venue: None,
            venue_city_id: cities.venue,
            organizations: Vec::new(),
            fields: Vec::new(),
            themes: Vec::new(),
            objectives: Vec::new(),
            published_by: publisher,
            hosts: cities.hosts.clone(),
            published_at: None,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            version: 1,
            cancel_reason: None,
        }
    }

    fn named(co_hosts: &[CityId], venue: Option<CityId>) -> Named {
        Named {
            co_hosts: co_hosts.to_vec(),
            venue,
        }
    }

    #[test]
    fn a_city_invites_and_hosts_only_itself_until_answers() {
        let cities = named(&[B, A, B], Some(C)).settle(Some(A), &[], Naming::Invite);
        assert_eq!(
            cities.invitations,
            vec![inv(B, CoHost, Pending), inv(C, Venue, Pending)]
        );
        assert_eq!(cities.hosts, vec![A]);
        assert_eq!(cities.venue, None);
    }

    #[test]
    fn the_secretariat_sets_cities_at_once() {
        let cities = named(&[B, C], Some(D)).settle(None, &[], Naming::Direct);
        assert_eq!(cities.hosts, vec![B, C]);
        assert_eq!(cities.venue, Some(D));
        assert!(cities.invitations.iter().all(|i| i.state == Accepted));
    }

    #[test]
    fn the_publisher_is_its_own_venue_without_an_invitation() {
        let cities = named(&[], Some(A)).settle(Some(A), &[], Naming::Invite);
        assert!(cities.invitations.is_empty());
        assert_eq!(cities.venue, Some(A));
    }

    #[test]
    fn answers_move_cities_in_and_out() {
        let published = named(&[B, C], Some(D)).settle(Some(A), &[], Naming::Invite);
        let a = activity(Some(A), &published);
        let after_c =
            Cities::answer(&a, &published.invitations, C, Answer::Accept).expect("accept");
        assert_eq!(after_c.hosts, vec![A, C]);
        let a = activity(Some(A), &after_c);
        let after_b = Cities::answer(&a, &after_c.invitations, B, Answer::Accept).expect("accept");
        assert_eq!(after_b.hosts, vec![A, B, C], "in the order named");
        let a = activity(Some(A), &after_b);
        let after_d = Cities::answer(&a, &after_b.invitations, D, Answer::Accept).expect("accept");
        assert_eq!(after_d.venue, Some(D));
        let a = activity(Some(A), &after_d);
        // Leaving after accepting.
        let left = Cities::answer(&a, &after_d.invitations, B, Answer::Decline).expect("leave");
        assert_eq!(left.hosts, vec![A, C]);
        assert_eq!(left.venue, Some(D));
        let a = activity(Some(A), &left);
        assert_eq!(
            Cities::answer(&a, &left.invitations, B, Answer::Decline),
            Err(AnswerRefused::AlreadyDeclined)
        );
        assert_eq!(
            Cities::answer(&a, &left.invitations, B, Answer::Accept),
            Err(AnswerRefused::AlreadyDeclined)
        );
        assert_eq!(
            Cities::answer(&a, &left.invitations, C, Answer::Accept),
            Err(AnswerRefused::AlreadyAccepted)
        );
        assert_eq!(
            Cities::answer(&a, &left.invitations, A, Answer::Accept),
            Err(AnswerRefused::NotInvited)
        );
    }

    #[test]
    fn one_answer_covers_both_roles_of_a_city() {
        let published = named(&[B], Some(B)).settle(Some(A), &[], Naming::Invite);
        let a = activity(Some(A), &published);
        let accepted =
            Cities::answer(&a, &published.invitations, B, Answer::Accept).expect("accept");
        assert_eq!(accepted.hosts, vec![A, B]);
        assert_eq!(accepted.venue, Some(B));
    }

    #[test]
    fn edits_keep_states_invite_new_names_and_drop_removed_ones() {
        let current = vec![
            inv(B, CoHost, Accepted),
            inv(C, CoHost, Pending),
            inv(D, CoHost, Declined),
        ];
        // C dropped, D (declined) not named: stays as its answer.
        let kept = named(&[B], None).settle(Some(A), &current, Naming::Invite);
        assert_eq!(
            kept.invitations,
            vec![inv(B, CoHost, Accepted), inv(D, CoHost, Declined)]
        );
        assert_eq!(kept.hosts, vec![A, B]);
        // Naming D again invites it again; the secretariat would set it.
        let again = named(&[B, D], None).settle(Some(A), &current, Naming::Invite);
        assert_eq!(
            again.invitations,
            vec![inv(B, CoHost, Accepted), inv(D, CoHost, Pending)]
        );
        let set = named(&[B, C, D], None).settle(Some(A), &current, Naming::Direct);
        assert_eq!(
            set.invitations,
            vec![
                inv(B, CoHost, Accepted),
                inv(C, CoHost, Pending),
                inv(D, CoHost, Accepted)
            ],
            "the secretariat sets what it names anew; a pending name it keeps stays pending"
        );
        assert_eq!(set.hosts, vec![A, B, D]);
    }

    #[test]
    fn what_an_activity_names_round_trips_through_settle() {
        let current = vec![
            inv(B, CoHost, Accepted),
            inv(C, CoHost, Pending),
            inv(C, Venue, Pending),
            inv(D, CoHost, Declined),
        ];
        let cities = Cities::from_invitations(Some(A), false, current.clone());
        let a = activity(Some(A), &cities);
        let n = Named::of(&a, &current);
        assert_eq!(n, named(&[B, C], Some(C)));
        assert_eq!(n.settle(Some(A), &current, Naming::Invite), cities);
    }

    #[test]
    fn hosts_and_venues_without_an_invitation_stand_as_accepted() {
        // Rows no write of the hub makes: hosts and a venue city without
        // invitations (written before invitations existed).
        let legacy = activity(
            Some(A),
            &Cities {
                invitations: Vec::new(),
                hosts: vec![A, B, D],
                venue: Some(C),
            },
        );
        let standing = standing(&legacy, &[]);
        assert_eq!(
            standing,
            vec![
                inv(B, CoHost, Accepted),
                inv(D, CoHost, Accepted),
                inv(C, Venue, Accepted)
            ]
        );
        let named = Named::of(&legacy, &standing);
        assert_eq!(named, self::named(&[B, D], Some(C)));
        // An edit keeping them keeps them accepted, never invites them again.
        let kept = named.settle(Some(A), &standing, Naming::Invite);
        assert_eq!(kept.hosts, vec![A, B, D]);
        assert_eq!(kept.venue, Some(C));
        // And one of them may leave.
        let left = Cities::answer(&legacy, &standing, D, Answer::Decline).expect("leave");
        assert_eq!(left.hosts, vec![A, B]);
    }

    #[test]
    fn invitations_are_seen_by_hosts_the_secretariat_and_their_own_city() {
        let cities = named(&[B, C], None).settle(Some(A), &[], Naming::Invite);
        let a = activity(Some(A), &cities);
        let city = |id: CityId| Actor::City {
            id,
            slug: format!("c{id}"),
        };
        assert_eq!(visible_to(&city(A), &a, &cities.invitations).len(), 2);
        assert_eq!(
            visible_to(&Actor::Secretariat, &a, &cities.invitations).len(),
            2
        );
        assert_eq!(
            visible_to(&city(B), &a, &cities.invitations),
            vec![inv(B, CoHost, Pending)]
        );
        assert!(visible_to(&city(D), &a, &cities.invitations).is_empty());
        assert!(visible_to(&Actor::Anonymous, &a, &cities.invitations).is_empty());
    }
}
