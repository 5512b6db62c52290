//! `[cors]`: the browser origins allowed to call this API (TLS-4). Empty by default: no foreign
//! page may call it. Every entry must be an exact origin; `*` and `null` are refused, since
//! either would let any page act with a visitor's credentials.

use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// Cross-origin access for browser clients (TLS-4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`); `*` and `null` are refused.
    pub allowed_origins: Vec<String>,
    /// Whether those origins may send cookies or HTTP authentication.
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    pub max_age_seconds: u64,
}

impl CorsSettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        for origin in &self.allowed_origins {
            if let Err(error) = security::transport::cors::check_origin(origin) {
                refusals.refuse("cors.allowed_origins", &error.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::refused;

    #[test]
    fn a_wildcard_cors_origin_is_refused() {
        for origin in ["*", "null", "https://app.example.com/"] {
            let cors = format!("[cors]\nallowed_origins = [\"{origin}\"]");
            let error = refused(&cors, Environment::Development);
            assert!(error.names("cors.allowed_origins"), "{origin}: {error}");
        }
    }
}
