//! The in-process store: GCRA through the `governor` crate, one keyed limiter per tier.
//!
//! Threat: a flood of distinct client keys (every IPv4 address of a botnet, every /64 of an IPv6
//! range) grows a naive per-key map until the process runs out of memory.
//!
//! Control: each tier's map is bounded. Keys whose state equals a fresh bucket are dropped by
//! [`MemoryStore::retain_recent`] (run periodically by [`MemoryStore::spawn_housekeeping`], and at
//! most once a second when a map is full). A new address or principal arriving at a map still
//! full after that shares one of a few hundred overflow buckets (chosen by its key) with other
//! newcomers, so the flood throttles itself while the clients already known keep their own
//! budgets. A new *account* key is not pooled: pooling would let a flood of invented addresses
//! lock every other account out of login; it is checked as a fresh bucket and not remembered
//! (the per-address tiers still hold), and counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};

use super::{Decision, KeyKind, LimitKey, Tier};

/// The time the limiter reads: monotonic in production, moved by hand in tests.
#[derive(Clone)]
pub struct LimiterClock(Arc<dyn Fn() -> Duration + Send + Sync>);

impl LimiterClock {
    /// Time since the clock was made, from the monotonic clock (immune to wall-clock steps).
    pub fn monotonic() -> Self {
        let start = Instant::now();
        Self(Arc::new(move || start.elapsed()))
    }

    /// A clock reading `now` (any fixed origin): tests pass one they advance.
    pub fn from_fn(now: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }
}

impl std::fmt::Debug for LimiterClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LimiterClock").field(&(self.0)()).finish()
    }
}

impl Clock for LimiterClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from((self.0)())
    }
}

/// The overflow bucket of a newcomer to a full map: one of `buckets` keys, by the newcomer's
/// first byte (an HMAC output equal to one of them has probability 2^-120).
fn overflow_key(key: &[u8; 16], buckets: usize) -> [u8; 16] {
    let mut overflow = [0xff; 16];
    overflow[15] = u8::try_from(usize::from(key[0]) % buckets.max(1)).unwrap_or(0);
    overflow
}

/// A `governor` state store with at most `max_keys` keys, overflow buckets included (plus, under
/// concurrent inserts, the requests in flight).
#[derive(Debug)]
struct BoundedMap {
    map: Arc<DashMapStateStore<[u8; 16]>>,
    max_keys: usize,
    overflow_buckets: usize,
    overflowed: Arc<AtomicU64>,
}

/// Whether a map has room for a new key, the overflow buckets' slots kept free.
fn is_full(map: &DashMapStateStore<[u8; 16]>, max_keys: usize, overflow_buckets: usize) -> bool {
    map.len() + overflow_buckets >= max_keys
}

impl StateStore for BoundedMap {
    type Key = [u8; 16];

    fn measure_and_replace<T, F, E>(&self, key: &Self::Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if self.map.contains_key(key) || !is_full(&self.map, self.max_keys, self.overflow_buckets) {
            StateStore::measure_and_replace(&*self.map, key, f)
        } else {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            let overflow = overflow_key(key, self.overflow_buckets);
            StateStore::measure_and_replace(&*self.map, &overflow, f)
        }
    }
}

impl ShrinkableKeyedStateStore<[u8; 16]> for BoundedMap {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.map, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.map);
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

type KeyedLimiter =
    governor::RateLimiter<[u8; 16], BoundedMap, LimiterClock, StateInformationMiddleware>;

/// One tier's limiter and when its map was last cleaned.
#[derive(Debug)]
struct TierLimiter {
    limiter: KeyedLimiter,
    quota: super::Quota,
    last_cleanup: AtomicU64,
    /// Shared with the limiter's store, to tell a new key from a known one.
    map: Arc<DashMapStateStore<[u8; 16]>>,
    overflow_buckets: usize,
    /// Shared with the map: requests charged to an overflow bucket, or not remembered.
    overflowed: Arc<AtomicU64>,
    /// Keys refused by their last charge, and when their next request fits: what
    /// [`MemoryStore::peek`] reads (`governor` cannot look without charging).
    refused_until: DashMap<[u8; 16], Nanos>,
}

