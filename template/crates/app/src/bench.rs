//! Only in builds with the `bench` feature, which `cargo xtask bench` makes: one small handler
//! measured twice, to price the security stack.
//!
//! - `GET /v1/bench/ping` is [`ping`] behind every layer of [`crate::startup::routes`], as any
//!   operation: a bearer token verified, its `profile` scope checked, the rate limit charged,
//!   headers, request id, metrics and audit events.
//! - `app bench-baseline` serves [`ping`] bare: the same TLS 1.3 listener, certificate and
//!   connection limits, no middleware at all;
//! - `app bench-params` prints the password hashing parameters, reported beside login's cost.
//!
//! The difference between the two is what the controls cost. A production environment refuses
//! to start a `bench` build ([`refuse_in_production`]).

use std::time::Duration;

use poem::EndpointExt;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::api::ApiTags;
use crate::auth::scheme::Authenticated;
use crate::auth::scopes::Scope;
use crate::config::{Environment, Settings};
use crate::error::ApiError;
use crate::startup::{self, StartupError};

/// The small JSON body both configurations answer.
#[derive(Debug, Object, serde::Serialize)]
pub struct Pong {
    pub status: String,
}

/// The handler both configurations run.
pub fn ping() -> Pong {
    Pong {
        status: "ok".to_owned(),
    }
}

/// `GET /v1/bench/ping`, behind the whole stack.
#[derive(Debug, Default)]
pub struct BenchApi;

#[derive(Debug, ApiResponse)]
pub enum PingResponse {
    /// The service answers.
    #[oai(status = 200)]
    Ok(Json<Pong>),
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Bench")]
impl BenchApi {
    /// Answers a small JSON body (benchmark builds only).
    #[oai(path = "/bench/ping", method = "get")]
    async fn ping(
        &self,
        #[oai(scope = "Scope::Profile")] _auth: Authenticated,
    ) -> Result<PingResponse, ApiError> {
        Ok(PingResponse::Ok(Json(ping())))
    }
}

/// `app bench-params`: the password hashing parameters the bench reports beside login's cost.
pub fn password_hashing_params(settings: &Settings) -> serde_json::Value {
    use security::auth::password::{ARGON2_ITERATIONS, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM};
    serde_json::json!({
        "algorithm": "argon2id",
        "memory_kib": ARGON2_MEMORY_KIB,
        "iterations": ARGON2_ITERATIONS,
        "parallelism": ARGON2_PARALLELISM,
        "max_concurrent": settings.auth.password_hashes_at_once(),
    })
}

/// A benchmark build serves an extra route and a bare listener: never in production.
pub fn refuse_in_production(settings: &Settings) -> Result<(), StartupError> {
    if settings.environment == Environment::Production {
        return Err(StartupError::Bench(
            "this build has the `bench` feature (benchmark routes); build without it".to_owned(),
        ));
    }
    Ok(())
}

/// `app bench-baseline`: [`ping`] on the service's own TLS listener (same certificate, TLS 1.3
/// configuration and connection limits), with no middleware, until Ctrl-C or SIGTERM.
pub async fn serve_baseline(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<std::net::SocketAddr, StartupError> {
    refuse_in_production(&settings)?;
    let listener = startup::bind_main_listener(&settings).await?;
    let address = listener.local_addr();
    let endpoint = poem::endpoint::make_sync(|_| poem::web::Json(ping())).map_to_response();
    tracing::info!(address = %address, "bare baseline listening");
    listener
        .serve(
            endpoint,
            startup::listener_limits(&settings),
            shutdown,
            Duration::from_secs(settings.server.shutdown_grace_seconds),
        )
        .await
        .map_err(|source| StartupError::Bind { address, source })?;
    Ok(address)
}
