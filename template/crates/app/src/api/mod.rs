//! The HTTP API: one module per OpenAPI tag. The OpenAPI document is generated from these
//! declarations, so what is documented is what is served.

pub mod health;
pub mod users;

use poem_openapi::{OpenApiService, Tags};
use sea_orm::DatabaseConnection;

use crate::config::Settings;

/// The tags grouping operations in the OpenAPI document.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Liveness and readiness probes.
    Health,
    /// User accounts.
    Users,
}

/// Every API of the service, as one OpenAPI service.
pub type Api = (health::HealthApi, users::UsersApi);

/// Builds the API with its OpenAPI metadata. The server URL is the configured public origin,
/// never one taken from a request.
pub fn openapi_service(settings: &Settings, db: DatabaseConnection) -> OpenApiService<Api, ()> {
    let apis = (health::HealthApi::new(db.clone()), users::UsersApi::new(db));
    OpenApiService::new(apis, &settings.service.name, env!("CARGO_PKG_VERSION"))
        .server(settings.server.public_origin.clone())
}
