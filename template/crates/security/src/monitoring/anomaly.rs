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
//! Time is the events' own ([`AuditRecord::at`]): the detectors never read a clock, so tests
//! replay synthetic days in milliseconds. Their clock follows the latest event, and a record up to
//! [`CLOCK_TOLERANCE`] older (concurrent requests) counts at that time; an older one means the
//! wall clock stepped back, and the detectors' clock follows it rather than freezing in the
//! future (which would pile every later event into one window and hold every cool-down).
//!
//! On the request path, [`AnomalyDetector::observe`] only filters and hands the record to a
//! bounded channel; one background task ([`DetectorTask`]) runs the detectors. When the task
//! falls behind, records are dropped and counted ([`AnomalyDetector::dropped`]), never waited
//! for.
//!
//! Default: on; geography is off until a database is configured. An anomaly event names the
//! principal (a user, client or key id, never an email) or the client address it is about and
//! the route of the event that tipped it; its outcome is the traffic's: `denied` for refused
//! credentials, the request's own for geography and usage (`allowed`: the suspicious requests
//! were served). Detection only reports: blocking is the rate limits' job, and the operator's.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::logging::audit::{AuditEvent, AuditHub, AuditObserver, AuditRecord, Outcome};
use crate::monitoring::geoip::{Coordinates, CountryCode, GeoIp};

/// The name of the audit event every detector raises.
pub const ANOMALY_EVENT: &str = "security.anomaly";

/// A record this much older than the latest counts at the latest time (records of concurrent
/// requests arrive slightly out of order); an older one is a backward clock step, followed.
pub const CLOCK_TOLERANCE: Duration = Duration::from_secs(10);

/// The long horizon of the per-address and per-account failure limits.
const FAILURE_HORIZON_SECONDS: u64 = 3600;

/// Rate-limit tiers guarding a credential check: their refusals (`ratelimit.exceeded`) are
/// failed attempts the check never saw (a locked-out account's later guesses, among others).
const AUTHENTICATION_TIERS: [&str; 4] =
    ["login", "login_account", "token", "password_reset_confirm"];

/// Records waiting for the detectors; beyond it they are dropped and counted.
const INBOX_CAPACITY: usize = 8192;

/// The weight of the newest window in a baseline (about the last ten active windows count).
const BASELINE_WEIGHT: f64 = 0.1;

/// An operation making less than this share of a principal's history is unfamiliar to it.
const RARE_OPERATION_SHARE: f64 = 0.01;

/// Operations remembered per principal; the least called makes room.
const MAX_OPERATIONS_PER_PRINCIPAL: usize = 32;

/// Countries remembered per principal; the oldest makes room.
const MAX_COUNTRIES_PER_PRINCIPAL: usize = 16;

/// A principal's operation counts are halved at this total, so old habits fade.
const OPERATION_HISTORY_AGING: u32 = 10_000;

/// Failure counters of an address or account idle this long are forgotten (at least a cool-down).
const FAILURE_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Principals' profiles (rate, operations, countries) idle this long are forgotten.
const PROFILE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

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
    fn at(self, baseline: f64) -> f64 {
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

/// What a detector found: the event's reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    AuthFailureSpikeIp,
    AuthFailureSpikeAccount,
    AuthFailureSpikeGlobal,
    NewCountry,
    ImpossibleTravel,
    RequestRate,
    EndpointMix,
}

impl AnomalyKind {
    /// The event's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::AuthFailureSpikeIp => "auth_failure_spike_ip",
            Self::AuthFailureSpikeAccount => "auth_failure_spike_account",
            Self::AuthFailureSpikeGlobal => "auth_failure_spike_global",
            Self::NewCountry => "new_country",
            Self::ImpossibleTravel => "impossible_travel",
            Self::RequestRate => "request_rate",
            Self::EndpointMix => "endpoint_mix",
        }
    }

    /// The detector that finds it: the event's `policy` and the metric's label.
    pub fn detector(self) -> &'static str {
        match self {
            Self::AuthFailureSpikeIp
            | Self::AuthFailureSpikeAccount
            | Self::AuthFailureSpikeGlobal => "auth_failures",
            Self::NewCountry | Self::ImpossibleTravel => "geography",
            Self::RequestRate | Self::EndpointMix => "usage",
        }
    }
}

/// One finding, as it becomes a `security.anomaly` audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// The traffic's outcome: `Denied` for refused credentials, else the request's own.
    pub outcome: Outcome,
    /// The account or principal it is about (an id, never an email).
    pub principal: Option<String>,
    /// The client address it is about, or that tipped it.
    pub client_ip: Option<IpAddr>,
    /// The route template of the event that tipped it.
    pub route: Option<String>,
}

impl Anomaly {
    /// Records the `security.anomaly` event: the audit log and every observer of `hub`.
    pub fn record(&self, hub: &AuditHub) {
        let mut event = AuditEvent::detached(hub, ANOMALY_EVENT, self.outcome, self.kind.reason())
            .policy(self.kind.detector());
        if let Some(client_ip) = self.client_ip {
            event = event.client_ip(client_ip);
        }
        if let Some(principal) = &self.principal {
            event = event.subject(principal);
        }
        event.route = self.route.as_deref();
        event.record();
    }
}

/// What one audit record tells the detectors.
enum Signal<'a> {
    /// A credential was presented and refused, or an authentication tier refused the attempt.
    AuthFailure {
        client_ip: Option<IpAddr>,
        /// The account a refused password was for, when it exists.
        account: Option<&'a str>,
    },
    /// A verified principal was seen: at login, at a token grant, or making a request.
    Principal {
        principal: &'a str,
        client_ip: Option<IpAddr>,
        /// The operation, for requests (`GET /v1/notes/{id}`).
        operation: Option<&'a str>,
    },
}

