//! `cargo xtask scaffold NAME FIELD:TYPE...`: adds a resource owned by its creator, with the
//! controls the hand-written ones have, so new code starts secure instead of being made so in
//! review.
//!
//! It writes the handlers (create, read, a capped list, replace, delete; scopes on the
//! credential parameter; closed request objects with constraints from the field types; every
//! query scoped to the owner; audit events), the entity, a migration for SQLite and PostgreSQL
//! and the resource's tests, then registers them where the project lists such things (the
//! module lists, the OpenAPI tag and API tuple, the scope catalogue and the user role, the
//! migrations, the test modules, the audit event table). `--sensitive` also gives the writes a
//! stricter rate-limit tier of their own (RATE-3), wired as the other sensitive tiers are. Finally
//! `cargo fmt` formats the project. Nothing is written unless every edit found its place
//! (`locate`), and `--dry-run` shows the plan.
//!
//! - [`resource`]: the arguments: names and field types;
//! - [`api_code`], [`storage_code`], [`test_code`]: the new files;
//! - [`registrations`]: where the new resource is registered, one locator per item;
//! - [`locate`]: finding an item and inserting there;
//! - [`edits`]: the shared files' edits, gathered before anything is written;
//! - [`fill`]: the templates' placeholders.

pub mod api_code;
pub mod edits;
pub mod fill;
pub mod locate;
pub mod registrations;
pub mod resource;
pub mod storage_code;
pub mod test_code;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::cmd;
use edits::Edits;
use resource::Resource;

/// The arguments of `cargo xtask scaffold`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaffoldArgs {
    /// The resource, singular snake_case: `widget`.
    pub name: String,
    /// Its fields as NAME:TYPE, TYPE one of: string (1 to 200 characters), string:MAX, text (up
    /// to 10000 characters), int (0 to 1000000), int:MIN..MAX, bool, enum:a,b,c.
    #[arg(required = true, value_name = "FIELD:TYPE")]
    pub fields: Vec<String>,
    /// The plural, when NAME + "s" is wrong: `--plural mice`.
    #[arg(long)]
    pub plural: Option<String>,
    /// Give the writes (POST, PUT, DELETE) a stricter rate-limit tier of their own.
    #[arg(long)]
    pub sensitive: bool,
    /// Print what would be written, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What the scaffold writes: new files, and existing files with their edits made.
#[derive(Debug, Default)]
pub struct Plan {
    /// Path from the project's root, and contents.
    pub created: BTreeMap<String, String>,
    pub edited: BTreeMap<String, String>,
    /// `file: item` of each edit, in order, with the lines it adds.
    pub edits: Vec<(String, Vec<String>)>,
    /// Documents the owners deleted, whose edits are left out.
    pub skipped: Vec<String>,
}

/// Scaffolds the resource `args` describes into the project at `root`.
pub fn run(root: &Path, args: &ScaffoldArgs) -> Result<()> {
    let resource = Resource::parse(
        &args.name,
        &args.fields,
        args.plural.as_deref(),
        args.sensitive,
    )?;
    let plan = plan(root, &resource, &storage_code::today())?;
    if args.dry_run {
        for (file, contents) in &plan.created {
            println!("create {file} ({} lines)", contents.lines().count());
        }
        for (item, lines) in &plan.edits {
            println!("edit {item}:");
            for line in lines {
                println!("  + {line}");
            }
        }
        for file in &plan.skipped {
            println!("skip {file}: the project has deleted it");
        }
        return Ok(());
    }
    for (file, contents) in plan.created.iter().chain(&plan.edited) {
        std::fs::write(root.join(file), contents).with_context(|| format!("writing {file}"))?;
    }
    cmd::run(cmd::cargo().current_dir(root).args(["fmt", "--all"]))?;
    for file in plan.created.keys() {
        println!("created {file}");
    }
    for file in plan.edited.keys() {
        println!("edited  {file}");
    }
    for file in &plan.skipped {
        println!("skipped {file}: the project has deleted it");
    }
    Ok(())
}

/// Everything the scaffold of `resource` writes into the project at `root`, its migration dated
/// `date` (`YYYYMMDD`). Fails, writing nothing, if the resource exists or an edit cannot find
/// its place.
pub fn plan(root: &Path, resource: &Resource, date: &str) -> Result<Plan> {
    let migrations_dir = root.join("crates/migration/src");
    let existing: Vec<String> = std::fs::read_dir(&migrations_dir)
        .with_context(|| format!("reading {}", migrations_dir.display()))?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".rs")?;
            stem.starts_with('m').then(|| stem.to_owned())
        })
        .collect();
    let migration = storage_code::migration_name(resource, &existing, date);
    let plural = &resource.plural;
    let mut plan = Plan::default();
    for (file, contents) in [
        (
            format!("crates/app/src/api/{plural}.rs"),
            api_code::api_module(resource),
        ),
        (
            format!("crates/app/src/persistence/{plural}.rs"),
            storage_code::entity_module(resource),
        ),
        (
            format!("crates/migration/src/{migration}.rs"),
            storage_code::migration_module(resource),
        ),
        (
            format!("crates/app/tests/api/{plural}.rs"),
            test_code::test_module(resource),
        ),
    ] {
        if root.join(&file).exists() {
            bail!("{file} exists already: the resource `{plural}` is there");
        }
        plan.created.insert(file, contents);
    }
    let mut edits = Edits::default();
    for (locator, insertion) in registrations::edits(resource, &migration) {
        edits.make(root, &locator, insertion.lines(), |text| {
            locate::insert(text, &locator, &insertion)
        })?;
    }
    let failures = edits.misses;
    (plan.edited, plan.edits, plan.skipped) = (edits.edited, edits.made, edits.skipped);
    if !failures.is_empty() {
        bail!(
            "nothing was written: {} edit(s) could not find their place (update the locator in \
             xtask/src/scaffold/registrations.rs, or scaffold and then make these by hand):\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project whose owners deleted `docs/audit-events.md` still gets every code edit; the
    /// document's is left out and said so.
    #[test]
    fn a_document_the_owners_deleted_is_skipped_and_the_code_still_planned() {
        let template = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the project");
        let project = tempfile::tempdir().expect("temporary folder");
        let resource =
            Resource::parse("gizmo", &["name:string".to_owned()], None, true).expect("parsed");
        for (locator, _) in registrations::edits(&resource, "m20990101_999999_create_gizmos") {
            let to = project.path().join(locator.file);
            if locator.file.ends_with(".md") || to.exists() {
                continue;
            }
            std::fs::create_dir_all(to.parent().expect("a folder")).expect("create folder");
            std::fs::copy(template.join(locator.file), &to).expect("copy");
        }
        let plan = plan(project.path(), &resource, "20990101").expect("planned");
        assert_eq!(plan.skipped, vec!["docs/audit-events.md".to_owned()]);
        assert!(plan.edited.contains_key("crates/app/src/api/mod.rs"));
        assert!(!plan.edited.contains_key("docs/audit-events.md"));
    }
}
