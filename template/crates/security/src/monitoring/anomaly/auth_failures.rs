//! The `auth_failures` detector: refused credentials, and refusals by the authentication
//! rate-limit tiers, counted per client address (an IPv6 client per /64) and per account against
//! fixed limits (failures are no one key's normal: a learned baseline would make a steady attack
//! the norm), and over the whole service against its learned baseline (some failures are always
//! about). Findings: `auth_failure_spike_ip`, `auth_failure_spike_account`,
//! `auth_failure_spike_global`, each with the outcome `denied`.

use std::net::{IpAddr, Ipv6Addr};

use super::bounded_map::BoundedMap;
use super::config::AnomalyConfig;
use super::finding::{Anomaly, AnomalyKind};
use super::window::{FailureCounter, SpikeState, Tick};
use crate::logging::audit::Outcome;

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
pub(super) struct AuthFailureSpikes {
    pub(super) per_ip: BoundedMap<IpAddr, FailureCounter>,
    pub(super) per_account: BoundedMap<String, FailureCounter>,
    global: SpikeState,
}

impl AuthFailureSpikes {
    /// At most `capacity` addresses and as many accounts.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            per_ip: BoundedMap::new(capacity),
            per_account: BoundedMap::new(capacity),
            global: SpikeState::default(),
        }
    }

    /// Counts one failure; pushes to `found` what it tipped over.
    pub(super) fn inspect(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::audit::AuditRecord;
    use crate::monitoring::anomaly::detectors::Detectors;
    use crate::monitoring::anomaly::synthetic_traffic::{
        ATTACK, DAY_ZERO, HOUR, MINUTE, PARIS, SYDNEY, USERS, after_a_normal_day, at_host, feed,
        feed_timed, kinds, login_failure, refused_by, user,
    };

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
}
