//! Plain HTTP handled honestly (TLS-1).
//!
//! Threat: a redirect built from the request's `Host` header sends users wherever an attacker
//! points it (poem's `ForceHttps` does exactly that). A transparent redirect of a request that
//! carried a bearer token, an API key or a cookie hides the fact that the credential has already
//! crossed the network in clear: the client "works" and never learns it must rotate the secret.
//! Behind a TLS-terminating proxy, trusting `X-Forwarded-Proto` (or `Forwarded: proto=`) from
//! anyone lets a client claim a plaintext request was encrypted.
//!
//! Control:
//! - [`RedirectToHttps`], the endpoint of the plain-HTTP listener, answers a browser navigation
//!   (GET or HEAD without credentials) with 308 to the same path and query on the configured
//!   HTTPS origin, never one derived from the request. A request carrying credentials
//!   (`Authorization`, `Proxy-Authorization`, `Cookie`, an API-key header, an `access_token`
//!   query parameter) or using another method gets a JSON 403 and an audit event instead.
//! - [`RequireHttpsBehindProxy`], for a service whose only listener is plaintext behind a
//!   TLS-terminating proxy, lets a request through only when its peer address is one of the
//!   trusted proxies and the proxy says `https` in the header it is declared to write
//!   (`server.forwarded_header`: the last `X-Forwarded-Proto` value, or the `proto` of the last
//!   `Forwarded` element; see [`TrustedProxies::forwarded_proto`]); anything else is handled as
//!   on the plain-HTTP listener.
//!
//! The rest of TLS-1: the service listens with HTTPS by default, on a certificate from a local
//! development CA created on first run ([`super::dev_ca`]) or the configured one, replaced without
//! a restart ([`super::tls`]); a plaintext public origin refuses start-up in every environment;
//! HSTS of at least a year with `includeSubDomains` is on every response
//! ([`super::secure_headers`]; production refuses less).
//!
//! Default: `tls.mode = "self_signed"` (the development CA) and the plain-HTTP listener on port
//! 8080 (`[http_redirect]`), which only redirects and refuses; `tls.mode = "terminated_by_proxy"`
//! serves plaintext through [`RequireHttpsBehindProxy`] only. Serving the API in plaintext, or
//! redirecting credentialed requests, would teach clients that plaintext works while their
//! credentials cross the network in clear.

use std::net::IpAddr;
use std::sync::Arc;

use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::json_error::json_error;
use crate::logging::audit::{AuditEvent, Outcome};
use crate::transport::client_ip::TrustedProxies;

/// What plain HTTP is answered with, and who may speak for a client over it.
#[derive(Debug, Clone)]
pub struct PlaintextPolicy {
    https_origin: String,
    credential_headers: Vec<HeaderName>,
    trusted_proxies: TrustedProxies,
}

impl PlaintextPolicy {
    /// `https_origin` is the canonical origin (`https://api.example.com[:port]`);
    /// `api_key_headers` are the headers that carry API keys (each counts as a credential).
    pub fn new(https_origin: &str, api_key_headers: &[HeaderName]) -> Self {
        let mut credential_headers = vec![
            header::AUTHORIZATION,
            header::PROXY_AUTHORIZATION,
            header::COOKIE,
        ];
        credential_headers.extend(api_key_headers.iter().cloned());
        Self {
            https_origin: https_origin.trim_end_matches('/').to_owned(),
            credential_headers,
            trusted_proxies: TrustedProxies::default(),
        }
    }

    /// The proxies whose word that a request arrived over HTTPS is believed.
    pub fn trusting_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// Whether `request` came through a trusted proxy that received it over HTTPS.
    pub fn forwarded_over_https(&self, request: &Request) -> bool {
        let Some(peer) = peer_ip(request) else {
            return false;
        };
        if !self.trusted_proxies.contains(&peer) {
            return false;
        }
        self.trusted_proxies
            .forwarded_proto(request.headers())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"))
    }

    /// The answer to a request that arrived over plain HTTP.
    pub fn answer(&self, request: &Request) -> Response {
        if let Some(reason) = self.credential_in(request) {
            AuditEvent::for_request(
                request,
                "transport.plaintext_credentials",
                Outcome::Denied,
                reason,
            )
            .record();
            return json_error(
                StatusCode::FORBIDDEN,
                "HTTPS required: credentials sent over plain HTTP must be treated as exposed",
                request,
            );
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            AuditEvent::for_request(
                request,
                "transport.plaintext_request",
                Outcome::Denied,
                "method_not_redirectable",
            )
            .record();
            return json_error(StatusCode::FORBIDDEN, "HTTPS required", request);
        }
        let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let location = format!("{}{}", self.https_origin, path_and_query);
        match HeaderValue::try_from(location) {
            Ok(location) => Response::builder()
                .status(StatusCode::PERMANENT_REDIRECT)
                .header(header::LOCATION, location)
                .finish(),
            Err(_) => json_error(StatusCode::BAD_REQUEST, "Bad request", request),
        }
    }

    /// The reason code of the first credential found, if any.
    fn credential_in(&self, request: &Request) -> Option<&'static str> {
        for name in &self.credential_headers {
            if request.headers().contains_key(name) {
                return Some(match *name {
                    header::AUTHORIZATION => "authorization_header",
                    header::PROXY_AUTHORIZATION => "proxy_authorization_header",
                    header::COOKIE => "cookie",
                    _ => "api_key_header",
                });
            }
        }
        let query = request.uri().query().unwrap_or_default();
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("access_token"))
            .then_some("access_token_query")
    }
}

