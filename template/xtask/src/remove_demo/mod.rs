//! `cargo xtask remove-demo`: takes the demo resources (notes, payments with its idempotency
//! keys) out of the project, leaving the service a team starts from: users, API keys, the
//! built-in issuer and every control.
//!
//! It is the scaffold in reverse, on the same machinery (`scaffold::locate`): the files only
//! the demo uses are deleted, and each place they are registered (API modules and tuple, scopes
//! and the user role, the payments rate-limit tier and its settings, the migrations, the audit
//! event table, the documents) loses their lines; the record in `Cargo.toml` then says
//! `demo_resources = "false"`, so `cargo xtask upgrade` renders Rampart's side without them too.
//! Nothing is written unless every edit found its place; `--dry-run` shows the plan.
//!
//! The migrations of a new project never create the demo tables: `notes` leaves the
//! authentication migration and the payments migration goes. A project whose databases already
//! ran them passes `--keep-migrations`: sea-orm refuses to migrate a database whose applied
//! migration's module is missing, so they stay, and a new migration drops the demo's tables.
//!
//! This command goes with the demo: it is among what it removes.
//!
//! - [`removals`]: what the demo is made of, one locator per registration.

pub mod removals;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::scaffold::edits::Edits;
use crate::scaffold::locate::{self, Insertion, Removal};
use crate::scaffold::{self, registrations};

/// The arguments of `cargo xtask remove-demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoveDemoArgs {
    /// Print what would be deleted and edited, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// For a project whose databases already ran the demo's migrations: leave those as they are
    /// (sea-orm refuses to migrate when an applied migration's module is missing) and add one
    /// that drops the demo's tables.
    #[arg(long)]
    pub keep_migrations: bool,
}

/// What the removal does: files deleted, and existing files with their edits made.
#[derive(Debug, Default)]
pub struct Plan {
    /// Paths from the project's root.
    pub deleted: Vec<String>,
    /// Path from the project's root, and contents.
    pub created: BTreeMap<String, String>,
    /// Path from the project's root, and the edited contents.
    pub edited: BTreeMap<String, String>,
    /// `file: item` of each edit, in order, with what it takes out.
    pub edits: Vec<(String, Vec<String>)>,
    /// Documents the owners deleted, whose edits are left out.
    pub skipped: Vec<String>,
}

/// The project's root manifest: `Cargo.toml`, or in Rampart's template `Cargo.toml.liquid`.
fn manifest_file(root: &Path) -> &'static str {
    if root.join("Cargo.toml").exists() {
        "Cargo.toml"
    } else {
        "Cargo.toml.liquid"
    }
}

/// Whether the project at `root` still holds the demo resources, as its record says.
pub fn has_demo_resources(root: &Path) -> Result<bool> {
    let file = manifest_file(root);
    let manifest =
        std::fs::read_to_string(root.join(file)).with_context(|| format!("reading {file}"))?;
    Ok(!manifest
        .lines()
        .any(|line| line.trim() == removals::WITHOUT_DEMO))
}

/// Removes the demo resources from the project at `root`, printing what it did.
pub fn run(root: &Path, args: &RemoveDemoArgs) -> Result<()> {
    let dropping_migration_date = args.keep_migrations.then(scaffold::storage_code::today);
    let plan = plan(root, dropping_migration_date.as_deref())?;
    if args.dry_run {
        for file in plan.created.keys() {
            println!("create {file}");
        }
        for file in &plan.deleted {
            println!("delete {file}");
        }
        for (item, lines) in &plan.edits {
            println!("edit {item}:");
            for line in lines {
                println!("  {line}");
            }
        }
        for file in &plan.skipped {
            println!("skip {file}: the project has deleted it");
        }
        return Ok(());
    }
    apply(root, &plan)?;
    for file in plan.created.keys() {
        println!("created {file}");
    }
    for file in &plan.deleted {
        println!("deleted {file}");
    }
    for file in plan.edited.keys() {
        println!("edited  {file}");
    }
    for file in &plan.skipped {
        println!("skipped {file}: the project has deleted it");
    }
    Ok(())
}

