//! `[limits]`: how much a request may send and how slowly (INPUT-4): body size, the time to send
//! the body and the headers, header size and count, JSON depth. None can be turned off: each
//! must be at least 1, since an unbounded one lets one client hold memory or a connection.

use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// Request limits (INPUT-4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// The largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// The time a client has to deliver its whole body (408 after it).
    pub body_read_timeout_seconds: u64,
    /// The time a client has to deliver a request's headers (the connection is closed after).
    pub header_read_timeout_seconds: u64,
    /// The request line and headers together, in bytes (at least 8192; 431 above it).
    pub max_header_bytes: usize,
    /// Header fields per request (431 above it).
    pub max_headers: usize,
    /// The deepest nesting of objects and arrays accepted in a JSON body (400 beyond it).
    pub max_json_depth: usize,
}

impl LimitSettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        if self.max_body_bytes == 0 {
            refusals.refuse("limits.max_body_bytes", "must be at least 1");
        }
        if self.body_read_timeout_seconds == 0 {
            refusals.refuse(
                "limits.body_read_timeout_seconds",
                "must be at least 1: an unbounded wait lets slow clients hold connections",
            );
        }
        if self.header_read_timeout_seconds == 0 {
            refusals.refuse(
                "limits.header_read_timeout_seconds",
                "must be at least 1: an unbounded wait lets slow clients hold connections",
            );
        }
        if self.max_header_bytes < 8192 {
            refusals.refuse("limits.max_header_bytes", "must be at least 8192");
        }
        if self.max_headers == 0 {
            refusals.refuse("limits.max_headers", "must be at least 1");
        }
        if self.max_json_depth == 0 {
            refusals.refuse(
                "limits.max_json_depth",
                "must be at least 1: a JSON body is at least one object or array deep",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::refused;

    #[test]
    fn a_json_depth_of_zero_is_refused() {
        let error = refused("[limits]\nmax_json_depth = 0", Environment::Development);
        assert!(error.names("limits.max_json_depth"), "{error}");
    }
}
