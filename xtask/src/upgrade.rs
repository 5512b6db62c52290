//! `cargo xtask upgrade`: brings the changes Rampart made since a project was generated (its
//! security fixes above all) into that project, keeping the project's own changes.
//!
//! Run from a Rampart checkout at the version to upgrade to. The template is rendered twice
//! with the project's recorded name and options (a project without the demo resources has them
//! taken out of both renderings by this checkout's `remove-demo`, see
//! [`demo_resources::apply_to_base`]): at the commit the project records (the base) and at this
//! checkout; every file of either rendering is then merged three ways into the
//! project (see [`plan`]), `Cargo.lock` is resolved again (see [`lockfile`]) and the record's
//! version and commit are updated. Nothing is committed: the owners review the result, resolve
//! any conflicts, run their checks and commit. Decision record 0019 gives the design.
//!
//! Refused, before anything changes: a project that is not a git repository or has uncommitted
//! changes (the upgrade edits files in place, and only a clean commit lets the owners see and
//! undo exactly what it did), a project with no recorded commit and no `--from`, and a Rampart
//! checkout whose `template/` has uncommitted changes (the project would record a commit that
//! does not hold what it was merged with).

pub mod lockfile;
pub mod plan;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::provenance::{self, Provenance};
use crate::{demo_resources, git, render};
use plan::{Change, FileChange, LOCKFILE, Sides};

/// What to upgrade, and how.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// The Rampart checkout at the version to upgrade to.
    pub rampart: PathBuf,
    /// The project's folder (a git work tree).
    pub project: PathBuf,
    /// Print the plan, change nothing.
    pub dry_run: bool,
    /// The Rampart commit the project was generated from, for a project that records none.
    pub from: Option<String>,
}

/// How an upgrade ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The project records this checkout's commit already.
    AlreadyCurrent,
    /// `--dry-run`: the plan was printed.
    Planned(Vec<FileChange>),
    /// The changes are in the project's work tree, uncommitted; the conflicts are among them.
    Applied(Vec<FileChange>),
}

impl Outcome {
    /// The files the owners must resolve.
    pub fn conflicts(&self) -> Vec<&FileChange> {
        match self {
            Outcome::Planned(changes) | Outcome::Applied(changes) => changes
                .iter()
                .filter(|file| file.change.is_conflict())
                .collect(),
            Outcome::AlreadyCurrent => Vec::new(),
        }
    }
}

