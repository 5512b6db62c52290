//! `[anomaly]`: the thresholds of the detectors over the audit events (LOG-4), validated so that
//! none is zero (a detector that alerts on every event, or never) and a configured GeoIP database
//! exists. Without a GeoIP database the geography detector is off, and start-up says so.

use std::path::PathBuf;
use std::time::Duration;

use security::monitoring::anomaly::{AnomalyConfig, FailureThreshold, SpikeThreshold};
use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// Anomaly detection over the audit events (LOG-4): failed-authentication spikes, unusual
/// geography and unusual usage, each finding a `security.anomaly` audit event. An address or an
/// account alerts at fixed limits per window and per hour (nothing learned); elsewhere a window
/// alerts at `max(min_count, baseline_multiplier x the key's own baseline)`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySettings {
    /// The counting window of every rate (1 to 3600 seconds).
    pub window_seconds: u64,
    /// An address, account or principal alerts at most once per cool-down for each finding.
    pub cooldown_seconds: u64,
    /// Addresses, accounts and principals remembered per detector (at least 100); the least
    /// recently seen makes room, so a flood of keys costs bounded memory.
    pub max_tracked_keys: usize,
    /// Refused credentials and authentication rate-limit refusals per client address (IPv6 per
    /// /64), per window and per hour.
    pub auth_failures_per_ip: FailureThreshold,
    /// Refused passwords per account, from any address, per window and per hour.
    pub auth_failures_per_account: FailureThreshold,
    /// Refused credentials and authentication rate-limit refusals over the whole service per
    /// window, against its baseline.
    pub auth_failures_global: SpikeThreshold,
    /// Requests per principal and window.
    pub requests_per_principal: SpikeThreshold,
    /// Active windows of a principal learned before its request rate is judged.
    pub usage_history_windows: u32,
    /// Requests in one window to operations under 1% of the principal's history.
    pub unfamiliar_operation_requests: u32,
    /// Events of a principal learned before its operations and countries are judged.
    pub min_history_requests: u32,
    /// A MaxMind DB (GeoLite2 or GeoIP2, City or Country); empty turns geography off.
    pub geoip_database: PathBuf,
    /// Faster than this between two places is impossible travel.
    pub max_travel_speed_kmh: f64,
    /// Places closer than this are never impossible travel (GeoIP is approximate).
    pub min_travel_distance_km: f64,
}

impl AnomalySettings {
    /// The detectors' thresholds.
    pub fn detector_config(&self) -> AnomalyConfig {
        AnomalyConfig {
            window: Duration::from_secs(self.window_seconds),
            cooldown: Duration::from_secs(self.cooldown_seconds),
            max_tracked_keys: self.max_tracked_keys,
            auth_failures_per_ip: self.auth_failures_per_ip,
            auth_failures_per_account: self.auth_failures_per_account,
            auth_failures_global: self.auth_failures_global,
            requests_per_principal: self.requests_per_principal,
            usage_history_windows: self.usage_history_windows,
            unfamiliar_operation_requests: self.unfamiliar_operation_requests,
            min_history_requests: self.min_history_requests,
            max_travel_speed_kmh: self.max_travel_speed_kmh,
            min_travel_distance_km: self.min_travel_distance_km,
        }
    }
}

impl AnomalySettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        if !(1..=3_600).contains(&self.window_seconds) {
            refusals.refuse("anomaly.window_seconds", "must be between 1 and 3600");
        }
        if self.cooldown_seconds == 0 {
            refusals.refuse(
                "anomaly.cooldown_seconds",
                "must be at least 1, or a lasting anomaly alerts on every event",
            );
        }
        if self.max_tracked_keys < 100 {
            refusals.refuse("anomaly.max_tracked_keys", "must be at least 100");
        }
        for (name, limit) in [
            ("auth_failures_per_ip", self.auth_failures_per_ip),
            ("auth_failures_per_account", self.auth_failures_per_account),
        ] {
            if limit.per_window == 0 || limit.per_hour == 0 {
                refusals.refuse(
                    &format!("anomaly.{name}"),
                    "needs per_window and per_hour of at least 1",
                );
            }
        }
        for (name, threshold) in [
            ("auth_failures_global", self.auth_failures_global),
            ("requests_per_principal", self.requests_per_principal),
        ] {
            let multiplier = threshold.baseline_multiplier;
            if threshold.min_count == 0 || !(multiplier.is_finite() && multiplier >= 1.0) {
                refusals.refuse(
                    &format!("anomaly.{name}"),
                    "needs min_count of at least 1 and a baseline_multiplier of at least 1",
                );
            }
        }
        for (name, value) in [
            ("usage_history_windows", self.usage_history_windows),
            (
                "unfamiliar_operation_requests",
                self.unfamiliar_operation_requests,
            ),
            ("min_history_requests", self.min_history_requests),
        ] {
            if value == 0 {
                refusals.refuse(&format!("anomaly.{name}"), "must be at least 1");
            }
        }
        if !(self.max_travel_speed_kmh.is_finite() && self.max_travel_speed_kmh > 0.0) {
            refusals.refuse("anomaly.max_travel_speed_kmh", "must be positive");
        }
        if !(self.min_travel_distance_km.is_finite() && self.min_travel_distance_km >= 0.0) {
            refusals.refuse("anomaly.min_travel_distance_km", "must be zero or positive");
        }
        if !self.geoip_database.as_os_str().is_empty() && !self.geoip_database.is_file() {
            refusals.refuse(
                "anomaly.geoip_database",
                "names no file; leave it empty to run without the geography detector",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::refused;

    #[test]
    fn anomaly_thresholds_must_be_positive_and_a_geoip_database_must_exist() {
        for (bad, key) in [
            ("window_seconds = 0", "anomaly.window_seconds"),
            ("cooldown_seconds = 0", "anomaly.cooldown_seconds"),
            (
                "auth_failures_per_ip = { per_window = 0, per_hour = 30 }",
                "anomaly.auth_failures_per_ip",
            ),
            (
                "auth_failures_per_account = { per_window = 5, per_hour = 0 }",
                "anomaly.auth_failures_per_account",
            ),
            (
                "requests_per_principal = { min_count = 60, baseline_multiplier = 0.5 }",
                "anomaly.requests_per_principal",
            ),
            ("min_history_requests = 0", "anomaly.min_history_requests"),
            (
                "max_travel_speed_kmh = -1.0",
                "anomaly.max_travel_speed_kmh",
            ),
            (
                "geoip_database = \"/nonexistent/GeoLite2-City.mmdb\"",
                "anomaly.geoip_database",
            ),
        ] {
            let error = refused(&format!("[anomaly]\n{bad}"), Environment::Development);
            assert!(error.names(key), "{bad}: {error}");
        }
    }
}
