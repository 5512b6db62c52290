//! The service's rate limits (RATE-1 .. RATE-4, RATE-6), from `[rate_limit]`.
//!
//! Every operation is charged to a general tier: `anonymous` per client address, `authenticated`
//! per principal. The operations of `crate::policy::SENSITIVE_OPERATIONS` are charged to a
//! stricter [`SensitiveTier`] as well, and login and password reset to a per-account tier in
//! their handlers, where the account named in the body is known: a reset request pays one unit
//! ([`RateLimits::check_account`]); a login reserves one before the password check and gets it
//! back when the password was right ([`RateLimits::reserve_account`]).
//! `crate::policy::RATE_LIMIT_EXEMPT` is the one explicit opt-out. The mechanism (GCRA, stores,
//! headers, middleware) is `security::rate_limit`.
//!
//! Sensitive operations (RATE-3): login, password reset request and confirm, `POST
//! /oauth/token`, API key creation and rotation, `POST /v1/payments`, each tier per address, or
//! per principal when authenticated. Login and reset request are also limited per account named
//! in the body (trimmed, lowercased, keyed-hashed: `login_account`, `password_reset_account`),
//! from any address. For login only failures count: each attempt reserves its unit atomically
//! before the password check and a right password refunds it, so however many attempts arrive
//! at once (many addresses, a botnet) no more passwords per window are checked than the quota.
//! A reset request pays its unit up front, no refund, whether or not the account exists, and
//! the answer stays the same. While the in-process map is full, accounts new to it share
//! overflow buckets (`ratelimit.key_pooled`), so invented emails cannot switch the per-account
//! limits off.
//!
//! Defaults (`[rate_limit]`): login 10 a minute per address and 5 failures per 5 minutes per
//! account; reset 5 per 15 minutes per address and 3 an hour per account; token 30 a minute; key
//! management 10 an hour; payments 20 a minute. Raising them lets more guesses through per
//! window; there is no setting that removes a tier.

use std::sync::Arc;
use std::time::Duration;

use poem::Request;
use security::auth::secrets::KeyHasher;
use security::rate_limit::memory::{LimiterClock, MemoryStore};
use security::rate_limit::middleware::{PlanError, RatePlan};
use security::rate_limit::redis_store::{RedisSetupError, RedisStore};
use security::rate_limit::{
    InvalidQuota, KeyDeriver, Quota, RateLimiter, Reservation, Store, Tier,
};

use crate::config::{QuotaSettings, RateLimitSettings, RateLimitStoreKind};
use crate::error::ApiError;
use crate::policy::{AccountTier, SensitiveTier};

