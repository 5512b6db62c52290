//! A local copy of the RustSec advisory database, for machines without network access.
//!
//! Both tools fetch the database from GitHub by default. Given a local git repository or git
//! bundle (flag `--advisory-db`, or `ADVISORY_DB`), it is cloned into a folder that suits both:
//! cargo-audit reads the checkout directly (`--db DIR --no-fetch`); cargo-deny looks under its
//! `db-path` for a folder named after the default database URL, so the checkout gets that name.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// The environment variable naming a local advisory database (repository or bundle).
pub const ADVISORY_DB_ENV: &str = "ADVISORY_DB";

/// The folder name cargo-deny derives from `https://github.com/rustsec/advisory-db`.
const CARGO_DENY_FOLDER: &str = "advisory-db-3157b0e258782691";

/// A prepared local database.
#[derive(Debug, Clone)]
pub struct LocalAdvisoryDb {
    /// The checkout, as cargo-audit's `--db`.
    pub checkout: PathBuf,
    /// Its parent, as cargo-deny's `db-path`.
    pub deny_db_path: PathBuf,
}

/// Clones `source` (a git repository or bundle) into `work_dir`, replacing an older copy.
pub fn prepare(source: &Path, work_dir: &Path) -> Result<LocalAdvisoryDb> {
    if !source.exists() {
        bail!("the advisory database {} does not exist", source.display());
    }
    let deny_db_path = work_dir.join("advisory-dbs");
    let checkout = deny_db_path.join(CARGO_DENY_FOLDER);
    if checkout.exists() {
        std::fs::remove_dir_all(&checkout)
            .with_context(|| format!("cannot remove {}", checkout.display()))?;
    }
    std::fs::create_dir_all(&deny_db_path)?;
    cmd::run(
        Command::new("git")
            .arg("clone")
            .arg("--quiet")
            .arg(source)
            .arg(&checkout),
    )?;
    Ok(LocalAdvisoryDb {
        checkout: absolute(&checkout)?,
        deny_db_path: absolute(&deny_db_path)?,
    })
}

/// Prepares the database named by the flag or `ADVISORY_DB` (clap reads both) in `scratch`;
/// `None` when neither is set, and the tools fetch online as usual.
pub fn prepare_optional(source: Option<&Path>, scratch: &Path) -> Result<Option<LocalAdvisoryDb>> {
    source
        .filter(|path| !path.as_os_str().is_empty())
        .map(|source| prepare(source, scratch))
        .transpose()
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}
