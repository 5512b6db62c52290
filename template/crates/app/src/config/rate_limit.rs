//! `[rate_limit]`: where rate-limit state lives and each tier's quota (RATE-1 to RATE-4): the
//! general tiers per client address and per principal, and a stricter tier of its own for each
//! sensitive operation, by address and by the account named in the body. No tier can be turned
//! off: each needs at least one request per period and at most 1000 a second, and the in-process
//! store keeps enough clients per tier that ordinary traffic never shares the overflow bucket.
//! With Redis, the URL may carry a password (a secret, never printed) and every request waits at
//! most `redis_timeout_ms` on it.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// Where rate-limit state lives (RATE-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStoreKind {
    /// In this process: one instance.
    Memory,
    /// In Redis: every instance shares one budget per client.
    Redis,
}

/// `requests` per `period_seconds` (bursts up to `requests`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    pub requests: u32,
    pub period_seconds: u64,
}

/// Rate limits (RATE-1 .. RATE-4): the general tiers and each sensitive operation's own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub store: RateLimitStoreKind,
    /// `rediss://[:password@]host:port/db` (TLS), or `redis://` on a private network. Secret: it
    /// may carry a password, so it is never printed.
    #[serde(serialize_with = "super::serialize_redacted")]
    pub redis_url: SecretString,
    /// With `rediss://`: a private CA (PEM) the server's certificate must chain to; empty trusts
    /// the system's roots.
    #[serde(default)]
    pub redis_ca_cert: PathBuf,
    /// Every key this service writes starts with it (services sharing a Redis must differ).
    pub redis_key_prefix: String,
    /// Bound on one Redis call, connecting included.
    pub redis_timeout_ms: u64,
    /// In-process store: keys kept per tier. Newcomers beyond it share one bucket, so a flood
    /// of addresses cannot exhaust memory.
    pub max_keys_per_tier: usize,
    /// Per client address, for requests without a valid credential.
    pub anonymous: QuotaSettings,
    /// Per principal, from any address.
    pub authenticated: QuotaSettings,
    /// `POST /v1/auth/login`, per client address.
    pub login: QuotaSettings,
    /// `POST /v1/auth/login`, per account named in the body, from any address.
    pub login_account: QuotaSettings,
    /// `POST /v1/auth/password-reset`, per client address.
    pub password_reset: QuotaSettings,
    /// `POST /v1/auth/password-reset`, per account named in the body.
    pub password_reset_account: QuotaSettings,
    /// `POST /v1/auth/password-reset/confirm`, per client address.
    pub password_reset_confirm: QuotaSettings,
    /// `POST /oauth/token`, per client address.
    pub token: QuotaSettings,
    /// Creating and rotating API keys, per principal.
    pub api_key_management: QuotaSettings,
    /// `POST /v1/payments`, per principal.
    pub payment: QuotaSettings,
}

impl RateLimitSettings {
    /// The redis URL (secret: do not log).
    pub fn redis_url(&self) -> &str {
        self.redis_url.expose_secret()
    }

