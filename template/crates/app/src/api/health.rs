//! Probes for orchestrators: liveness says the process answers, readiness says it can serve
//! (its database answers). Both are public and carry no detail beyond up or down.
//!
//! With the Redis rate-limit store, readiness also reports `rate_limit_store`, but a Redis outage
//! alone does not make an instance unready: every instance shares that Redis, so taking them out
//! of rotation would turn a degraded service (general limits open, sensitive operations 503, see
//! `security::rate_limit`) into a full outage. Alert on the report and on
//! `rate_limit_store_failures_total` instead.
//!
//! Both are exempt from rate limits (a load balancer probing every instance from one address
//! would otherwise spend that address's budget, shared through Redis, and take the fleet out of
//! rotation). Readiness therefore asks the database at most once a second, whoever calls.

use std::time::{Duration, Instant};

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::DatabaseConnection;
use security::rate_limit::RateLimiter;
use std::sync::Arc;

use super::ApiTags;

/// How long readiness waits for the database before reporting it down.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency check is reused for this long.
const CHECK_REUSED_FOR: Duration = Duration::from_secs(1);

/// The health probes.
#[derive(Debug)]
pub struct HealthApi {
    db: DatabaseConnection,
    limiter: Arc<RateLimiter>,
    last_check: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

impl HealthApi {
    pub fn new(db: DatabaseConnection, limiter: Arc<RateLimiter>) -> Self {
        Self {
            db,
            limiter,
            last_check: tokio::sync::Mutex::new(None),
        }
    }

    /// The dependencies' state, checked at most once per [`CHECK_REUSED_FOR`]: callers arriving
    /// meanwhile wait for the check in progress or reuse the last one.
    async fn readiness(&self) -> Readiness {
        let mut last = self.last_check.lock().await;
        if let Some((checked_at, readiness)) = &*last
            && checked_at.elapsed() < CHECK_REUSED_FOR
        {
            return readiness.clone();
        }
        let (database, rate_limit_store) =
            tokio::join!(self.database_status(), self.rate_limit_store_status());
        let readiness = Readiness {
            status: database,
            database,
            rate_limit_store,
        };
        *last = Some((Instant::now(), readiness.clone()));
        readiness
    }

    async fn database_status(&self) -> CheckStatus {
        match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, self.db.ping()).await {
            Ok(Ok(())) => CheckStatus::Up,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "readiness: database down");
                CheckStatus::Down
            }
            Err(_) => {
                tracing::warn!("readiness: database check timed out");
                CheckStatus::Down
            }
        }
    }

    /// `None` for the in-process store; the Redis store answers within its own timeout.
    async fn rate_limit_store_status(&self) -> Option<CheckStatus> {
        match self.limiter.store().ping().await? {
            Ok(()) => Some(CheckStatus::Up),
            Err(error) => {
                tracing::warn!(error = %error, "readiness: rate-limit store down");
                Some(CheckStatus::Down)
            }
        }
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
#[derive(Debug, Clone, Object)]
pub struct Readiness {
    /// Up when the instance can serve: its database answers.
    pub status: CheckStatus,
    pub database: CheckStatus,
    /// The shared rate-limit store (Redis), when one is configured; reported, not required.
    #[oai(skip_serializing_if_is_none)]
    pub rate_limit_store: Option<CheckStatus>,
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

    /// Readiness probe: the database answers within a bound (the shared rate-limit store is
    /// reported too).
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(&self) -> ReadinessResponse {
        let readiness = self.readiness().await;
        match readiness.status {
            CheckStatus::Up => ReadinessResponse::Ready(Json(readiness)),
            CheckStatus::Down => ReadinessResponse::NotReady(Json(readiness)),
        }
    }
}
