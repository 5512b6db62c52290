//! The client's address (RATE-1, LOG-1): what rate limits key on and audit events record.
//!
//! Threat: `X-Forwarded-For` and `Forwarded` are request headers anyone can write. Trusted
//! blindly, they let a client pick the address its rate limit is counted under (a new one per
//! request) and put any address in the audit log.
//!
//! Control: the client is the TCP peer. Only when the peer is one of the configured trusted
//! proxies (`server.trusted_proxies`) are the forwarding headers read, right to left, skipping
//! the trusted proxies' own entries; the first address that is not a trusted proxy is the
//! client. The left part of the header, written by whoever sent the request first, is never
//! believed. `Forwarded` (RFC 7239) is read when present, else `X-Forwarded-For`; an entry that
//! does not parse ends the walk at the last trusted hop.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::http::HeaderMap;
use poem::{Endpoint, Middleware, Request, Result};

/// The resolved client address, set on every request by [`ClientIpLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The client address of `request`: the one [`ClientIpLayer`] resolved, else the TCP peer
/// (IPv4-mapped addresses as IPv4); `None` for a request without a TCP peer.
pub fn client_ip_of(request: &poem::Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ClientIp>()
        .map(|client| client.0)
        .or_else(|| {
            request
                .remote_addr()
                .as_socket_addr()
                .map(|address| address.ip().to_canonical())
        })
}

/// The client address of a request from `peer` with `headers`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|net| net.contains(address));
    if !trusted(&peer) {
        return peer;
    }
    let hops = forwarded_for(headers);
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop {
            Some(address) => {
                client = address.to_canonical();
                if !trusted(&client) {
                    return client;
                }
            }
            // Unparsable (`unknown`, an obfuscated identifier): the last trusted hop is all
            // that is known.
            None => return client,
        }
    }
    client
}

/// The `for` addresses of `Forwarded`, or else of `X-Forwarded-For`, in order (every header
/// line, comma-separated); `None` for an entry that is not an address.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(name, _)| name.eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value))
            })
            .collect();
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(|entry| parse_node(entry.trim()))
        .collect()
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `"[2001:db8::1]:4711"`.
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Ok(address) = value.parse() {
        return Some(address);
    }
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = value.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// Middleware setting [`ClientIp`] on every request.
#[derive(Debug, Clone)]
pub struct ClientIpLayer {
    trusted_proxies: Vec<IpNet>,
}

impl ClientIpLayer {
    pub fn new(trusted_proxies: &[IpNet]) -> Self {
        Self {
            trusted_proxies: trusted_proxies.to_vec(),
        }
    }
}

impl<E: Endpoint> Middleware<E> for ClientIpLayer {
    type Output = ClientIpEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        ClientIpEndpoint {
            next,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

/// The endpoint produced by [`ClientIpLayer`].
#[derive(Debug)]
pub struct ClientIpEndpoint<E> {
    next: E,
    trusted_proxies: Vec<IpNet>,
}

impl<E: Endpoint> Endpoint for ClientIpEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        if let Some(peer) = request.remote_addr().as_socket_addr().map(|addr| addr.ip()) {
            let client = resolve(peer, request.headers(), &self.trusted_proxies);
            request.extensions_mut().insert(ClientIp(client));
        }
        self.next.call(request).await
    }
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("address")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    }

    fn proxies() -> Vec<IpNet> {
        vec!["10.0.0.0/8".parse().expect("net")]
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_change_nothing() {
        let forged = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        assert_eq!(
            resolve(ip("198.51.100.7"), &forged, &proxies()),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve(ip("198.51.100.7"), &forged, &[]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_address_is_the_client() {
        // The client forged the left-most entry; the proxies appended the real ones.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &chain, &proxies()),
            ip("198.51.100.7")
        );
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7:5555"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &split, &proxies()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn forwarded_is_read_before_x_forwarded_for() {
        let both = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.5",
            ),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &both, &proxies()),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn an_unparsable_entry_stops_at_the_last_trusted_hop() {
        let hidden = headers(&[("forwarded", "for=unknown, for=10.0.0.5")]);
        assert_eq!(resolve(ip("10.0.0.9"), &hidden, &proxies()), ip("10.0.0.5"));
        let none = headers(&[]);
        assert_eq!(resolve(ip("10.0.0.9"), &none, &proxies()), ip("10.0.0.9"));
    }

    #[test]
    fn ipv4_mapped_peers_are_compared_as_ipv4() {
        let chain = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            resolve(ip("::ffff:10.0.0.9"), &chain, &proxies()),
            ip("198.51.100.7")
        );
    }
}
