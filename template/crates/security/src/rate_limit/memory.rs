//! The in-process store: GCRA through the `governor` crate, one keyed limiter per tier.
//!
//! Threat: a flood of distinct client keys (every IPv4 address of a botnet, every /64 of an IPv6
//! range, invented email addresses) grows a naive per-key map until the process runs out of
//! memory; a bound that simply stops limiting newcomers instead lets the flood switch the limits
//! off for everybody else (unlimited reset mails to any victim, unlimited guesses at any account).
//!
//! Control: each tier's map is bounded (`rate_limit.max_keys_per_tier`). Keys whose state equals
//! a fresh bucket are dropped by [`MemoryStore::retain_recent`] (run periodically by
//! [`MemoryStore::spawn_housekeeping`], and at most once a second when a map is full). A new key
//! arriving at a map still full after that shares one of a few hundred overflow buckets (chosen
//! by its keyed hash, which a client cannot steer) with other newcomers: every key stays
//! limited, at worst on a budget shared with some others, while the keys already known keep
//! budgets of their own. Each such charge is audited (`ratelimit.key_pooled`) and counted.
//!
//! The same holds for accounts, a deliberate trade-off: while a flood keeps the login map full
//! and drains the overflow buckets, accounts new to the map wait with the flood (fail closed),
//! rather than get unlimited guesses or reset mails. Failing closed for accounts only while the
//! map is full would do the same for every newcomer at once; sharing keeps most of them working
//! until the flood spends their buckets. Raising `max_keys_per_tier` widens the margin.
//!
//! Refunds ([`MemoryStore::refund`]) move a bucket's theoretical arrival time back by one
//! emission interval, through `governor`'s own atomic compare-and-swap on the stored state: a
//! charge and its refund leave the bucket as if the request had never come.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};

use super::{Charge, ChargedBucket, Decision, LimitKey, Tier};

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

/// Whether a map has room for a new key, the overflow buckets' slots kept free.
fn is_full(map: &DashMapStateStore<[u8; 16]>, max_keys: usize, overflow_buckets: usize) -> bool {
    map.len() + overflow_buckets >= max_keys
}

/// A `governor` state store the tier also reads: [`MemoryStore::take`] picks each request's
/// bucket (its own or an overflow bucket) before `governor` charges it, so the map holds at most
/// `max_keys` keys (plus, under concurrent inserts, the requests in flight).
#[derive(Debug)]
struct SharedMap(Arc<DashMapStateStore<[u8; 16]>>);

impl StateStore for SharedMap {
    type Key = [u8; 16];

    fn measure_and_replace<T, F, E>(&self, key: &Self::Key, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        StateStore::measure_and_replace(&*self.0, key, f)
    }
}

