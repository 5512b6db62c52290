//! Probes for orchestrators: liveness says the process answers, readiness says it can serve
//! (its database answers). Both are public and carry no detail beyond up or down.

use std::time::Duration;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::DatabaseConnection;

use super::ApiTags;

/// How long readiness waits for the database before reporting it down.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The health probes.
#[derive(Debug)]
pub struct HealthApi {
    db: DatabaseConnection,
}

impl HealthApi {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum CheckStatus {
    Up,
    Down,
}

/// Liveness.
#[derive(Debug, Object)]
pub struct Liveness {
    pub status: CheckStatus,
}

/// Readiness, with the state of each dependency.
#[derive(Debug, Object)]
pub struct Readiness {
    pub status: CheckStatus,
    pub database: CheckStatus,
}

#[derive(Debug, ApiResponse)]
pub enum ReadinessResponse {
    /// Ready to serve.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// A dependency is down; keep traffic away until it returns.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness probe: the process is up.
    #[oai(path = "/health/live", method = "get")]
    async fn live(&self) -> Json<Liveness> {
        Json(Liveness {
            status: CheckStatus::Up,
        })
    }

    /// Readiness probe: the database answers within a bound.
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self) -> ReadinessResponse {
        let database = match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, self.db.ping()).await {
            Ok(Ok(())) => CheckStatus::Up,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "readiness: database down");
                CheckStatus::Down
            }
            Err(_) => {
                tracing::warn!("readiness: database check timed out");
                CheckStatus::Down
            }
        };
        let readiness = Readiness {
            status: database,
            database,
        };
        match database {
            CheckStatus::Up => ReadinessResponse::Ready(Json(readiness)),
            CheckStatus::Down => ReadinessResponse::NotReady(Json(readiness)),
        }
    }
}
