//! [`Detectors`]: the three detectors (`auth_failures`, `geography`, `usage`) behind one entry
//! point, fed one audit record at a time, with the clock they share. The clock follows the
//! events' own time (see [`Detectors::advance`]) and, once per window, idle keys are forgotten.
//! It runs synchronously: the detectors' task keeps it off the request path.

use std::time::{Duration, UNIX_EPOCH};

use super::auth_failures::AuthFailureSpikes;
use super::config::AnomalyConfig;
use super::finding::{Anomaly, Seen};
use super::geography::UnusualGeography;
use super::signal::{Signal, signal};
use super::usage::UnusualUsage;
use super::window::Tick;
use crate::logging::audit::AuditRecord;
use crate::monitoring::geoip::GeoIp;

/// A record this much older than the latest counts at the latest time (records of concurrent
/// requests arrive slightly out of order); an older one is a backward clock step, followed.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(10);

/// Failure counters of an address or account idle this long are forgotten (at least a cool-down).
const FAILURE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Principals' profiles (rate, operations, countries) idle this long are forgotten.
const PROFILE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The detectors and their state, fed one audit record at a time.
#[derive(Debug)]
pub struct Detectors {
    config: AnomalyConfig,
    window_seconds: u64,
    /// The latest event time seen, the detectors' clock: a record up to [`CLOCK_TOLERANCE`]
    /// older counts at this time; an older one steps it back (see [`Detectors::advance`]).
    now: u64,
    window: u64,
    auth_failures: AuthFailureSpikes,
    /// Off without a GeoIP database.
    geography: Option<UnusualGeography>,
    usage: UnusualUsage,
}

impl Detectors {
    pub fn new(config: AnomalyConfig, geoip: Option<GeoIp>) -> Self {
        let capacity = config.max_tracked_keys;
        Self {
            window_seconds: config.window.as_secs().max(1),
            now: 0,
            window: 0,
            auth_failures: AuthFailureSpikes::new(capacity),
            geography: geoip.map(|geoip| UnusualGeography::new(geoip, capacity)),
            usage: UnusualUsage::new(capacity),
            config,
        }
    }

    /// Whether `record` is input to any detector (the rest is not even queued).
    pub fn reads(record: &AuditRecord) -> bool {
        signal(record).is_some()
    }

    /// Whether the geography detector runs (a GeoIP database was given).
    pub fn has_geography(&self) -> bool {
        self.geography.is_some()
    }

    /// Feeds one record; returns what it tipped over.
    pub fn inspect(&mut self, record: &AuditRecord) -> Vec<Anomaly> {
        let mut found = Vec::new();
        let Some(signal) = signal(record) else {
            return found;
        };
        let tick = self.advance(record);
        let route = record.route.as_deref();
        match signal {
            Signal::AuthFailure { client_ip, account } => self.auth_failures.inspect(
                &self.config,
                tick,
                client_ip,
                account,
                route,
                &mut found,
            ),
            Signal::Principal {
                principal,
                client_ip,
                operation,
            } => {
                let seen = Seen {
                    principal,
                    client_ip,
                    outcome: record.outcome,
                    route,
                };
                if let Some(geography) = &mut self.geography {
                    geography.inspect(&self.config, tick, &seen, &mut found);
                }
                if let Some(operation) = operation {
                    self.usage
                        .inspect(&self.config, tick, &seen, operation, &mut found);
                }
            }
        }
        found
    }

    /// Moves the detectors' clock to `record`'s time. Records of concurrent requests arrive
    /// slightly out of order: one at most [`CLOCK_TOLERANCE`] older than the clock counts at the
    /// clock's time. An older one means the wall clock stepped back (an NTP correction, a VM
    /// restored): the clock follows it, as it follows a step forward. Keeping the latest time
    /// instead would freeze the detectors in the future until the wall clock caught up, every
    /// event of that span in one window (false spikes) and every cool-down held (no alerts).
    fn advance(&mut self, record: &AuditRecord) -> Tick {
        let at = record
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if at >= self.now || self.now - at > CLOCK_TOLERANCE.as_secs() {
            self.now = at;
        }
        let window = self.now / self.window_seconds;
        if window != self.window {
            self.window = window;
            self.forget_idle();
        }
        Tick {
            now: self.now,
            window,
        }
    }

