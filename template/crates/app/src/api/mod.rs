//! The HTTP API: one module per OpenAPI tag. The OpenAPI document is generated from these
//! declarations, so what is documented is what is served, and what is enforced: each protected
//! operation names its scopes on its `Authenticated` parameter, and `security::auth::
//! access_control` enforces the scopes the document shows. An operation without that parameter
//! must be listed in [`PUBLIC_OPERATIONS`] (`crate::policy`), or the service refuses to start
//! (default deny).

pub mod api_keys;
pub mod auth;
pub mod health;
pub mod notes;
pub mod oauth;
pub mod payments;
pub mod users;

use std::sync::Arc;

use poem_openapi::{OpenApi, OpenApiService, Tags};
use sea_orm::DatabaseConnection;

use crate::auth::AuthContext;
use crate::config::Settings;
use crate::rate_limits::RateLimits;

/// Where tests and readers of the API look for it first; the table lives in `crate::policy`.
pub use crate::policy::PUBLIC_OPERATIONS;

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
}

/// Every API of the service.
pub type Api = (
    health::HealthApi,
    auth::AuthApi,
    users::UsersApi,
    api_keys::ApiKeysApi,
    notes::NotesApi,
    payments::PaymentsApi,
);

/// Builds the API, and `extra` beside it, with its OpenAPI metadata. The server URL is the
/// configured public origin, never one taken from a request.
pub fn openapi_service<Extra: OpenApi>(
    settings: &Settings,
    db: DatabaseConnection,
    auth: &Arc<AuthContext>,
    rate_limits: &Arc<RateLimits>,
    extra: Extra,
) -> OpenApiService<(Api, Extra), ()> {
    let apis = (
        health::HealthApi::new(db, Arc::clone(rate_limits.limiter())),
        auth::AuthApi::new(Arc::clone(auth), Arc::clone(rate_limits)),
        users::UsersApi::new(Arc::clone(auth)),
        api_keys::ApiKeysApi::new(Arc::clone(auth)),
        notes::NotesApi::new(Arc::clone(auth)),
        payments::PaymentsApi::new(Arc::clone(auth), &settings.payments),
    );
    OpenApiService::new(
        (apis, extra),
        &settings.service.name,
        env!("CARGO_PKG_VERSION"),
    )
    .server(settings.server.public_origin.clone())
}