/// Why the rate limits could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitSetupError {
    #[error("rate_limit.{0}: {1}")]
    Quota(&'static str, InvalidQuota),
    #[error("{0}")]
    Redis(#[from] RedisSetupError),
    #[error("rate_limit.redis_ca_cert cannot be read: {0}")]
    RedisCaCert(String),
    #[error("{0}")]
    Plan(#[from] PlanError),
}

/// Every tier, with its configured quota.
#[derive(Debug, Clone)]
struct Tiers {
    anonymous: Tier,
    authenticated: Tier,
    login: Tier,
    login_account: Tier,
    password_reset: Tier,
    password_reset_account: Tier,
    password_reset_confirm: Tier,
    token: Tier,
    api_key_management: Tier,
    payment: Tier,
}

impl Tiers {
    fn from_settings(settings: &RateLimitSettings) -> Result<Self, RateLimitSetupError> {
        let quota = |name: &'static str, quota: QuotaSettings| {
            Quota::new(quota.requests, Duration::from_secs(quota.period_seconds))
                .map_err(|error| RateLimitSetupError::Quota(name, error))
        };
        Ok(Self {
            anonymous: Tier::general("anonymous", quota("anonymous", settings.anonymous)?),
            authenticated: Tier::general(
                "authenticated",
                quota("authenticated", settings.authenticated)?,
            ),
            login: Tier::sensitive("login", quota("login", settings.login)?),
            login_account: Tier::sensitive(
                "login_account",
                quota("login_account", settings.login_account)?,
            ),
            password_reset: Tier::sensitive(
                "password_reset",
                quota("password_reset", settings.password_reset)?,
            ),
            password_reset_account: Tier::sensitive(
                "password_reset_account",
                quota("password_reset_account", settings.password_reset_account)?,
            ),
            password_reset_confirm: Tier::sensitive(
                "password_reset_confirm",
                quota("password_reset_confirm", settings.password_reset_confirm)?,
            ),
            token: Tier::sensitive("token", quota("token", settings.token)?),
            api_key_management: Tier::sensitive(
                "api_key_management",
                quota("api_key_management", settings.api_key_management)?,
            ),
            payment: Tier::sensitive("payment", quota("payment", settings.payment)?),
        })
    }

    fn sensitive(&self, tier: SensitiveTier) -> &Tier {
        match tier {
            SensitiveTier::Login => &self.login,
            SensitiveTier::PasswordReset => &self.password_reset,
            SensitiveTier::PasswordResetConfirm => &self.password_reset_confirm,
            SensitiveTier::Token => &self.token,
            SensitiveTier::ApiKeyManagement => &self.api_key_management,
            SensitiveTier::Payment => &self.payment,
        }
    }
}

/// The limiter and the tiers the service checks requests against.
#[derive(Debug)]
pub struct RateLimits {
    limiter: Arc<RateLimiter>,
    tiers: Tiers,
}

impl RateLimits {
    /// The configured store and tiers. Keys are HMACs under `key_hasher` (the service's pepper,
    /// shared by every instance, so instances agree on keys and Redis never holds an address
    /// or an email). `clock` drives the in-process store (tests move it).
    pub fn new(
        settings: &RateLimitSettings,
        key_hasher: KeyHasher,
        clock: LimiterClock,
    ) -> Result<Self, RateLimitSetupError> {
        let store = match settings.store {
            RateLimitStoreKind::Memory => Store::Memory(Arc::new(MemoryStore::new(
                settings.max_keys_per_tier,
                clock,
            ))),
            RateLimitStoreKind::Redis => {
                let ca_cert = if settings.redis_ca_cert.as_os_str().is_empty() {
                    None
                } else {
                    Some(std::fs::read(&settings.redis_ca_cert).map_err(|error| {
                        RateLimitSetupError::RedisCaCert(format!(
                            "{}: {error}",
                            settings.redis_ca_cert.display()
                        ))
                    })?)
                };
                Store::Redis(Box::new(RedisStore::new(
                    settings.redis_url(),
                    &settings.redis_key_prefix,
                    Duration::from_millis(settings.redis_timeout_ms),
                    ca_cert,
                )?))
            }
        };
        Ok(Self {
            limiter: RateLimiter::new(store, KeyDeriver::new(key_hasher)),
            tiers: Tiers::from_settings(settings)?,
        })
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// The tiers of every operation of `document` and of the plain `routes` beside it.
    pub fn plan(
        &self,
        document: &serde_json::Value,
        routes: &[&str],
    ) -> Result<RatePlan, RateLimitSetupError> {
        let sensitive: Vec<(&str, Tier)> = crate::policy::SENSITIVE_OPERATIONS
            .iter()
            .map(|(operation, tier)| (*operation, self.tiers.sensitive(*tier).clone()))
            .collect();
        Ok(RatePlan::new(
            document,
            routes,
            self.tiers.anonymous.clone(),
            self.tiers.authenticated.clone(),
            &sensitive,
            crate::policy::RATE_LIMIT_EXEMPT,
        )?)
    }

    /// Takes one attempt from the budget of the account `email` names (normalised, and hashed
    /// before any store sees it), from whatever address it comes, *before* the attempt's work:
    /// of any number of simultaneous attempts, only the budget's worth get through. Keep the
    /// reservation when the attempt failed; [`RateLimits::refund_account`] it when it succeeded,
    /// so only failures count and an owner signing in from many devices never locks themselves
    /// out.
    pub async fn reserve_account(
        &self,
        request: &Request,
        tier: AccountTier,
        email: &str,
    ) -> Result<Reservation, ApiError> {
        let key = self.limiter.keys().account(email);
        self.limiter
            .reserve(request, self.account_tier(tier), key)
            .await
            .map_err(ApiError::RateLimited)
    }

    /// Gives a successful attempt's unit back to its account.
    pub async fn refund_account(&self, reservation: Reservation) {
        self.limiter.refund(reservation).await;
    }

    fn account_tier(&self, tier: AccountTier) -> &Tier {
        match tier {
            AccountTier::Login => &self.tiers.login_account,
            AccountTier::PasswordReset => &self.tiers.password_reset_account,
        }
    }

    /// Charges one attempt to the account `email` names (normalised, and hashed before any
    /// store sees it), from whatever address it comes, for good: a distributed attack on one
    /// account runs out as fast as a single client would.
    pub async fn check_account(
        &self,
        request: &Request,
        tier: AccountTier,
        email: &str,
    ) -> Result<(), ApiError> {
        let key = self.limiter.keys().account(email);
        match self
            .limiter
            .check(request, self.account_tier(tier), key)
            .await
        {
            Ok(_) => Ok(()),
            Err(refusal) => Err(ApiError::RateLimited(refusal)),
        }
    }

    /// Drops idle keys of the in-process store every minute (no-op for Redis, where keys
    /// expire by themselves).
    pub fn spawn_housekeeping(&self) -> Option<tokio::task::JoinHandle<()>> {
        match self.limiter.store() {
            Store::Memory(store) => Some(store.spawn_housekeeping(Duration::from_secs(60))),
            Store::Redis(_) => None,
        }
    }
}
