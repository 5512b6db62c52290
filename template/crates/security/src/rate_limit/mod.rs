//! Rate limiting (RATE-1 .. RATE-4, RATE-6): per client IP for anonymous requests, per principal
//! for authenticated ones, and a stricter tier of its own for each sensitive operation.
//!
//! Threat: credential stuffing and password guessing (one address trying many accounts, many
//! addresses trying one account), token and key minting at machine speed, a client or a bug
//! exhausting the service for everybody.
//!
//! Control: the generic cell rate algorithm (GCRA, a leaky bucket that stores one timestamp per
//! key) decides every request against a [`Tier`]'s [`Quota`]. [`middleware::RateLimit`] applies
//! the tiers of each operation; handlers add per-account checks where the account is in the body
//! ([`RateLimiter::check`] with [`KeyDeriver::account`]). Keys are keyed hashes, so neither the
//! in-process map nor Redis holds an address, an email or a principal id in clear.
//!
//! Limits that should count only failures (login per account) never look first and charge
//! later: however many attempts run at once, all of them would look before the first charge.
//! [`RateLimiter::reserve`] takes the attempt's allowance atomically before the work it guards,
//! and [`RateLimiter::refund`] gives it back when the attempt succeeded, so the work done per
//! window is bounded by the quota whatever the concurrency.
//!
//! Stores: [`memory::MemoryStore`] (the `governor` crate, one instance, bounded key map) and
//! [`redis_store::RedisStore`] (atomic scripts on Redis server time, shared by every instance).
//! When the store cannot answer, a tier [`WhenStoreFails::Refuse`]s (sensitive tiers: 503) or
//! [`WhenStoreFails::Allow`]s (general tiers); both are audited and counted.
//!
//! Anonymous requests (RATE-1), a refused credential's included, are keyed by client address
//! ([`crate::transport::client_ip`]; IPv6 per /64, the block one subscriber holds), so a client
//! cannot escape its budget by presenting garbage tokens. A limited request is refused before its
//! body is read (why a poem middleware over `governor`: decision 0010).
//!
//! A refusal (RATE-6) is a 429 in the service's uniform error body, with `Retry-After` in whole
//! seconds rounded up and the IETF draft's `RateLimit-Policy` and `RateLimit`, which every
//! admitted response carries too (error responses included); each is audited
//! (`ratelimit.exceeded`, with the tier and the kind of key, never the key). The published
//! document declares the 429, and a sensitive operation's 503, with these headers
//! ([`middleware::RatePlan::document`]), so clients can back off instead of hammering.
//!
//! Defaults (`[rate_limit]`): 120 requests a minute per address, 600 per principal, a stricter
//! tier for each sensitive operation, at most 100,000 keys per tier in process. Every operation
//! is limited unless the service lists it as exempt (its health probes; `HEAD` follows `GET`),
//! and an exemption naming no operation stops start-up. There is no setting that turns limiting off: raising a quota is
//! the only lever, and it raises what one client can cost everybody else.

pub mod memory;
pub mod middleware;
pub mod redis_store;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use poem::http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use poem::http::{HeaderMap, StatusCode};
use poem::{Request, Response};

use crate::auth::secrets::KeyHasher;
use crate::json_error::json_error;
use crate::logging::audit::{AuditEvent, Outcome};

/// `N` requests per period, with bursts of up to `N`: the GCRA admits one request every
/// `period / N` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    requests: NonZeroU32,
    period: Duration,
}

/// A quota of zero requests or a period outside 1 second to 1 day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a quota needs 1 to 1000 requests a second, in a period of 1 second to 1 day")]
pub struct InvalidQuota;

impl Quota {
    pub fn new(requests: u32, period: Duration) -> Result<Self, InvalidQuota> {
        let requests = NonZeroU32::new(requests).ok_or(InvalidQuota)?;
        if period < Duration::from_secs(1) || period > Duration::from_secs(86_400) {
            return Err(InvalidQuota);
        }
        // Both stores count time in whole microseconds at best: at most one request a millisecond
        // keeps them agreeing.
        if period / requests.get() < Duration::from_millis(1) {
            return Err(InvalidQuota);
        }
        Ok(Self { requests, period })
    }

