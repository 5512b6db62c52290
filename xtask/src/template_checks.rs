//! Checks that the template and this repository agree: one policy, one set of dependency
//! versions, one lockfile, one control catalogue. A drift here would let the template test
//! something other than what it ships.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::render::{self, Variant};
use crate::{provenance, read_toml};
use xtask::cmd;

/// Dependencies only this repository uses (its own tooling), absent from the template.
const ROOT_ONLY_DEPENDENCIES: &[&str] = &["cargo-generate", "semver", "xtask"];

/// The control catalogue every generated project ships: the one definition of the control ids.
pub const CONTROL_CATALOGUE: &str = "template/docs/controls.md";

/// The catalogue Rampart is built against, kept beside the checkout where CI has it (users' clones
/// do not, and skip that comparison).
const CHECKLIST_CATALOGUE: &str = "../shared/controls.md";

/// Runs every check.
pub fn check_all(root: &Path, scratch: &Path) -> Result<()> {
    control_ids_catalogued(root)?;
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

/// The shipped catalogue defines the checklist's ids (when the checklist's catalogue is beside the
/// checkout), `CONTROLS.md` has exactly one row per id, and every control id cited in the
/// template, in this repository's crates (the scanner tags its checks) or in `CONTROLS.md` is
/// defined in the shipped catalogue.
pub fn control_ids_catalogued(root: &Path) -> Result<()> {
    let catalogue = defined_ids(&read_text(&root.join(CONTROL_CATALOGUE))?)
        .with_context(|| format!("in {CONTROL_CATALOGUE}"))?;
    if let Ok(checklist) = std::fs::read_to_string(root.join(CHECKLIST_CATALOGUE)) {
        let checklist = defined_ids(&checklist).context("in the checklist's catalogue")?;
        if checklist != catalogue {
            bail!(
                "{CONTROL_CATALOGUE} and {CHECKLIST_CATALOGUE} define different control ids: \
                 only in the shipped one {:?}, only in the checklist's {:?}",
                catalogue.difference(&checklist).collect::<Vec<_>>(),
                checklist.difference(&catalogue).collect::<Vec<_>>(),
            );
        }
    }
    let controls_md = read_text(&root.join("CONTROLS.md"))?;
    let rows = defined_ids(&controls_md).context("in CONTROLS.md")?;
    if rows != catalogue {
        bail!(
            "CONTROLS.md needs one row per catalogued control: rows without a control {:?}, \
             controls without a row {:?}",
            rows.difference(&catalogue).collect::<Vec<_>>(),
            catalogue.difference(&rows).collect::<Vec<_>>(),
        );
    }
    let families: BTreeSet<&str> = catalogue.iter().filter_map(|id| id_family(id)).collect();
    let mut uncatalogued = Vec::new();
    let mut files = vec![root.join("CONTROLS.md")];
    for dir in ["template", "crates"] {
        text_files(&root.join(dir), &mut files)?;
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // Not text: no citations.
        };
        for id in cited_ids(&text, &families) {
            if !catalogue.contains(&id) {
                let file = file.strip_prefix(root).unwrap_or(&file).display();
                uncatalogued.push(format!("{file}: {id}"));
            }
        }
    }
    if !uncatalogued.is_empty() {
        bail!(
            "control ids cited but not defined in {CONTROL_CATALOGUE}:\n{}",
            uncatalogued.join("\n")
        );
    }
    Ok(())
}

/// The ids a catalogue's tables define: the first cell of each row, when it reads as an id.
fn defined_ids(markdown: &str) -> Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    for line in markdown.lines() {
        let first_cell = line.strip_prefix('|').and_then(|row| row.split('|').next());
        let Some(id) = first_cell
            .map(str::trim)
            .filter(|cell| id_family(cell).is_some())
        else {
            continue;
        };
        if !ids.insert(id.to_owned()) {
            bail!("{id} has more than one row");
        }
    }
    if ids.is_empty() {
        bail!("no control ids found");
    }
    Ok(ids)
}

/// The family of a control id (`AUTH` of `AUTH-3`), or `None` when `word` is not one.
fn id_family(word: &str) -> Option<&str> {
    let (family, number) = word.split_once('-')?;
    let is_family = !family.is_empty() && family.bytes().all(|b| b.is_ascii_uppercase());
    let is_number = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    (is_family && is_number).then_some(family)
}