    /// Drops the state of keys idle past their retention (run once per window).
    fn forget_idle(&mut self) {
        let retention = |kept: Duration| {
            self.now
                .saturating_sub(kept.max(self.config.cooldown).as_secs())
        };
        let failures = retention(FAILURE_RETENTION);
        let profiles = retention(PROFILE_RETENTION);
        self.auth_failures.per_ip.forget_seen_before(failures);
        self.auth_failures.per_account.forget_seen_before(failures);
        self.usage.principals.forget_seen_before(profiles);
        if let Some(geography) = &mut self.geography {
            geography.principals.forget_seen_before(profiles);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;
    use crate::logging::audit::AuditRecord;
    use crate::monitoring::anomaly::finding::AnomalyKind;
    use crate::monitoring::anomaly::synthetic_traffic::{
        DAY, DAY_ZERO, HOUR, MINUTE, PARIS, USERS, after_a_normal_day, at_host, detectors, feed,
        kinds, login, login_failure, normal_day, request, time, user,
    };
    use crate::monitoring::geoip::test_database;

    #[test]
    fn normal_days_raise_no_anomaly() {
        let mut detectors = detectors();
        for day in 0..3 {
            let records = normal_day(day);
            assert!(records.len() > 50_000, "a busy day: {}", records.len());
            let anomalies = feed(&mut detectors, &records);
            assert_eq!(anomalies, [], "day {day} was normal");
        }
    }

    #[test]
    fn a_clock_stepped_back_raises_no_false_spike_and_does_not_freeze() {
        let mut detectors = after_a_normal_day();
        // A normal second day whose wall clock steps back two hours at noon, and a straggler
        // from three hours earlier arriving at 09:00. Frozen at noon, the detectors would count
        // two hours of requests in one window: a rate spike for every busy principal.
        let noon = time(DAY_ZERO + DAY + 12 * HOUR);
        let mut records: Vec<AuditRecord> = normal_day(1)
            .into_iter()
            .map(|mut record| {
                if record.at >= noon {
                    record.at -= Duration::from_secs(2 * HOUR);
                }
                record
            })
            .collect();
        let nine = time(DAY_ZERO + DAY + 9 * HOUR);
        let straggler_at = records
            .iter()
            .position(|record| record.at >= nine)
            .expect("a record after 09:00");
        let regular = user(5);
        let straggler = login(DAY_ZERO + DAY + 6 * HOUR, &regular.id, regular.ip());
        records.insert(straggler_at, straggler);
        let last = records.last().map(|record| record.at).expect("records");
        assert_eq!(feed(&mut detectors, &records), []);
        assert_eq!(
            time(detectors.now),
            last,
            "the clock followed the step back"
        );

        // A record a few seconds older than the clock counts at the clock's time.
        let now = detectors.now;
        detectors.inspect(&login(now - 5, &regular.id, regular.ip()));
        assert_eq!(detectors.now, now);

        // A burst, the clock steps back an hour, the same burst: alerted again, not held by a
        // cool-down (nor counted in a window) from the clock's future.
        let attacker = at_host(PARIS, 250);
        let burst = |from: u64| -> Vec<AuditRecord> {
            (0..20)
                .map(|guess| login_failure(from + guess, attacker, None))
                .collect()
        };
        let first = feed(&mut detectors, &burst(now + HOUR));
        assert_eq!(kinds(&first), [AnomalyKind::AuthFailureSpikeIp]);
        let after_the_step = feed(&mut detectors, &burst(now + 5 * MINUTE));
        assert_eq!(kinds(&after_the_step), [AnomalyKind::AuthFailureSpikeIp]);
    }

    #[test]
    fn state_stays_bounded_under_a_flood_of_distinct_keys() {
        let config = AnomalyConfig {
            max_tracked_keys: 1_000,
            ..AnomalyConfig::default()
        };
        let mut detectors = Detectors::new(config, Some(test_database()));
        for key in 0..50_000u64 {
            let at = DAY_ZERO + key / 100;
            let ip = IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_u128 << 96 | u128::from(key) << 64,
            ));
            let principal = format!("flood-{key}");
            detectors.inspect(&login_failure(at, ip, Some(&principal)));
            detectors.inspect(&request(at, &principal, ip, "GET /v1/notes"));
        }
        assert!(detectors.auth_failures.per_ip.len() <= 1_000);
        assert!(detectors.auth_failures.per_account.len() <= 1_000);
        assert!(detectors.usage.principals.len() <= 1_000);
        let geography = detectors.geography.as_ref().expect("geography runs");
        assert!(geography.principals.len() <= 1_000);
        assert!(
            geography.principals.len() > 0,
            "the flood was located (2001:db8::/32)"
        );
    }

    #[test]
    fn idle_state_is_forgotten() {
        let mut detectors = after_a_normal_day();
        assert!(detectors.auth_failures.per_ip.len() > 0);
        assert!(detectors.usage.principals.len() >= USERS);
        // A month and a day later, one event: everything before it has aged out.
        let later = DAY_ZERO + 32 * DAY;
        detectors.inspect(&login_failure(later, at_host(PARIS, 1), None));
        assert_eq!(detectors.auth_failures.per_ip.len(), 1);
        assert_eq!(detectors.auth_failures.per_account.len(), 0);
        assert_eq!(detectors.usage.principals.len(), 0);
        let geography = detectors.geography.as_ref().expect("geography runs");
        assert_eq!(geography.principals.len(), 0);
    }
}
