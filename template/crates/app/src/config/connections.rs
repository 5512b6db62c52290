//! `[connections]`: what one connection and one client may hold, and for how long (TLS-1):
//! the time to a first request, the idle time, connections per address, per trusted proxy and in
//! all, HTTP/2 streams and resets. Each bound must be at least 1: none can be turned off, since
//! an unbounded one lets one client exhaust connections (slowloris, HTTP/2 rapid reset).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::Refusals;

/// What a connection may hold, and for how long (TLS-1; `security::transport::server` and
/// `security::transport::connection_limits`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    /// From the end of the TLS handshake to the first complete request head, HTTP/1.1 and
    /// HTTP/2 alike; a connection that has not sent one by then is closed.
    pub first_request_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY first).
    /// HTTP/1.1 also waits at most `limits.header_read_timeout_seconds` between requests.
    pub idle_timeout_ms: u64,
    /// Open connections per client address (IPv6 per /64), from the TCP accept on.
    pub max_per_address: u32,
    /// Open connections per address of `server.trusted_proxies`: every client behind a proxy
    /// arrives through its connections.
    pub max_per_trusted_proxy: u32,
    /// Open connections over every listener; 0 means 90% of the file-descriptor limit. Past it
    /// new connections are closed at once. Must stay below the descriptor limit.
    pub max_total: u32,
    /// HTTP/2 streams one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may reset before they are answered; past it, GOAWAY (rapid reset).
    pub http2_max_pending_reset_streams: usize,
    /// An HTTP/2 ping after this long without a frame from the client; no answer within as long
    /// closes the connection.
    pub http2_keep_alive_seconds: u64,
}

impl ConnectionSettings {
    pub fn first_request_timeout(&self) -> Duration {
        Duration::from_millis(self.first_request_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

impl ConnectionSettings {
    pub(super) fn validate(&self, refusals: &mut Refusals) {
        for (key, value) in [
            (
                "connections.first_request_timeout_ms",
                self.first_request_timeout_ms,
            ),
            ("connections.idle_timeout_ms", self.idle_timeout_ms),
            (
                "connections.http2_keep_alive_seconds",
                self.http2_keep_alive_seconds,
            ),
        ] {
            if value == 0 {
                refusals.refuse(
                    key,
                    "must be at least 1: an unbounded wait lets idle clients hold connections",
                );
            }
        }
        for (key, value) in [
            ("connections.max_per_address", self.max_per_address),
            (
                "connections.max_per_trusted_proxy",
                self.max_per_trusted_proxy,
            ),
            (
                "connections.http2_max_concurrent_streams",
                self.http2_max_concurrent_streams,
            ),
        ] {
            if value == 0 {
                refusals.refuse(key, "must be at least 1");
            }
        }
        if self.http2_max_pending_reset_streams == 0 {
            refusals.refuse(
                "connections.http2_max_pending_reset_streams",
                "must be at least 1",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::refused;

    #[test]
    fn no_connection_bound_can_be_zero() {
        for key in [
            "first_request_timeout_ms",
            "idle_timeout_ms",
            "http2_keep_alive_seconds",
            "max_per_address",
            "max_per_trusted_proxy",
            "http2_max_concurrent_streams",
            "http2_max_pending_reset_streams",
        ] {
            let error = refused(
                &format!("[connections]\n{key} = 0"),
                Environment::Development,
            );
            assert!(error.names(&format!("connections.{key}")), "{key}: {error}");
        }
    }
}