/// The signal in `record`, if any.
fn signal(record: &AuditRecord) -> Option<Signal<'_>> {
    let principal = record.principal.as_deref();
    match record.event {
        // A detector's own findings are never its input: no feedback loop through the hub.
        ANOMALY_EVENT => None,
        // No credential at all is not an authentication attempt.
        "authn.missing" => None,
        event if event.starts_with("authn.") && record.outcome == Outcome::Denied => {
            // The service's own outage is not an attack.
            (record.reason != "verifier_unavailable").then_some(Signal::AuthFailure {
                client_ip: record.client_ip,
                account: principal,
            })
        }
        // A guess the rate limits refused is still a guess. No account: the refusal names
        // the key's kind only.
        "ratelimit.exceeded"
            if record
                .policy
                .as_deref()
                .is_some_and(|tier| AUTHENTICATION_TIERS.contains(&tier)) =>
        {
            Some(Signal::AuthFailure {
                client_ip: record.client_ip,
                account: None,
            })
        }
        // Allowed or not, the credential behind a scope decision was verified.
        "authz.scope" => Some(Signal::Principal {
            principal: principal?,
            client_ip: record.client_ip,
            operation: record
                .policy
                .as_deref()
                .and_then(|policy| policy.split_once(" requires "))
                .map(|(operation, _)| operation)
                .or(record.route.as_deref()),
        }),
        "authn.password" | "authn.client" if record.outcome == Outcome::Allowed => {
            Some(Signal::Principal {
                principal: principal?,
                client_ip: record.client_ip,
                operation: None,
            })
        }
        _ => None,
    }
}

/// The detectors' clock, read from the events: seconds since 1970 and the window index.
#[derive(Debug, Clone, Copy)]
struct Tick {
    now: u64,
    window: u64,
}

/// When a key last alerted for one finding; it alerts again only after the cool-down.
#[derive(Debug, Clone, Copy, Default)]
struct Cooldown(Option<u64>);

impl Cooldown {
    /// A clock stepped back before the last alert ends the cool-down: one alert too many
    /// rather than none until the clock catches up.
    fn try_alert(&mut self, now: u64, cooldown: u64) -> bool {
        match self.0 {
            Some(last) if (last..last.saturating_add(cooldown)).contains(&now) => false,
            _ => {
                self.0 = Some(now);
                true
            }
        }
    }
}

/// One key's count in the current window and its baseline.
#[derive(Debug, Clone, Default)]
struct WindowCounter {
    window: u64,
    count: u32,
    /// Exponentially weighted average of the counts of past windows in which the key was
    /// active: a quiet night does not erase a principal's daytime habits.
    baseline: f64,
    learned_windows: u32,
    /// The current window reached its threshold: it is not learned.
    spiked: bool,
}

impl WindowCounter {
    /// Counts one event; true when it makes the window spike. Until `min_learned` windows are
    /// learned, every window is learned and none is judged.
    fn count(&mut self, window: u64, threshold: SpikeThreshold, min_learned: u32) -> bool {
        // Another window, later or (after a clock step back) earlier: never counted on.
        if window != self.window {
            self.close_window();
            self.window = window;
        }
        self.count = self.count.saturating_add(1);
        let judged = self.learned_windows >= min_learned;
        if judged && !self.spiked && f64::from(self.count) >= threshold.at(self.baseline) {
            self.spiked = true;
            return true;
        }
        false
    }

    fn close_window(&mut self) {
        if self.count > 0 && !self.spiked {
            let count = f64::from(self.count);
            self.baseline = if self.learned_windows == 0 {
                count
            } else {
                self.baseline + BASELINE_WEIGHT * (count - self.baseline)
            };
            self.learned_windows = self.learned_windows.saturating_add(1);
        }
        self.count = 0;
        self.spiked = false;
    }
}

/// A counter with its cool-down.
#[derive(Debug, Clone, Default)]
struct SpikeState {
    counter: WindowCounter,
    cooldown: Cooldown,
}

impl SpikeState {
    /// Counts one event; true when the key alerts.
    fn count(
        &mut self,
        tick: Tick,
        threshold: SpikeThreshold,
        min_learned: u32,
        cooldown: u64,
    ) -> bool {
        self.counter.count(tick.window, threshold, min_learned)
            && self.cooldown.try_alert(tick.now, cooldown)
    }
}

/// One address's or account's failures, against fixed limits: this window's, and this and the
/// previous hour's (the last hour is the previous one's share still in it plus this one's: the
/// usual sliding-window estimate, two counters instead of sixty).
#[derive(Debug, Clone, Default)]
struct FailureCounter {
    window: u64,
    in_window: u32,
    hour: u64,
    this_hour: u32,
    previous_hour: u32,
    cooldown: Cooldown,
}

impl FailureCounter {
    /// Counts one failure; true when the key alerts.
    fn count(&mut self, tick: Tick, threshold: FailureThreshold, cooldown: u64) -> bool {
        if tick.window != self.window {
            self.window = tick.window;
            self.in_window = 0;
        }
        let hour = tick.now / FAILURE_HORIZON_SECONDS;
        match hour.checked_sub(self.hour) {
            Some(0) => {}
            Some(1) => self.previous_hour = std::mem::take(&mut self.this_hour),
            Some(_) => (self.previous_hour, self.this_hour) = (0, 0),
            // The clock stepped back: the counts carry on.
            None => {}
        }
        self.hour = hour;
        self.in_window = self.in_window.saturating_add(1);
        self.this_hour = self.this_hour.saturating_add(1);
        let into_hour =
            (tick.now % FAILURE_HORIZON_SECONDS) as f64 / FAILURE_HORIZON_SECONDS as f64;
        let last_hour =
            f64::from(self.previous_hour) * (1.0 - into_hour) + f64::from(self.this_hour);
        (self.in_window >= threshold.per_window || last_hour >= f64::from(threshold.per_hour))
            && self.cooldown.try_alert(tick.now, cooldown)
    }
}

/// Per-key state with a fixed capacity: a new key beyond it evicts the least recently seen
/// one, and keys idle past a retention are forgotten.
#[derive(Debug)]
struct BoundedMap<K, V> {
    entries: HashMap<K, Slot<V>>,
    /// Keys by when they were last seen (a sequence number: event time may step back).
    recency: BTreeMap<u64, K>,
    next_sequence: u64,
    capacity: usize,
}

