//! `[database]`: SQLite (embedded, the default) or PostgreSQL, and the bounds on every wait for
//! it. The URL may carry a password, so it is a secret: never printed, never serialised. Each
//! timeout must be at least a second, so a stalled database cannot tie up the service; production
//! refuses an in-memory database, which would lose every write on restart.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::Environment;
use super::error::Refusals;

/// The database: SQLite (embedded, the default) or PostgreSQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://data/app.db?mode=rwc` or `postgres://user:password@host/db`. Secret: a
    /// PostgreSQL URL usually carries a password, so it is never printed.
    #[serde(serialize_with = "super::serialize_redacted")]
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    /// Bound on opening one connection.
    pub connect_timeout_seconds: u64,
    /// Bound on waiting for a free pooled connection.
    pub acquire_timeout_seconds: u64,
    /// Bound on one statement (PostgreSQL `statement_timeout`; SQLite busy timeout).
    pub statement_timeout_seconds: u64,
}

impl DatabaseSettings {
    /// The connection URL (secret: do not log).
    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.acquire_timeout_seconds)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_secs(self.statement_timeout_seconds)
    }
}

impl DatabaseSettings {
    pub(super) fn validate(&self, environment: Environment, refusals: &mut Refusals) {
        if self.max_connections == 0 {
            refusals.refuse("database.max_connections", "must be at least 1");
        }
        if self.min_connections > self.max_connections {
            refusals.refuse(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        for (key, value) in [
            (
                "database.connect_timeout_seconds",
                self.connect_timeout_seconds,
            ),
            (
                "database.acquire_timeout_seconds",
                self.acquire_timeout_seconds,
            ),
            (
                "database.statement_timeout_seconds",
                self.statement_timeout_seconds,
            ),
        ] {
            if value == 0 {
                refusals.refuse(
                    key,
                    "must be at least 1: an unbounded wait ties up the service",
                );
            }
        }
        if !(self.url().starts_with("sqlite:")
            || self.url().starts_with("postgres://")
            || self.url().starts_with("postgresql://"))
        {
            refusals.refuse(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if environment == Environment::Production && self.url().contains("mode=memory") {
            refusals.refuse(
                "database.url",
                "is an in-memory database in production: every write is lost on restart",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Environment;
    use crate::config::testing::{load, production, refused};

    #[test]
    fn production_refuses_an_in_memory_database() {
        let prod = production("[database]\nurl = \"sqlite://app.db?mode=memory\"");
        let error = refused(&prod, Environment::Production);
        assert!(error.names("database.url"), "{error}");
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let bad = "[database]\nacquire_timeout_seconds = 0";
        let error = refused(bad, Environment::Development);
        assert!(error.names("database.acquire_timeout_seconds"), "{error}");
    }

    #[test]
    fn the_database_url_is_never_printed() {
        let in_memory = "[database]\nurl = \"sqlite::memory:\"";
        let settings = load(in_memory, Environment::Development, &[]).expect("valid");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("sqlite::memory:"), "{printed}");
    }
}
