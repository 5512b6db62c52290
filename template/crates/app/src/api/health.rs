//! Probes for orchestrators: liveness says the process answers, readiness says it can serve
//! (its database answers). Both are public and carry no detail beyond up or down.
//!
//! Both are exempt from rate limits (a load balancer probing every instance from one address
//! would otherwise spend that address's budget, shared through Redis, and take the fleet out of
//! rotation). Readiness therefore asks the database at most once a second, whoever calls.

use std::time::{Duration, Instant};

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::DatabaseConnection;

use super::ApiTags;

/// How long readiness waits for the database before reporting it down.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A database check is reused for this long.
const DATABASE_CHECK_REUSED_FOR: Duration = Duration::from_secs(1);

/// The health probes.
#[derive(Debug)]
pub struct HealthApi {
    db: DatabaseConnection,
    last_database_check: tokio::sync::Mutex<Option<(Instant, CheckStatus)>>,
}

impl HealthApi {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            last_database_check: tokio::sync::Mutex::new(None),
        }
    }

    /// The database's state, checked at most once per [`DATABASE_CHECK_REUSED_FOR`]: callers
    /// arriving meanwhile wait for the check in progress or reuse the last one.
    async fn database_status(&self) -> CheckStatus {
        let mut last = self.last_database_check.lock().await;
        if let Some((checked_at, status)) = *last
            && checked_at.elapsed() < DATABASE_CHECK_REUSED_FOR
        {
            return status;
        }
        let status = match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, self.db.ping()).await {
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
        *last = Some((Instant::now(), status));
        status
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
        let database = self.database_status().await;
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
