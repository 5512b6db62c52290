//! The `demo_resources` option: whether a generated project keeps the demo resources (notes,
//! payments). Not a cargo-generate placeholder: the Rust sources are plain code copied as they
//! are, so the option is `cargo xtask remove-demo` (the project's own command, `xtask::
//! remove_demo`) applied to a rendering, which records `demo_resources = "false"` in the project's
//! `[workspace.metadata.rampart]`. `cargo xtask new` applies it unless asked to keep the demo;
//! `cargo xtask upgrade` applies it to both of its renderings when the project records it, so
//! they differ only by Rampart's changes. Decision record 0021.

use std::path::Path;

use anyhow::{Result, bail};

/// The option's name in `-d` definitions and in the project's record.
pub const OPTION: &str = "demo_resources";

/// `cargo xtask new` leaves the demo out unless `-d demo_resources=true`: a team starting a real
/// service deletes it first. `cargo xtask demo`, the variants and the scans keep it.
pub const KEPT_BY_NEW: bool = false;

/// Takes `demo_resources=…` out of `defines` (the other definitions go to cargo-generate) and
/// returns whether the demo is kept: `default` when not defined.
pub fn split(defines: &[String], default: bool) -> Result<(bool, Vec<String>)> {
    let mut keep = default;
    let mut rest = Vec::new();
    for define in defines {
        match define.split_once('=') {
            Some((key, value)) if key.trim() == OPTION => {
                keep = match value.trim() {
                    "true" => true,
                    "false" => false,
                    other => bail!("{OPTION} is true or false, not {other:?}"),
                }
            }
            _ => rest.push(define.clone()),
        }
    }
    Ok((keep, rest))
}

/// Takes the demo resources out of the fresh rendering at `project` unless `keep`.
pub fn apply(project: &Path, keep: bool) -> Result<()> {
    if keep {
        return Ok(());
    }
    let plan = xtask::remove_demo::plan(project, None)?;
    xtask::remove_demo::apply(project, &plan)
}

/// As [`apply`], for the upgrade's base: a rendering of an older template, which this
/// checkout's removal may no longer fit line for line. The edits that fit are made and the
/// others listed (see `xtask::remove_demo::plan_what_fits`): a registration left in the base
/// is one the project and Rampart's side both lack, which merges cleanly.
pub fn apply_to_base(base: &Path, keep: bool) -> Result<()> {
    if keep {
        return Ok(());
    }
    let (plan, misses) = xtask::remove_demo::plan_what_fits(base)?;
    if !misses.is_empty() {
        eprintln!(
            "the recorded commit's rendering keeps {} registration(s) of the demo that this \
             checkout's removal no longer fits; they merge as taken out:\n{}",
            misses.len(),
            misses.join("\n")
        );
    }
    xtask::remove_demo::apply(base, &plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository_root;

    #[test]
    fn the_option_is_taken_out_of_the_definitions_and_read_strictly() {
        let defines = [
            "database=postgres".to_owned(),
            "demo_resources=true".to_owned(),
        ];
        let (keep, rest) = split(&defines, false).expect("valid");
        assert!(keep);
        assert_eq!(rest, ["database=postgres".to_owned()]);
        assert!(!split(&[], false).expect("valid").0);
        assert!(split(&["demo_resources=yes".to_owned()], false).is_err());
    }

    /// A base the removal no longer fits (here: a file that lost a registration's line) has
    /// the edits that fit made, rather than failing the upgrade.
    #[test]
    fn a_base_the_removal_does_not_fit_everywhere_has_the_edits_that_fit() {
        let root = repository_root().join("template");
        let base = tempfile::tempdir().expect("tempdir");
        copy_folder(&root, base.path());
        let api = base.path().join("crates/app/src/api/mod.rs");
        let text = std::fs::read_to_string(&api).expect("read");
        std::fs::write(&api, text.replace("pub mod payments;\n", "")).expect("write");

        assert!(
            apply(base.path(), false).is_err(),
            "the removal does not fit"
        );
        apply_to_base(base.path(), false).expect("the edits that fit");
        assert!(!base.path().join("crates/app/src/api/notes.rs").exists());
        let api = std::fs::read_to_string(&api).expect("read");
        assert!(!api.contains("pub mod notes;"), "{api}");
        let manifest =
            std::fs::read_to_string(base.path().join("Cargo.toml.liquid")).expect("read");
        assert!(manifest.contains(xtask::remove_demo::removals::WITHOUT_DEMO));
    }

    fn copy_folder(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("type").is_dir() {
                std::fs::create_dir_all(&target).expect("mkdir");
                copy_folder(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }
}
