//! CORS from an allowlist of exact origins (TLS-4).
//!
//! Threat: a CORS policy that reflects any `Origin`, allows `null`, or combines a wildcard with
//! credentials lets any web page a user visits call the API with the user's credentials and
//! read the answers.
//!
//! Control: only origins listed exactly (`https://app.example.com`, scheme and port included)
//! get CORS headers; every response says `Vary: Origin`, so a cache never serves one origin's
//! grant to another. A preflight from any other origin, or asking for a method or header that
//! is not allowed, gets a JSON 403 without CORS headers, so the browser blocks the call. A
//! request from a foreign origin is still served, without CORS headers: the browser withholds
//! the response from the calling page, and same-origin and non-browser clients are unaffected.
//! A wildcard (`*`), `null` or a malformed origin in the list refuses start-up: every route here
//! accepts credentials, and browsers never send them to a wildcard anyway.
//!
//! Default: an empty list (`cors.allowed_origins`), so no other origin's page can read an answer.
//! Listing an origin trusts every script it serves with its users' credentials here.
//!
//! poem's own `Cors` is not used: with an empty list it allows every origin, it answers foreign
//! origins with 403 even on simple requests, and it sets `Vary` only for pattern matches
//! (decision 0007).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, Middleware, Request, Response, Result};

use crate::json_error::json_error;

/// The methods a cross-origin page may use.
pub const DEFAULT_ALLOWED_METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The request headers a cross-origin page may send.
pub const DEFAULT_ALLOWED_HEADERS: [&str; 5] = [
    "authorization",
    "content-type",
    "idempotency-key",
    "x-api-key",
    "x-request-id",
];

/// The response headers a cross-origin page may read, beyond the CORS-safelisted ones.
pub const DEFAULT_EXPOSED_HEADERS: [&str; 5] = [
    "x-request-id",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "idempotent-replayed",
];

/// Configuration of [`Cors`].
#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Exact origins, e.g. `https://app.example.com`.
    pub allowed_origins: Vec<String>,
    /// Whether allowed origins may send cookies or HTTP authentication.
    pub allow_credentials: bool,
    /// How long a browser may cache a successful preflight.
    pub max_age: Duration,
}

/// Why a CORS configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsConfigError {
    #[error(
        "`*` is not an origin: a wildcard would let every website call routes that accept \
         credentials; list the exact origins"
    )]
    Wildcard,
    #[error(
        "`null` is the origin of sandboxed frames and local files, which any website can \
         create; list real origins"
    )]
    Null,
    #[error(
        "`{0}` is not an origin: expected scheme://host[:port], without path or trailing slash"
    )]
    NotAnOrigin(String),
}

/// Checks one configured origin.
pub fn check_origin(origin: &str) -> Result<(), CorsConfigError> {
    match origin {
        "*" => return Err(CorsConfigError::Wildcard),
        "null" => return Err(CorsConfigError::Null),
        _ => {}
    }
    // Browsers send origins in lower case, and a pattern is not an origin.
    match super::origin::parse(origin) {
        Some(_) if origin == origin.to_ascii_lowercase() && !origin.contains('*') => Ok(()),
        _ => Err(CorsConfigError::NotAnOrigin(origin.to_owned())),
    }
}

/// The CORS middleware.
#[derive(Debug, Clone)]
pub struct Cors {
    policy: Arc<Policy>,
}

#[derive(Debug)]
struct Policy {
    origins: HashSet<HeaderValue>,
    allow_credentials: bool,
    methods: HashSet<Method>,
    headers: HashSet<HeaderName>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
}

impl Cors {
    /// Builds the policy; refuses wildcards, `null` and malformed origins.
    pub fn new(config: &CorsConfig) -> Result<Self, CorsConfigError> {
        let mut origins = HashSet::new();
        for origin in &config.allowed_origins {
            check_origin(origin)?;
            let value = HeaderValue::from_str(origin)
                .map_err(|_| CorsConfigError::NotAnOrigin(origin.clone()))?;
            origins.insert(value);
        }
        let join = |items: &mut dyn Iterator<Item = &str>| {
            HeaderValue::from_str(&items.collect::<Vec<_>>().join(", "))
                .unwrap_or_else(|_| HeaderValue::from_static(""))
        };
        Ok(Self {
            policy: Arc::new(Policy {
                origins,
                allow_credentials: config.allow_credentials,
                methods: DEFAULT_ALLOWED_METHODS.into_iter().collect(),
                headers: DEFAULT_ALLOWED_HEADERS
                    .iter()
                    .map(|h| HeaderName::from_static(h))
                    .collect(),
                allow_methods: join(&mut DEFAULT_ALLOWED_METHODS.iter().map(Method::as_str)),
                allow_headers: join(&mut DEFAULT_ALLOWED_HEADERS.iter().copied()),
                expose_headers: join(&mut DEFAULT_EXPOSED_HEADERS.iter().copied()),
                max_age: HeaderValue::from(config.max_age.as_secs()),
            }),
        })
    }
}