impl ShrinkableKeyedStateStore<[u8; 16]> for SharedMap {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&*self.0, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&*self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

type KeyedLimiter =
    governor::RateLimiter<[u8; 16], SharedMap, LimiterClock, StateInformationMiddleware>;

/// One tier's limiter and when its map was last cleaned.
#[derive(Debug)]
struct TierLimiter {
    limiter: KeyedLimiter,
    quota: super::Quota,
    last_cleanup: AtomicU64,
    /// Shared with the limiter's store, to tell a new key from a known one.
    map: Arc<DashMapStateStore<[u8; 16]>>,
    overflow_buckets: usize,
    /// Requests charged to an overflow bucket.
    overflowed: AtomicU64,
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
            let map: Arc<DashMapStateStore<[u8; 16]>> = Arc::default();
            let state = SharedMap(Arc::clone(&map));
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
                overflow_buckets: (self.max_keys / 4).clamp(1, 256),
                overflowed: AtomicU64::new(0),
            })
        });
        Arc::clone(limiter)
    }

    /// Charges one request to `key` under `tier`.
    pub fn check(&self, tier: &Tier, key: &LimitKey) -> Decision {
        self.take(tier, key).decision
    }

    /// Charges one request to `key` under `tier` (atomically: `governor` swaps the bucket's state
    /// with compare-and-swap), to its own bucket or, when the key is new to a full map, to the
    /// overflow bucket its hash picks.
    pub fn take(&self, tier: &Tier, key: &LimitKey) -> Charge {
        let state = self.tier(tier);
        let interval = state.quota.emission_interval();
        let limit = state.quota.requests();
        let full = || is_full(&state.map, self.max_keys, state.overflow_buckets);
        let pooled = !state.map.contains_key(key.digest()) && full();
        let bucket = if pooled {
            state.overflowed.fetch_add(1, Ordering::Relaxed);
            overflow_key(key.digest(), state.overflow_buckets)
        } else {
            *key.digest()
        };
        let decision = match state.limiter.check_key(&bucket) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision::Allowed {
                    remaining,
                    reset: interval * limit.saturating_sub(remaining),
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.clock.now());
                Decision::Limited {
                    retry_after,
                    reset: retry_after + interval * limit.saturating_sub(1),
                }
            }
        };
        if full() {
            self.cleanup_at_most_once_a_second(&state);
        }
        Charge {
            decision,
            bucket: ChargedBucket(bucket),
            pooled,
        }
    }

    /// Gives one request's allowance back to `bucket` (a [`MemoryStore::take`] of the same
    /// tier admitted it): its theoretical arrival time moves back one emission interval. A
    /// bucket already dropped as full again has nothing to give back.
    pub fn refund(&self, tier: &Tier, bucket: ChargedBucket) {
        let state = self.tier(tier);
        let interval = Nanos::from(state.quota.emission_interval());
        if let Some(stored) = state.map.get(&bucket.0) {
            // `Err` leaves an empty state (no charge to give back) untouched.
            let _ = StateStore::measure_and_replace(&*stored, &NotKeyed::NonKey, |tat| {
                tat.map(|tat| ((), tat.saturating_sub(interval))).ok_or(())
            });
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
        for state in tiers {
            state.limiter.retain_recent();
            state.limiter.shrink_to_fit();
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

    /// Requests of new keys that `tier`'s full map charged to an overflow bucket.
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
    fn a_refund_gives_back_exactly_one_charge() {
        let (clock, _millis) = manual_clock();
        let store = MemoryStore::new(100, clock);
        let tier = tier(2, 60);
        let key = keys().account("alice@example.com");
        let first = store.take(&tier, &key);
        let second = store.take(&tier, &key);
        assert!(matches!(first.decision, Decision::Allowed { .. }));
        assert!(matches!(second.decision, Decision::Allowed { .. }));
        assert!(matches!(store.check(&tier, &key), Decision::Limited { .. }));
        store.refund(&tier, second.bucket);
        let Decision::Allowed { remaining, .. } = store.check(&tier, &key) else {
            panic!("the refunded allowance was not given back");
        };
        assert_eq!(remaining, 0);
        assert!(matches!(store.check(&tier, &key), Decision::Limited { .. }));
        // Charge and refund, again and again, never spend the budget.
        let bob = keys().account("bob@example.com");
        for _ in 0..10 {
            let charge = store.take(&tier, &bob);
            assert!(matches!(charge.decision, Decision::Allowed { .. }));
            store.refund(&tier, charge.bucket);
        }
        // A refund is no gift beyond a full bucket: a fresh key still gets two.
        let carol = keys().account("carol@example.com");
        let charge = store.take(&tier, &carol);
        store.refund(&tier, charge.bucket);
        store.refund(&tier, charge.bucket);
        assert!(matches!(
            store.check(&tier, &carol),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            store.check(&tier, &carol),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            store.check(&tier, &carol),
            Decision::Limited { .. }
        ));
    }

    #[test]
    fn concurrent_takes_admit_exactly_the_quota() {
        let (clock, _millis) = manual_clock();
        let store = Arc::new(MemoryStore::new(100, clock));
        let tier = tier(3, 300);
        let key = keys().account("alice@example.com");
        let start = Arc::new(std::sync::Barrier::new(32));
        let admitted: usize = (0..32)
            .map(|_| {
                let (store, tier, start) = (Arc::clone(&store), tier.clone(), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    usize::from(matches!(
                        store.take(&tier, &key).decision,
                        Decision::Allowed { .. }
                    ))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|thread| thread.join().expect("thread"))
            .sum();
        assert_eq!(admitted, 3);
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
    fn accounts_new_to_a_full_map_share_overflow_buckets_and_stay_limited() {
        let (clock, _millis) = manual_clock();
        let store = MemoryStore::new(1_000, clock);
        let tier = Tier::sensitive(
            "password_reset_account",
            Quota::new(2, Duration::from_secs(3600)).expect("valid"),
        );
        let keys = keys();
        let known = keys.account("known@example.com");
        assert!(!store.take(&tier, &known).pooled);
        // An attacker fills the map with invented accounts...
        for n in 0..5_000u32 {
            store.check(&tier, &keys.account(&format!("{n}@example.com")));
        }
        assert!(store.len("password_reset_account") <= 1_000);
        // ...yet an account arriving now is still limited (on a bucket shared with some of them),
        let victim = keys.account("victim@example.com");
        let first = store.take(&tier, &victim);
        assert!(first.pooled);
        let admitted = std::iter::once(first.decision)
            .chain((0..4).map(|_| store.check(&tier, &victim)))
            .filter(|decision| matches!(decision, Decision::Allowed { .. }))
            .count();
        assert!(admitted <= 2, "{admitted} admitted");
        // and an account known before the flood keeps its own budget.
        assert!(matches!(
            store.check(&tier, &known),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            store.check(&tier, &known),
            Decision::Limited { .. }
        ));
        assert!(store.overflowed("password_reset_account") > 0);
    }

    #[test]
    fn a_refund_of_a_pooled_charge_goes_back_to_the_shared_bucket() {
        let (clock, _millis) = manual_clock();
        let store = MemoryStore::new(100, clock);
        let tier = tier(100, 100);
        let keys = keys();
        for n in 0..100u32 {
            store.check(&tier, &keys.principal(&n.to_string()));
        }
        let newcomer = keys.account("newcomer@example.com");
        let remaining = |charge: Charge| match charge.decision {
            Decision::Allowed { remaining, .. } => remaining,
            limited => panic!("refused: {limited:?}"),
        };
        let charge = store.take(&tier, &newcomer);
        assert!(charge.pooled);
        let before = remaining(charge);
        store.refund(&tier, charge.bucket);
        assert_eq!(remaining(store.take(&tier, &newcomer)), before);
        assert_eq!(remaining(store.take(&tier, &newcomer)), before - 1);
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
