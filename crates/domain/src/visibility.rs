//! Who may see a draft: the one rule, used by reads (storage translates it
//! to SQL in `ReadScope`'s conditions and the kept counts' `scope` column),
//! replays and live events (in memory), and the permission policy.

use crate::{ActivityStatus, Actor, CityId};

/// Whose drafts a reader may see. Built from the actor, so no call site can
/// forget it; soft-deleted activities are never seen by anyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadScope {
    /// Published and cancelled activities only.
    Public,
    /// Those plus this city's own drafts.
    City(CityId),
    /// Everything not deleted.
    All,
}

impl ReadScope {
    /// The scope an actor reads with: anonymous readers see no draft, a
    /// city sees its own, the secretariat sees every one.
    pub fn for_actor(actor: &Actor) -> Self {
        match actor {
            Actor::Anonymous => ReadScope::Public,
            Actor::City { id, .. } => ReadScope::City(*id),
            Actor::Secretariat => ReadScope::All,
        }
    }

    /// Whether this scope sees an activity with `status`, published by
    /// `published_by` (`None`: the secretariat): a draft is seen only by
    /// the city that published it and by the secretariat; everything else
    /// by everyone.
    pub fn sees(self, status: ActivityStatus, published_by: Option<CityId>) -> bool {
        match self {
            _ if status != ActivityStatus::Draft => true,
            ReadScope::All => true,
            ReadScope::City(id) => published_by == Some(id),
            ReadScope::Public => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_are_seen_by_their_city_and_the_secretariat_only() {
        use ActivityStatus::*;
        for status in ActivityStatus::ALL {
            let public = *status != Draft;
            assert!(ReadScope::All.sees(*status, Some(CityId(7))));
            assert!(ReadScope::All.sees(*status, None));
            assert!(ReadScope::City(CityId(7)).sees(*status, Some(CityId(7))));
            assert_eq!(
                ReadScope::City(CityId(8)).sees(*status, Some(CityId(7))),
                public
            );
            assert_eq!(ReadScope::City(CityId(8)).sees(*status, None), public);
            assert_eq!(ReadScope::Public.sees(*status, Some(CityId(7))), public);
        }
    }

    #[test]
    fn actors_read_with_their_scope() {
        assert_eq!(ReadScope::for_actor(&Actor::Anonymous), ReadScope::Public);
        assert_eq!(ReadScope::for_actor(&Actor::Secretariat), ReadScope::All);
        let city = Actor::City {
            id: CityId(3),
            slug: "c".into(),
        };
        assert_eq!(ReadScope::for_actor(&city), ReadScope::City(CityId(3)));
    }
}
