//! `[headers]`: the security headers' one tunable part (TLS-5): the HSTS lifetime, a year by
//! default, and whether to ask for preloading. The headers themselves have no switch; production
//! refuses a lifetime under a year, which would let a browser forget to insist on HTTPS.

use security::transport::secure_headers::ONE_YEAR;
use serde::{Deserialize, Serialize};

use super::Environment;
use super::error::Refusals;

/// Security headers (TLS-5). There is no switch to turn them off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSettings {
    /// HSTS `max-age`; production refuses less than a year (31536000).
    pub hsts_max_age_seconds: u64,
    /// Adds `preload` to HSTS: only once the domain is ready for the browsers' preload lists.
    pub hsts_preload: bool,
}

impl HeaderSettings {
    pub(super) fn validate(&self, environment: Environment, refusals: &mut Refusals) {
        if environment == Environment::Production && self.hsts_max_age_seconds < ONE_YEAR.as_secs()
        {
            refusals.refuse(
                "headers.hsts_max_age_seconds",
                "must be at least 31536000 (one year) in production",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{production, refused};

    #[test]
    fn production_refuses_an_hsts_lifetime_under_a_year() {
        let prod = production("[headers]\nhsts_max_age_seconds = 86400");
        let error = refused(&prod, Environment::Production);
        assert!(error.names("headers.hsts_max_age_seconds"), "{error}");
    }
}