/// Writes `plan` into the project at `root` and formats the Rust files it edited (an item taken
/// out of a list can leave a list rustfmt writes on one line). Deterministic: `cargo xtask
/// upgrade` applies it to both of its renderings.
pub fn apply(root: &Path, plan: &Plan) -> Result<()> {
    for file in &plan.deleted {
        let path = root.join(file);
        std::fs::remove_file(&path).with_context(|| format!("deleting {file}"))?;
        // The folder this command lives in goes with it; others are never left empty.
        if let Some(folder) = path.parent() {
            let _ = std::fs::remove_dir(folder);
        }
    }
    for (file, contents) in plan.created.iter().chain(&plan.edited) {
        std::fs::write(root.join(file), contents).with_context(|| format!("writing {file}"))?;
    }
    let rust_files: Vec<&String> = plan
        .edited
        .keys()
        .filter(|file| file.ends_with(".rs"))
        .collect();
    if rust_files.is_empty() {
        return Ok(());
    }
    let formatted = std::process::Command::new("rustfmt")
        .current_dir(root)
        .args(["--edition", "2024"])
        .args(&rust_files)
        .output()
        .context("cannot run rustfmt")?;
    if !formatted.status.success() {
        bail!(
            "rustfmt failed on the edited files:\n{}",
            String::from_utf8_lossy(&formatted.stderr)
        );
    }
    Ok(())
}

/// Everything the removal does to the project at `root`: with `dropping_migration_date`
/// (`YYYYMMDD`, `--keep-migrations`) the migrations stay and one dated so drops the demo's
/// tables; without, the migrations no longer create them. Fails, changing nothing, if the
/// project has no demo resources any more or an edit cannot find its place.
pub fn plan(root: &Path, dropping_migration_date: Option<&str>) -> Result<Plan> {
    let (plan, misses) = plan_with_misses(root, dropping_migration_date)?;
    if !misses.is_empty() {
        bail!(
            "nothing was changed: {} edit(s) could not find their place (update \
             xtask/src/remove_demo/removals.rs, or make these by hand):\n\n{}",
            misses.len(),
            misses.join("\n\n")
        );
    }
    Ok(plan)
}

/// The edits of [`plan`] (without `--keep-migrations`) that find their place at `root`, and
/// what each of the others says. For `cargo xtask upgrade`, whose base is a rendering of an
/// older template this removal may no longer fit line for line. A registration left in the
/// base is one the project and the upgraded side both lack, a change both made, which merges
/// cleanly. (The migration edits match lines that never change once released, so they fit any
/// base: a project that kept its migrations keeps them through the merge.)
pub fn plan_what_fits(root: &Path) -> Result<(Plan, Vec<String>)> {
    plan_with_misses(root, None)
}

fn plan_with_misses(
    root: &Path,
    dropping_migration_date: Option<&str>,
) -> Result<(Plan, Vec<String>)> {
    if !has_demo_resources(root)? {
        bail!(
            "the project records `{}`: its demo resources are removed already",
            removals::WITHOUT_DEMO
        );
    }
    let mut plan = Plan::default();
    for file in removals::DEMO_FILES {
        // A demo file the owners deleted already is gone as it should be.
        if root.join(file).exists() {
            plan.deleted.push((*file).to_owned());
        }
    }
    let mut edits = Edits::default();
    let mut planned = removals::edits();
    match dropping_migration_date {
        None => {
            if root.join(removals::PAYMENTS_MIGRATION).exists() {
                plan.deleted.push(removals::PAYMENTS_MIGRATION.to_owned());
            }
            planned.extend(removals::migration_edits());
        }
        Some(date) => {
            let name = dropping_migration_name(root, date)?;
            let (file, contents) = removals::dropping_migration(&name);
            plan.created.insert(file, contents);
            for (locator, insertion) in [
                (
                    registrations::MIGRATION_MODULES,
                    Insertion::SortedLine(format!("mod {name};")),
                ),
                (
                    registrations::MIGRATIONS,
                    Insertion::AppendToBlock(vec![format!("Box::new({name}::Migration),")]),
                ),
            ] {
                let lines = insertion
                    .lines()
                    .iter()
                    .map(|line| format!("+ {line}"))
                    .collect();
                edits.make(root, &locator, lines, |text| {
                    locate::insert(text, &locator, &insertion)
                })?;
            }
        }
    }
    let record = removals::record(manifest_file(root));
    let changed_record = Removal::Replace(&[removals::WITH_DEMO], &[removals::WITHOUT_DEMO]);
    for (locator, removal) in planned.iter().chain([(record, changed_record)].iter()) {
        edits.make(root, locator, removal.describe(), |text| {
            locate::remove(text, locator, removal)
        })?;
    }
    (plan.edited, plan.edits, plan.skipped) = (edits.edited, edits.made, edits.skipped);
    Ok((plan, edits.misses))
}

