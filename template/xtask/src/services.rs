//! The servers some tests need: PostgreSQL and Redis.
//!
//! A developer's laptop may have neither. Tests that need one skip with a message when it cannot
//! be reached; `--require-services` (which CI always passes) makes that a failure instead, so
//! nothing is silently skipped where the servers exist.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Result, bail};

/// A server the tests use, found through an environment variable or a default URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    pub name: &'static str,
    pub env: &'static str,
    pub default_url: &'static str,
}

/// Every server some test needs.
pub const SERVICES: &[Service] = &[POSTGRES, REDIS];

pub const POSTGRES: Service = Service {
    name: "PostgreSQL",
    env: "TEST_POSTGRES_URL",
    default_url: "postgres://postgres@127.0.0.1:5432/postgres",
};

pub const REDIS: Service = Service {
    name: "Redis",
    env: "TEST_REDIS_URL",
    default_url: "redis://127.0.0.1:6379",
};

impl Service {
    pub fn url(&self) -> String {
        std::env::var(self.env).unwrap_or_else(|_| self.default_url.to_owned())
    }

    /// True if a TCP connection to the URL's host and port opens within a second.
    pub fn reachable(&self) -> bool {
        let url = self.url();
        let Some(host_port) = host_and_port(&url) else {
            return false;
        };
        host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .is_some_and(|address| {
                TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
            })
    }
}

/// Says which servers are reachable and returns them; fails when one is missing and `require`
/// is set.
pub fn check(require: bool) -> Result<Vec<Service>> {
    let mut reachable = Vec::new();
    let mut missing = Vec::new();
    for service in SERVICES {
        if service.reachable() {
            eprintln!("{} at {}: reachable", service.name, service.url());
            reachable.push(*service);
        } else {
            eprintln!(
                "{} at {} cannot be reached: the tests that need it will be skipped \
                 (set {} to point elsewhere)",
                service.name,
                service.url(),
                service.env
            );
            missing.push(service.name);
        }
    }
    if require && !missing.is_empty() {
        bail!(
            "--require-services was given but {} cannot be reached",
            missing.join(", ")
        );
    }
    Ok(reachable)
}

/// `host:port` of a `scheme://[user@]host:port/...` URL.
fn host_and_port(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    host_port.contains(':').then(|| host_port.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_read_from_urls() {
        assert_eq!(
            host_and_port("postgres://postgres@127.0.0.1:5432/postgres").as_deref(),
            Some("127.0.0.1:5432")
        );
        assert_eq!(
            host_and_port("redis://127.0.0.1:6379").as_deref(),
            Some("127.0.0.1:6379")
        );
        assert_eq!(host_and_port("postgres://localhost/db"), None);
    }
}
