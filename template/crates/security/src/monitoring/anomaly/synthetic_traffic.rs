//! Synthetic traffic for the detectors' tests: deterministic days of 300 users' logins and
//! working sessions, each user at home in one of the three cities of the test GeoIP database
//! ([`crate::monitoring::geoip::test_database`]), and the audit records attacks are made of. The
//! detectors never read a clock, so a test replays days in milliseconds.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::AnomalyConfig;
use super::detectors::Detectors;
use super::finding::{Anomaly, AnomalyKind};
use crate::logging::audit::{AuditRecord, Outcome};
use crate::monitoring::geoip::test_database;

pub(super) const MINUTE: u64 = 60;
pub(super) const HOUR: u64 = 3600;
pub(super) const DAY: u64 = 86_400;
/// Midnight UTC on the first synthetic day.
pub(super) const DAY_ZERO: u64 = 1_800_000_000 - 1_800_000_000 % DAY;
pub(super) const USERS: usize = 300;

/// Networks of the test database: Paris, Sydney, New York.
pub(super) const PARIS: &str = "198.51.100";
pub(super) const SYDNEY: &str = "203.0.113";
pub(super) const NEW_YORK: &str = "192.0.2";

/// Operations every user calls, with their weights.
pub(super) const USUAL_OPERATIONS: [(&str, u64); 5] = [
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
pub(super) struct User {
    pub(super) id: String,
    home: &'static str,
    host: u64,
    pub(super) rate: u64,
}

pub(super) fn user(index: usize) -> User {
    User {
        id: format!("user-{index:04}"),
        home: [PARIS, SYDNEY, NEW_YORK][index % 3],
        host: 1 + (index as u64 * 7) % 200,
        rate: 1 + index as u64 % 5,
    }
}

impl User {
    pub(super) fn ip(&self) -> IpAddr {
        at_host(self.home, self.host)
    }
}

pub(super) fn at_host(network: &str, host: u64) -> IpAddr {
    format!("{network}.{host}").parse().expect("an address")
}

pub(super) fn time(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

pub(super) fn login_failure(at: u64, client_ip: IpAddr, account: Option<&str>) -> AuditRecord {
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

pub(super) fn login(at: u64, principal: &str, client_ip: IpAddr) -> AuditRecord {
    AuditRecord {
        outcome: Outcome::Allowed,
        reason: "valid",
        principal: Some(principal.to_owned()),
        ..login_failure(at, client_ip, None)
    }
}

/// A refusal by the rate-limit `tier` of a request from `client_ip`, its key of kind `key`.
pub(super) fn refused_by(at: u64, client_ip: IpAddr, tier: &str, key: &'static str) -> AuditRecord {
    AuditRecord {
        event: "ratelimit.exceeded",
        reason: key,
        policy: Some(tier.to_owned()),
        ..login_failure(at, client_ip, None)
    }
}

/// Feeds `records`; the anomalies found, each with the time of the record that tipped it.
pub(super) fn feed_timed(
    detectors: &mut Detectors,
    records: &[AuditRecord],
) -> Vec<(u64, Anomaly)> {
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
pub(super) fn request(at: u64, principal: &str, client_ip: IpAddr, operation: &str) -> AuditRecord {
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
pub(super) fn normal_day(day: u64) -> Vec<AuditRecord> {
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

pub(super) fn detectors() -> Detectors {
    Detectors::new(AnomalyConfig::default(), Some(test_database()))
}

pub(super) fn feed(detectors: &mut Detectors, records: &[AuditRecord]) -> Vec<Anomaly> {
    records
        .iter()
        .flat_map(|record| detectors.inspect(record))
        .collect()
}

pub(super) fn kinds(anomalies: &[Anomaly]) -> Vec<AnomalyKind> {
    anomalies.iter().map(|anomaly| anomaly.kind).collect()
}

/// Detectors that have learned one normal day, during which they stayed quiet.
pub(super) fn after_a_normal_day() -> Detectors {
    let mut detectors = detectors();
    let anomalies = feed(&mut detectors, &normal_day(0));
    assert_eq!(anomalies, [], "a normal day raises nothing");
    detectors
}

/// 10:00 on the day after the learned one.
pub(super) const ATTACK: u64 = DAY_ZERO + DAY + 10 * HOUR;
