//! Checks that the template and this repository agree: one policy, one set of dependency
//! versions, one lockfile. A drift here would let the template test something other than what
//! it ships.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::render::{self, Variant};
use crate::{provenance, read_toml};
use xtask::cmd;

/// Dependencies only this repository uses (its own tooling), absent from the template.
const ROOT_ONLY_DEPENDENCIES: &[&str] = &["cargo-generate", "xtask"];

/// Runs every check.
pub fn check_all(root: &Path, scratch: &Path) -> Result<()> {
    deny_policies_match(root)?;
    workspace_tables_match(root)?;
    provenance_records_every_option(root)?;
    changelog_names_the_release(root)?;
    template_lockfile_in_sync(root, scratch)
}

/// The generated project's record holds every template option (`cargo xtask upgrade` renders
/// the template again from it; an option left out would come back as its default).
pub fn provenance_records_every_option(root: &Path) -> Result<()> {
    let config = read_toml(&root.join("template/cargo-generate.toml"))?;
    let manifest = read_toml(&root.join("template/Cargo.toml.liquid"))?;
    let record = &manifest["workspace"]["metadata"]["rampart"];
    let placeholders = config
        .get("placeholders")
        .and_then(toml::Value::as_table)
        .context("template/cargo-generate.toml has no placeholders")?;
    for name in placeholders.keys() {
        let key = if name == provenance::COMMIT_OPTION {
            "commit"
        } else {
            name.as_str()
        };
        let expected = format!("{{{{{name}}}}}");
        if record.get(key).and_then(toml::Value::as_str) != Some(expected.as_str()) {
            bail!(
                "template/Cargo.toml.liquid's [workspace.metadata.rampart] must record the \
                 option {name} as {key} = \"{expected}\""
            );
        }
    }
    Ok(())
}

/// `CHANGELOG.md` has an entry for the release version the template records.
pub fn changelog_names_the_release(root: &Path) -> Result<()> {
    let version = provenance::release_version(&render::template_dir(root))?;
    let changelog =
        std::fs::read_to_string(root.join("CHANGELOG.md")).context("cannot read CHANGELOG.md")?;
    if !changelog.contains(&format!("## [{version}]")) {
        bail!("CHANGELOG.md has no \"## [{version}]\" entry for the template's version");
    }
    Ok(())
}

/// `deny.toml` and `template/deny.toml` are the same file.
pub fn deny_policies_match(root: &Path) -> Result<()> {
    let ours = std::fs::read_to_string(root.join("deny.toml"))?;
    let template = std::fs::read_to_string(root.join("template/deny.toml"))?;
    if ours != template {
        bail!("deny.toml and template/deny.toml differ: keep one policy (copy one over the other)");
    }
    Ok(())
}

/// The shared workspace tables of `Cargo.toml` and `template/Cargo.toml.liquid` are equal
/// (dependency paths compared relative to each workspace).
pub fn workspace_tables_match(root: &Path) -> Result<()> {
    let ours = read_toml(&root.join("Cargo.toml"))?;
    // Liquid appears only inside strings and comments of this file, so it parses as TOML.
    let template = read_toml(&root.join("template/Cargo.toml.liquid"))?;
    for key in ["package", "lints"] {
        if ours["workspace"].get(key) != template["workspace"].get(key) {
            bail!("[workspace.{key}] differs between Cargo.toml and template/Cargo.toml.liquid");
        }
    }
    if ours.get("profile") != template.get("profile") {
        bail!("[profile] differs between Cargo.toml and template/Cargo.toml.liquid");
    }
    let mut our_deps = ours["workspace"]["dependencies"]
        .as_table()
        .cloned()
        .context("Cargo.toml has no [workspace.dependencies]")?;
    for name in ROOT_ONLY_DEPENDENCIES {
        our_deps.remove(*name);
    }
    let our_deps = toml::to_string(&our_deps)?.replace("\"template/crates/", "\"crates/");
    let template_deps = toml::to_string(
        template["workspace"]["dependencies"]
            .as_table()
            .context("template/Cargo.toml.liquid has no [workspace.dependencies]")?,
    )?;
    if our_deps != template_deps {
        bail!(
            "[workspace.dependencies] differs between Cargo.toml and template/Cargo.toml.liquid:\n\
             --- Cargo.toml (without root-only entries)\n{our_deps}\n--- template\n{template_deps}"
        );
    }
    Ok(())
}

/// `template/Cargo.lock` resolves the rendered project unchanged, and pins every package at the
/// version this repository's `Cargo.lock` pins.
pub fn template_lockfile_in_sync(root: &Path, scratch: &Path) -> Result<()> {
    let project = render::render_fresh(root, Variant::DEFAULT, "lock-check", scratch)?;
    let locked = cmd::succeeds(cmd::cargo().current_dir(&project).args([
        "metadata",
        "--locked",
        "--format-version",
        "1",
    ]));
    if !locked {
        bail!("template/Cargo.lock is out of date: run `cargo xtask sync-lock`");
    }
    let ours = lock_versions(&root.join("Cargo.lock"))?;
    for (name, version) in lock_versions(&root.join("template/Cargo.lock"))? {
        let known = ours.iter().any(|(n, v)| n == &name && v == &version);
        if !known {
            bail!(
                "template/Cargo.lock pins {name} {version}, which Cargo.lock does not: \
                 run `cargo xtask sync-lock`"
            );
        }
    }
    Ok(())
}

/// Rewrites `template/Cargo.lock` from this repository's `Cargo.lock`: the rendered project's
/// packages at exactly the versions tested here.
pub fn sync_lock(root: &Path, scratch: &Path) -> Result<()> {
    let project = render::render_fresh(root, Variant::DEFAULT, "lock-sync", scratch)?;
    std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock"))?;
    // Resolving with the full lock drops the entries the project does not use and keeps the
    // versions of those it does.
    resolve(&project)?;
    std::fs::copy(project.join("Cargo.lock"), root.join("template/Cargo.lock"))?;
    eprintln!("template/Cargo.lock updated");
    Ok(())
}

/// Resolves the dependencies of the workspace at `project`, updating its `Cargo.lock` as needed.
pub fn resolve(project: &Path) -> Result<()> {
    cmd::run(
        cmd::cargo()
            .current_dir(project)
            .args(["metadata", "--format-version", "1"])
            .stdout(std::process::Stdio::null()),
    )
}

fn lock_versions(path: &Path) -> Result<Vec<(String, String)>> {
    let lock = read_toml(path)?;
    Ok(lock
        .get("package")
        .and_then(toml::Value::as_array)
        .map(|packages| {
            packages
                .iter()
                .filter_map(|package| {
                    Some((
                        package.get("name")?.as_str()?.to_owned(),
                        package.get("version")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_records_every_option_and_its_release_is_in_the_changelog() {
        let root = crate::repository_root();
        provenance_records_every_option(&root).expect("every option recorded");
        changelog_names_the_release(&root).expect("the release in CHANGELOG.md");
    }
}
