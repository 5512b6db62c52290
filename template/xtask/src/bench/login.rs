//! Login's cost in context: the password hashing parameters (`bench-service params`: Argon2id's
//! memory, iterations and parallelism, and how many hashes run at once), reported beside (e).

use anyhow::{Context, Result};
use serde_json::Value;

use super::instances::Setup;
use crate::service::service_command;

/// The parameters the benchmark service hashes passwords with, in the project's configuration.
pub fn password_hashing_params(setup: Setup) -> Result<Value> {
    serde_json::from_slice(
        &service_command(setup.binary, setup.project, setup.data, (0, 0), None)
            .arg("params")
            .output()?
            .stdout,
    )
    .context("`bench-service params` printed no JSON")
}
