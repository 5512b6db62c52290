//! Monitoring controls (checklist section "Logging and Monitoring"): what watches the audit
//! events once they are recorded.

pub mod anomaly;
pub mod geoip;
