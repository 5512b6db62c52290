//! Structured logs: JSON lines on stdout (or a readable format for a developer's terminal), and
//! one access-log event per request.
//!
//! The access log records the method, the path without its query string (queries can carry
//! tokens or personal data), the status and the latency: never headers or bodies.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use security::logging::allowlist::{AllowlistLayer, LineFormat};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber: the filter, then [`AllowlistLayer`], which writes only
/// allowlisted fields (LOG-5). The filter was validated with the configuration.
pub fn init(settings: &LogSettings) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // Audit events have their own sink (`crate::audit`), never the application log.
    let filter = EnvFilter::try_new(format!("{},audit=off", settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info,audit=off"));
    let format = match settings.format {
        LogFormat::Json => LineFormat::Json,
        LogFormat::Pretty => LineFormat::Pretty,
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(AllowlistLayer::new(std::io::stdout, format))
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
        let path = req.uri().path().to_owned();
        let response = match self.next.call(req).await {
            Ok(output) => output.into_response(),
            Err(error) => error.into_response(),
        };
        tracing::info!(
            method = %method,
            path = %path.escape_debug(),
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        Ok(response)
    }
}