/// `m<date>_<next number>_drop_demo_tables`, after the project's migrations.
fn dropping_migration_name(root: &Path, date: &str) -> Result<String> {
    let folder = root.join("crates/migration/src");
    let mut highest = 0;
    for entry in
        std::fs::read_dir(&folder).with_context(|| format!("reading {}", folder.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(number) = name
            .strip_prefix('m')
            .and_then(|stem| stem.split('_').nth(1)?.parse::<u32>().ok())
        {
            highest = highest.max(number);
        }
    }
    Ok(format!("m{date}_{:06}_drop_demo_tables", highest + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This project's root (the parent of `xtask`).
    fn project_root() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("a parent")
            .to_path_buf()
    }

    /// Each removal finds its place in this project and each demo file is there (a project
    /// without the demo has no such test: it goes with the command): a refactoring that moves an
    /// item fails here, naming the locator to update.
    #[test]
    fn every_removal_finds_its_place_in_this_project() {
        let root = project_root();
        let plan = plan(&root, None).unwrap_or_else(|error| panic!("{error:#}"));
        // Every demo file and the payments migration.
        assert_eq!(plan.deleted.len(), removals::DEMO_FILES.len() + 1);
        // Every edit, and the record's.
        assert_eq!(
            plan.edits.len(),
            removals::edits().len() + removals::migration_edits().len() + 1
        );
        assert!(plan.skipped.is_empty(), "{:?}", plan.skipped);
        let manifest = &plan.edited[manifest_file(&root)];
        assert!(manifest.contains(removals::WITHOUT_DEMO), "{manifest}");
        assert!(!plan.edited["crates/app/src/api/mod.rs"].contains("notes"));
    }

    /// With `--keep-migrations` the migrations that ran stay as they are and a new one, after
    /// them, drops the demo's tables.
    #[test]
    fn keeping_the_migrations_adds_one_that_drops_the_demo_tables() {
        let root = project_root();
        let plan = plan(&root, Some("20990101")).unwrap_or_else(|error| panic!("{error:#}"));
        assert!(
            !plan
                .deleted
                .iter()
                .any(|file| file == removals::PAYMENTS_MIGRATION)
        );
        assert!(
            !plan
                .edited
                .contains_key("crates/migration/src/m20261128_000002_authentication.rs")
        );
        let (file, contents) = plan.created.iter().next().expect("a migration");
        assert!(
            file.starts_with("crates/migration/src/m20990101_")
                && file.ends_with("_drop_demo_tables.rs"),
            "{file}"
        );
        assert!(contents.contains(".if_exists()"));
        let name = file
            .trim_start_matches("crates/migration/src/")
            .trim_end_matches(".rs");
        let list = &plan.edited["crates/migration/src/lib.rs"];
        assert!(list.contains(&format!("mod {name};")), "{list}");
        assert!(
            list.contains(&format!("Box::new({name}::Migration),")),
            "{list}"
        );
        assert!(
            list.contains("m20261128_000004_payments::Migration"),
            "{list}"
        );
    }
}
