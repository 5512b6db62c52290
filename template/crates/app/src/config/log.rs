//! `[log]`: the application log's level and format. What it may contain is not configurable:
//! only allowlisted fields are ever written (LOG-5, `security::logging::allowlist`).

use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `info,sqlx=warn`.
    pub level: String,
    pub format: LogFormat,
}

/// `json` for machines (the default), `pretty` for a developer's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogSettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        if tracing_subscriber::EnvFilter::try_new(&self.level).is_err() {
            refusals.refuse(
                "log.level",
                "is not a valid filter (examples: info, warn, info,sqlx=warn)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::refused;

    #[test]
    fn a_malformed_log_filter_is_refused() {
        let error = refused("[log]\nlevel = \"info,,=[\"", Environment::Development);
        assert!(error.names("log.level"), "{error}");
    }
}
