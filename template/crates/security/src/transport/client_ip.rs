//! The client's address (RATE-5; RATE-1 and LOG-1 use it): what rate limits key on and audit
//! events record.
//!
//! Threat: `X-Forwarded-For` and `Forwarded` are request headers anyone can write. Trusted
//! blindly, they let a client pick the address its rate limit is counted under (a new one per
//! request) and put any address in the audit log. Trusting the wrong one of the two is as bad:
//! common proxies append to `X-Forwarded-For` and pass a client's own `Forwarded` through
//! untouched (or the reverse), so a service that reads whichever is present reads the client's.
//!
//! Control: the client is the TCP peer. Only when the peer is one of the configured trusted
//! proxies (`server.trusted_proxies`) is the one header they write read
//! (`server.forwarded_header`, [`ForwardedHeader`]; the other is ignored entirely), right to
//! left, skipping the trusted proxies' own entries; the first address that is not a trusted
//! proxy is the client. The left part of the header, written by whoever sent the request first,
//! is never believed. An entry that does not parse ends the walk at the last trusted hop, and a
//! request from a trusted proxy without the header is the proxy's own. The same header gives the
//! scheme the proxy received the request over ([`TrustedProxies::forwarded_proto`], TLS-1).
//!
//! Default: no trusted proxy (every client is its TCP peer) and `x-forwarded-for`, the header
//! most proxies write. Declaring a header the proxy does not overwrite or append to hands every
//! client its choice of address: `docs/deployment.md` names the header of each common proxy
//! (decision 0015). IPv4-mapped IPv6 peers are compared as IPv4, so a proxy listed by its IPv4
//! address is recognised on a dual-stack socket.

use std::net::IpAddr;

use ipnet::IpNet;
use poem::http::HeaderMap;
use poem::{Endpoint, Middleware, Request, Result};
use serde::{Deserialize, Serialize};

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

/// The header the trusted proxies write the client's address and scheme in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, with the scheme in `X-Forwarded-Proto` (nginx, HAProxy
    /// `option forwardfor`, the cloud load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239): `for=` and `proto=` of its elements (HAProxy `option forwarded`).
    Forwarded,
}

/// The reverse proxies allowed to speak for clients, and the one header they speak in.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    pub fn new(networks: &[IpNet], header: ForwardedHeader) -> Self {
        Self {
            networks: networks.to_vec(),
            header,
        }
    }

    /// Whether `address` is one of the trusted proxies.
    pub fn contains(&self, address: &IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(address))
    }

    /// The scheme the nearest proxy received the request over: the last `X-Forwarded-Proto`
    /// value, or the `proto` of the last `Forwarded` element (the one the proxy appended).
    /// Meaningful only when the peer is a trusted proxy.
    pub fn forwarded_proto<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        match self.header {
            ForwardedHeader::XForwardedFor => list_entries(headers, "x-forwarded-proto").last(),
            ForwardedHeader::Forwarded => list_entries(headers, "forwarded")
                .last()
                .and_then(|element| forwarded_parameter(element, "proto")),
        }
    }

    /// The client addresses the configured header lists, in order (every header line,
    /// comma-separated); `None` for an entry that is not an address.
    fn hops(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        match self.header {
            ForwardedHeader::XForwardedFor => list_entries(headers, "x-forwarded-for")
                .map(parse_node)
                .collect(),
            ForwardedHeader::Forwarded => list_entries(headers, "forwarded")
                .map(|element| forwarded_parameter(element, "for").and_then(parse_node))
                .collect(),
        }
    }
}

