//! `bench-service baseline`: [`crate::ping::ping`] on the service's own TLS listener (same
//! certificate, TLS 1.3 configuration and connection limits) with no middleware at all, until
//! Ctrl-C or SIGTERM. What the full service costs more than this is the price of the stack.

use std::time::Duration;

use app::config::Settings;
use app::startup::{self, StartupError};
use poem::EndpointExt;

/// Serves the bare handler until `shutdown` completes.
pub async fn serve(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let listener = startup::bind_main_listener(&settings).await?;
    let address = listener.local_addr();
    let endpoint =
        poem::endpoint::make_sync(|_| poem::web::Json(crate::ping::ping())).map_to_response();
    tracing::info!(address = %address, "bare baseline listening");
    listener
        .serve(
            endpoint,
            startup::listener_limits(&settings),
            shutdown,
            Duration::from_secs(settings.server.shutdown_grace_seconds),
        )
        .await
        .map_err(|source| StartupError::Bind { address, source })
}
