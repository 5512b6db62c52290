//! The three-way plan of an upgrade, file by file: the template rendered at the project's
//! recorded commit (the base), rendered at this checkout (Rampart's side), and the project as
//! its owners left it. Files only the project has are its own and never looked at.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The lockfile, never merged as text (see `lockfile.rs`).
pub const LOCKFILE: &str = "Cargo.lock";

/// What happens to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Rampart did not change it: the project's copy stays as it is, edited or not.
    Untouched,
    /// The project already holds Rampart's new version.
    AlreadyCurrent,
    /// The project left it as generated: Rampart's new version replaces it.
    Updated,
    /// Both sides changed it, in different places: the merged text.
    Merged(Vec<u8>),
    /// Both sides changed the same lines (or added the file with different contents): the
    /// merged text with standard conflict markers.
    Conflicted(Vec<u8>),
    /// New in Rampart: added.
    Added,
    /// Rampart removed it and the project left it as generated: removed.
    Removed,
    /// The project deleted it and Rampart did not change it: it stays deleted.
    StaysDeleted,
    /// The project deleted it and Rampart changed it: Rampart's version is written back for
    /// the owners to read and delete again or keep (a conflict).
    DeletedButChangedByRampart,
    /// Rampart removed it and the project changed it: the project's copy stays (a conflict).
    RemovedButChangedByProject,
    /// Both sides changed a binary file: the project's copy stays (a conflict).
    BinaryConflict,
    /// `Cargo.lock`: Rampart's, completed with the project's own packages and resolved again.
    LockfileResolved,
}

impl Change {
    /// Whether the owners must decide before committing.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Change::Conflicted(_)
                | Change::DeletedButChangedByRampart
                | Change::RemovedButChangedByProject
                | Change::BinaryConflict
        )
    }

    /// Whether the upgrade writes or removes anything for it.
    pub fn touches_the_project(&self) -> bool {
        !matches!(
            self,
            Change::Untouched | Change::AlreadyCurrent | Change::StaysDeleted
        )
    }

    /// One line for the plan and the summary.
    pub fn describe(&self) -> &'static str {
        match self {
            Change::Untouched => "unchanged by Rampart: kept as it is",
            Change::AlreadyCurrent => "already as in Rampart's new version",
            Change::Updated => "updated: the project had left it as generated",
            Change::Merged(_) => "merged: both changed it, in different places",
            Change::Conflicted(_) => {
                "CONFLICT: both changed the same lines; resolve the <<<<<<< markers"
            }
            Change::Added => "added: new in Rampart",
            Change::Removed => {
                "removed: Rampart removed it and the project had left it as generated"
            }
            Change::StaysDeleted => {
                "stays deleted: the project deleted it, Rampart did not change it"
            }
            Change::DeletedButChangedByRampart => {
                "CONFLICT: the project deleted it, Rampart changed it; Rampart's version is \
                 written back: delete it again or keep it"
            }
            Change::RemovedButChangedByProject => {
                "CONFLICT: Rampart removed it, the project changed it; the project's copy is \
                 kept: delete it or keep it"
            }
            Change::BinaryConflict => {
                "CONFLICT: both changed this binary file; the project's copy is kept"
            }
            Change::LockfileResolved => {
                "resolved again: Rampart's pinned versions, plus the project's own packages"
            }
        }
    }
}

/// One file's change, by path relative to the project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: PathBuf,
    pub change: Change,
}

/// The three trees and the labels their conflict markers carry.
#[derive(Debug)]
pub struct Sides<'a> {
    pub base: &'a Path,
    pub rampart: &'a Path,
    pub project: &'a Path,
    /// `[project, base, rampart]`, e.g. `["project", "Rampart 0.9.0", "Rampart 0.9.1"]`.
    pub labels: [String; 3],
    /// A folder for an empty file (the base of a file both sides added).
    pub scratch: &'a Path,
}

/// The change for every file of either rendering, sorted by path.
pub fn plan(sides: &Sides) -> Result<Vec<FileChange>> {
    let mut paths = files_under(sides.base)?;
    paths.extend(files_under(sides.rampart)?);
    paths
        .into_iter()
        .map(|path| {
            let change = if path == Path::new(LOCKFILE) {
                Change::LockfileResolved
            } else {
                change_for(sides, &path)?
            };
            Ok(FileChange { path, change })
        })
        .collect()
}

fn change_for(sides: &Sides, path: &Path) -> Result<Change> {
    let read = |dir: &Path| -> Result<Option<Vec<u8>>> {
        let file = dir.join(path);
        if file.is_file() {
            Ok(Some(std::fs::read(&file).with_context(|| {
                format!("cannot read {}", file.display())
            })?))
        } else {
            Ok(None)
        }
    };
    let (base, rampart, project) = (
        read(sides.base)?,
        read(sides.rampart)?,
        read(sides.project)?,
    );
    Ok(match (base, rampart, project) {
        (Some(base), Some(rampart), Some(_)) if base == rampart => Change::Untouched,
        (Some(base), Some(rampart), None) if base == rampart => Change::StaysDeleted,
        (_, Some(rampart), Some(project)) if rampart == project => Change::AlreadyCurrent,
        (Some(base), Some(_), Some(project)) if base == project => Change::Updated,
        (Some(_), Some(_), None) => Change::DeletedButChangedByRampart,
        (None, Some(_), None) => Change::Added,
        (Some(base), None, Some(project)) if base == project => Change::Removed,
        (Some(_), None, Some(_)) => Change::RemovedButChangedByProject,
        // Removed on both sides.
        (Some(_), None, None) => Change::AlreadyCurrent,
        (base, Some(rampart), Some(project)) => {
            let binary = [base.as_deref(), Some(&rampart[..]), Some(&project[..])]
                .into_iter()
                .flatten()
                .any(|bytes| bytes.contains(&0));
            if binary {
                Change::BinaryConflict
            } else {
                merge(sides, path, base.is_some())?
            }
        }
        (None, None, _) => bail!("{} is in neither rendering", path.display()),
    })
}

/// `git merge-file` of the project's copy with Rampart's change since the base (an empty base
/// when only the two sides have the file).
fn merge(sides: &Sides, path: &Path, has_base: bool) -> Result<Change> {
    let base = if has_base {
        sides.base.join(path)
    } else {
        let empty = sides.scratch.join("empty");
        std::fs::write(&empty, "")?;
        empty
    };
    let [project_label, base_label, rampart_label] = &sides.labels;
    let output = Command::new("git")
        .args(["merge-file", "--stdout"])
        .args(["-L", project_label, "-L", base_label, "-L", rampart_label])
        .arg(sides.project.join(path))
        .arg(base)
        .arg(sides.rampart.join(path))
        .output()
        .context("cannot start git merge-file")?;
    // The exit code is the number of conflicts; a negative one (above 127 here) is an error.
    match output.status.code() {
        Some(0) => Ok(Change::Merged(output.stdout)),
        Some(1..=127) => Ok(Change::Conflicted(output.stdout)),
        _ => bail!(
            "git merge-file failed on {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    fn walk(base: &Path, dir: &Path, files: &mut BTreeSet<PathBuf>) -> Result<()> {
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                walk(base, &path, files)?;
            } else {
                files.insert(path.strip_prefix(base)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut files = BTreeSet::new();
    walk(dir, dir, &mut files)?;
    Ok(files)
}