/// Upgrades (or with `dry_run` plans the upgrade of) the project, printing what it does.
pub fn run(request: &UpgradeRequest) -> Result<Outcome> {
    let project = std::path::absolute(&request.project)
        .with_context(|| format!("cannot resolve {}", request.project.display()))?;
    refuse_unless_committed(&project)?;
    let record = Provenance::read(&project)?;
    let from = request
        .from
        .clone()
        .or_else(|| record.commit.clone())
        .with_context(|| {
            format!(
                "{} records no Rampart commit (generated before Rampart recorded one, or by the \
                 cargo-generate CLI without -d rampart_commit=...): pass --from COMMIT, the \
                 Rampart commit it was generated from",
                project.display()
            )
        })?;
    let base_commit = git::resolve_commit(&request.rampart, &from).with_context(|| {
        format!("the project's Rampart commit {from} is not in this checkout's history (fetch it)")
    })?;
    let target_commit = git::head_commit(&request.rampart)
        .context("the Rampart checkout has no commit to upgrade to")?;
    let template_changes = git::uncommitted(&request.rampart, "template")?;
    if !template_changes.is_empty() {
        bail!(
            "the Rampart checkout's template/ has uncommitted changes; commit or stash them \
             first, so the project records a commit that holds what it was merged with:\n{}",
            template_changes.join("\n")
        );
    }
    // Only forwards: from a checkout older than the project's commit, or on another branch,
    // every file the owners left alone would go back to the older text, undoing fixes quietly.
    if !git::is_ancestor(&request.rampart, &base_commit, &target_commit)? {
        bail!(
            "this Rampart checkout ({target_commit}) does not descend from the project's commit              {base_commit}: upgrading would take the project back or sideways and undo what it              already has; check out a later release of Rampart"
        );
    }
    if base_commit == target_commit {
        eprintln!(
            "{} is at this Rampart commit already ({target_commit})",
            project.display()
        );
        return Ok(Outcome::AlreadyCurrent);
    }

    let name = record.project_name.clone().unwrap_or_else(|| {
        let name = project
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        eprintln!("the project records no name: rendering as {name:?}, its folder's name");
        name
    });
    let scratch = tempfile::tempdir().context("cannot create a scratch folder")?;
    let old_template = scratch.path().join("old");
    git::export_folder(&request.rampart, &base_commit, "template", &old_template)?;
    // Each rendering records a commit as `new` would have: the base the one the project records
    // (none, for a project adopted with --from), so that only Rampart's change of it remains.
    // The demo resources are taken out of both renderings as `new` took them out of the project.
    let options: Vec<String> = record
        .options
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let (keep_demo, options) = demo_resources::split(&options, true)?;
    let render_at = |template: &Path, commit: &str, side: &str| -> Result<PathBuf> {
        let mut defines = options.clone();
        defines.push(provenance::commit_define(commit));
        let rendered = render::render(template, &name, &defines, &scratch.path().join(side))
            .with_context(|| format!("rendering the template for the {side} side"))?;
        if side == "base" {
            demo_resources::apply_to_base(&rendered, keep_demo)
        } else {
            demo_resources::apply(&rendered, keep_demo)
        }
        .with_context(|| format!("taking the demo resources out of the {side} side"))?;
        Ok(rendered)
    };
    let recorded_commit = record.commit.clone().unwrap_or_default();
    let base = render_at(&old_template.join("template"), &recorded_commit, "base")?;
    let rampart = render_at(
        &render::template_dir(&request.rampart),
        &target_commit,
        "rampart",
    )?;

    let version = |dir: &Path| Provenance::read(dir).map(|record| record.version);
    let (base_version, new_version) = (version(&base)?, version(&rampart)?);
    let new_version = new_version.context("this checkout's template records no version")?;
    let label = |version: Option<&str>, commit: &str| {
        format!(
            "Rampart {} ({})",
            version.unwrap_or("before 0.9.0"),
            &commit[..12]
        )
    };
    let sides = Sides {
        base: &base,
        rampart: &rampart,
        project: &project,
        labels: [
            "project".to_owned(),
            label(base_version.as_deref(), &base_commit),
            label(Some(&new_version), &target_commit),
        ],
        scratch: scratch.path(),
    };
    let changes = plan::plan(&sides)?;
    eprintln!(
        "{} {}: {} -> {}",
        if request.dry_run {
            "Plan for"
        } else {
            "Upgrading"
        },
        project.display(),
        sides.labels[1],
        sides.labels[2]
    );
    print_changes(&changes);
    if request.dry_run {
        eprintln!("\n--dry-run: nothing was changed.");
        return Ok(Outcome::Planned(changes));
    }

    for file in &changes {
        apply(&sides, file)?;
    }
    record_upgrade(&project, &new_version, &target_commit)?;
    let lock_note = complete_lockfile(&project, &rampart, &changes)?;
    let outcome = Outcome::Applied(changes);
    print_summary(&project, &outcome, &lock_note, &new_version);
    Ok(outcome)
}

/// Refuses a folder that is not a git work tree or has uncommitted changes.
fn refuse_unless_committed(project: &Path) -> Result<()> {
    if !project.is_dir() {
        bail!("{} is not a folder", project.display());
    }
    if !git::is_work_tree(project) {
        bail!(
            "{} is not a git repository. The upgrade edits files in place; commit the project \
             first (git init && git add -A && git commit) so its changes can be reviewed and \
             undone",
            project.display()
        );
    }
    let changes = git::uncommitted(project, ".")?;
    if !changes.is_empty() {
        bail!(
            "{} has uncommitted changes; commit or stash them first, so the upgrade's changes \
             are the only ones to review:\n{}",
            project.display(),
            changes.join("\n")
        );
    }
    Ok(())
}

fn print_changes(changes: &[FileChange]) {
    let mut untouched = 0;
    for file in changes {
        if matches!(file.change, Change::Untouched | Change::AlreadyCurrent) {
            untouched += 1;
        } else {
            eprintln!("  {}: {}", file.path.display(), file.change.describe());
        }
    }
    eprintln!("  ({untouched} other files: unchanged by Rampart, or already current)");
}

