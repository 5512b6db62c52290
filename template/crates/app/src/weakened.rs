//! A build with one control turned off, so the checklist scanner's tests can prove that each of
//! its checks fails when its control is missing (a check that cannot fail proves nothing).
//!
//! Compiled only with the `weakened-controls` feature, never in a default build; the control is
//! named at start-up by `WEAKENED_CONTROL`, and a production configuration refuses to start with
//! this build at all. Each use in `startup` sits under `#[cfg(feature = "weakened-controls")]`, in plain view.

use poem::endpoint::BoxEndpoint;
use poem::http::HeaderValue;
use poem::{Endpoint, EndpointExt, Response};

use crate::config::{Environment, Settings};

/// The controls a weakened build can turn off, one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `Strict-Transport-Security` sent with `max-age=0`.
    Hsts,
    /// TLS 1.2 accepted beside 1.3.
    Tls13Only,
    /// Request objects left open in the published document; `NewNote`, which this build does
    /// not close in code, then takes unknown fields.
    UnknownFieldRejection,
    /// Any valid credential passes, whatever scopes it holds.
    ScopeCheck,
    /// No rate limits at all.
    RateLimit,
    /// Responses without nosniff, Content-Security-Policy, Referrer-Policy and Cache-Control.
    SecurityHeaders,
    /// A `Server` banner on every response.
    Banner,
    /// Any `Origin` granted CORS with credentials.
    CorsAllowlist,
}

pub const VARIABLE: &str = "WEAKENED_CONTROL";

/// The control `WEAKENED_CONTROL` turns off, if any.
pub fn control() -> Option<Control> {
    match std::env::var(VARIABLE).ok()?.as_str() {
        "hsts" => Some(Control::Hsts),
        "tls13-only" => Some(Control::Tls13Only),
        "unknown-field-rejection" => Some(Control::UnknownFieldRejection),
        "scope-check" => Some(Control::ScopeCheck),
        "rate-limit" => Some(Control::RateLimit),
        "security-headers" => Some(Control::SecurityHeaders),
        "banner" => Some(Control::Banner),
        "cors-allowlist" => Some(Control::CorsAllowlist),
        _ => None,
    }
}

/// Whether this process runs with `control` turned off.
pub fn is_off(control: Control) -> bool {
    self::control() == Some(control)
}

/// Refuses production outright (this build must never serve anyone, whether or not a control
/// is named: it also leaves `NewNote` open in code), and says loudly which control is off.
pub fn refuse_in_production(settings: &Settings) -> Result<(), String> {
    if settings.environment == Environment::Production {
        return Err(
            "this build has the weakened-controls feature, for the scanner's tests only; it \
             must never run in production"
                .to_owned(),
        );
    }
    match control() {
        Some(control) => {
            tracing::error!(?control, "WEAKENED BUILD: a security control is turned off");
            Ok(())
        }
        None if std::env::var_os(VARIABLE).is_some() => Err(format!(
            "{VARIABLE} names no control: hsts, tls13-only, unknown-field-rejection, \
             scope-check, rate-limit, security-headers, banner or cors-allowlist"
        )),
        None => Ok(()),
    }
}

/// The weakenings that act on finished responses, wrapped around the whole service: security
/// headers stripped, a banner added, or a foreign origin granted CORS with credentials.
pub fn responses(
    endpoint: impl Endpoint<Output = Response> + 'static,
) -> BoxEndpoint<'static, Response> {
    let control = control();
    endpoint
        .around(move |next, request| async move {
            let origin = request.headers().get("origin").cloned();
            let mut response = next.call(request).await?;
            let headers = response.headers_mut();
            match control {
                Some(Control::SecurityHeaders) => {
                    for name in [
                        "x-content-type-options",
                        "content-security-policy",
                        "referrer-policy",
                        "cache-control",
                    ] {
                        headers.remove(name);
                    }
                }
                Some(Control::Banner) => {
                    headers.insert("server", HeaderValue::from_static("poem/3 (weakened)"));
                }
                Some(Control::CorsAllowlist) => {
                    if let Some(origin) = origin {
                        headers.insert("access-control-allow-origin", origin);
                        headers.insert(
                            "access-control-allow-credentials",
                            HeaderValue::from_static("true"),
                        );
                    }
                }
                _ => {}
            }
            Ok(response)
        })
        .boxed()
}
