//! Logging and monitoring controls (checklist section "Logging and Monitoring", LOG-*).

pub mod request_id;
