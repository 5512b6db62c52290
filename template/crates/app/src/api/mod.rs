//! The HTTP API: one module per OpenAPI tag. The OpenAPI document is generated from these
//! declarations, so what is documented is what is served, and what is enforced: each protected
//! operation names its scopes on its `Authenticated` parameter, and `security::auth::
//! access_control` enforces the scopes the document shows. An operation without that parameter
//! must be listed in [`PUBLIC_OPERATIONS`], or the service refuses to start (default deny).

pub mod api_keys;
pub mod auth;
pub mod health;
pub mod notes;
pub mod oauth;
pub mod payments;
pub mod users;

use std::sync::Arc;

use poem_openapi::{OpenApiService, Tags};
use sea_orm::DatabaseConnection;

use crate::auth::AuthContext;
use crate::config::Settings;
use crate::rate_limits::{RateLimits, SensitiveTier};

/// The operations anyone may call without a credential. Adding one here is the explicit,
/// reviewable opt-out of authentication.
pub const PUBLIC_OPERATIONS: &[&str] = &[
    "GET /health/live",
    "GET /health/ready",
    // The credential is in the body: a password, the refresh token to revoke, a reset token.
    "POST /v1/auth/login",
    "POST /v1/auth/logout",
    // Answers the same for every address; the link goes to the account's mailbox only.
    "POST /v1/auth/password-reset",
    "POST /v1/auth/password-reset/confirm",
];

/// Operations charged to a stricter tier of their own (RATE-3) on top of the general per-address
/// or per-principal one; quotas in `[rate_limit]`. Login and password reset are also limited per
/// account in their handlers. `POST /oauth/token` is a plain route beside the document.
pub const SENSITIVE_OPERATIONS: &[(&str, SensitiveTier)] = &[
    ("POST /v1/auth/login", SensitiveTier::Login),
    ("POST /v1/auth/password-reset", SensitiveTier::PasswordReset),
    (
        "POST /v1/auth/password-reset/confirm",
        SensitiveTier::PasswordResetConfirm,
    ),
    ("POST /oauth/token", SensitiveTier::Token),
    ("POST /v1/api-keys", SensitiveTier::ApiKeyManagement),
    (
        "POST /v1/api-keys/{id}/rotate",
        SensitiveTier::ApiKeyManagement,
    ),
    ("POST /v1/payments", SensitiveTier::Payment),
];

/// The operations no rate limit applies to. Adding one here is the explicit, reviewable opt-out;
/// the service refuses to start if a name is not an operation.
pub const RATE_LIMIT_EXEMPT: &[&str] = &[
    // Probes of orchestrators and load balancers, every few seconds per instance from a few
    // addresses; limiting them would take healthy instances out of rotation. Liveness is a
    // constant answer and readiness asks the database at most once a second (`health.rs`), so
    // there is nothing to exhaust.
    "GET /health/live",
    "GET /health/ready",
];

/// The tags grouping operations in the OpenAPI document.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Liveness and readiness probes.
    Health,
    /// Password login, logout and reset.
    Auth,
    /// User accounts and your own profile.
    Users,
    /// API keys: create, list, rotate, revoke.
    ApiKeys,
    /// Notes, the demo resource owned by its creator.
    Notes,
    /// Payments, the demo of a payment-like write: idempotent under retries.
    Payments,
    /// Benchmark builds only (`cargo xtask bench`).
    #[cfg(feature = "bench")]
    Bench,
}

/// Every API of the service, as one OpenAPI service.
pub type Api = (
    health::HealthApi,
    auth::AuthApi,
    users::UsersApi,
    api_keys::ApiKeysApi,
    notes::NotesApi,
    payments::PaymentsApi,
    BenchApi,
);

/// What benchmark builds add (`crate::bench`); nothing otherwise.
#[cfg(feature = "bench")]
type BenchApi = crate::bench::BenchApi;
#[cfg(not(feature = "bench"))]
type BenchApi = ();

/// Builds the API with its OpenAPI metadata. The server URL is the configured public origin,
/// never one taken from a request.
pub fn openapi_service(
    settings: &Settings,
    db: DatabaseConnection,
    auth: &Arc<AuthContext>,
    rate_limits: &Arc<RateLimits>,
) -> OpenApiService<Api, ()> {
    let apis = (
        health::HealthApi::new(db, Arc::clone(rate_limits.limiter())),
        auth::AuthApi::new(Arc::clone(auth), Arc::clone(rate_limits)),
        users::UsersApi::new(Arc::clone(auth)),
        api_keys::ApiKeysApi::new(Arc::clone(auth)),
        notes::NotesApi::new(Arc::clone(auth)),
        payments::PaymentsApi::new(Arc::clone(auth), &settings.payments),
        BenchApi::default(),
    );
    OpenApiService::new(apis, &settings.service.name, env!("CARGO_PKG_VERSION"))
        .server(settings.server.public_origin.clone())
}
