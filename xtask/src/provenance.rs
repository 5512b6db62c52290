//! What produced a generated project, recorded in `[workspace.metadata.rampart]` of its root
//! `Cargo.toml`: Rampart's release version, the commit of the Rampart checkout it was rendered
//! from, the project's name and every template option. `cargo xtask upgrade` renders the
//! template again from this record.
//!
//! The release version has one home, the template's own record
//! (`template/Cargo.toml.liquid`), so a project rendered by the cargo-generate CLI records it
//! too. The commit is a template option, `rampart_commit`: `cargo xtask new` sets it from the
//! checkout; the CLI leaves it empty unless given `-d rampart_commit=$(git rev-parse HEAD)`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::{git, read_toml};

/// The table holding the record.
const TABLE_HEADER: &str = "[workspace.metadata.rampart]";

/// The template option that carries the commit into the rendering.
pub const COMMIT_OPTION: &str = "rampart_commit";

/// The record's entries that are not template options.
const RECORD_KEYS: [&str; 3] = ["version", "commit", "project_name"];

/// A project's record, as far as it has one (projects generated before it existed have only
/// the options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    pub version: Option<String>,
    pub commit: Option<String>,
    pub project_name: Option<String>,
    /// Every other string in the table: the template options.
    pub options: BTreeMap<String, String>,
}

impl Provenance {
    /// Reads the record of the project at `project`.
    pub fn read(project: &Path) -> Result<Self> {
        let manifest = read_toml(&project.join("Cargo.toml"))?;
        let table = manifest
            .get("workspace")
            .and_then(|workspace| workspace.get("metadata"))
            .and_then(|metadata| metadata.get("rampart"))
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();
        let text = |key: &str| {
            table
                .get(key)
                .and_then(toml::Value::as_str)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        Ok(Self {
            version: text("version"),
            commit: text("commit"),
            project_name: text("project_name"),
            options: table
                .iter()
                .filter(|(key, _)| !RECORD_KEYS.contains(&key.as_str()))
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                .collect(),
        })
    }
}

/// Rampart's release version in the template at `template` (its manifest's record).
pub fn release_version(template: &Path) -> Result<String> {
    let path = template.join("Cargo.toml.liquid");
    // Liquid appears only inside strings and comments of this file, so it parses as TOML.
    let manifest = read_toml(&path)?;
    manifest["workspace"]["metadata"]["rampart"]["version"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{} records no version", path.display()))
}

/// The definition that records `commit` in a rendering.
pub fn commit_define(commit: &str) -> String {
    format!("{COMMIT_OPTION}={commit}")
}

/// The definitions that record the commit checked out at `root` (none outside a git checkout:
/// the project then records an empty commit).
pub fn checkout_defines(root: &Path) -> Vec<String> {
    git::head_commit(root)
        .map(|commit| commit_define(&commit))
        .into_iter()
        .collect()
}

/// Said after the commit id, as in the template: a secret scanner takes 40 hexadecimal digits
/// for a key, and a generated project's scan must pass without listing its own commit.
pub const COMMIT_PRAGMA: &str = "  # pragma: allowlist secret";

/// `manifest` (a project's root `Cargo.toml`) with the record's version and commit set, line by
/// line so the rest of the file keeps its form; the table is added if it is missing.
pub fn with_version_and_commit(manifest: &str, version: &str, commit: &str) -> String {
    let entries = [("version", version, ""), ("commit", commit, COMMIT_PRAGMA)];
    let mut lines: Vec<String> = manifest.lines().map(str::to_owned).collect();
    let Some(header) = lines.iter().position(|line| line.trim() == TABLE_HEADER) else {
        let mut text = manifest.trim_end().to_owned();
        text.push_str(&format!("\n\n{TABLE_HEADER}\n"));
        for (key, value, pragma) in entries {
            text.push_str(&format!("{key} = \"{value}\"{pragma}\n"));
        }
        return text;
    };
    let mut inserted = 0;
    for (key, value, pragma) in entries {
        let entry = format!("{key} = \"{value}\"{pragma}");
        let end = lines[header + 1..]
            .iter()
            .position(|line| line.trim_start().starts_with('['))
            .map_or(lines.len(), |offset| header + 1 + offset);
        let existing = lines[header + 1..end].iter().position(|line| {
            line.split_once('=')
                .is_some_and(|(name, _)| name.trim() == key)
        });
        match existing {
            Some(offset) => lines[header + 1 + offset] = entry,
            None => {
                inserted += 1;
                lines.insert(header + inserted, entry);
            }
        }
    }
    let mut text = lines.join("\n");
    if manifest.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_and_commit_are_replaced_in_place_and_nothing_else_moves() {
        let manifest = "[workspace]\nmembers = []\n\n[workspace.metadata.rampart]\n# why\n\
                        version = \"0.9.0\"\ncommit = \"aaa\"\ndatabase = \"sqlite\"\n\n\
                        [workspace.package]\nversion = \"1.0.0\"\n";
        let updated = with_version_and_commit(manifest, "0.9.1", "bbb");
        assert_eq!(
            updated,
            manifest
                .replace("version = \"0.9.0\"", "version = \"0.9.1\"")
                .replace(
                    "commit = \"aaa\"",
                    &format!("commit = \"bbb\"{COMMIT_PRAGMA}")
                )
        );
    }

    #[test]
    fn a_manifest_without_the_record_gets_one() {
        let updated = with_version_and_commit("[workspace]\n", "0.9.0", "ccc");
        assert_eq!(
            updated,
            format!(
                "[workspace]\n\n[workspace.metadata.rampart]\nversion = \"0.9.0\"\ncommit = \"ccc\"\
                 {COMMIT_PRAGMA}\n"
            )
        );
    }
}