/// The control ids of the given families cited in `text`. A version such as `TLS-1.3` is not one.
fn cited_ids(text: &str, families: &BTreeSet<&str>) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        .map(|word| word.trim_end_matches(['.', '-']))
        .filter(|word| id_family(word).is_some_and(|family| families.contains(family)))
        .map(str::to_owned)
        .collect()
}

/// Every file under `dir`, build output excepted, appended to `files`.
fn text_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|name| name != "target") {
                text_files(&path, files)?;
            }
        } else {
            files.push(path);
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
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

    const CATALOGUE: &str = "| id | control |\n|---|---|\n| AUTH-1 | a |\n| TLS-1 | b |\n";

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().expect("a file in a folder")).expect("create folder");
        std::fs::write(path, text).expect("write file");
    }

    /// A checkout with the given catalogue, `CONTROLS.md` and template source, and the
    /// checklist's catalogue beside it when given.
    fn checkout(
        catalogue: &str,
        controls_md: &str,
        source: &str,
        checklist: Option<&str>,
    ) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary folder");
        let root = dir.path().join("rampart");
        write(&root.join(CONTROL_CATALOGUE), catalogue);
        write(&root.join("CONTROLS.md"), controls_md);
        write(&root.join("template/lib.rs"), source);
        write(&root.join("crates/scanner.rs"), "control: \"TLS-1\"");
        if let Some(checklist) = checklist {
            write(&dir.path().join("shared/controls.md"), checklist);
        }
        dir
    }

    /// The check's error on `dir`'s checkout, which must fail, with its context.
    fn failure(dir: &tempfile::TempDir) -> String {
        let error =
            control_ids_catalogued(&dir.path().join("rampart")).expect_err("the check fails");
        format!("{error:#}")
    }

    #[test]
    fn this_repository_cites_only_catalogued_control_ids() {
        control_ids_catalogued(&crate::repository_root()).expect("every id catalogued");
    }

    #[test]
    fn a_checkout_citing_catalogued_ids_passes() {
        let source = "//! TLS 1.3 only (TLS-1, AUTH-1.), SHA-256, TLS-1.2 refused";
        let dir = checkout(CATALOGUE, CATALOGUE, source, Some(CATALOGUE));
        control_ids_catalogued(&dir.path().join("rampart")).expect("every id catalogued");
    }

    #[test]
    fn an_id_cited_in_the_template_but_not_catalogued_fails() {
        let error = failure(&checkout(CATALOGUE, CATALOGUE, "//! (AUTH-7)", None));
        assert!(error.contains("template/lib.rs: AUTH-7"), "{error}");
    }

    #[test]
    fn an_id_cited_in_controls_md_but_not_catalogued_fails() {
        let controls_md = format!("{CATALOGUE}\nSee also TLS-9.\n");
        let error = failure(&checkout(CATALOGUE, &controls_md, "", None));
        assert!(error.contains("CONTROLS.md: TLS-9"), "{error}");
    }

    #[test]
    fn controls_md_missing_a_row_or_repeating_one_fails() {
        let error = failure(&checkout(CATALOGUE, "| AUTH-1 | a |\n", "", None));
        assert!(error.contains("without a row [\"TLS-1\"]"), "{error}");
        let repeated = format!("{CATALOGUE}| TLS-1 | again |\n");
        let error = failure(&checkout(CATALOGUE, &repeated, "", None));
        assert!(error.contains("TLS-1 has more than one row"), "{error}");
    }

    #[test]
    fn a_shipped_catalogue_differing_from_the_checklists_fails() {
        let checklist = format!("{CATALOGUE}| LOG-1 | c |\n");
        let error = failure(&checkout(CATALOGUE, CATALOGUE, "", Some(&checklist)));
        assert!(
            error.contains("only in the checklist's [\"LOG-1\"]"),
            "{error}"
        );
    }

    #[test]
    fn the_template_records_every_option_and_its_release_is_in_the_changelog() {
        let root = crate::repository_root();
        provenance_records_every_option(&root).expect("every option recorded");
        changelog_names_the_release(&root).expect("the release in CHANGELOG.md");
    }
}