/// Per-tier GCRA limiters in this process.
#[derive(Debug)]
pub struct MemoryStore {
    tiers: RwLock<HashMap<&'static str, Arc<TierLimiter>>>,
    max_keys: usize,
    clock: LimiterClock,
}

impl MemoryStore {
    /// A store whose maps hold at most `max_keys` keys each (at least 2).
    pub fn new(max_keys: usize, clock: LimiterClock) -> Self {
        Self {
            tiers: RwLock::default(),
            max_keys: max_keys.max(2),
            clock,
        }
    }

    fn tier(&self, tier: &Tier) -> Arc<TierLimiter> {
        if let Some(limiter) = self
            .tiers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tier.name)
        {
            return Arc::clone(limiter);
        }
        let mut tiers = self
            .tiers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let limiter = tiers.entry(tier.name).or_insert_with(|| {
            let quota = governor::Quota::with_period(tier.quota.emission_interval())
                .unwrap_or_else(|| governor::Quota::per_second(tier.quota.requests))
                .allow_burst(tier.quota.requests);
            let overflowed = Arc::new(AtomicU64::new(0));
            let map: Arc<DashMapStateStore<[u8; 16]>> = Arc::default();
            let overflow_buckets = (self.max_keys / 4).clamp(1, 256);
            let state = BoundedMap {
                map: Arc::clone(&map),
                max_keys: self.max_keys,
                overflow_buckets,
                overflowed: Arc::clone(&overflowed),
            };
            Arc::new(TierLimiter {
                limiter: governor::RateLimiter::<
                    _,
                    _,
                    _,
                    governor::middleware::NoOpMiddleware<Nanos>,
                >::new(quota, state, self.clock.clone())
                .with_middleware::<StateInformationMiddleware>(),
                quota: tier.quota,
                last_cleanup: AtomicU64::new(0),
                map,
                overflow_buckets,
                overflowed,
                refused_until: DashMap::new(),
            })
        });
        Arc::clone(limiter)
    }

    /// Charges one request to `key` under `tier`.
    pub fn check(&self, tier: &Tier, key: &LimitKey) -> Decision {
        let state = self.tier(tier);
        let interval = state.quota.emission_interval();
        let limit = state.quota.requests();
        if key.kind() == KeyKind::Account
            && !state.map.contains_key(key.digest())
            && is_full(&state.map, self.max_keys, state.overflow_buckets)
        {
            // Checked as a fresh bucket, not remembered: see the module documentation.
            state.overflowed.fetch_add(1, Ordering::Relaxed);
            self.cleanup_at_most_once_a_second(&state);
            return Decision::Allowed {
                remaining: limit - 1,
                reset: interval,
            };
        }
        let decision = match state.limiter.check_key(key.digest()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision::Allowed {
                    remaining,
                    reset: interval * limit.saturating_sub(remaining),
                }
            }
            Err(not_until) => {
                let now = self.clock.now();
                let retry_after = not_until.wait_time_from(now);
                state
                    .refused_until
                    .insert(*key.digest(), now + Nanos::from(retry_after));
                Decision::Limited {
                    retry_after,
                    reset: retry_after + interval * limit.saturating_sub(1),
                }
            }
        };
        if is_full(&state.map, self.max_keys, state.overflow_buckets) {
            self.cleanup_at_most_once_a_second(&state);
        }
        decision
    }

    /// Whether a request of `key` under `tier` would be admitted now, charging nothing: refused
    /// while the key's last charge said to wait (a key charged up to its last request is seen
    /// as open until one more charge is refused).
    pub fn peek(&self, tier: &Tier, key: &LimitKey) -> Decision {
        let state = self.tier(tier);
        let now = self.clock.now();
        match state.refused_until.get(key.digest()).map(|until| *until) {
            Some(until) if until > now => {
                let retry_after = Duration::from(until.saturating_sub(now));
                Decision::Limited {
                    retry_after,
                    reset: retry_after,
                }
            }
            _ => Decision::Allowed {
                remaining: state.quota.requests(),
                reset: Duration::ZERO,
            },
        }
    }

    fn cleanup_at_most_once_a_second(&self, state: &TierLimiter) {
        let now = self.clock.now().as_u64();
        let last = state.last_cleanup.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 1_000_000_000
            && state
                .last_cleanup
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            state.limiter.retain_recent();
        }
    }

    /// Drops every key whose bucket is full again (indistinguishable from a new key) and
    /// returns the memory.
    pub fn retain_recent(&self) {
        let tiers: Vec<_> = self
            .tiers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .cloned()
            .collect();
        let now = self.clock.now();
        for state in tiers {
            state.limiter.retain_recent();
            state.limiter.shrink_to_fit();
            state.refused_until.retain(|_, until| *until > now);
        }
    }

    /// Keys held by `tier`'s map.
    pub fn len(&self, tier: &str) -> usize {
        self.tiers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tier)
            .map_or(0, |state| state.limiter.len())
    }

    /// Requests of new keys that `tier`'s full map pooled in an overflow bucket or did not
    /// remember.
    pub fn overflowed(&self, tier: &str) -> u64 {
        self.tiers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(tier)
            .map_or(0, |state| state.overflowed.load(Ordering::Relaxed))
    }

    /// Runs [`MemoryStore::retain_recent`] every `interval` until the handle is dropped or
    /// aborted.
    pub fn spawn_housekeeping(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else { return };
                store.retain_recent();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::auth::secrets::KeyHasher;
    use crate::rate_limit::{KeyDeriver, Quota};

    /// A clock the test moves, in milliseconds.
    fn manual_clock() -> (LimiterClock, Arc<AtomicU64>) {
        let millis = Arc::new(AtomicU64::new(1_000));
        let read = Arc::clone(&millis);
        let clock =
            LimiterClock::from_fn(move || Duration::from_millis(read.load(Ordering::SeqCst)));
        (clock, millis)
    }

    fn keys() -> KeyDeriver {
        KeyDeriver::new(KeyHasher::new(&[1u8; 32]).expect("32 bytes"))
    }

    fn tier(requests: u32, seconds: u64) -> Tier {
        Tier::general(
            "test",
            Quota::new(requests, Duration::from_secs(seconds)).expect("valid"),
        )
    }

    #[test]
    fn a_key_trips_at_its_quota_and_recovers_after_one_interval() {
        let (clock, millis) = manual_clock();
        let store = MemoryStore::new(100, clock);
        let tier = tier(3, 60);
        let key = keys().principal("alice");
        for expected_remaining in [2, 1, 0] {
            match store.check(&tier, &key) {
                Decision::Allowed { remaining, .. } => assert_eq!(remaining, expected_remaining),
                limited => panic!("refused early: {limited:?}"),
            }
        }
        let Decision::Limited { retry_after, .. } = store.check(&tier, &key) else {
            panic!("the fourth request in a minute was admitted");
        };
        assert_eq!(retry_after, Duration::from_secs(20));
        // Another client is not affected.
        assert!(matches!(
            store.check(&tier, &keys().principal("bob")),
            Decision::Allowed { .. }
        ));
        millis.fetch_add(19_000, Ordering::SeqCst);
        assert!(matches!(store.check(&tier, &key), Decision::Limited { .. }));
        millis.fetch_add(1_000, Ordering::SeqCst);
        assert!(matches!(store.check(&tier, &key), Decision::Allowed { .. }));
    }

    #[test]
    fn a_peek_charges_nothing_and_sees_a_refused_key_until_it_may_retry() {
        let (clock, millis) = manual_clock();
        let store = MemoryStore::new(100, clock);
        let tier = tier(1, 60);
        let key = keys().account("alice@example.com");
        for _ in 0..3 {
            assert!(matches!(store.peek(&tier, &key), Decision::Allowed { .. }));
        }
        assert!(matches!(store.check(&tier, &key), Decision::Allowed { .. }));
        assert!(matches!(store.check(&tier, &key), Decision::Limited { .. }));
        let Decision::Limited { retry_after, .. } = store.peek(&tier, &key) else {
            panic!("a refused key looked open");
        };
        assert_eq!(retry_after, Duration::from_secs(60));
        millis.fetch_add(60_000, Ordering::SeqCst);
        assert!(matches!(store.peek(&tier, &key), Decision::Allowed { .. }));
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_within_the_bound() {
        let (clock, _millis) = manual_clock();
        let max_keys = 1_000;
        let store = MemoryStore::new(max_keys, clock);
        let tier = tier(5, 60);
        let keys = keys();
        let known = keys.client_ip("192.0.2.1".parse().expect("ip"));
        assert!(matches!(
            store.check(&tier, &known),
            Decision::Allowed { .. }
        ));
        for n in 0..50_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n);
            store.check(&tier, &keys.client_ip(ip.into()));
            assert!(store.len("test") <= max_keys, "{} keys", store.len("test"));
        }
        assert!(store.overflowed("test") > 0);
        // The newcomers share a few buckets, which the flood exhausted...
        assert!(matches!(
            store.check(&tier, &keys.client_ip("198.51.100.7".parse().expect("ip"))),
            Decision::Limited { .. }
        ));
        // ...while a client known before the flood keeps its own budget.
        assert!(matches!(
            store.check(&tier, &known),
            Decision::Allowed { .. }
        ));
    }

    #[test]
    fn retain_recent_drops_keys_whose_bucket_is_full_again() {
        let (clock, millis) = manual_clock();
        let store = MemoryStore::new(100_000, clock);
        let tier = tier(5, 10);
        let keys = keys();
        for n in 0..1_000u32 {
            store.check(&tier, &keys.principal(&n.to_string()));
        }
        assert_eq!(store.len("test"), 1_000);
        store.retain_recent();
        assert_eq!(
            store.len("test"),
            1_000,
            "buckets still in use were dropped"
        );
        millis.fetch_add(10_000, Ordering::SeqCst);
        store.retain_recent();
        assert_eq!(store.len("test"), 0);
    }

    #[test]
    fn accounts_are_never_pooled_when_the_map_is_full() {
        let (clock, _millis) = manual_clock();
        let store = MemoryStore::new(1_000, clock);
        let tier = Tier::sensitive(
            "login_account",
            Quota::new(2, Duration::from_secs(300)).expect("valid"),
        );
        let keys = keys();
        let victim = keys.account("victim@example.com");
        assert!(matches!(
            store.check(&tier, &victim),
            Decision::Allowed { .. }
        ));
        // An attacker fills the map with invented accounts...
        for n in 0..5_000u32 {
            store.check(&tier, &keys.account(&format!("{n}@example.com")));
        }
        assert!(store.len("login_account") <= 1_000);
        // ...yet a real account arriving now is not locked by sharing their buckets,
        let newcomer = keys.account("newcomer@example.com");
        for _ in 0..5 {
            assert!(matches!(
                store.check(&tier, &newcomer),
                Decision::Allowed { .. }
            ));
        }
        // and an account known before the flood keeps its own, enforced budget.
        assert!(matches!(
            store.check(&tier, &victim),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            store.check(&tier, &victim),
            Decision::Limited { .. }
        ));
        assert!(store.overflowed("login_account") > 0);
    }

    #[test]
    fn a_full_map_is_cleaned_before_newcomers_are_pooled() {
        let (clock, millis) = manual_clock();
        let store = MemoryStore::new(100, clock);
        let tier = tier(5, 10);
        let keys = keys();
        for n in 0..99u32 {
            store.check(&tier, &keys.principal(&n.to_string()));
        }
        millis.fetch_add(11_000, Ordering::SeqCst);
        // The map is full of idle keys: the next check cleans it, so a newcomer gets its own.
        store.check(&tier, &keys.principal("trigger"));
        store.check(&tier, &keys.principal("newcomer"));
        assert!(store.len("test") <= 3, "{} keys", store.len("test"));
    }
}
