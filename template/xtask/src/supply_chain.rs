//! Dependency advisories and policy (OPS-1): cargo-audit and cargo-deny on every CI run.
//!
//! Both are installed with `cargo install --locked` at pinned versions when missing. With a
//! [`LocalAdvisoryDb`] they run with no network access at all.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::advisory_db::LocalAdvisoryDb;
use crate::cmd;

/// Versions known to build with the project's minimum Rust version.
pub const CARGO_AUDIT_VERSION: &str = "0.22.2";
pub const CARGO_DENY_VERSION: &str = "0.20.2";

/// Installs `cargo <subcommand>` from crates.io unless it already answers.
pub fn ensure_installed(subcommand: &str, package: &str, version: &str) -> Result<()> {
    if cmd::succeeds(cmd::cargo().args([subcommand, "--version"])) {
        return Ok(());
    }
    cmd::step(&format!("installing {package} {version}"));
    cmd::run(cmd::cargo().args(["install", "--locked", package, "--version", version]))
}

/// `cargo audit` on the workspace at `root`: fails on any known vulnerability.
pub fn audit(root: &Path, db: Option<&LocalAdvisoryDb>) -> Result<()> {
    ensure_installed("audit", "cargo-audit", CARGO_AUDIT_VERSION)?;
    let mut command = cmd::cargo();
    command.current_dir(root).arg("audit");
    if let Some(db) = db {
        command.arg("--db").arg(&db.checkout).arg("--no-fetch");
    }
    cmd::run(&mut command)
}

/// `cargo deny check` (advisories, bans, licenses, sources) on the workspace at `root`, with
/// its `deny.toml`.
pub fn deny(root: &Path, db: Option<&LocalAdvisoryDb>, scratch: &Path) -> Result<()> {
    ensure_installed("deny", "cargo-deny", CARGO_DENY_VERSION)?;
    let mut command = cmd::cargo();
    command.current_dir(root);
    match db {
        None => {
            command.args(["deny", "check"]);
        }
        Some(db) => {
            let config = offline_deny_config(root, &db.deny_db_path, scratch)?;
            // cargo-deny reads crate metadata from the local registry cache when offline.
            cmd::run(cmd::cargo().current_dir(root).args(["fetch", "--locked"]))?;
            command
                .args(["deny", "--offline", "check", "--config"])
                .arg(config);
        }
    }
    cmd::run(&mut command)
}

/// A copy of `deny.toml` whose advisory database is the local one.
fn offline_deny_config(root: &Path, deny_db_path: &Path, scratch: &Path) -> Result<PathBuf> {
    let source = root.join("deny.toml");
    let text = std::fs::read_to_string(&source)
        .with_context(|| format!("cannot read {}", source.display()))?;
    let mut config: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", source.display()))?;
    let advisories = config
        .entry("advisories")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(advisories) = advisories {
        advisories.insert(
            "db-path".to_owned(),
            toml::Value::String(deny_db_path.display().to_string()),
        );
    }
    std::fs::create_dir_all(scratch)?;
    let path = scratch.join("deny-offline.toml");
    std::fs::write(&path, toml::to_string(&config)?)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offline_config_keeps_the_policy_and_points_at_the_local_db() {
        let root = tempfile::tempdir().expect("root");
        std::fs::write(
            root.path().join("deny.toml"),
            "[advisories]\nyanked = \"deny\"\n[bans]\nmultiple-versions = \"warn\"\n",
        )
        .expect("write");
        let path = offline_deny_config(root.path(), Path::new("/dbs"), &root.path().join("s"))
            .expect("config");
        let written: toml::Table = std::fs::read_to_string(path)
            .expect("read")
            .parse()
            .expect("toml");
        assert_eq!(written["advisories"]["db-path"].as_str(), Some("/dbs"));
        assert_eq!(written["advisories"]["yanked"].as_str(), Some("deny"));
        assert_eq!(written["bans"]["multiple-versions"].as_str(), Some("warn"));
    }
}