fn peer_ip(request: &Request) -> Option<IpAddr> {
    request
        .remote_addr()
        .as_socket_addr()
        .map(|addr| addr.ip().to_canonical())
}

/// The endpoint of the plain-HTTP listener: redirect navigations, refuse the rest.
#[derive(Debug, Clone)]
pub struct RedirectToHttps {
    policy: Arc<PlaintextPolicy>,
}

impl RedirectToHttps {
    pub fn new(policy: PlaintextPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl Endpoint for RedirectToHttps {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Response> {
        Ok(self.policy.answer(&request))
    }
}

/// Middleware for a plaintext listener behind a TLS-terminating proxy.
#[derive(Debug, Clone)]
pub struct RequireHttpsBehindProxy {
    policy: Arc<PlaintextPolicy>,
}

impl RequireHttpsBehindProxy {
    pub fn new(policy: PlaintextPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<E: Endpoint> Middleware<E> for RequireHttpsBehindProxy {
    type Output = RequireHttpsBehindProxyEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        RequireHttpsBehindProxyEndpoint {
            next,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// The endpoint produced by [`RequireHttpsBehindProxy`].
#[derive(Debug)]
pub struct RequireHttpsBehindProxyEndpoint<E> {
    next: E,
    policy: Arc<PlaintextPolicy>,
}

impl<E: Endpoint> Endpoint for RequireHttpsBehindProxyEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Response> {
        if self.policy.forwarded_over_https(&request) {
            self.next
                .call(request)
                .await
                .map(IntoResponse::into_response)
        } else {
            Ok(self.policy.answer(&request))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use poem::http::uri::Scheme;
    use poem::web::{LocalAddr, RemoteAddr};
    use poem::{Addr, RequestParts};

    use super::*;
    use crate::transport::client_ip::ForwardedHeader;

    fn policy() -> PlaintextPolicy {
        policy_behind(ForwardedHeader::XForwardedFor)
    }

    fn policy_behind(header: ForwardedHeader) -> PlaintextPolicy {
        PlaintextPolicy::new(
            "https://api.example.com",
            &[HeaderName::from_static("x-api-key")],
        )
        .trusting_proxies(TrustedProxies::new(
            &["10.0.0.0/8".parse().expect("cidr")],
            header,
        ))
    }

    /// A request from `peer`, with a Host header an attacker chose.
    fn request(method: Method, uri: &str, headers: &[(&str, &str)], peer: &str) -> Request {
        let mut builder = poem::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, "evil.example");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).expect("request").into_parts();
        let peer: SocketAddr = peer.parse().expect("peer");
        let parts = RequestParts::from((
            parts,
            LocalAddr::default(),
            RemoteAddr(Addr::SocketAddr(peer)),
            Scheme::HTTP,
        ));
        Request::from_parts(parts, poem::Body::empty())
    }

    #[test]
    fn navigations_go_to_the_configured_origin_whatever_the_host_header() {
        let req = request(Method::GET, "/v1/users?page=2", &[], "1.2.3.4:5");
        let response = policy().answer(&req);
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()[header::LOCATION],
            "https://api.example.com/v1/users?page=2"
        );
    }

    #[test]
    fn credentials_are_refused_not_redirected() {
        for (name, value) in [
            ("authorization", "Bearer x"),
            ("cookie", "session=x"),
            ("x-api-key", "k"),
        ] {
            let req = request(Method::GET, "/", &[(name, value)], "1.2.3.4:5");
            assert_eq!(
                policy().answer(&req).status(),
                StatusCode::FORBIDDEN,
                "{name}"
            );
        }
        let req = request(Method::GET, "/?access_token=x", &[], "1.2.3.4:5");
        assert_eq!(policy().answer(&req).status(), StatusCode::FORBIDDEN);
        let req = request(Method::POST, "/v1/users", &[], "1.2.3.4:5");
        assert_eq!(policy().answer(&req).status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn forwarded_proto_counts_only_from_trusted_peers() {
        let proto = |value| [("x-forwarded-proto", value)];
        let trusted = request(Method::GET, "/", &proto("https"), "10.1.2.3:5");
        assert!(policy().forwarded_over_https(&trusted));
        let untrusted = request(Method::GET, "/", &proto("https"), "1.2.3.4:5");
        assert!(!policy().forwarded_over_https(&untrusted));
        let plaintext = request(Method::GET, "/", &proto("https, http"), "10.1.2.3:5");
        assert!(!policy().forwarded_over_https(&plaintext));
    }

    #[test]
    fn behind_a_proxy_writing_forwarded_only_its_proto_counts() {
        let forwarded = policy_behind(ForwardedHeader::Forwarded);
        let appended = [(
            "forwarded",
            "for=1.1.1.1;proto=http, for=1.2.3.4;proto=https",
        )];
        let trusted = request(Method::GET, "/", &appended, "10.1.2.3:5");
        assert!(forwarded.forwarded_over_https(&trusted));
        let forged = [(
            "forwarded",
            "for=1.1.1.1;proto=https, for=1.2.3.4;proto=http",
        )];
        let plaintext = request(Method::GET, "/", &forged, "10.1.2.3:5");
        assert!(!forwarded.forwarded_over_https(&plaintext));
        let other_header = [("x-forwarded-proto", "https")];
        let undeclared = request(Method::GET, "/", &other_header, "10.1.2.3:5");
        assert!(
            !forwarded.forwarded_over_https(&undeclared),
            "X-Forwarded-Proto is not the declared header"
        );
        let proto_in_forwarded = request(Method::GET, "/", &appended, "10.1.2.3:5");
        assert!(
            !policy().forwarded_over_https(&proto_in_forwarded),
            "Forwarded is not the declared header"
        );
    }
}
