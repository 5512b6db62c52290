//! `[http_redirect]`: the plain-HTTP listener (TLS-1). On by default, so a browser typing the
//! bare host name lands on HTTPS; a request carrying a credential is refused there, never
//! redirected, since the credential already crossed the network in clear.

use serde::{Deserialize, Serialize};

/// The plain-HTTP listener: redirects browser navigations to `server.public_origin` and
/// refuses requests that carry credentials (TLS-1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRedirectSettings {
    pub enabled: bool,
    /// On `server.host`; `0` picks a free port (tests).
    pub port: u16,
}
