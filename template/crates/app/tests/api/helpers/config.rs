//! The test configuration: the service's own `config/default.toml` (rendered first in Rampart's
//! workspace) with what every test changes, [`TEST_OVERRIDES`], on top, so a setting added to
//! `config/default.toml` reaches the tests without a second edit. A test's own overrides go in
//! the environment's file, `test.toml`, as an operator's would.

use std::path::Path;

use app::config::{Environment, Settings};
use figment::providers::Env;

use crate::backend;

#[path = "../../../src/config/test_defaults.rs"]
mod test_defaults;

pub use test_defaults::with_overrides;

/// What every test changes from the development defaults. `DATA_DIR`, the database URL and the
/// rate-limit store, key prefix and URL are replaced by the test's own ([`backend::configure`]).
pub const TEST_OVERRIDES: &str = r#"
[server]
# Free ports: tests run in parallel.
port = 0
# The origin the tests' issuer, audience and redirect assertions name.
public_origin = "https://localhost"
shutdown_grace_seconds = 10

[tls]
dev_dir = "DATA_DIR/tls"
# Certificate-reload tests wait for the next check.
reload_interval_seconds = 1

[http_redirect]
port = 0

[admin]
port = 0

[database]
url = "sqlite://DATA_DIR/app.db?mode=rwc"
max_connections = 4
connect_timeout_seconds = 2
acquire_timeout_seconds = 2
statement_timeout_seconds = 5

[auth]
api_key_pepper = "test-pepper-0123456789abcdef0123456789abcdef"
password_hash_concurrency = 2
key_dir = "DATA_DIR/keys"
# Every variant's tests start from keys in files; the shared-key tests ask for "database".
signing_keys = "file"

[rate_limit]
store = "memory"
redis_url = "redis://127.0.0.1:6379"
redis_key_prefix = "test:"
# Generous: only the rate-limit tests, which set their own, meet a limit.
anonymous = { requests = 10000, period_seconds = 60 }
authenticated = { requests = 10000, period_seconds = 60 }
login = { requests = 10000, period_seconds = 60 }
login_account = { requests = 10000, period_seconds = 60 }
password_reset = { requests = 10000, period_seconds = 60 }
password_reset_account = { requests = 10000, period_seconds = 60 }
password_reset_confirm = { requests = 10000, period_seconds = 60 }
token = { requests = 10000, period_seconds = 60 }
api_key_management = { requests = 10000, period_seconds = 60 }
payment = { requests = 10000, period_seconds = 60 }

[log]
level = "warn"

[audit]
# Tests read the events they need from the in-process capture (`audit`).
sink = "off"
file_path = "DATA_DIR/audit.log"
"#;

/// `config/default.toml` with [`TEST_OVERRIDES`], its files in `data_dir` and its database and
/// rate-limit store those of this run ([`backend`]).
pub fn test_config(data_dir: &Path) -> String {
    with_overrides(
        &test_defaults::default_toml(),
        &backend::configure(TEST_OVERRIDES, data_dir),
    )
}

/// A config folder holding `default.toml` and `test.toml` (`overrides`), for
/// `APP_ENVIRONMENT=test`.
pub fn config_dir(default_toml: &str, overrides: &str) -> tempfile::TempDir {
    let config_dir = tempfile::tempdir().expect("config dir");
    std::fs::write(config_dir.path().join("default.toml"), default_toml)
        .expect("write default.toml");
    std::fs::write(config_dir.path().join("test.toml"), overrides).expect("write test.toml");
    config_dir
}

/// The test configuration of `data_dir` with `overrides` (TOML), loaded as the service loads it.
pub fn settings(data_dir: &Path, overrides: &str) -> Settings {
    let config_dir = config_dir(&test_config(data_dir), overrides);
    // A prefix no variable uses: tests never read the developer's APP_* variables.
    Settings::load_from(
        config_dir.path(),
        Environment::Test,
        Env::prefixed("RAMPART_TEST_UNUSED_"),
    )
    .expect("test settings are valid")
}
