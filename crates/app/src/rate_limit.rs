//! The rate limits of one instance (`[rate_limit]` in `cityhub.toml`):
//! mutations per token, anonymous requests per client address, and
//! persisted-query registrations. GraphQL's request guard and the city
//! websites' pages, calendars and feeds take from the same [`Limiters`]
//! (the binary hands both surfaces one instance), so an address's anonymous
//! budget is one budget whichever surface it reaches.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

/// Rate limits (`[rate_limit]` in `cityhub.toml`), per instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Mutations per second one token may run (sustained); 0 turns it off.
    pub mutations_per_sec: u32,
    /// Mutations one token may run in a burst above the sustained rate.
    pub mutation_burst: u32,
    /// Requests per second one client address may make without a token;
    /// 0 (the default) turns it off.
    pub anonymous_per_sec: u32,
    /// Anonymous requests one client address may make in a burst.
    pub anonymous_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            mutations_per_sec: 50,
            mutation_burst: 200,
            anonymous_per_sec: 0,
            anonymous_burst: 100,
        }
    }
}

/// The rate limiters of one instance.
pub struct Limiters {
    mutations: Option<DefaultKeyedRateLimiter<String>>,
    anonymous: Option<DefaultKeyedRateLimiter<IpAddr>>,
    registrations: Option<DefaultKeyedRateLimiter<Registrant>>,
    clock: DefaultClock,
    /// Refusals so far, by [`Limit`] (for `cityhub_rate_limited`).
    refused: [AtomicU64; 3],
}

/// Which budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A token's mutations.
    Mutations,
    /// An address's anonymous requests (GraphQL, pages, calendars, feeds).
    Anonymous,
    /// Persisted-query registrations.
    Registrations,
}

impl Limit {
    /// Every budget, in the order of [`Limiters::refusals`].
    pub const ALL: [Limit; 3] = [Limit::Mutations, Limit::Anonymous, Limit::Registrations];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Mutations => "mutations",
            Limit::Anonymous => "anonymous",
            Limit::Registrations => "registrations",
        }
    }
}

/// Who registers a persisted query: a token, or an address without one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Registrant {
    /// A token, by its id.
    Token(String),
    /// A client without a token, by its address.
    Address(IpAddr),
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("mutations", &self.mutations.is_some())
            .field("anonymous", &self.anonymous.is_some())
            .field("registrations", &self.registrations.is_some())
            .finish()
    }
}

fn quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    let burst = NonZeroU32::new(burst.max(per_sec)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

impl Limiters {
    /// Limiters for `settings`, persisted-query registrations unlimited.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self::with_registrations(settings, 0)
    }

    /// Limiters for `settings`, and at most `registrations_per_minute`
    /// persisted-query registrations per token or client address (0: no
    /// limit).
    pub fn with_registrations(settings: &RateLimitSettings, registrations_per_minute: u32) -> Self {
        Self {
            mutations: quota(settings.mutations_per_sec, settings.mutation_burst)
                .map(RateLimiter::keyed),
            anonymous: quota(settings.anonymous_per_sec, settings.anonymous_burst)
                .map(RateLimiter::keyed),
            registrations: NonZeroU32::new(registrations_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            clock: DefaultClock::default(),
            refused: Default::default(),
        }
    }

    /// Requests refused so far by each budget, in [`Limit::ALL`]'s order.
    pub fn refusals(&self) -> [u64; 3] {
        self.refused.each_ref().map(|n| n.load(Ordering::Relaxed))
    }

    /// Whether the anonymous per-address limiter is on.
    pub fn limits_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// Takes `mutations` mutations of `token_id`'s budget; `Err(seconds to
    /// wait)` when it is spent. Always `Ok` when the limiter is off.
    pub fn take_mutations(&self, token_id: &str, mutations: usize) -> Result<(), u64> {
        match &self.mutations {
            Some(limiter) => self.take(Limit::Mutations, limiter, &token_id.to_owned(), mutations),
            None => Ok(()),
        }
    }

    /// Takes one anonymous request of `ip`'s budget (city websites' pages,
    /// calendars and feeds share it with GraphQL); `Err(seconds to wait)`
    /// when it is spent. Always `Ok` when the limiter is off.
    pub fn take_anonymous(&self, ip: IpAddr) -> Result<(), u64> {
        match &self.anonymous {
            Some(limiter) => self.take(Limit::Anonymous, limiter, &ip, 1),
            None => Ok(()),
        }
    }

    /// Takes one persisted-query registration of `who`'s budget;
    /// `Err(seconds to wait)` when it is spent.
    pub fn take_registration(&self, who: Registrant) -> Result<(), u64> {
        match &self.registrations {
            Some(limiter) => self.take(Limit::Registrations, limiter, &who, 1),
            None => Ok(()),
        }
    }

    /// Takes `n` cells from `key`'s bucket; `Err(seconds to wait)` if empty.
    fn take<K>(
        &self,
        budget: Limit,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        n: usize,
    ) -> Result<(), u64>
    where
        K: std::hash::Hash + Eq + Clone,
    {
        let n = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        let refused = match limiter.check_key_n(key, n) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            }
            // More than the burst at once can never pass: wait a second and
            // send fewer (the per-request mutation cap keeps this rare).
            Err(_) => 1,
        };
        let index = Limit::ALL.iter().position(|l| *l == budget).unwrap_or(0);
        self.refused[index].fetch_add(1, Ordering::Relaxed);
        Err(refused)
    }

    /// Drops the state of keys whose buckets are full again (bounded memory).
    pub fn retain_recent(&self) {
        if let Some(l) = &self.mutations {
            l.retain_recent();
        }
        if let Some(l) = &self.anonymous {
            l.retain_recent();
        }
        if let Some(l) = &self.registrations {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_limiters_always_pass_and_refusals_are_counted_by_budget() {
        let off = Limiters::new(&RateLimitSettings {
            mutations_per_sec: 0,
            ..RateLimitSettings::default()
        });
        assert!(!off.limits_anonymous());
        for _ in 0..1_000 {
            assert_eq!(off.take_anonymous(IpAddr::from([10, 0, 0, 1])), Ok(()));
            assert_eq!(off.take_mutations("t", 5), Ok(()));
        }
        assert_eq!(off.refusals(), [0, 0, 0]);

        let on = Limiters::new(&RateLimitSettings {
            anonymous_per_sec: 1,
            anonymous_burst: 2,
            ..RateLimitSettings::default()
        });
        assert!(on.limits_anonymous());
        let ip = IpAddr::from([10, 0, 0, 2]);
        assert_eq!(on.take_anonymous(ip), Ok(()));
        assert_eq!(on.take_anonymous(ip), Ok(()));
        assert!(on.take_anonymous(ip).is_err(), "the burst is spent");
        assert_eq!(
            on.take_anonymous(IpAddr::from([10, 0, 0, 3])),
            Ok(()),
            "another address has its own budget"
        );
        assert_eq!(on.refusals(), [0, 1, 0]);
    }
}
