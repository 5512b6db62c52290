//! `[admin]`: the metrics listener (LOG-6), on loopback by default. It speaks plain HTTP, so
//! production refuses another address unless `allow_non_loopback` says the network is private,
//! and it never shares the public port.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Environment;
use super::error::Refusals;

/// The admin listener (LOG-6): `GET /metrics` in the Prometheus text format, never on the public
/// port. Plain HTTP: it is meant for loopback, where a local agent scrapes it and no network sees
/// the traffic; the metrics hold counts by route and reason, no secret and no identity.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub enabled: bool,
    /// Loopback by default; production refuses another address unless `allow_non_loopback`.
    pub host: IpAddr,
    /// `0` picks a free port (tests); never `server.port`.
    pub port: u16,
    /// Lets production serve metrics beyond this host (plain HTTP: only on a private network).
    pub allow_non_loopback: bool,
}

impl AdminSettings {
    /// The rules of `[admin]`; `server_port` is the public listener's.
    pub(super) fn validate(
        &self,
        environment: Environment,
        server_port: u16,
        refusals: &mut Refusals,
    ) {
        if self.enabled && self.port != 0 && self.port == server_port {
            refusals.refuse(
                "admin.port",
                "must differ from server.port: metrics are never served on the public port",
            );
        }
        if environment == Environment::Production
            && self.enabled
            && !self.host.is_loopback()
            && !self.allow_non_loopback
        {
            refusals.refuse(
                "admin.host",
                "is not a loopback address in production: the admin listener speaks plain \
                 HTTP; set admin.allow_non_loopback = true only on a private network",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{load, production, refused};

    #[test]
    fn the_admin_listener_never_shares_the_public_port() {
        let shared = "[server]\nport = 8443\n[admin]\nport = 8443";
        let error = refused(shared, Environment::Development);
        assert!(error.names("admin.port"), "{error}");
        let both_free = "[server]\nport = 0\n[admin]\nport = 0";
        load(both_free, Environment::Development, &[]).expect("port 0 picks two free ports");
        let disabled = format!("{shared}\nenabled = false");
        load(&disabled, Environment::Development, &[]).expect("no admin listener, no clash");
    }

    #[test]
    fn production_serves_metrics_beyond_loopback_only_when_allowed_explicitly() {
        let exposed = "[admin]\nhost = \"0.0.0.0\"";
        let error = refused(&production(exposed), Environment::Production);
        assert!(error.names("admin.host"), "{error}");
        load(exposed, Environment::Development, &[]).expect("only production refuses it");
        let allowed = production(&format!("{exposed}\nallow_non_loopback = true"));
        load(&allowed, Environment::Production, &[]).expect("allowed explicitly");
        let ipv6_loopback = production("[admin]\nhost = \"::1\"");
        load(&ipv6_loopback, Environment::Production, &[]).expect("::1 is loopback");
    }
}
