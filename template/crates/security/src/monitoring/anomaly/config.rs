//! The detectors' thresholds: [`AnomalyConfig`], its documented defaults (the reasoning for each
//! is on its line), and the two shapes of threshold: fixed limits on failures
//! ([`FailureThreshold`]) and a multiple of a learned baseline ([`SpikeThreshold`]). The app reads
//! them from its `[anomaly]` section and validates them at start-up.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A window alerts once its count reaches `max(min_count, baseline_multiplier x baseline)`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeThreshold {
    /// The floor: a quiet key alerts from here on.
    pub min_count: u32,
    /// How far above its own baseline a busy key must go.
    pub baseline_multiplier: f64,
}

impl SpikeThreshold {
    pub(super) fn at(self, baseline: f64) -> f64 {
        f64::from(self.min_count).max(self.baseline_multiplier * baseline)
    }
}

/// Fixed limits on one address's or account's failed attempts, never learned: failures are no
/// one key's normal, and a learned baseline would make a steady attack the norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailureThreshold {
    /// Failures in one window: a burst.
    pub per_window: u32,
    /// Failures in the last hour: a slow, steady attack under every per-window limit.
    pub per_hour: u32,
}

/// The detectors' thresholds; [`Default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyConfig {
    /// The counting window.
    pub window: Duration,
    /// A key alerts at most once per cool-down for each finding.
    pub cooldown: Duration,
    /// Keys remembered per map (addresses, accounts, principals).
    pub max_tracked_keys: usize,
    /// Refused credentials and authentication rate-limit refusals per client address.
    pub auth_failures_per_ip: FailureThreshold,
    /// Refused passwords per account, from any address.
    pub auth_failures_per_account: FailureThreshold,
    /// Refused credentials and authentication rate-limit refusals over the whole service per
    /// window, against its learned baseline (some failures are always about).
    pub auth_failures_global: SpikeThreshold,
    /// Requests per principal and window.
    pub requests_per_principal: SpikeThreshold,
    /// Active windows of a principal learned before its rate is judged.
    pub usage_history_windows: u32,
    /// Requests in one window to operations unfamiliar to the principal.
    pub unfamiliar_operation_requests: u32,
    /// Events of a principal learned before its operations and countries are judged.
    pub min_history_requests: u32,
    /// Faster than this between two places is impossible travel.
    pub max_travel_speed_kmh: f64,
    /// Closer than this is never impossible travel (GeoIP places are approximate).
    pub min_travel_distance_km: f64,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(900),
            max_tracked_keys: 10_000,
            // The default login tier lets 10 attempts a minute through per address; its
            // refusals count too. A guess a minute alerts within half an hour.
            auth_failures_per_ip: FailureThreshold {
                per_window: 10,
                per_hour: 30,
            },
            // The default per-account login tier lets 5 failures through per 5 minutes (60 an
            // hour); someone who forgot their password gives up or resets it well before 20.
            auth_failures_per_account: FailureThreshold {
                per_window: 5,
                per_hour: 20,
            },
            auth_failures_global: SpikeThreshold {
                min_count: 50,
                baseline_multiplier: 10.0,
            },
            requests_per_principal: SpikeThreshold {
                min_count: 60,
                baseline_multiplier: 10.0,
            },
            usage_history_windows: 10,
            unfamiliar_operation_requests: 10,
            min_history_requests: 100,
            max_travel_speed_kmh: 1000.0,
            min_travel_distance_km: 500.0,
        }
    }
}
