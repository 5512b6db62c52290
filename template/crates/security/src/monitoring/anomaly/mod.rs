//! Anomaly detection (LOG-4): in-process detectors over the audit events, each raising a
//! `security.anomaly` audit event (counted by the `anomaly_alerts_total` metric, per detector)
//! when traffic leaves its own baseline.
//!
//! Threat: password guessing and credential stuffing spread thin enough to pass each rate limit,
//! a stolen credential used from elsewhere, a compromised account or key doing what its owner
//! never does. Every request looks legitimate on its own; only the pattern shows.
//!
//! Control: [`AnomalyDetector`] observes every audit event of the service and runs three
//! detectors, each named in the event's `policy`, its finding in the `reason`:
//! - `auth_failures`: refused credentials, and refusals by the authentication rate-limit tiers,
//!   beyond fixed limits per client address (IPv6 per /64: `auth_failure_spike_ip`) and per
//!   account (`auth_failure_spike_account`), in one window (a burst) or over the last hour (a
//!   slow, steady attack), and far above their baseline over the whole service
//!   (`auth_failure_spike_global`);
//! - `geography`, with a GeoIP database ([`super::geoip`]): a principal seen from a country new
//!   to it once it has a history (`new_country`), or from two places farther apart than
//!   `max_travel_speed_kmh` allows in the time between (`impossible_travel`);
//! - `usage`: a principal's request rate far above its own (`request_rate`), or a burst of
//!   requests to operations that make under 1% of its history (`endpoint_mix`).
//!
//! Thresholds: failures are never normal for one address or account, so nothing is learned
//! there: a key alerts once a window (`window`, a minute by default) holds `per_window` of them,
//! or the last hour `per_hour` (estimated from this hour's and the previous hour's counts), so a
//! guess a minute, under every per-minute limit, is caught within the hour. Elsewhere (the whole
//! service's failures, a principal's requests) a key's baseline is the exponentially weighted
//! average of its past windows in which it was active, and a window alerts once it reaches
//! `max(min_count, baseline_multiplier x baseline)`; a window that alerted is not learned, so a
//! lasting attack never becomes the norm. A key alerts at most once per `cooldown` for each
//! finding. Every map is bounded (`max_tracked_keys`; the least recently seen key makes room) and
//! idle keys are forgotten, so a flood of addresses or principals costs bounded memory.
//!
//! Time is the events' own ([`AuditRecord::at`](crate::logging::audit::AuditRecord::at)): the
//! detectors never read a clock, so tests replay synthetic days in milliseconds. Their clock
//! follows the latest event, and a record up to [`CLOCK_TOLERANCE`] older (concurrent requests)
//! counts at that time; an older one means the wall clock stepped back, and the detectors' clock
//! follows it rather than freezing in the future (which would pile every later event into one
//! window and hold every cool-down).
//!
//! On the request path, `AnomalyDetector::observe` only filters and hands the record to a
//! bounded channel; one background task ([`DetectorTask`]) runs the detectors. When the task
//! falls behind, records are dropped and counted ([`AnomalyDetector::dropped`]), never waited
//! for.
//!
//! Default: on; geography is off until a database is configured. An anomaly event names the
//! principal (a user, client or key id, never an email) or the client address it is about and
//! the route of the event that tipped it; its outcome is the traffic's: `denied` for refused
//! credentials, the request's own for geography and usage (`allowed`: the suspicious requests
//! were served). Detection only reports: blocking is the rate limits' job, and the operator's.
//!
//! Defaults (`[anomaly]`, validated at start-up): one-minute windows; 10 failures a window or 30
//! an hour per address, 5 or 20 per account; impossible travel above 1,000 km/h between places at
//! least 500 km apart; one alert per key and finding per 15 minutes; at most 10,000 tracked keys,
//! 32 operations and 16 countries per principal; failure counters forgotten after a day idle,
//! profiles after 30 days. Without a GeoIP database (`anomaly.geoip_database`, read with
//! `maxminddb`) the geography detector is off and start-up says so.
//!
//! The files, in reading order: `config` (the thresholds), `signal` (which records are read),
//! `window` (the counting windows, baselines and cool-downs), `bounded_map` (per-key state in a
//! fixed capacity), the three detectors `auth_failures`, `geography` and `usage`, `detectors`
//! (their shared clock and entry point), `finding` (what they report) and `task` (the observer
//! and its background task).

mod auth_failures;
mod bounded_map;
mod config;
mod detectors;
mod finding;
mod geography;
mod signal;
#[cfg(test)]
mod synthetic_traffic;
mod task;
mod usage;
mod window;

pub use config::{AnomalyConfig, FailureThreshold, SpikeThreshold};
pub use detectors::{CLOCK_TOLERANCE, Detectors};
pub use finding::{ANOMALY_EVENT, Anomaly, AnomalyKind};
pub use task::{AnomalyDetector, DetectorTask};
