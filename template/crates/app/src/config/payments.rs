//! `[payments]`: the demo `POST /v1/payments` (RATE-6: idempotency keys on payment-like writes).
//! A retry with the same `Idempotency-Key` within the TTL replays the first answer instead of
//! charging twice; the TTL is bounded to a minute to a week, so retries are covered and the
//! table of remembered keys cannot grow without bound.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// The demo `POST /v1/payments` (RATE-6: idempotency keys on payment-like writes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    /// How long an `Idempotency-Key` is remembered (60 to 604800 seconds): a retry within it
    /// replays the first answer; after it the same key makes a new payment.
    pub idempotency_key_ttl_seconds: u64,
}

impl PaymentSettings {
    pub fn idempotency_key_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_key_ttl_seconds)
    }
}

/// The shortest and longest time an idempotency key may be remembered: long enough for a
/// client's retries, short enough that the table does not grow without bound.
pub const IDEMPOTENCY_KEY_TTL_SECONDS: std::ops::RangeInclusive<u64> = 60..=604_800;

impl PaymentSettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        if !IDEMPOTENCY_KEY_TTL_SECONDS.contains(&self.idempotency_key_ttl_seconds) {
            refusals.refuse(
                "payments.idempotency_key_ttl_seconds",
                "must be between 60 and 604800: long enough for a client's retries, at most a \
                 week",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{load, refused};

    #[test]
    fn an_idempotency_key_ttl_outside_a_minute_to_a_week_is_refused() {
        for ttl in ["59", "604801"] {
            let bad = format!("[payments]\nidempotency_key_ttl_seconds = {ttl}");
            let error = refused(&bad, Environment::Development);
            assert!(
                error.names("payments.idempotency_key_ttl_seconds"),
                "{ttl}: {error}"
            );
        }
        let week = "[payments]\nidempotency_key_ttl_seconds = 604800";
        load(week, Environment::Development, &[]).expect("a week is the longest allowed");
    }
}
