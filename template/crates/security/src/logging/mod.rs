//! Logging and monitoring controls (checklist section "Logging and Monitoring", LOG-*).

pub mod allowlist;
pub mod audit;
pub mod metrics;
pub mod request_id;
