//! `[audit]`: where audit events are written (LOG-1 to LOG-3), apart from the application log:
//! stdout by default, so the events reach whatever collects the container's output. `off` is for
//! local experiments only: production refuses it, since security decisions must leave a trail.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Environment;
use super::error::Refusals;

/// Where audit events are written (LOG-1 .. LOG-3), apart from the application log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    pub sink: AuditSinkKind,
    /// The file appended to when `sink = "file"`.
    pub file_path: PathBuf,
}

/// The audit sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSinkKind {
    /// JSON lines on stdout, beside the application log (marked `"log": "audit"`).
    Stdout,
    /// JSON lines appended to `file_path`.
    File,
    /// Not written (metrics and detectors still see every event). Refused in production.
    Off,
}

impl AuditSettings {
    pub(super) fn validate(&self, environment: Environment, refusals: &mut Refusals) {
        if environment == Environment::Production && self.sink == AuditSinkKind::Off {
            refusals.refuse(
                "audit.sink",
                "is off in production: security decisions must leave an audit trail",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{load, production, refused};

    #[test]
    fn production_refuses_to_run_without_an_audit_trail() {
        let off = "[audit]\nsink = \"off\"";
        let error = refused(&production(off), Environment::Production);
        assert!(error.names("audit.sink"), "{error}");
        load(off, Environment::Development, &[]).expect("only production refuses it");
    }
}