/// The client address of a request from `peer` with `headers`.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, proxies: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !proxies.contains(&peer) {
        return peer;
    }
    // No header at all: the proxy made the request itself (or does not forward), and nothing
    // else in the request may say otherwise.
    let mut client = peer;
    for hop in proxies.hops(headers).iter().rev() {
        match hop {
            Some(address) => {
                client = address.to_canonical();
                if !proxies.contains(&client) {
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

/// The comma-separated entries of every `name` header line, in order, trimmed. Quotes are not
/// honoured on purpose: an unbalanced quote a client writes must not swallow the entry a proxy
/// appends after it.
fn list_entries<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
}

/// The value of parameter `name` (`for`, `proto`) in one `Forwarded` element, unquoted.
fn forwarded_parameter<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    element
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// An address as forwarding headers write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711` (`Forwarded` quotes the last two, [`forwarded_parameter`] unquotes).
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
    proxies: TrustedProxies,
}

impl ClientIpLayer {
    pub fn new(proxies: TrustedProxies) -> Self {
        Self { proxies }
    }
}

impl<E: Endpoint> Middleware<E> for ClientIpLayer {
    type Output = ClientIpEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        ClientIpEndpoint {
            next,
            proxies: self.proxies.clone(),
        }
    }
}

/// The endpoint produced by [`ClientIpLayer`].
#[derive(Debug)]
pub struct ClientIpEndpoint<E> {
    next: E,
    proxies: TrustedProxies,
}

impl<E: Endpoint> Endpoint for ClientIpEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        if let Some(peer) = request.remote_addr().as_socket_addr().map(|addr| addr.ip()) {
            let client = resolve(peer, request.headers(), &self.proxies);
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

    fn proxies(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(&["10.0.0.0/8".parse().expect("net")], header)
    }

    fn x_forwarded_for() -> TrustedProxies {
        proxies(ForwardedHeader::XForwardedFor)
    }

    fn forwarded() -> TrustedProxies {
        proxies(ForwardedHeader::Forwarded)
    }

    #[test]
    fn an_untrusted_peers_forwarding_headers_change_nothing() {
        let forged = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        for trusted in [x_forwarded_for(), forwarded(), TrustedProxies::default()] {
            assert_eq!(
                resolve(ip("198.51.100.7"), &forged, &trusted),
                ip("198.51.100.7"),
                "{trusted:?}"
            );
        }
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_address_is_the_client() {
        // The client forged the left-most entry; the proxies appended the real ones.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &chain, &x_forwarded_for()),
            ip("198.51.100.7")
        );
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7:5555"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &split, &x_forwarded_for()),
            ip("198.51.100.7")
        );
        let chain = headers(&[(
            "forwarded",
            "for=1.1.1.1, for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.5",
        )]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &chain, &forwarded()),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn behind_a_proxy_writing_x_forwarded_for_a_clients_forwarded_header_is_ignored() {
        let both = headers(&[
            ("forwarded", "for=203.0.113.66"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &both, &x_forwarded_for()),
            ip("198.51.100.7")
        );
        let forwarded_only = headers(&[("forwarded", "for=203.0.113.66")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &forwarded_only, &x_forwarded_for()),
            ip("10.0.0.9"),
            "without the declared header the request is the proxy's own"
        );
    }

    #[test]
    fn behind_a_proxy_writing_forwarded_a_clients_x_forwarded_for_is_ignored() {
        let both = headers(&[
            ("forwarded", "for=198.51.100.7;proto=https"),
            ("x-forwarded-for", "203.0.113.66"),
        ]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &both, &forwarded()),
            ip("198.51.100.7")
        );
        let x_forwarded_for_only = headers(&[("x-forwarded-for", "203.0.113.66")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &x_forwarded_for_only, &forwarded()),
            ip("10.0.0.9"),
            "without the declared header the request is the proxy's own"
        );
    }

    #[test]
    fn an_unparsable_entry_stops_at_the_last_trusted_hop() {
        let hidden = headers(&[("forwarded", "for=unknown, for=10.0.0.5")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &hidden, &forwarded()),
            ip("10.0.0.5")
        );
        let no_for = headers(&[("forwarded", "for=198.51.100.7, proto=https")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &no_for, &forwarded()),
            ip("10.0.0.9")
        );
        let hidden = headers(&[("x-forwarded-for", "198.51.100.7, garbage, 10.0.0.5")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &hidden, &x_forwarded_for()),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn an_unbalanced_quote_cannot_swallow_the_entry_the_proxy_appended() {
        let forged = headers(&[("forwarded", "for=\"1.1.1.1, for=198.51.100.7")]);
        assert_eq!(
            resolve(ip("10.0.0.9"), &forged, &forwarded()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_compared_as_ipv4() {
        let chain = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            resolve(ip("::ffff:10.0.0.9"), &chain, &x_forwarded_for()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_scheme_comes_from_the_declared_header_as_the_nearest_proxy_wrote_it() {
        let both = headers(&[
            ("x-forwarded-proto", "http, https"),
            (
                "forwarded",
                "for=1.1.1.1;proto=https, for=198.51.100.7;proto=http",
            ),
        ]);
        assert_eq!(x_forwarded_for().forwarded_proto(&both), Some("https"));
        assert_eq!(forwarded().forwarded_proto(&both), Some("http"));
        let quoted = headers(&[("forwarded", "for=198.51.100.7;Proto=\"https\"")]);
        assert_eq!(forwarded().forwarded_proto(&quoted), Some("https"));
        let x_forwarded_proto_only = headers(&[("x-forwarded-proto", "https")]);
        assert_eq!(forwarded().forwarded_proto(&x_forwarded_proto_only), None);
        let forwarded_only = headers(&[("forwarded", "proto=https")]);
        assert_eq!(x_forwarded_for().forwarded_proto(&forwarded_only), None);
    }
}
