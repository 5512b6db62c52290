//! Dependency advisories and policy (OPS-1): cargo-audit and cargo-deny on every CI run.
//!
//! Both are installed with `cargo install --locked` at pinned versions when missing. With a
//! [`LocalAdvisoryDb`] they run with no network access at all.
//!
//! Threat: a dependency with a published vulnerability, a yanked version, an unwanted licence or
//! an unknown source ships unnoticed. Both tools run in every `cargo xtask ci` (Rampart's and
//! each generated project's) against `deny.toml` (Rampart's and the template's are the same
//! file, checked by Rampart's CI), and Rampart's CI proves they can fail: a known-vulnerable
//! crate added on purpose must fail both advisory checks. There is no switch; an advisory is
//! accepted only by naming it in `deny.toml` with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

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
    cmd::run(&mut audit_command(root, db)?)
}

/// The cargo-audit command [`audit`] runs, installing the tool first if needed.
pub fn audit_command(root: &Path, db: Option<&LocalAdvisoryDb>) -> Result<Command> {
    ensure_installed("audit", "cargo-audit", CARGO_AUDIT_VERSION)?;
    let mut command = cmd::cargo();
    command.current_dir(root).arg("audit");
    for id in ignored_advisories(root)? {
        command.arg("--ignore").arg(id);
    }
    if let Some(db) = db {
        command.arg("--db").arg(&db.checkout).arg("--no-fetch");
    }
    Ok(command)
}

/// `cargo deny check` (advisories, bans, licenses, sources) on the workspace at `root`, with
/// its `deny.toml`.
pub fn deny(root: &Path, db: Option<&LocalAdvisoryDb>, scratch: &Path) -> Result<()> {
    cmd::run(&mut deny_command(root, db, scratch)?)
}

/// The cargo-deny command [`deny`] runs, installing the tool (and, offline, fetching the
/// crates it reads) first.
pub fn deny_command(root: &Path, db: Option<&LocalAdvisoryDb>, scratch: &Path) -> Result<Command> {
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
                .args(["deny", "--offline", "--config"])
                .arg(config)
                .arg("check");
        }
    }
    Ok(command)
}

/// The advisory ids `deny.toml` ignores (each with its reason there), so that cargo-audit and
/// cargo-deny apply one list.
pub fn ignored_advisories(root: &Path) -> Result<Vec<String>> {
    let entries = read_deny_toml(root)?
        .get("advisories")
        .and_then(|advisories| advisories.get("ignore"))
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(entries
        .iter()
        .filter_map(|entry| match entry {
            toml::Value::String(id) => Some(id.clone()),
            toml::Value::Table(table) => table.get("id")?.as_str().map(str::to_owned),
            _ => None,
        })
        .collect())
}

/// A copy of `deny.toml` whose advisory database is the local one.
fn offline_deny_config(root: &Path, deny_db_path: &Path, scratch: &Path) -> Result<PathBuf> {
    let mut config = read_deny_toml(root)?;
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

fn read_deny_toml(root: &Path) -> Result<toml::Table> {
    let source = root.join("deny.toml");
    std::fs::read_to_string(&source)
        .with_context(|| format!("cannot read {}", source.display()))?
        .parse()
        .with_context(|| format!("{} is not valid TOML", source.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_advisories_are_read_from_deny_toml() {
        let root = tempfile::tempdir().expect("root");
        std::fs::write(
            root.path().join("deny.toml"),
            "[advisories]\nignore = [\"RUSTSEC-0000-0001\", { id = \"RUSTSEC-0000-0002\", reason = \"r\" }]\n",
        )
        .expect("write");
        assert_eq!(
            ignored_advisories(root.path()).expect("read"),
            ["RUSTSEC-0000-0001", "RUSTSEC-0000-0002"]
        );
    }

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
