//! Structured logs: JSON lines on stdout (or a readable format for a developer's terminal), and
//! one access-log event per request.
//!
//! The access log records the method, the route template (never the raw path or its query
//! string: either can carry tokens or personal data), the status and the latency: never headers
//! or bodies.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use std::sync::Arc;

use security::logging::allowlist::{AllowlistLayer, LineFormat};
use security::logging::audit::RouteTemplate;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

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
        .with(AllowlistLayer::new(std::io::stdout, format).with_filter(not_audit))
        .try_init();
    if installed.is_err() {
        // Already installed (tests boot several apps in one process).
    }
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
        let response = match self.next.call(req).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        tracing::info!(
            method = %method,
            route = %route,
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        Ok(response)
    }
}