    pub fn requests(&self) -> u32 {
        self.requests.get()
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// The time one request's allowance takes to come back.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.requests.get()
    }
}

/// What a tier does when its store cannot answer (Redis unreachable or too slow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenStoreFails {
    /// Fail open: the request goes on, unlimited (general tiers: an outage of the limiter must
    /// not become an outage of the API).
    Allow,
    /// Fail closed: 503 with `Retry-After` (sensitive tiers: a guessing attack must not get
    /// unlimited attempts by knocking the limiter over).
    Refuse,
}

/// A named limit: its quota and its failure policy. The name appears in the `RateLimit-Policy`
/// header, in audit events and in store keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub name: &'static str,
    pub quota: Quota,
    pub when_store_fails: WhenStoreFails,
}

impl Tier {
    /// A general tier: fails open.
    pub fn general(name: &'static str, quota: Quota) -> Self {
        Self {
            name,
            quota,
            when_store_fails: WhenStoreFails::Allow,
        }
    }

    /// A sensitive tier: fails closed.
    pub fn sensitive(name: &'static str, quota: Quota) -> Self {
        Self {
            name,
            quota,
            when_store_fails: WhenStoreFails::Refuse,
        }
    }
}

/// What a key identifies; recorded in audit events instead of the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The client address (an IPv6 client by its /64: one subscriber's whole allocation).
    ClientIp,
    /// An authenticated principal (user, client or API key).
    Principal,
    /// The account a login or password reset names, whoever sends it.
    Account,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientIp => "client_ip",
            Self::Principal => "principal",
            Self::Account => "account",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::ClientIp => "ip",
            Self::Principal => "principal",
            Self::Account => "account",
        }
    }
}

/// The bytes a store keeps for one client: 128 bits of an HMAC of its identity, never the
/// identity itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitKey {
    kind: KeyKind,
    digest: [u8; 16],
}

impl LimitKey {
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub fn digest(&self) -> &[u8; 16] {
        &self.digest
    }

    /// Lowercase hex of the digest, for store keys.
    pub fn to_hex(&self) -> String {
        lowercase_hex(&self.digest)
    }
}

fn lowercase_hex(bytes: &[u8; 16]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(32), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

/// Makes [`LimitKey`]s: an HMAC under a secret every instance shares, so that a store's
/// contents name nobody and one client maps to one key on every instance.
#[derive(Debug)]
pub struct KeyDeriver {
    hasher: KeyHasher,
}

impl KeyDeriver {
    pub fn new(hasher: KeyHasher) -> Self {
        Self { hasher }
    }

    fn key(&self, kind: KeyKind, identity: &str) -> LimitKey {
        let hash = self
            .hasher
            .hash(&format!("rate-limit:{}:{identity}", kind.tag()));
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&hash.as_bytes()[..16]);
        LimitKey { kind, digest }
    }

    /// An IPv4 client by its address, an IPv6 client by its /64 prefix (a subscriber usually
    /// holds a whole /64, so limiting single addresses would give them 2^64 budgets).
    pub fn client_ip(&self, ip: IpAddr) -> LimitKey {
        let identity = match ip.to_canonical() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let segments = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        };
        self.key(KeyKind::ClientIp, &identity)
    }

    /// A principal by its subject.
    pub fn principal(&self, subject: &str) -> LimitKey {
        self.key(KeyKind::Principal, subject)
    }

    /// An account by its email address, trimmed and lowercased, so `Alice@Example.com ` and
    /// `alice@example.com` share one budget.
    pub fn account(&self, email: &str) -> LimitKey {
        self.key(KeyKind::Account, &email.trim().to_lowercase())
    }
}

/// A store's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted: `remaining` more requests fit now; the allowance is full again after `reset`.
    Allowed { remaining: u32, reset: Duration },
    /// Refused: the next request fits after `retry_after`.
    Limited {
        retry_after: Duration,
        reset: Duration,
    },
}

/// The bucket a request was charged to: its key's own, or (in-process, map full) an overflow
/// bucket it shares. A refund goes back to the same bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargedBucket([u8; 16]);

impl ChargedBucket {
    /// Lowercase hex of the bucket's key, for store keys.
    fn to_hex(self) -> String {
        lowercase_hex(&self.0)
    }
}