    /// Every quota with its key, for validation.
    pub fn quotas(&self) -> [(&'static str, QuotaSettings); 10] {
        [
            ("anonymous", self.anonymous),
            ("authenticated", self.authenticated),
            ("login", self.login),
            ("login_account", self.login_account),
            ("password_reset", self.password_reset),
            ("password_reset_account", self.password_reset_account),
            ("password_reset_confirm", self.password_reset_confirm),
            ("token", self.token),
            ("api_key_management", self.api_key_management),
            ("payment", self.payment),
        ]
    }
}

impl RateLimitSettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        for (name, quota) in self.quotas() {
            let per_second_at_most_1000 =
                u64::from(quota.requests) <= quota.period_seconds.saturating_mul(1_000);
            if quota.requests == 0
                || !(1..=86_400).contains(&quota.period_seconds)
                || !per_second_at_most_1000
            {
                refusals.refuse(
                    &format!("rate_limit.{name}"),
                    "needs period_seconds between 1 and 86400 and requests between 1 and 1000 \
                     a second",
                );
            }
        }
        if self.max_keys_per_tier < 1_000 {
            refusals.refuse(
                "rate_limit.max_keys_per_tier",
                "must be at least 1000, or ordinary traffic ends up in the shared overflow bucket",
            );
        }
        if !(10..=5_000).contains(&self.redis_timeout_ms) {
            refusals.refuse(
                "rate_limit.redis_timeout_ms",
                "must be between 10 and 5000: every request waits at most this long on Redis",
            );
        }
        if self.store == RateLimitStoreKind::Redis {
            let url = self.redis_url();
            let tls = url.starts_with("rediss://");
            if !(tls || url.starts_with("redis://") || url.starts_with("redis+unix://")) {
                refusals.refuse(
                    "rate_limit.redis_url",
                    "must start with rediss:// (TLS), redis:// or redis+unix://",
                );
            }
            if !self.redis_ca_cert.as_os_str().is_empty() {
                let certificates = std::fs::read(&self.redis_ca_cert).unwrap_or_default();
                if !tls || !security::rate_limit::redis_store::is_ca_certificate_pem(&certificates)
                {
                    refusals.refuse(
                        "rate_limit.redis_ca_cert",
                        "must name a PEM file of CA certificates, and goes with a rediss:// URL",
                    );
                }
            }
            if self.redis_key_prefix.is_empty() {
                refusals.refuse(
                    "rate_limit.redis_key_prefix",
                    "must not be empty: it keeps this service's keys apart from others'",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{load, refused};

    /// `[rate_limit]` on Redis at `url`, trusting the CA in `ca_cert` (empty: the system's).
    fn redis(url: &str, ca_cert: &str) -> String {
        format!(
            "[rate_limit]\nstore = \"redis\"\nredis_url = \"{url}\"\nredis_ca_cert = \"{ca_cert}\""
        )
    }

    #[test]
    fn redis_over_tls_may_name_its_own_ca_and_only_then() {
        let tls = "rediss://redis.internal:6380";
        load(&redis(tls, ""), Environment::Development, &[]).expect("rediss:// is accepted");
        let dir = tempfile::tempdir().expect("dir");
        let ca = security::transport::dev_ca::ensure(dir.path(), &[]).expect("a CA");
        let ca = ca.ca_cert.display().to_string();
        let empty = tempfile::NamedTempFile::new().expect("a file");
        let empty_ca = redis(tls, &empty.path().display().to_string());
        let error = refused(&empty_ca, Environment::Development);
        assert!(error.names("rate_limit.redis_ca_cert"), "{error}");
        load(&redis(tls, &ca), Environment::Development, &[]).expect("valid");
        let plaintext_with_ca = redis("redis://redis.internal:6380", &ca);
        let error = refused(&plaintext_with_ca, Environment::Development);
        assert!(error.names("rate_limit.redis_ca_cert"), "{error}");
        let missing_ca = redis(tls, "/nonexistent/ca.pem");
        let error = refused(&missing_ca, Environment::Development);
        assert!(error.names("rate_limit.redis_ca_cert"), "{error}");
        let other = redis("http://127.0.0.1:6379", "");
        let error = refused(&other, Environment::Development);
        assert!(error.names("rate_limit.redis_url"), "{error}");
    }

    #[test]
    fn no_tier_can_be_turned_off_or_made_unbounded() {
        for quota in [
            "{ requests = 0, period_seconds = 60 }",
            "{ requests = 10, period_seconds = 0 }",
            "{ requests = 1001, period_seconds = 1 }",
        ] {
            let error = refused(
                &format!("[rate_limit]\nlogin = {quota}"),
                Environment::Development,
            );
            assert!(error.names("rate_limit.login"), "{quota}: {error}");
        }
    }
}
