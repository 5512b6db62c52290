//! `[service]`: what the service calls itself.

use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// What the service calls itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Shown as the title of the OpenAPI document.
    pub name: String,
}

impl ServiceSettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        if self.name.trim().is_empty() {
            refusals.refuse("service.name", "must not be empty");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::refused;

    #[test]
    fn an_empty_name_is_refused() {
        let error = refused("[service]\nname = \" \"", Environment::Development);
        assert!(error.names("service.name"), "{error}");
    }
}