/// What a store did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub decision: Decision,
    pub bucket: ChargedBucket,
    /// Whether the key was new to a full in-process map and so shares an overflow bucket.
    pub pooled: bool,
}

/// The store could not decide (unreachable, timed out, or answered nonsense).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the rate-limit store is unavailable: {0}")]
pub struct StoreUnavailable(pub String);

/// Where the GCRA state lives.
#[derive(Debug)]
pub enum Store {
    Memory(Arc<memory::MemoryStore>),
    Redis(Box<redis_store::RedisStore>),
}

impl Store {
    /// Charges one request to `key` under `tier`, atomically: of concurrent requests, only as
    /// many as the budget holds are admitted.
    pub async fn take(&self, tier: &Tier, key: &LimitKey) -> Result<Charge, StoreUnavailable> {
        match self {
            Self::Memory(store) => Ok(store.take(tier, key)),
            Self::Redis(store) => store.take(tier, key).await,
        }
    }

    /// Gives one admitted request's allowance back to `bucket`, atomically.
    pub async fn refund(&self, tier: &Tier, bucket: ChargedBucket) -> Result<(), StoreUnavailable> {
        match self {
            Self::Memory(store) => {
                store.refund(tier, bucket);
                Ok(())
            }
            Self::Redis(store) => store.refund(tier, bucket).await,
        }
    }

    /// Whether a shared store answers (for readiness); `None` for the in-process store.
    pub async fn ping(&self) -> Option<Result<(), StoreUnavailable>> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(store) => Some(store.ping().await),
        }
    }
}

/// A tier's state after a request was admitted, for the `RateLimit` headers.
#[derive(Debug, Clone)]
pub struct Admitted {
    tier: &'static str,
    quota: Quota,
    remaining: u32,
    reset: Duration,
}

/// One request's allowance, taken from its key's budget before the work it pays for
/// ([`RateLimiter::reserve`]). Dropping it keeps the charge; [`RateLimiter::refund`] gives it
/// back.
#[derive(Debug)]
#[must_use = "a reservation is either kept (dropped) or refunded: say which"]
pub struct Reservation {
    tier: Tier,
    /// `None` when a failing store let the request through uncharged (a fail-open tier).
    bucket: Option<ChargedBucket>,
}

/// Why a request was not admitted, as the response to send.
#[derive(Debug, Clone)]
pub struct Refusal {
    status: StatusCode,
    tier: &'static str,
    quota: Quota,
    retry_after: Duration,
    reset: Duration,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The JSON error response (`429 {"error":"Too many requests"}` or 503), with its headers.
    pub fn to_response(&self, request: &Request) -> Response {
        let message = if self.status == StatusCode::TOO_MANY_REQUESTS {
            "Too many requests"
        } else {
            "Service unavailable"
        };
        let mut response = json_error(self.status, message, request);
        self.add_headers(response.headers_mut());
        response
    }

