//! `[server]`: the public listener's address, the origin clients use (TLS-1: only `https`, and
//! never derived from a request's Host header), the shutdown grace, and the reverse proxies
//! believed about a client's address (RATE-5). No proxy is trusted by default: a forwarding
//! header from anyone else is never read, so a client cannot choose the address its limits and
//! audit events are keyed by.

use std::net::IpAddr;

use ipnet::IpNet;
use security::transport::client_ip::{ForwardedHeader, TrustedProxies};
use serde::{Deserialize, Serialize};

use super::Environment;
use super::error::Refusals;

/// The public listener: HTTPS, or plaintext behind a TLS-terminating proxy (see
/// [`TlsMode`](super::TlsMode)).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: IpAddr,
    /// `0` picks a free port (tests).
    pub port: u16,
    /// The origin clients use to reach the service (`https://api.example.com`); it is the
    /// OpenAPI server URL and never derived from a request's Host header.
    pub public_origin: String,
    /// How long in-flight requests may run after a shutdown signal before they are cut.
    pub shutdown_grace_seconds: u64,
    /// Reuse a client's `X-Request-Id` (only behind a gateway that sets it).
    pub trust_client_request_id: bool,
    /// Reverse proxies allowed to speak for clients (CIDRs): their forwarding header is
    /// believed, nobody else's.
    pub trusted_proxies: Vec<IpNet>,
    /// The one header the trusted proxies write the client's address and scheme in
    /// (`x-forwarded-for` with `X-Forwarded-Proto`, or `forwarded`); the other is never read.
    pub forwarded_header: ForwardedHeader,
}

impl ServerSettings {
    /// The trusted proxies and the header they write.
    pub fn proxies(&self) -> TrustedProxies {
        TrustedProxies::new(&self.trusted_proxies, self.forwarded_header)
    }
}

impl ServerSettings {
    pub(super) fn validate(&self, environment: Environment, refusals: &mut Refusals) {
        match parse_origin(&self.public_origin) {
            None => refusals.refuse(
                "server.public_origin",
                "must be an origin such as https://api.example.com (scheme, host, optional port; no path)",
            ),
            Some(scheme) if scheme != "https" => refusals.refuse(
                "server.public_origin",
                "must use https: the service is reached over HTTPS only (its own listener or its \
                 TLS proxy), and plain HTTP redirects there",
            ),
            Some(_) => {}
        }
        if self.shutdown_grace_seconds == 0 {
            refusals.refuse(
                "server.shutdown_grace_seconds",
                "must be at least 1, or in-flight requests are cut at every deploy",
            );
        }
        if environment == Environment::Production
            && self.trust_client_request_id
            && self.trusted_proxies.is_empty()
        {
            refusals.refuse(
                "server.trust_client_request_id",
                "lets any client choose its request id; enable it only behind a trusted proxy",
            );
        }
    }
}

/// Returns the scheme if `origin` is `scheme://host[:port]` with nothing after it.
fn parse_origin(origin: &str) -> Option<&str> {
    security::transport::origin::parse(origin).map(|origin| origin.scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{load, production, refused};

    #[test]
    fn the_forwarding_header_is_one_of_the_two_a_proxy_writes() {
        let settings = load(
            "[server]\nforwarded_header = \"forwarded\"",
            Environment::Development,
            &[],
        )
        .expect("valid");
        assert_eq!(settings.server.forwarded_header, ForwardedHeader::Forwarded);
        for other in ["X-Real-IP", "cf-connecting-ip", "both"] {
            let error = refused(
                &format!("[server]\nforwarded_header = \"{other}\""),
                Environment::Development,
            );
            assert!(error.names("server.forwarded_header"), "{other}: {error}");
        }
    }

    #[test]
    fn a_plaintext_public_origin_is_refused_in_every_environment() {
        let plain = "[server]\npublic_origin = \"http://localhost:8080\"";
        let error = refused(plain, Environment::Development);
        assert!(error.names("server.public_origin"), "{error}");
    }

    #[test]
    fn origins_with_paths_or_credentials_are_refused() {
        for (origin, why) in [
            ("https://api.example.com/v1", "a path"),
            ("https://user@api.example.com", "credentials"),
            ("ftp://api.example.com", "a non-HTTP scheme"),
            ("api.example.com", "no scheme"),
        ] {
            assert!(
                parse_origin(origin).is_none(),
                "an origin with {why}: {origin}"
            );
        }
        assert_eq!(parse_origin("https://[::1]:8443"), Some("https"));
        assert_eq!(parse_origin("http://localhost:8080"), Some("http"));
    }

    #[test]
    fn production_trusts_a_clients_request_id_only_behind_a_proxy() {
        let trusting = production("[server]\ntrust_client_request_id = true");
        let error = refused(&trusting, Environment::Production);
        assert!(error.names("server.trust_client_request_id"), "{error}");
        let proxied = production(
            "[server]\ntrust_client_request_id = true\ntrusted_proxies = [\"10.0.0.0/8\"]",
        );
        load(&proxied, Environment::Production, &[]).expect("behind a declared proxy");
    }
}
