//! Typed, layered, validated configuration (OPS-4: unsafe production configuration refuses to
//! start, naming the setting).
//!
//! Layers, later ones winning:
//! 1. `config/default.toml`: every setting with its development default;
//! 2. `config/{environment}.toml`, if present, where the environment is `APP_ENVIRONMENT`
//!    (`development` by default, `test` or `production`);
//! 3. environment variables `APP_<SECTION>__<KEY>`, for example `APP_SERVER__PORT=8443`.
//!
//! `APP_CONFIG_DIR` moves the config folder. An unknown key in any layer, a malformed value and
//! an unsafe production setting all stop start-up with a message naming the key: a typo such as
//! `APP_SERVER__PROT` must never be silently ignored while the service runs on a default.
//!
//! Unsafe production settings (OPS-4) refuse start-up naming the key, and the binary exits 78
//! (`EX_CONFIG`): among them a missing or placeholder API-key pepper, no outbox or signing-key
//! encryption key, no signing key file, the development CA, HSTS under a year, the audit sink
//! off, metrics beyond loopback without `admin.allow_non_loopback`, an in-memory database, and
//! client request ids trusted without trusted proxies. Some settings are unsafe everywhere and
//! refused in every environment: a plaintext public origin, a wildcard CORS origin, access
//! tokens over 15 minutes. Each section validates its own settings; an error names the setting
//! and never repeats its value (it may be a secret).
//!
//! One module per section of `config/default.toml`, each holding its settings, what they mean
//! and its own rules, and refusing unsafe production values by name; [`Settings::validate`] runs
//! every section's rules. Every type is re-exported here: `app::config::TlsMode` and the like are
//! the paths the rest of the service uses.

mod admin;
mod anomaly;
mod audit;
mod auth;
mod connections;
mod cors;
mod database;
mod error;
mod headers;
mod http_redirect;
mod limits;
mod log;
mod payments;
mod rate_limit;
mod security_txt;
mod server;
mod service;
#[cfg(test)]
mod test_defaults;
#[cfg(test)]
pub(crate) mod testing;
mod tls;

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use admin::AdminSettings;
pub use anomaly::AnomalySettings;
pub use audit::{AuditSettings, AuditSinkKind};
pub use auth::{
    AuthSettings, ExternalIssuerSettings, MAX_AUTOMATIC_HASHES, MIN_PEPPER_BYTES,
    RetiredKeySettings, SigningKeySource,
};
pub use connections::ConnectionSettings;
pub use cors::CorsSettings;
pub use database::DatabaseSettings;
pub use error::{ConfigError, ConfigProblem};
pub use headers::HeaderSettings;
pub use http_redirect::HttpRedirectSettings;
pub use limits::LimitSettings;
pub use log::{LogFormat, LogSettings};
pub use payments::{IDEMPOTENCY_KEY_TTL_SECONDS, PaymentSettings};
pub use rate_limit::{QuotaSettings, RateLimitSettings, RateLimitStoreKind};
pub use security_txt::SecurityTxtSettings;
pub use server::ServerSettings;
pub use service::ServiceSettings;
pub use tls::{TlsMode, TlsSettings};

use error::Refusals;

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "APP_";
/// Environment variable selecting the environment (and so the second config layer).
pub const ENVIRONMENT_VAR: &str = "APP_ENVIRONMENT";
/// Environment variable moving the folder the config files are read from.
pub const CONFIG_DIR_VAR: &str = "APP_CONFIG_DIR";

/// Where the service runs. Production turns every safety rule into a start-up refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    /// Reads `APP_ENVIRONMENT`; unset means development.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(ENVIRONMENT_VAR) {
            Err(_) => Ok(Self::Development),
            Ok(value) => Self::parse(&value).ok_or_else(|| {
                ConfigError::single(
                    ENVIRONMENT_VAR,
                    "must be one of development, test, production",
                )
            }),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "development" => Some(Self::Development),
            "test" => Some(Self::Test),
            "production" => Some(Self::Production),
            _ => None,
        }
    }

    /// The name used for the environment's config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

/// All settings of the service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Not read from files: set from `APP_ENVIRONMENT` by [`Settings::load`].
    #[serde(skip_deserializing, default = "development")]
    pub environment: Environment,
    pub service: ServiceSettings,
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub http_redirect: HttpRedirectSettings,
    pub admin: AdminSettings,
    pub cors: CorsSettings,
    pub database: DatabaseSettings,
    pub headers: HeaderSettings,
    pub limits: LimitSettings,
    pub connections: ConnectionSettings,
    pub rate_limit: RateLimitSettings,
    pub auth: AuthSettings,
    pub payments: PaymentSettings,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub anomaly: AnomalySettings,
    /// `/.well-known/security.txt` (RFC 9116), served when a contact is set.
    #[serde(default)]
    pub security_txt: SecurityTxtSettings,
}

