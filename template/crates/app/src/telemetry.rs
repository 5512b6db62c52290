//! Structured logs: JSON lines on stdout (or a readable format for a developer's terminal), and
//! one access-log event per request.
//!
//! The access log records the method, the route template (never the raw path or its query
//! string: either can carry tokens or personal data), the allowlisted request headers
//! ([`LOGGED_HEADERS`]), the status and the latency: never a credential header or a body.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use poem::http::HeaderMap;
use poem::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, USER_AGENT};

use security::logging::allowlist::{AllowlistLayer, LineFormat};
use security::logging::audit::RouteTemplate;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// What the application log refused to write so far, for the metrics
/// (`log_fields_dropped_total`). One counter per process, like the subscriber.
pub fn dropped_log_fields() -> Arc<AtomicU64> {
    static DROPPED: std::sync::LazyLock<Arc<AtomicU64>> = std::sync::LazyLock::new(Arc::default);
    Arc::clone(&DROPPED)
}

/// Installs the global subscriber: the filter, then [`AllowlistLayer`], which writes only
/// allowlisted fields (LOG-5). The filter was validated with the configuration.
pub fn init(settings: &LogSettings) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Audit events have their own sink (`crate::audit`), never the application log.
    let filter = EnvFilter::try_new(format!("{},audit=off", settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info,audit=off"));
    let format = match settings.format {
        LogFormat::Json => LineFormat::Json,
        LogFormat::Pretty => LineFormat::Pretty,
    };
    // The layer itself refuses the audit target too: a span directive in `log.level`
    // (`[request]=debug`) would otherwise let audit events past the filter.
    let not_audit = tracing_subscriber::filter::filter_fn(|metadata| metadata.target() != "audit");
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(
            AllowlistLayer::new(std::io::stdout, format)
                .counting_into(dropped_log_fields())
                .with_filter(not_audit),
        )
        .try_init();
    if installed.is_err() {
        // Already installed (tests boot several apps in one process).
    }
}

/// The request headers the access log records (LOG-5). Any other header is never logged: above
/// all `Authorization`, `Cookie` and `X-API-Key`, which carry credentials (and `Set-Cookie`, a
/// response header, is not looked at).
pub const LOGGED_HEADERS: [HeaderName; 3] = [USER_AGENT, CONTENT_TYPE, CONTENT_LENGTH];

/// `user-agent="curl/8.5" content-type="application/json"`: the allowlisted headers present, each
/// value quoted and escaped, at most 200 characters.
fn logged_headers(headers: &HeaderMap) -> String {
    let mut logged = String::new();
    for name in &LOGGED_HEADERS {
        if let Some(value) = headers.get(name) {
            let value = String::from_utf8_lossy(value.as_bytes());
            let value: String = value.chars().take(200).collect();
            if !logged.is_empty() {
                logged.push(' ');
            }
            logged.push_str(&format!("{name}=\"{}\"", value.escape_debug()));
        }
    }
    logged
}

/// Middleware writing one access-log event per request.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessLog;

impl<E: Endpoint> Middleware<E> for AccessLog {
    type Output = AccessLogEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        AccessLogEndpoint { next }
    }
}

/// The endpoint produced by [`AccessLog`].
#[derive(Debug)]
pub struct AccessLogEndpoint<E> {
    next: E,
}

impl<E: Endpoint> Endpoint for AccessLogEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let method = req.method().clone();
        // The operation's template, never the raw path: a client can put anything in a path
        // (a pasted API key, an email), and identifiers are not the log's business.
        let route = req
            .extensions()
            .get::<RouteTemplate>()
            .map_or_else(|| Arc::from("unmatched"), |route| Arc::clone(&route.0));
        let headers = logged_headers(req.headers());
        let response = match self.next.call(req).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        tracing::info!(
            method = %method,
            route = %route,
            headers = %headers,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;
    use poem::http::header::{AUTHORIZATION, COOKIE};

    use super::*;

    #[test]
    fn only_allowlisted_headers_are_logged_quoted_and_escaped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer secret-token"),
        );
        headers.insert(
            COOKIE,
            HeaderValue::from_static("__Host-refresh_token=secret"),
        );
        headers.insert("x-api-key", HeaderValue::from_static("rmp_secret"));
        headers.insert(USER_AGENT, HeaderValue::from_static("probe\"/1 x=\"y\""));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("12"));
        let logged = logged_headers(&headers);
        assert!(!logged.contains("secret"), "{logged}");
        assert_eq!(
            logged,
            r#"user-agent="probe\"/1 x=\"y\"" content-length="12""#
        );
    }
}