    /// `Retry-After` and, for a 429, the tier's `RateLimit` and `RateLimit-Policy`.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from(retry_after_seconds(self.retry_after)),
        );
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let state = Admitted {
                tier: self.tier,
                quota: self.quota,
                remaining: 0,
                reset: self.reset,
            };
            add_rate_limit_headers(headers, std::slice::from_ref(&state));
        }
    }
}

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `RateLimit-Policy: "anonymous";q=120;w=60` and `RateLimit: "anonymous";r=119;t=1`, one list
/// member per tier that decided the request.
pub fn add_rate_limit_headers(headers: &mut HeaderMap, states: &[Admitted]) {
    if states.is_empty() {
        return;
    }
    let policies = states
        .iter()
        .map(|state| {
            format!(
                "\"{}\";q={};w={}",
                state.tier,
                state.quota.requests(),
                whole_seconds(state.quota.period())
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let current = states
        .iter()
        .map(|state| {
            format!(
                "\"{}\";r={};t={}",
                state.tier,
                state.remaining,
                whole_seconds(state.reset)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&policies) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    if let Ok(value) = HeaderValue::from_str(&current) {
        headers.insert(RATELIMIT, value);
    }
}

/// Seconds, rounded up (a client waiting the rounded-down time would be refused again).
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// `Retry-After` in seconds: rounded up, and never 0 (which would invite an immediate retry).
fn retry_after_seconds(duration: Duration) -> u64 {
    whole_seconds(duration).max(1)
}

/// How long a client is told to wait when a fail-closed tier's store is down.
const RETRY_WHEN_UNAVAILABLE: Duration = Duration::from_secs(5);

/// Counters of the limiter's decisions, for metrics and tests.
#[derive(Debug, Default)]
pub struct RateLimitCounters {
    exceeded: AtomicU64,
    store_failures: AtomicU64,
}

impl RateLimitCounters {
    /// Requests refused with 429.
    pub fn exceeded(&self) -> u64 {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Decisions the store could not make (each one failed open or closed per its tier), and
    /// refunds it could not give (the allowance stays spent).
    pub fn store_failures(&self) -> u64 {
        self.store_failures.load(Ordering::Relaxed)
    }
}

/// The store, the key derivation and the counters: what the middleware and the handlers check
/// requests with.
#[derive(Debug)]
pub struct RateLimiter {
    store: Store,
    keys: KeyDeriver,
    counters: RateLimitCounters,
}

impl RateLimiter {
    pub fn new(store: Store, keys: KeyDeriver) -> Arc<Self> {
        Arc::new(Self {
            store,
            keys,
            counters: RateLimitCounters::default(),
        })
    }

    pub fn keys(&self) -> &KeyDeriver {
        &self.keys
    }

    pub fn counters(&self) -> &RateLimitCounters {
        &self.counters
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Charges one request of `request` to `key` under `tier`. A refusal is audited
    /// (`ratelimit.exceeded`, or `ratelimit.store_unavailable` when the store failed) with the
    /// tier and the kind of key, never the key; so is a charge to a shared overflow bucket
    /// (`ratelimit.key_pooled`).
    pub async fn check(
        &self,
        request: &Request,
        tier: &Tier,
        key: LimitKey,
    ) -> Result<Option<Admitted>, Refusal> {
        self.charge(request, tier, key)
            .await
            .map(|(admitted, _)| admitted)
    }

    /// Takes one request's allowance from `key` under `tier` before the work it guards (a
    /// password check), refused like [`RateLimiter::check`]. Keep it when the attempt failed;
    /// [`RateLimiter::refund`] it when the attempt should not count.
    pub async fn reserve(
        &self,
        request: &Request,
        tier: &Tier,
        key: LimitKey,
    ) -> Result<Reservation, Refusal> {
        let (_, bucket) = self.charge(request, tier, key).await?;
        Ok(Reservation {
            tier: tier.clone(),
            bucket,
        })
    }

    /// Gives a reservation's allowance back. When the store cannot take it back, the allowance
    /// stays spent (the stricter outcome), logged and counted as a store failure.
    pub async fn refund(&self, reservation: Reservation) {
        let Some(bucket) = reservation.bucket else {
            return;
        };
        if let Err(unavailable) = self.store.refund(&reservation.tier, bucket).await {
            self.counters.store_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                tier = reservation.tier.name,
                error = %unavailable,
                "a rate-limit refund failed: the allowance stays spent"
            );
        }
    }

    /// Charges the store and decides; returns the bucket charged when the request was.
    async fn charge(
        &self,
        request: &Request,
        tier: &Tier,
        key: LimitKey,
    ) -> Result<(Option<Admitted>, Option<ChargedBucket>), Refusal> {
        match self.store.take(tier, &key).await {
            Ok(charge) => {
                if charge.pooled {
                    // Counted per tier by the store, and in metrics from this event.
                    let outcome = match charge.decision {
                        Decision::Allowed { .. } => Outcome::Allowed,
                        Decision::Limited { .. } => Outcome::Denied,
                    };
                    AuditEvent::for_request(
                        request,
                        "ratelimit.key_pooled",
                        outcome,
                        key.kind().as_str(),
                    )
                    .policy(tier.name)
                    .record();
                }
                let admitted = self.decide(request, tier, key, Ok(charge.decision))?;
                Ok((admitted, Some(charge.bucket)))
            }
            Err(unavailable) => {
                let admitted = self.decide(request, tier, key, Err(unavailable))?;
                Ok((admitted, None))
            }
        }
    }

    fn decide(
        &self,
        request: &Request,
        tier: &Tier,
        key: LimitKey,
        decision: Result<Decision, StoreUnavailable>,
    ) -> Result<Option<Admitted>, Refusal> {
        match decision {
            Ok(Decision::Allowed { remaining, reset }) => Ok(Some(Admitted {
                tier: tier.name,
                quota: tier.quota,
                remaining,
                reset,
            })),
            Ok(Decision::Limited { retry_after, reset }) => {
                self.counters.exceeded.fetch_add(1, Ordering::Relaxed);
                AuditEvent::for_request(
                    request,
                    "ratelimit.exceeded",
                    Outcome::Denied,
                    key.kind().as_str(),
                )
                .policy(tier.name)
                .record();
                Err(Refusal {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    tier: tier.name,
                    quota: tier.quota,
                    retry_after,
                    reset,
                })
            }
            Err(unavailable) => {
                self.counters.store_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(tier = tier.name, error = %unavailable, "rate-limit store failed");
                let outcome = match tier.when_store_fails {
                    WhenStoreFails::Allow => Outcome::Allowed,
                    WhenStoreFails::Refuse => Outcome::Denied,
                };
                AuditEvent::for_request(
                    request,
                    "ratelimit.store_unavailable",
                    outcome,
                    key.kind().as_str(),
                )
                .policy(tier.name)
                .record();
                match tier.when_store_fails {
                    WhenStoreFails::Allow => Ok(None),
                    WhenStoreFails::Refuse => Err(Refusal {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        tier: tier.name,
                        quota: tier.quota,
                        retry_after: RETRY_WHEN_UNAVAILABLE,
                        reset: RETRY_WHEN_UNAVAILABLE,
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deriver() -> KeyDeriver {
        KeyDeriver::new(KeyHasher::new(&[7u8; 32]).expect("32 bytes"))
    }

    #[test]
    fn a_quota_needs_requests_and_a_sane_period() {
        assert!(Quota::new(0, Duration::from_secs(60)).is_err());
        assert!(Quota::new(5, Duration::from_millis(10)).is_err());
        assert!(Quota::new(5, Duration::from_secs(86_401)).is_err());
        assert!(Quota::new(1_001, Duration::from_secs(1)).is_err());
        let quota = Quota::new(10, Duration::from_secs(60)).expect("valid");
        assert_eq!(quota.emission_interval(), Duration::from_secs(6));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let keys = deriver();
        let a = keys.client_ip("2001:db8:1:2::1".parse().expect("ip"));
        let b = keys.client_ip("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let other = keys.client_ip("2001:db8:1:3::1".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        // An IPv4-mapped address is the IPv4 client.
        assert_eq!(
            keys.client_ip("::ffff:192.0.2.1".parse().expect("ip")),
            keys.client_ip("192.0.2.1".parse().expect("ip"))
        );
    }

    #[test]
    fn accounts_are_normalised_and_kinds_never_collide() {
        let keys = deriver();
        assert_eq!(
            keys.account(" Alice@Example.com"),
            keys.account("alice@example.com")
        );
        assert_ne!(keys.account("x").digest(), keys.principal("x").digest());
        assert_eq!(keys.account("x").to_hex().len(), 32);
        assert!(!keys.account("alice@example.com").to_hex().contains("alice"));
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let quota = Quota::new(10, Duration::from_secs(60)).expect("valid");
        let mut headers = HeaderMap::new();
        let states = [
            Admitted {
                tier: "anonymous",
                quota,
                remaining: 9,
                reset: Duration::from_millis(5_500),
            },
            Admitted {
                tier: "login",
                quota,
                remaining: 0,
                reset: Duration::from_secs(60),
            },
        ];
        add_rate_limit_headers(&mut headers, &states);
        assert_eq!(
            headers[RATELIMIT_POLICY],
            "\"anonymous\";q=10;w=60, \"login\";q=10;w=60"
        );
        assert_eq!(
            headers[RATELIMIT],
            "\"anonymous\";r=9;t=6, \"login\";r=0;t=60"
        );
    }
}