impl<E: Endpoint> Middleware<E> for Cors {
    type Output = CorsEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        CorsEndpoint {
            next,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// The endpoint produced by [`Cors`].
#[derive(Debug)]
pub struct CorsEndpoint<E> {
    next: E,
    policy: Arc<Policy>,
}

impl Policy {
    fn allowed_origin(&self, request: &Request) -> Option<HeaderValue> {
        request
            .headers()
            .get(header::ORIGIN)
            .filter(|origin| self.origins.contains(*origin))
            .cloned()
    }

    fn preflight_allowed(&self, request: &Request) -> bool {
        let method_ok = request
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| Method::from_bytes(value.as_bytes()).ok())
            .is_some_and(|method| self.methods.contains(&method));
        // Every requested header must be allowed, not just one of them.
        let headers_ok = request
            .headers()
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .all(|value| {
                value.to_str().is_ok_and(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                        .all(|name| {
                            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                                .is_ok_and(|name| self.headers.contains(&name))
                        })
                })
            });
        method_ok && headers_ok
    }

    fn grant(&self, response: &mut Response, origin: HeaderValue) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.allow_credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

fn vary_origin(response: &mut Response) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("Origin"));
}

impl<E: Endpoint> Endpoint for CorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Response> {
        let policy = &self.policy;
        let is_preflight = request.method() == Method::OPTIONS
            && request.headers().contains_key(header::ORIGIN)
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let origin = policy.allowed_origin(&request);

        if is_preflight {
            let mut response = match origin {
                Some(origin) if policy.preflight_allowed(&request) => {
                    let mut response = Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .header(
                            header::ACCESS_CONTROL_ALLOW_METHODS,
                            policy.allow_methods.clone(),
                        )
                        .header(
                            header::ACCESS_CONTROL_ALLOW_HEADERS,
                            policy.allow_headers.clone(),
                        )
                        .header(header::ACCESS_CONTROL_MAX_AGE, policy.max_age.clone())
                        .finish();
                    policy.grant(&mut response, origin);
                    response
                }
                _ => json_error(StatusCode::FORBIDDEN, "CORS request not allowed", &request),
            };
            vary_origin(&mut response);
            return Ok(response);
        }

        let mut response = self.next.get_response(request).await;
        vary_origin(&mut response);
        if let Some(origin) = origin {
            policy.grant(&mut response, origin);
            response.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                policy.expose_headers.clone(),
            );
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use poem::test::TestClient;
    use poem::{EndpointExt, handler};

    use super::*;

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }

    fn client() -> TestClient<impl Endpoint> {
        let cors = Cors::new(&CorsConfig {
            allowed_origins: vec!["https://app.example.com".to_owned()],
            allow_credentials: true,
            max_age: Duration::from_secs(600),
        })
        .expect("valid");
        TestClient::new(hello.with(cors))
    }

    #[test]
    fn wildcards_null_and_non_origins_are_refused() {
        assert_eq!(check_origin("*"), Err(CorsConfigError::Wildcard));
        assert_eq!(check_origin("null"), Err(CorsConfigError::Null));
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://*.example.com",
            "https://App.example.com",
            "ftp://app.example.com",
        ] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
        assert!(check_origin("http://localhost:3000").is_ok());
    }

    #[tokio::test]
    async fn an_allowed_origin_gets_a_grant_and_vary() {
        let response = client()
            .get("/")
            .header("origin", "https://app.example.com")
            .send()
            .await;
        response.assert_header("access-control-allow-origin", "https://app.example.com");
        response.assert_header("access-control-allow-credentials", "true");
        response.assert_header("vary", "Origin");
    }

    #[tokio::test]
    async fn a_foreign_origin_gets_no_grant_and_a_failed_preflight() {
        let response = client()
            .get("/")
            .header("origin", "https://evil.example")
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_header_is_not_exist("access-control-allow-origin");
        response.assert_header("vary", "Origin");

        let preflight = client()
            .options("/")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await;
        preflight.assert_status(StatusCode::FORBIDDEN);
        preflight.assert_header_is_not_exist("access-control-allow-origin");
    }

    #[tokio::test]
    async fn a_preflight_for_an_unlisted_header_fails_even_with_allowed_ones() {
        let preflight = client()
            .options("/")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-evil")
            .send()
            .await;
        preflight.assert_status(StatusCode::FORBIDDEN);

        let preflight = client()
            .options("/")
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
            .await;
        preflight.assert_status(StatusCode::NO_CONTENT);
        preflight.assert_header("access-control-allow-origin", "https://app.example.com");
    }
}
