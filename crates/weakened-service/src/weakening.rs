//! The controls the harness can turn off, one at a time, and how: the router's and listener's
//! through `AppBuilder::insecure_controls`, the response-level ones by wrapping the finished
//! endpoint, after every layer of the service has run.

use app::startup::{AppBuilder, Controls};
use poem::endpoint::BoxEndpoint;
use poem::http::HeaderValue;
use poem::{Endpoint, EndpointExt};

use crate::probe::ProbeApi;

/// One control turned off, named as the `--off` argument names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weakening {
    /// `Strict-Transport-Security` sent with `max-age=0` (TLS-1).
    Hsts,
    /// TLS 1.2 accepted beside 1.3 (TLS-2).
    Tls13Only,
    /// Request objects left open in the published document (INPUT-1); `POST
    /// /v1/weakened/probe`, closed nowhere else, then takes unknown fields.
    UnknownFieldRejection,
    /// Any valid credential passes, whatever scopes it holds (AUTH-4).
    ScopeCheck,
    /// No rate limits at all (RATE-1 .. RATE-3).
    RateLimit,
    /// Responses without nosniff, Content-Security-Policy, Referrer-Policy and Cache-Control
    /// (TLS-5).
    SecurityHeaders,
    /// A `Server` banner on every response (TLS-5).
    Banner,
    /// Any `Origin` granted CORS with credentials (TLS-4).
    CorsAllowlist,
}

impl Weakening {
    /// The service of `builder` with this control turned off.
    pub fn apply(self, builder: AppBuilder<ProbeApi>) -> AppBuilder<ProbeApi> {
        tracing::error!(control = ?self, "WEAKENED BUILD: a security control is turned off");
        let all = Controls::ALL;
        let controls = match self {
            Self::Tls13Only => Controls {
                tls_server_config: crate::tls12::server_config_accepting_tls12,
                ..all
            },
            Self::UnknownFieldRejection => Controls {
                unknown_field_rejection: false,
                ..all
            },
            Self::ScopeCheck => Controls {
                scope_check: false,
                ..all
            },
            Self::RateLimit => Controls {
                rate_limit: false,
                ..all
            },
            Self::Hsts | Self::SecurityHeaders | Self::Banner | Self::CorsAllowlist => {
                return builder.insecure_wrap_endpoint(move |endpoint| self.responses(endpoint));
            }
        };
        builder.insecure_controls(controls)
    }

    /// The weakenings that act on finished responses: HSTS disabled, security headers stripped,
    /// a banner added, or a foreign origin granted CORS with credentials.
    fn responses(self, endpoint: BoxEndpoint<'static>) -> BoxEndpoint<'static> {
        endpoint
            .around(move |next, request| async move {
                let origin = request.headers().get("origin").cloned();
                let mut response = next.call(request).await?;
                let headers = response.headers_mut();
                match self {
                    Self::Hsts => {
                        headers.insert(
                            "strict-transport-security",
                            HeaderValue::from_static("max-age=0"),
                        );
                    }
                    Self::SecurityHeaders => {
                        for name in [
                            "x-content-type-options",
                            "content-security-policy",
                            "referrer-policy",
                            "cache-control",
                        ] {
                            headers.remove(name);
                        }
                    }
                    Self::Banner => {
                        headers.insert("server", HeaderValue::from_static("poem/3 (weakened)"));
                    }
                    Self::CorsAllowlist => {
                        if let Some(origin) = origin {
                            headers.insert("access-control-allow-origin", origin);
                            headers.insert(
                                "access-control-allow-credentials",
                                HeaderValue::from_static("true"),
                            );
                        }
                    }
                    Self::Tls13Only
                    | Self::UnknownFieldRejection
                    | Self::ScopeCheck
                    | Self::RateLimit => {}
                }
                Ok(response)
            })
            .boxed()
    }
}
