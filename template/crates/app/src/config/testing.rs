//! What the unit tests of every section load: `config/default.toml` (the development defaults)
//! with a test's overrides as the environment's file, through the real loader.

use figment::providers::Env;

use super::test_defaults::{default_toml, with_overrides};
use super::{ConfigError, ENV_PREFIX, Environment, Settings};

/// What production needs beyond the defaults: a public origin, a real certificate, the issuer's
/// key in a file and real secrets.
const PRODUCTION: &str = r#"
[server]
public_origin = "https://api.example.com"

[tls]
mode = "files"
cert_path = "/etc/app/tls/fullchain.pem"
key_path = "/etc/app/tls/privkey.pem"

[auth]
signing_keys = "file"
signing_key_path = "/etc/app/keys/signing-key.pem"
api_key_pepper = "kV3q9ZrT0pX8mW2nB6yL4cH7jD1fG5sA"
outbox_encryption_key = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="
"#;

/// The defaults with `overrides` (TOML) as `config/<environment>.toml` and `vars` set, loaded
/// inside a jail that restores the environment.
#[allow(clippy::result_large_err)] // figment's error type is fixed by `Jail`.
pub(crate) fn load(
    overrides: &str,
    environment: Environment,
    vars: &[(&str, &str)],
) -> Result<Settings, ConfigError> {
    let mut result = None;
    figment::Jail::expect_with(|jail| {
        jail.create_file("default.toml", &default_toml())?;
        jail.create_file(format!("{}.toml", environment.as_str()), overrides)?;
        for (key, value) in vars {
            jail.set_env(key, value);
        }
        result = Some(Settings::load_from(
            jail.directory(),
            environment,
            Env::prefixed(ENV_PREFIX),
        ));
        Ok(())
    });
    result.expect("the jail ran")
}

/// The production settings [`PRODUCTION`] with `overrides` on top.
pub(crate) fn production(overrides: &str) -> String {
    with_overrides(PRODUCTION, overrides)
}

/// Loads `overrides` in `environment` and returns the refusal, failing if it loaded.
pub(super) fn refused(overrides: &str, environment: Environment) -> ConfigError {
    load(overrides, environment, &[]).expect_err("refused")
}
