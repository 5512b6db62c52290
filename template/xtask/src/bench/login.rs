//! Login's cost in context: the password hashing parameters (`bench-service params`: Argon2id's
//! memory, iterations and parallelism, and how many hashes run at once), reported beside (e).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::service::service_command;

/// The parameters `binary` hashes passwords with, in the configuration of the project at `root`.
pub fn password_hashing_params(binary: &Path, root: &Path, data: &Path) -> Result<Value> {
    serde_json::from_slice(
        &service_command(binary, root, data, (0, 0), None)
            .arg("params")
            .output()?
            .stdout,
    )
    .context("`bench-service params` printed no JSON")
}