fn development() -> Environment {
    Environment::Development
}

/// Serialises a secret as `[redacted]`: `app check-config` prints the settings without it.
fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

impl Settings {
    /// Loads the layers from `APP_CONFIG_DIR` (default `config`) for `APP_ENVIRONMENT`, then
    /// validates the result.
    pub fn load() -> Result<Self, ConfigError> {
        let environment = Environment::from_env()?;
        let dir = std::env::var_os(CONFIG_DIR_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir, environment, Env::prefixed(ENV_PREFIX))
    }

    /// Loads from `dir` with the given environment-variable layer (tests pass their own).
    pub fn load_from(dir: &Path, environment: Environment, env: Env) -> Result<Self, ConfigError> {
        let defaults = dir.join("default.toml");
        if !defaults.is_file() {
            return Err(ConfigError::single(
                CONFIG_DIR_VAR,
                format!("no default.toml in {}", dir.display()),
            ));
        }
        let figment = Figment::new()
            .merge(Toml::file_exact(defaults))
            .merge(Toml::file(
                dir.join(format!("{}.toml", environment.as_str())),
            ))
            .merge(
                env.ignore(&["ENVIRONMENT", "CONFIG_DIR"])
                    .split("__")
                    .lowercase(true),
            );
        Self::from_figment(figment, environment)
    }

    fn from_figment(figment: Figment, environment: Environment) -> Result<Self, ConfigError> {
        let mut settings: Settings = figment.extract().map_err(ConfigError::from_figment)?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the rules no type can express: each section's own, in the order of
    /// `config/default.toml`. Each rule names its key and says why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let environment = self.environment;
        let mut refusals = Refusals::default();
        self.service.validate(&mut refusals);
        self.server.validate(environment, &mut refusals);
        self.tls.validate(
            environment,
            &self.server,
            &self.http_redirect,
            &mut refusals,
        );
        self.admin
            .validate(environment, self.server.port, &mut refusals);
        self.cors.validate(&mut refusals);
        self.database.validate(environment, &mut refusals);
        self.headers.validate(environment, &mut refusals);
        self.limits.validate(&mut refusals);
        self.connections.validate(&mut refusals);
        self.rate_limit.validate(&mut refusals);
        self.auth.validate(environment, &mut refusals);
        self.payments.validate(&mut refusals);
        self.log.validate(&mut refusals);
        self.audit.validate(environment, &mut refusals);
        self.anomaly.validate(&mut refusals);
        self.security_txt
            .validate(&self.server.public_origin, &mut refusals);
        refusals.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{load, production, refused};

    #[test]
    fn a_valid_file_loads() {
        let settings = load("", Environment::Development, &[]).expect("valid");
        assert_eq!(settings.server.public_origin, "https://localhost:8443");
    }

    #[test]
    fn an_unknown_key_in_a_file_is_refused_by_name() {
        let error = refused("[server]\nprot = 1", Environment::Development);
        assert!(error.names("server.prot"), "{error}");
        assert!(error.to_string().contains("unknown key"), "{error}");
    }

    #[test]
    fn an_unknown_environment_variable_is_refused_by_name() {
        let error =
            load("", Environment::Development, &[("APP_SERVER__PROT", "1")]).expect_err("refused");
        assert!(error.names("server.prot"), "{error}");
    }

    #[test]
    fn a_malformed_environment_value_is_refused_naming_key_and_variable() {
        let error = load(
            "",
            Environment::Development,
            &[("APP_SERVER__PORT", "eighty")],
        )
        .expect_err("refused");
        assert!(error.names("server.port"), "{error}");
        assert!(error.to_string().contains("APP_SERVER__PORT"), "{error}");
    }

    #[test]
    fn environment_variables_override_files() {
        let settings = load(
            "",
            Environment::Development,
            &[("APP_SERVER__PORT", "9999")],
        )
        .expect("valid");
        assert_eq!(settings.server.port, 9999);
    }

    #[test]
    fn a_malformed_value_is_refused_by_name() {
        let error = refused("[server]\nport = \"eighty\"", Environment::Development);
        assert!(error.names("server.port"), "{error}");
    }

    #[test]
    fn a_production_configuration_with_a_real_certificate_loads() {
        load(&production(""), Environment::Production, &[]).expect("valid");
    }
}