/// Writes one file's change into the project.
fn apply(sides: &Sides, file: &FileChange) -> Result<()> {
    let target = sides.project.join(&file.path);
    let write_parent = || -> Result<()> {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(())
    };
    match &file.change {
        Change::Updated | Change::Added | Change::DeletedButChangedByRampart => {
            write_parent()?;
            // A copy keeps the file's permissions (an executable script stays executable).
            std::fs::copy(sides.rampart.join(&file.path), &target)?;
        }
        Change::Merged(text) | Change::Conflicted(text) => std::fs::write(&target, text)?,
        Change::Removed => {
            std::fs::remove_file(&target)?;
            remove_empty_parents(sides.project, &target);
        }
        Change::Untouched
        | Change::AlreadyCurrent
        | Change::StaysDeleted
        | Change::RemovedButChangedByProject
        | Change::BinaryConflict
        | Change::LockfileResolved => {}
    }
    Ok(())
}

/// Removes the folders a removal left empty, up to the project's root.
fn remove_empty_parents(project: &Path, removed: &Path) {
    let mut folder = removed.parent();
    while let Some(dir) = folder.filter(|dir| *dir != project) {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
        folder = dir.parent();
    }
}

/// Sets the record's version and commit (a clean merge of `Cargo.toml` has done so already;
/// a conflicted one, or a project adopted with `--from`, may not have).
fn record_upgrade(project: &Path, version: &str, commit: &str) -> Result<()> {
    let path = project.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let updated = provenance::with_version_and_commit(&manifest, version, commit);
    if updated != manifest {
        std::fs::write(&path, updated)?;
    }
    Ok(())
}

/// Writes the combined lockfile and resolves it, unless a conflicted manifest cannot be read;
/// returns what the owners should know about it.
fn complete_lockfile(project: &Path, rampart: &Path, changes: &[FileChange]) -> Result<String> {
    let path = project.join(LOCKFILE);
    let before = std::fs::read_to_string(&path).unwrap_or_default();
    let combined = lockfile::combined(&std::fs::read_to_string(rampart.join(LOCKFILE))?, &before);
    std::fs::write(&path, combined)?;
    let manifest_conflict = changes.iter().any(|file| {
        file.change.is_conflict()
            && file
                .path
                .file_name()
                .is_some_and(|name| name == "Cargo.toml")
    });
    if manifest_conflict {
        return Ok(
            "Cargo.lock holds Rampart's pins and your own packages, not yet resolved: \
                   resolve the Cargo.toml conflicts, then any cargo build completes it"
                .to_owned(),
        );
    }
    if let Err(error) = lockfile::resolve(project) {
        return Ok(format!(
            "Cargo.lock holds Rampart's pins and your own packages, but cargo could not \
             resolve it ({error}); any cargo build after fixing that completes it"
        ));
    }
    let resolved = std::fs::read_to_string(&path)?;
    let moved = lockfile::version_changes(&before, &resolved);
    Ok(if moved.is_empty() {
        "Cargo.lock resolved again: no package changed version".to_owned()
    } else {
        let list: Vec<String> = moved
            .iter()
            .map(|(name, was, now)| {
                let back = if lockfile::is_downgrade(was, now) {
                    "  DOWNGRADED: check why before committing"
                } else {
                    ""
                };
                format!("    {name} {was} -> {now}{back}")
            })
            .collect();
        format!(
            "Cargo.lock resolved again with Rampart's pins; packages that changed version:\n{}",
            list.join("\n")
        )
    })
}

fn print_summary(project: &Path, outcome: &Outcome, lock_note: &str, version: &str) {
    let dir = project.display();
    eprintln!("\n{lock_note}");
    let conflicts = outcome.conflicts();
    if conflicts.is_empty() {
        eprintln!("\nNo conflicts.");
    } else {
        eprintln!("\n{} conflicts to resolve:", conflicts.len());
        for file in &conflicts {
            eprintln!("  {}: {}", file.path.display(), file.change.describe());
        }
    }
    eprintln!(
        "\nNothing is committed. Next:\n\
         \x20 git -C {dir} status && git -C {dir} diff   review every change\n\
         \x20 read Rampart's CHANGELOG.md up to {version}, its Security entries first\n\
         \x20 resolve the conflicts listed above (search for <<<<<<<), if any\n\
         \x20 cd {dir} && cargo xtask ci                 build, lint and test the result\n\
         \x20 git -C {dir} add -A && git -C {dir} commit -m \"Upgrade to Rampart {version}\""
    );
}
