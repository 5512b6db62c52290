//! Logging and monitoring controls (checklist section "Logging and Monitoring", LOG-*).

pub mod audit;
pub mod request_id;
