//! Start-up and shutdown: [`App::build`] connects, migrates and binds; [`App::run_until_stopped`]
//! serves until the shutdown future completes, then drains in-flight requests within the
//! configured grace period and closes the pool.
//!
//! Tests boot the real server through the same two calls, on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{Endpoint, EndpointExt, Route, Server};
use sea_orm::{DatabaseConnection, DbErr};
use security::input::body_limit::BodyLimit;
use security::input::strict_json::{self, SchemaError, StrictJson};
use security::logging::request_id::RequestIdLayer;
use security::transport::secure_headers::{
    PagePolicy, RefuseUnusedMethods, SecureHeaders, SecureHeadersConfig,
};

use crate::api;
use crate::config::Settings;
use crate::error::JsonErrors;
use crate::persistence;
use crate::telemetry::AccessLog;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database: {0}")]
    Database(#[source] DbErr),
    #[error("cannot apply migrations: {0}")]
    Migration(#[source] DbErr),
    #[error("invalid security header configuration: {0}")]
    Headers(#[source] poem::http::header::InvalidHeaderValue),
    #[error("{0}")]
    Schema(#[source] SchemaError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A service that is connected, migrated and bound, ready to run.
pub struct App {
    settings: Settings,
    db: DatabaseConnection,
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
    endpoint: poem::endpoint::BoxEndpoint<'static>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects to the database, applies migrations and binds the listener.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let db = persistence::connect(&settings.database)
            .await
            .map_err(StartupError::Database)?;
        persistence::migrate(&db)
            .await
            .map_err(StartupError::Migration)?;

        let endpoint = routes(&settings, db.clone())?.boxed();
        let address = SocketAddr::new(settings.server.host, settings.server.port);
        let acceptor = TcpListener::bind(address)
            .into_acceptor()
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let local_addr = acceptor
            .local_addr()
            .first()
            .and_then(|addr| addr.as_socket_addr().copied())
            .ok_or_else(|| StartupError::Bind {
                address,
                source: std::io::Error::other("no local address"),
            })?;
        Ok(Self {
            settings,
            db,
            acceptor,
            local_addr,
            endpoint,
        })
    }

    /// The bound port (useful when the configured port was 0).
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// within `server.shutdown_grace_seconds`, and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = Duration::from_secs(self.settings.server.shutdown_grace_seconds);
        let endpoint = self.endpoint;
        let served = Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(endpoint, shutdown, Some(grace))
            .await;
        if let Err(error) = self.db.close().await {
            tracing::warn!(error = %error, "closing the database pool failed");
        }
        served
    }
}

/// The Content-Security-Policy of the interactive documentation page. Swagger UI is one HTML
/// page with inline script and style; it fetches nothing but the document from this origin.
pub const DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `GET /openapi.json`: the document as published, serialised once.
fn openapi_document(body: String) -> impl Endpoint<Output = poem::Response> {
    poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(body.clone())
    })
}

/// Every route of the service behind the middleware stack, outermost last.
pub fn routes(
    settings: &Settings,
    db: DatabaseConnection,
) -> Result<impl Endpoint<Output = poem::Response> + 'static, StartupError> {
    let api = api::openapi_service(settings, db);
    let mut document: serde_json::Value = serde_json::from_str(&api.spec()).unwrap_or_default();
    // One source for docs and enforcement: request objects are closed (`additionalProperties:
    // false`) in the document that is both served and checked by `StrictJson`.
    strict_json::close_request_body_objects(&mut document);
    let strict_json = StrictJson::from_openapi(&document, settings.limits.max_json_depth)
        .map_err(StartupError::Schema)?;
    let spec = openapi_document(serde_json::to_string_pretty(&document).unwrap_or_default());
    let docs = api.swagger_ui();
    let secure_headers = SecureHeaders::new(&SecureHeadersConfig {
        hsts_max_age: Duration::from_secs(settings.headers.hsts_max_age_seconds),
        hsts_preload: settings.headers.hsts_preload,
        page: Some(PagePolicy {
            path_prefix: "/docs".to_owned(),
            content_security_policy: DOCS_CONTENT_SECURITY_POLICY.to_owned(),
        }),
    })
    .map_err(StartupError::Headers)?;
    Ok(Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api)
        // JSON bodies parsed strictly, checked against the served document, all errors at once.
        .with(strict_json)
        // Bodies are read once, here, within the size and time limits (413, 408).
        .with(BodyLimit::new(
            settings.limits.max_body_bytes,
            Duration::from_secs(settings.limits.body_read_timeout_seconds),
        ))
        // TRACE, TRACK and CONNECT are answered 405 before routing.
        .with(RefuseUnusedMethods)
        // Every error, from a handler or from routing, becomes the uniform JSON body.
        .with(JsonErrors::for_openapi(&document))
        // One line per request: method, path without query, status, latency.
        .with(AccessLog)
        // Outside the error mapping, so error responses get the headers too.
        .with(secure_headers)
        // Outermost: the id is assigned before anything logs and returned on every response.
        .with(RequestIdLayer::trusting_incoming(
            settings.server.trust_client_request_id,
        )))
}