#[derive(Debug)]
struct Slot<V> {
    value: V,
    sequence: u64,
    last_seen: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            next_sequence: 0,
            capacity: capacity.max(1),
        }
    }

    /// The state of `key`, made by `new` if absent; marks it the most recently seen.
    fn touch(&mut self, key: K, now: u64, new: impl FnOnce() -> V) -> &mut V {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if self.entries.len() >= self.capacity
            && !self.entries.contains_key(&key)
            && let Some((_, oldest)) = self.recency.pop_first()
        {
            self.entries.remove(&oldest);
        }
        match self.entries.entry(key) {
            Entry::Occupied(occupied) => {
                let slot = occupied.into_mut();
                if let Some(key) = self.recency.remove(&slot.sequence) {
                    self.recency.insert(sequence, key);
                }
                slot.sequence = sequence;
                slot.last_seen = now;
                &mut slot.value
            }
            Entry::Vacant(vacant) => {
                self.recency.insert(sequence, vacant.key().clone());
                &mut vacant
                    .insert(Slot {
                        value: new(),
                        sequence,
                        last_seen: now,
                    })
                    .value
            }
        }
    }

    /// Forgets the keys last seen before `cutoff`.
    fn forget_seen_before(&mut self, cutoff: u64) {
        while let Some((_, key)) = self.recency.first_key_value() {
            match self.entries.get(key) {
                Some(slot) if slot.last_seen >= cutoff => break,
                _ => {
                    if let Some((_, key)) = self.recency.pop_first() {
                        self.entries.remove(&key);
                    }
                }
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// An IPv4 client by its address, an IPv6 client by its /64 (one subscriber's allocation).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Refused credentials per address and per account (fixed limits) and overall (baseline).
#[derive(Debug)]
struct AuthFailureSpikes {
    per_ip: BoundedMap<IpAddr, FailureCounter>,
    per_account: BoundedMap<String, FailureCounter>,
    global: SpikeState,
}

impl AuthFailureSpikes {
    fn inspect(
        &mut self,
        config: &AnomalyConfig,
        tick: Tick,
        client_ip: Option<IpAddr>,
        account: Option<&str>,
        route: Option<&str>,
        found: &mut Vec<Anomaly>,
    ) {
        let cooldown = config.cooldown.as_secs();
        let anomaly = |kind, principal: Option<&str>, client_ip| Anomaly {
            kind,
            outcome: Outcome::Denied,
            principal: principal.map(str::to_owned),
            client_ip,
            route: route.map(str::to_owned),
        };
        if let Some(ip) = client_ip {
            let state = self
                .per_ip
                .touch(address_key(ip), tick.now, FailureCounter::default);
            if state.count(tick, config.auth_failures_per_ip, cooldown) {
                found.push(anomaly(AnomalyKind::AuthFailureSpikeIp, None, Some(ip)));
            }
        }
        if let Some(account) = account {
            let state =
                self.per_account
                    .touch(account.to_owned(), tick.now, FailureCounter::default);
            if state.count(tick, config.auth_failures_per_account, cooldown) {
                found.push(anomaly(
                    AnomalyKind::AuthFailureSpikeAccount,
                    Some(account),
                    None,
                ));
            }
        }
        if self
            .global
            .count(tick, config.auth_failures_global, 0, cooldown)
        {
            found.push(anomaly(AnomalyKind::AuthFailureSpikeGlobal, None, None));
        }
    }
}

/// Where a principal has been seen.
#[derive(Debug, Default)]
struct GeoProfile {
    /// Countries seen, oldest first, at most [`MAX_COUNTRIES_PER_PRINCIPAL`].
    countries: Vec<CountryCode>,
    /// Located sightings so far.
    sightings: u32,
    /// The last sighting with coordinates: when and where.
    last_located: Option<(u64, Coordinates)>,
    new_country: Cooldown,
    travel: Cooldown,
}

impl GeoProfile {
    fn learn_country(&mut self, country: CountryCode) {
        if self.countries.len() >= MAX_COUNTRIES_PER_PRINCIPAL {
            self.countries.remove(0);
        }
        self.countries.push(country);
    }
}

/// New countries and impossible travel per principal.
#[derive(Debug)]
struct UnusualGeography {
    geoip: GeoIp,
    principals: BoundedMap<String, GeoProfile>,
}

impl UnusualGeography {
    fn inspect(
        &mut self,
        config: &AnomalyConfig,
        tick: Tick,
        seen: &Seen<'_>,
        found: &mut Vec<Anomaly>,
    ) {
        let Some(client_ip) = seen.client_ip else {
            return;
        };
        let Some(place) = self.geoip.locate(client_ip) else {
            return;
        };
        let cooldown = config.cooldown.as_secs();
        let profile =
            self.principals
                .touch(seen.principal.to_owned(), tick.now, GeoProfile::default);
        if !profile.countries.contains(&place.country) {
            if profile.sightings >= config.min_history_requests
                && profile.new_country.try_alert(tick.now, cooldown)
            {
                found.push(seen.anomaly(AnomalyKind::NewCountry));
            }
            profile.learn_country(place.country);
        }
        // After a clock step back the time between is unknown: not judged.
        if let (Some((then, from)), Some(to)) = (profile.last_located, place.coordinates)
            && then <= tick.now
        {
            let distance_km = from.distance_km(to);
            let hours = tick.now.saturating_sub(then) as f64 / 3600.0;
            if distance_km >= config.min_travel_distance_km
                && distance_km > config.max_travel_speed_kmh * hours
                && profile.travel.try_alert(tick.now, cooldown)
            {
                found.push(seen.anomaly(AnomalyKind::ImpossibleTravel));
            }
        }
        if let Some(to) = place.coordinates {
            profile.last_located = Some((tick.now, to));
        }
        profile.sightings = profile.sightings.saturating_add(1);
    }
}

/// How often a principal calls each of its operations, and its unfamiliar calls this window.
#[derive(Debug, Default)]
struct OperationMix {
    /// The history: (operation hash, calls), at most [`MAX_OPERATIONS_PER_PRINCIPAL`].
    calls: Vec<(u64, u32)>,
    total: u32,
    window: u64,
    /// This window's calls, judged against the history as it was when the window opened and
    /// learned when it closes, unless it alerted.
    pending: Vec<(u64, u32)>,
    unfamiliar_in_window: u32,
    spiked: bool,
}

impl OperationMix {
    /// Counts one call; true when it makes the window's unfamiliar calls reach the threshold.
    fn count(&mut self, operation: u64, window: u64, config: &AnomalyConfig) -> bool {
        if window != self.window {
            self.close_window();
            self.window = window;
        }
        let room = self.pending.len() < MAX_OPERATIONS_PER_PRINCIPAL;
        match self
            .pending
            .iter_mut()
            .find(|(known, _)| *known == operation)
        {
            Some((_, calls)) => *calls = calls.saturating_add(1),
            None if room => self.pending.push((operation, 1)),
            // Beyond the bound a call is still judged, not learned.
            None => {}
        }
        let unfamiliar = self.total >= config.min_history_requests
            && f64::from(self.calls_to(operation)) < RARE_OPERATION_SHARE * f64::from(self.total);
        if unfamiliar {
            self.unfamiliar_in_window += 1;
            if !self.spiked && self.unfamiliar_in_window >= config.unfamiliar_operation_requests {
                self.spiked = true;
                return true;
            }
        }
        false
    }

    fn close_window(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if !self.spiked {
            for (operation, calls) in pending {
                self.learn(operation, calls);
            }
        }
        self.unfamiliar_in_window = 0;
        self.spiked = false;
    }

    fn calls_to(&self, operation: u64) -> u32 {
        self.calls
            .iter()
            .find(|(known, _)| *known == operation)
            .map_or(0, |(_, calls)| *calls)
    }

    fn learn(&mut self, operation: u64, calls: u32) {
        match self.calls.iter_mut().find(|(known, _)| *known == operation) {
            Some((_, known_calls)) => *known_calls = known_calls.saturating_add(calls),
            None => {
                if self.calls.len() >= MAX_OPERATIONS_PER_PRINCIPAL
                    && let Some(least) = (0..self.calls.len()).min_by_key(|&i| self.calls[i].1)
                {
                    self.total -= self.calls.swap_remove(least).1;
                }
                self.calls.push((operation, calls));
            }
        }
        self.total = self.total.saturating_add(calls);
        if self.total >= OPERATION_HISTORY_AGING {
            for (_, calls) in &mut self.calls {
                *calls /= 2;
            }
            self.calls.retain(|(_, calls)| *calls > 0);
            self.total = self.calls.iter().map(|(_, calls)| calls).sum();
        }
    }
}

/// A principal's request rate and operations.
#[derive(Debug, Default)]
struct UsageProfile {
    rate: SpikeState,
    operations: OperationMix,
    mix_cooldown: Cooldown,
}

/// Request rates and operation mixes per principal.
#[derive(Debug)]
struct UnusualUsage {
    principals: BoundedMap<String, UsageProfile>,
}

impl UnusualUsage {
    fn inspect(
        &mut self,
        config: &AnomalyConfig,
        tick: Tick,
        seen: &Seen<'_>,
        operation: &str,
        found: &mut Vec<Anomaly>,
    ) {
        let cooldown = config.cooldown.as_secs();
        let profile =
            self.principals
                .touch(seen.principal.to_owned(), tick.now, UsageProfile::default);
        if profile.rate.count(
            tick,
            config.requests_per_principal,
            config.usage_history_windows,
            cooldown,
        ) {
            found.push(seen.anomaly(AnomalyKind::RequestRate));
        }
        // A hash names the operation: the profile holds no text.
        let mut hasher = DefaultHasher::new();
        operation.hash(&mut hasher);
        if profile
            .operations
            .count(hasher.finish(), tick.window, config)
            && profile.mix_cooldown.try_alert(tick.now, cooldown)
        {
            found.push(seen.anomaly(AnomalyKind::EndpointMix));
        }
    }
}

/// A principal seen in one record.
struct Seen<'a> {
    principal: &'a str,
    client_ip: Option<IpAddr>,
    outcome: Outcome,
    route: Option<&'a str>,
}

impl Seen<'_> {
    fn anomaly(&self, kind: AnomalyKind) -> Anomaly {
        Anomaly {
            kind,
            outcome: self.outcome,
            principal: Some(self.principal.to_owned()),
            client_ip: self.client_ip,
            route: self.route.map(str::to_owned),
        }
    }
}

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
            auth_failures: AuthFailureSpikes {
                per_ip: BoundedMap::new(capacity),
                per_account: BoundedMap::new(capacity),
                global: SpikeState::default(),
            },
            geography: geoip.map(|geoip| UnusualGeography {
                geoip,
                principals: BoundedMap::new(capacity),
            }),
            usage: UnusualUsage {
                principals: BoundedMap::new(capacity),
            },
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

/// The audit observer of anomaly detection: hands the records the detectors read to their task
/// and returns at once, whatever the task is doing.
#[derive(Debug)]
pub struct AnomalyDetector {
    inbox: mpsc::Sender<AuditRecord>,
    dropped: Arc<AtomicU64>,
}

impl AnomalyDetector {
    /// The observer to put in the service's [`AuditHub`] and the task to spawn with that hub.
    pub fn new(config: AnomalyConfig, geoip: Option<GeoIp>) -> (Arc<Self>, DetectorTask) {
        let (inbox, records) = mpsc::channel(INBOX_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let detector = Arc::new(Self {
            inbox,
            dropped: Arc::clone(&dropped),
        });
        let task = DetectorTask {
            detectors: Detectors::new(config, geoip),
            records,
            dropped,
        };
        (detector, task)
    }

    /// Records dropped because the detectors had fallen behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AuditObserver for AnomalyDetector {
    fn observe(&self, record: &AuditRecord) {
        if Detectors::reads(record) && self.inbox.try_send(record.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The detectors' background task: reads the queued records, records each anomaly on the hub.
#[derive(Debug)]
pub struct DetectorTask {
    detectors: Detectors,
    records: mpsc::Receiver<AuditRecord>,
    dropped: Arc<AtomicU64>,
}

impl DetectorTask {
    /// Whether the geography detector runs.
    pub fn has_geography(&self) -> bool {
        self.detectors.has_geography()
    }

    /// Runs until aborted (the hub holds the observer, so the queue never closes on its own).
    pub fn spawn(self, hub: AuditHub) -> tokio::task::JoinHandle<()> {
        let Self {
            mut detectors,
            mut records,
            dropped,
        } = self;
        tokio::spawn(async move {
            let mut reported = 0;
            while let Some(record) = records.recv().await {
                for anomaly in detectors.inspect(&record) {
                    anomaly.record(&hub);
                }
                // Said at 1, 2, 4, 8 ... drops: loud enough, never a flood of its own.
                let now_dropped = dropped.load(Ordering::Relaxed);
                if now_dropped > 0 && now_dropped >= reported * 2 {
                    reported = now_dropped;
                    // In the message: the application log prints allowlisted fields only.
                    tracing::warn!(
                        "anomaly detection fell behind: {now_dropped} audit events skipped so far"
                    );
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::monitoring::geoip::test_database;

    const MINUTE: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 86_400;
    /// Midnight UTC on the first synthetic day.
    const DAY_ZERO: u64 = 1_800_000_000 - 1_800_000_000 % DAY;
    const USERS: usize = 300;

    /// Networks of the test database: Paris, Sydney, New York.
    const PARIS: &str = "198.51.100";
    const SYDNEY: &str = "203.0.113";
    const NEW_YORK: &str = "192.0.2";

    /// Operations every user calls, with their weights.
    const USUAL_OPERATIONS: [(&str, u64); 5] = [
        ("GET /v1/notes", 40),
        ("GET /v1/notes/{id}", 35),
        ("POST /v1/notes", 15),
        ("GET /v1/me", 8),
        ("PATCH /v1/me", 2),
    ];

    /// SplitMix64: a deterministic day, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    /// A synthetic user: home network, address and pace (requests per active minute).
    struct User {
        id: String,
        home: &'static str,
        host: u64,
        rate: u64,
    }

    fn user(index: usize) -> User {
        User {
            id: format!("user-{index:04}"),
            home: [PARIS, SYDNEY, NEW_YORK][index % 3],
            host: 1 + (index as u64 * 7) % 200,
            rate: 1 + index as u64 % 5,
        }
    }

    impl User {
        fn ip(&self) -> IpAddr {
            at_host(self.home, self.host)
        }
    }

    fn at_host(network: &str, host: u64) -> IpAddr {
        format!("{network}.{host}").parse().expect("an address")
    }

    fn time(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn login_failure(at: u64, client_ip: IpAddr, account: Option<&str>) -> AuditRecord {
        AuditRecord {
            at: time(at),
            event: "authn.password",
            outcome: Outcome::Denied,
            reason: if account.is_some() {
                "wrong_password"
            } else {
                "unknown_email"
            },
            principal: account.map(str::to_owned),
            client_ip: Some(client_ip),
            route: Some("/v1/auth/login".to_owned()),
            request_id: None,
            policy: None,
        }
    }

    fn login(at: u64, principal: &str, client_ip: IpAddr) -> AuditRecord {
        AuditRecord {
            outcome: Outcome::Allowed,
            reason: "valid",
            principal: Some(principal.to_owned()),
            ..login_failure(at, client_ip, None)
        }
    }

    /// A refusal by the rate-limit `tier` of a request from `client_ip`, its key of kind `key`.
    fn refused_by(at: u64, client_ip: IpAddr, tier: &str, key: &'static str) -> AuditRecord {
        AuditRecord {
            event: "ratelimit.exceeded",
            reason: key,
            policy: Some(tier.to_owned()),
            ..login_failure(at, client_ip, None)
        }
    }

    /// Feeds `records`; the anomalies found, each with the time of the record that tipped it.
    fn feed_timed(detectors: &mut Detectors, records: &[AuditRecord]) -> Vec<(u64, Anomaly)> {
        records
            .iter()
            .flat_map(|record| {
                let at = record.at.duration_since(UNIX_EPOCH).expect("after 1970");
                let found = detectors.inspect(record);
                found
                    .into_iter()
                    .map(move |anomaly| (at.as_secs(), anomaly))
            })
            .collect()
    }

    /// An allowed request to `operation` (`GET /v1/notes`), as access control records it.
    fn request(at: u64, principal: &str, client_ip: IpAddr, operation: &str) -> AuditRecord {
        let route = operation.split_once(' ').map(|(_, route)| route.to_owned());
        AuditRecord {
            at: time(at),
            event: "authz.scope",
            outcome: Outcome::Allowed,
            reason: "scopes_held",
            principal: Some(principal.to_owned()),
            client_ip: Some(client_ip),
            route,
            request_id: None,
            policy: Some(format!("{operation} requires notes:read")),
        }
    }

    /// A normal day: 2,000 logins (about 2% failed, half of them for unknown addresses) and
    /// every user's three working sessions at their own pace on their usual operations, each
    /// from home.
    fn normal_day(day: u64) -> Vec<AuditRecord> {
        let mut rng = Rng(day + 1);
        let start = DAY_ZERO + day * DAY;
        let mut records = Vec::new();
        for _ in 0..2_000 {
            let user = user(rng.below(USERS as u64) as usize);
            let at = start + rng.below(DAY);
            records.push(match rng.below(100) {
                0 => login_failure(at, user.ip(), Some(&user.id)),
                1 => login_failure(at, user.ip(), None),
                _ => login(at, &user.id, user.ip()),
            });
        }
        for index in 0..USERS {
            let user = user(index);
            for _ in 0..3 {
                let begin = start + rng.below(DAY - HOUR);
                for minute in 0..20 + rng.below(21) {
                    for _ in 0..rng.below(2 * user.rate + 1) {
                        let at = begin + minute * MINUTE + rng.below(MINUTE);
                        let mut pick = rng.below(100);
                        let operation = USUAL_OPERATIONS
                            .iter()
                            .find(|(_, weight)| {
                                let chosen = pick < *weight;
                                pick = pick.saturating_sub(*weight);
                                chosen
                            })
                            .map_or("GET /v1/notes", |(operation, _)| operation);
                        records.push(request(at, &user.id, user.ip(), operation));
                    }
                }
            }
        }
        records.sort_by_key(|record| record.at);
        records
    }

    fn detectors() -> Detectors {
        Detectors::new(AnomalyConfig::default(), Some(test_database()))
    }

    fn feed(detectors: &mut Detectors, records: &[AuditRecord]) -> Vec<Anomaly> {
        records
            .iter()
            .flat_map(|record| detectors.inspect(record))
            .collect()
    }

    fn kinds(anomalies: &[Anomaly]) -> Vec<AnomalyKind> {
        anomalies.iter().map(|anomaly| anomaly.kind).collect()
    }

    /// Detectors that have learned one normal day, during which they stayed quiet.
    fn after_a_normal_day() -> Detectors {
        let mut detectors = detectors();
        let anomalies = feed(&mut detectors, &normal_day(0));
        assert_eq!(anomalies, [], "a normal day raises nothing");
        detectors
    }

    /// 10:00 on the day after the learned one.
    const ATTACK: u64 = DAY_ZERO + DAY + 10 * HOUR;

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
    fn a_burst_of_failures_from_one_address_is_an_address_spike() {
        let mut detectors = after_a_normal_day();
        let attacker = at_host(PARIS, 250);
        // 300 guesses in two minutes over every account, known or not.
        let burst: Vec<AuditRecord> = (0..300)
            .map(|guess| {
                let account = user(guess % USERS);
                let account = (guess % 2 == 0).then_some(account.id.as_str());
                login_failure(ATTACK + guess as u64 * 120 / 300, attacker, account)
            })
            .collect();
        let anomalies = feed(&mut detectors, &burst);
        assert_eq!(
            kinds(&anomalies),
            [
                AnomalyKind::AuthFailureSpikeIp,
                AnomalyKind::AuthFailureSpikeGlobal
            ],
            "once each, however long the burst lasts within the cool-down"
        );
        let spike = &anomalies[0];
        assert_eq!(spike.client_ip, Some(attacker));
        assert_eq!(spike.outcome, Outcome::Denied);
        assert_eq!(spike.kind.detector(), "auth_failures");
        assert_eq!(spike.route.as_deref(), Some("/v1/auth/login"));
    }

    #[test]
    fn failures_on_one_account_from_many_addresses_are_an_account_spike() {
        let mut detectors = after_a_normal_day();
        let target = user(42);
        // 50 wrong passwords in five minutes, each from another address.
        let spread: Vec<AuditRecord> = (0..50)
            .map(|guess| {
                let from = at_host(SYDNEY, 201 + guess % 50);
                login_failure(ATTACK + guess * 6, from, Some(&target.id))
            })
            .collect();
        let anomalies = feed(&mut detectors, &spread);
        assert_eq!(kinds(&anomalies), [AnomalyKind::AuthFailureSpikeAccount]);
        assert_eq!(anomalies[0].principal.as_deref(), Some(target.id.as_str()));
        assert_eq!(anomalies[0].client_ip, None);
    }

    #[test]
    fn a_burst_spread_over_addresses_and_accounts_is_a_global_spike() {
        let mut detectors = after_a_normal_day();
        // Credential stuffing: 400 invented accounts from 400 addresses in two minutes.
        let stuffing: Vec<AuditRecord> = (0..400)
            .map(|guess| {
                let from = at_host(&format!("100.64.{}", guess / 200), guess % 200 + 1);
                login_failure(ATTACK + guess * 120 / 400, from, None)
            })
            .collect();
        let anomalies = feed(&mut detectors, &stuffing);
        assert_eq!(kinds(&anomalies), [AnomalyKind::AuthFailureSpikeGlobal]);
        assert_eq!(
            (&anomalies[0].principal, anomalies[0].client_ip),
            (&None, None)
        );
    }

    #[test]
    fn each_key_alerts_at_most_once_per_cooldown() {
        let mut detectors = after_a_normal_day();
        let (first, second) = (at_host(PARIS, 250), at_host(PARIS, 251));
        // Two addresses guessing 150 times a minute for half an hour: the cool-down is 15
        // minutes, and it is per key.
        let mut sustained = Vec::new();
        for second_of_attack in 0..30 * MINUTE {
            for attacker in [first, second] {
                for guess in 0..5 {
                    if (second_of_attack * 5 + guess) % 2 == 0 {
                        sustained.push(login_failure(ATTACK + second_of_attack, attacker, None));
                    }
                }
            }
        }
        let anomalies = feed(&mut detectors, &sustained);
        let alerts_for = |ip| {
            anomalies
                .iter()
                .filter(|anomaly| {
                    anomaly.kind == AnomalyKind::AuthFailureSpikeIp && anomaly.client_ip == Some(ip)
                })
                .count()
        };
        assert_eq!(alerts_for(first), 2, "at minutes 0 and 15");
        assert_eq!(alerts_for(second), 2, "its own cool-down");
        let global = kinds(&anomalies)
            .into_iter()
            .filter(|kind| *kind == AnomalyKind::AuthFailureSpikeGlobal)
            .count();
        assert_eq!(global, 2);
    }

    #[test]
    fn a_guess_a_minute_from_one_address_alerts_within_the_hour() {
        let mut detectors = after_a_normal_day();
        let attacker = at_host(PARIS, 250);
        // Three hours at one guess a minute: under the per-window limit (and the login tier's)
        // every minute; a learned baseline would have made it the address's normal.
        let slow: Vec<AuditRecord> = (0..180)
            .map(|minute| login_failure(ATTACK + minute * MINUTE, attacker, None))
            .collect();
        let anomalies = feed_timed(&mut detectors, &slow);
        assert!(
            anomalies.iter().all(|(_, anomaly)| {
                anomaly.kind == AnomalyKind::AuthFailureSpikeIp
                    && anomaly.client_ip == Some(attacker)
            }),
            "{anomalies:?}"
        );
        assert_eq!(
            anomalies.first().map(|(at, _)| at),
            Some(&(ATTACK + 29 * MINUTE)),
            "the 30th failure of the hour"
        );
        assert_eq!(
            anomalies.len(),
            11,
            "then once per cool-down while it lasts"
        );
    }

    #[test]
    fn a_guess_a_minute_on_one_account_from_rotating_addresses_alerts() {
        let mut detectors = after_a_normal_day();
        let target = user(42);
        // Three hours at one wrong password a minute (the per-account lockout lets 5 through per
        // 5 minutes: all of them), each from another address.
        let slow: Vec<AuditRecord> = (0..180)
            .map(|minute| {
                let from = at_host(&format!("100.64.{}", minute / 100), minute % 100 + 1);
                login_failure(ATTACK + minute * MINUTE, from, Some(&target.id))
            })
            .collect();
        let anomalies = feed_timed(&mut detectors, &slow);
        assert!(
            anomalies.iter().all(|(_, anomaly)| {
                anomaly.kind == AnomalyKind::AuthFailureSpikeAccount
                    && anomaly.principal.as_deref() == Some(target.id.as_str())
            }),
            "{anomalies:?}"
        );
        assert_eq!(
            anomalies.first().map(|(at, _)| at),
            Some(&(ATTACK + 19 * MINUTE)),
            "the 20th failure of the hour"
        );
        assert_eq!(
            anomalies.len(),
            11,
            "then once per cool-down while it lasts"
        );
    }

    #[test]
    fn refusals_by_the_authentication_tiers_count_as_failures() {
        let mut detectors = after_a_normal_day();
        let attacker = at_host(PARIS, 250);
        // Five wrong passwords, then the login tier refuses the address: ten attempts a minute.
        let mut guesses: Vec<AuditRecord> = (0..5)
            .map(|guess| login_failure(ATTACK + guess, attacker, None))
            .collect();
        guesses.extend(
            (5..10).map(|guess| refused_by(ATTACK + guess, attacker, "login", "client_ip")),
        );
        let anomalies = feed(&mut detectors, &guesses);
        assert_eq!(kinds(&anomalies), [AnomalyKind::AuthFailureSpikeIp]);
        assert_eq!(anomalies[0].client_ip, Some(attacker));

        // A locked-out account guessed from 60 addresses in a minute: the refusals name no
        // account, but the service sees them.
        let locked_out: Vec<AuditRecord> = (0..60)
            .map(|guess| {
                let from = at_host(SYDNEY, 150 + guess);
                refused_by(ATTACK + HOUR + guess, from, "login_account", "account")
            })
            .collect();
        let anomalies = feed(&mut detectors, &locked_out);
        assert_eq!(kinds(&anomalies), [AnomalyKind::AuthFailureSpikeGlobal]);

        for tier in ["login", "login_account", "token", "password_reset_confirm"] {
            assert!(Detectors::reads(&refused_by(
                DAY_ZERO,
                attacker,
                tier,
                "client_ip"
            )));
        }
        // Other tiers refuse traffic, not guesses.
        for tier in ["anonymous", "authenticated", "password_reset", "payment"] {
            assert!(!Detectors::reads(&refused_by(
                DAY_ZERO,
                attacker,
                tier,
                "client_ip"
            )));
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
    fn a_lasting_attack_never_becomes_the_baseline() {
        let mut detectors = after_a_normal_day();
        let attacker = at_host(PARIS, 250);
        // Two hours at 60 guesses a minute: the fixed limits hold, however long it lasts.
        let slow: Vec<AuditRecord> = (0..120 * MINUTE)
            .map(|second| login_failure(ATTACK + second, attacker, None))
            .collect();
        let anomalies = feed(&mut detectors, &slow);
        let per_address = anomalies
            .iter()
            .filter(|anomaly| anomaly.kind == AnomalyKind::AuthFailureSpikeIp)
            .count();
        assert_eq!(per_address, 8, "every 15 minutes for two hours");
    }

    #[test]
    fn a_principal_from_a_new_country_is_detected() {
        let mut detectors = after_a_normal_day();
        let traveller = user(3); // Paris, four requests a minute.
        let abroad = at_host(NEW_YORK, 77);
        // The next morning from New York: far, but not faster than a plane.
        let anomalies = feed(
            &mut detectors,
            &[
                request(ATTACK, &traveller.id, abroad, "GET /v1/notes"),
                request(ATTACK + 60, &traveller.id, abroad, "GET /v1/notes"),
                request(ATTACK + 120, &traveller.id, abroad, "GET /v1/notes"),
            ],
        );
        assert_eq!(
            kinds(&anomalies),
            [AnomalyKind::NewCountry],
            "once: then it is known"
        );
        let anomaly = &anomalies[0];
        assert_eq!(anomaly.principal.as_deref(), Some(traveller.id.as_str()));
        assert_eq!(anomaly.client_ip, Some(abroad));
        assert_eq!(anomaly.outcome, Outcome::Allowed);
        assert_eq!(anomaly.kind.detector(), "geography");
    }

    #[test]
    fn paris_then_sydney_ten_minutes_later_is_impossible_travel() {
        let mut detectors = after_a_normal_day();
        let traveller = user(3);
        let sydney = at_host(SYDNEY, 99);
        let anomalies = feed(
            &mut detectors,
            &[
                request(ATTACK, &traveller.id, traveller.ip(), "GET /v1/notes"),
                login(ATTACK + 10 * MINUTE, &traveller.id, sydney),
            ],
        );
        assert_eq!(
            kinds(&anomalies),
            [AnomalyKind::NewCountry, AnomalyKind::ImpossibleTravel]
        );
        assert_eq!(anomalies[1].client_ip, Some(sydney));
        // Back in Paris 10 minutes later: impossible again, but within the cool-down.
        let back = feed(
            &mut detectors,
            &[request(
                ATTACK + 20 * MINUTE,
                &traveller.id,
                traveller.ip(),
                "GET /v1/notes",
            )],
        );
        assert_eq!(back, []);
    }

    #[test]
    fn without_a_geoip_database_geography_is_off() {
        let mut detectors = Detectors::new(AnomalyConfig::default(), None);
        assert!(!detectors.has_geography());
        let traveller = user(3);
        let mut records = normal_day(0);
        records.push(request(
            ATTACK,
            &traveller.id,
            traveller.ip(),
            "GET /v1/notes",
        ));
        records.push(request(
            ATTACK + 60,
            &traveller.id,
            at_host(SYDNEY, 9),
            "GET /v1/notes",
        ));
        assert_eq!(feed(&mut detectors, &records), []);
    }

    #[test]
    fn a_principal_at_twenty_times_its_rate_is_detected() {
        let mut detectors = after_a_normal_day();
        let busy = user(4); // Sydney, five requests a minute.
        assert_eq!(busy.rate, 5);
        // Its usual operations, 100 a minute for three minutes.
        let flood: Vec<AuditRecord> = (0..300)
            .map(|call| {
                let operation = USUAL_OPERATIONS[call % 3].0;
                request(
                    ATTACK + call as u64 * 180 / 300,
                    &busy.id,
                    busy.ip(),
                    operation,
                )
            })
            .collect();
        let anomalies = feed(&mut detectors, &flood);
        assert_eq!(kinds(&anomalies), [AnomalyKind::RequestRate]);
        assert_eq!(anomalies[0].kind.detector(), "usage");
        assert_eq!(anomalies[0].principal.as_deref(), Some(busy.id.as_str()));
        let route = anomalies[0].route.as_deref().unwrap_or_default();
        assert!(route.starts_with("/v1/notes"), "{route}");
    }

    #[test]
    fn a_principal_calling_operations_it_never_used_is_detected() {
        let mut detectors = after_a_normal_day();
        let user = user(7); // Sydney, three requests a minute.
        // 15 a minute, well within its rate, but on administration operations it never called.
        let admin_calls: Vec<AuditRecord> = (0..30)
            .map(|call| {
                let operation =
                    ["GET /v1/users", "DELETE /v1/users/{id}", "GET /v1/api-keys"][call % 3];
                request(ATTACK + call as u64 * 4, &user.id, user.ip(), operation)
            })
            .collect();
        let anomalies = feed(&mut detectors, &admin_calls);
        assert_eq!(kinds(&anomalies), [AnomalyKind::EndpointMix]);
        assert_eq!(anomalies[0].principal.as_deref(), Some(user.id.as_str()));
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

        // One principal calling thousands of distinct operations keeps a bounded profile.
        let mut wanderer = OperationMix::default();
        for operation in 0..5_000 {
            // Each call in a window of its own, so each is learned.
            wanderer.count(operation, operation, &AnomalyConfig::default());
            wanderer.count(operation + 10_000, operation, &AnomalyConfig::default());
        }
        assert!(wanderer.calls.len() <= MAX_OPERATIONS_PER_PRINCIPAL);
        assert!(wanderer.pending.len() <= MAX_OPERATIONS_PER_PRINCIPAL);
        assert_eq!(
            wanderer.total,
            wanderer.calls.iter().map(|(_, calls)| calls).sum::<u32>()
        );
        let mut globetrotter = GeoProfile::default();
        for code in 0..676u32 {
            let letters = [b'A' + (code / 26) as u8, b'A' + (code % 26) as u8];
            let country = std::str::from_utf8(&letters).expect("ascii");
            globetrotter.learn_country(CountryCode::parse(country).expect("a code"));
        }
        assert_eq!(globetrotter.countries.len(), MAX_COUNTRIES_PER_PRINCIPAL);
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

    #[test]
    fn the_least_recently_seen_key_makes_room() {
        let mut map = BoundedMap::new(2);
        *map.touch("a", 1, || 0) += 1;
        *map.touch("b", 2, || 0) += 1;
        *map.touch("a", 3, || 0) += 1; // "a" is now the most recent.
        *map.touch("c", 4, || 0) += 1; // evicts "b".
        assert_eq!(map.len(), 2);
        assert_eq!(*map.touch("a", 5, || 0), 2, "a kept its state");
        assert_eq!(
            *map.touch("b", 6, || 0),
            0,
            "b was evicted and starts afresh"
        );
    }

    #[test]
    fn anomalies_and_requests_without_a_credential_are_not_read() {
        let mut anomaly = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        anomaly.event = ANOMALY_EVENT;
        assert!(!Detectors::reads(&anomaly));
        let mut missing = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        missing.event = "authn.missing";
        assert!(!Detectors::reads(&missing));
        let mut outage = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        outage.event = "authn.access_token";
        outage.reason = "verifier_unavailable";
        assert!(!Detectors::reads(&outage));
        outage.reason = "expired";
        assert!(Detectors::reads(&outage));
    }

    /// Collects the anomaly events published to the hub.
    struct Collector(mpsc::UnboundedSender<AuditRecord>);

    impl AuditObserver for Collector {
        fn observe(&self, record: &AuditRecord) {
            if record.event == ANOMALY_EVENT {
                let _ = self.0.send(record.clone());
            }
        }
    }

    #[tokio::test]
    async fn the_task_records_each_anomaly_once_on_the_hub() {
        let (detector, task) = AnomalyDetector::new(AnomalyConfig::default(), None);
        let (collected, mut anomalies) = mpsc::unbounded_channel();
        let observers: Vec<Arc<dyn AuditObserver>> =
            vec![detector.clone(), Arc::new(Collector(collected))];
        let hub = AuditHub::new(observers);
        let running = task.spawn(hub.clone());
        let attacker = at_host(PARIS, 250);
        for guess in 0..20 {
            hub.publish(&login_failure(ATTACK + guess, attacker, None));
        }
        let event = tokio::time::timeout(Duration::from_secs(10), anomalies.recv())
            .await
            .expect("an anomaly within 10 s")
            .expect("an event");
        assert_eq!(event.reason, "auth_failure_spike_ip");
        assert_eq!(event.policy.as_deref(), Some("auth_failures"));
        assert_eq!(event.client_ip, Some(attacker));
        assert_eq!(event.outcome, Outcome::Denied);
        // The anomaly went back through the hub to the detector, which ignored it: nothing
        // else follows.
        hub.publish(&login_failure(ATTACK + 30, attacker, None));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(anomalies.try_recv().is_err());
        assert_eq!(detector.dropped(), 0);
        running.abort();
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (detector, _task) = AnomalyDetector::new(AnomalyConfig::default(), None);
        let record = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        for _ in 0..INBOX_CAPACITY + 5 {
            detector.observe(&record);
        }
        assert_eq!(detector.dropped(), 5);
        let mut ignored = record.clone();
        ignored.event = "token.issued";
        detector.observe(&ignored);
        assert_eq!(
            detector.dropped(),
            5,
            "records no detector reads are not queued"
        );
    }
}
