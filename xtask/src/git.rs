//! The few git commands the tasks run. Real git, so a project's repository behaves for the
//! upgrade exactly as it does for its owners.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// `git -C dir`.
pub fn git(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command.arg("-C").arg(dir);
    command
}

/// Runs `git -C dir args...` and returns its standard output, trimmed; fails with git's message.
pub fn output(dir: &Path, args: &[&str]) -> Result<String> {
    let result = run(git(dir).args(args))?;
    Ok(String::from_utf8_lossy(&result.stdout).trim().to_owned())
}

/// Whether `dir` lies inside a git work tree.
pub fn is_work_tree(dir: &Path) -> bool {
    output(dir, &["rev-parse", "--is-inside-work-tree"]).is_ok_and(|answer| answer == "true")
}

/// The commit checked out in `dir`, if it is a git work tree with one.
pub fn head_commit(dir: &Path) -> Option<String> {
    output(dir, &["rev-parse", "--verify", "--quiet", "HEAD"]).ok()
}

/// The full id of `revision` as a commit of the repository at `dir`.
pub fn resolve_commit(dir: &Path, revision: &str) -> Result<String> {
    output(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{revision}^{{commit}}"),
        ],
    )
    .with_context(|| {
        format!(
            "{revision} is not a commit of the repository at {}",
            dir.display()
        )
    })
}

/// Whether `ancestor` is `descendant` or one of its ancestors in the repository at `dir`.
pub fn is_ancestor(dir: &Path, ancestor: &str, descendant: &str) -> Result<bool> {
    let status = git(dir)
        .args(["merge-base", "--is-ancestor", ancestor, descendant])
        .status()
        .context("cannot run git")?;
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => bail!("git merge-base --is-ancestor {ancestor} {descendant} failed ({status})"),
    }
}

/// `git status --porcelain` lines for `pathspec` under `dir`: changed, staged and untracked
/// files (ignored files are not listed).
pub fn uncommitted(dir: &Path, pathspec: &str) -> Result<Vec<String>> {
    let result = run(git(dir).args(["status", "--porcelain", "--", pathspec]))?;
    Ok(String::from_utf8_lossy(&result.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// Writes the `folder` of `commit` (a path relative to the repository's root) under
/// `destination`, through `git archive` and `tar`.
pub fn export_folder(
    repository: &Path,
    commit: &str,
    folder: &str,
    destination: &Path,
) -> Result<()> {
    std::fs::create_dir_all(destination)?;
    let archive = run(git(repository).args(["archive", "--format=tar", commit, "--", folder]))?;
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(destination)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    std::io::Write::write_all(
        tar.stdin.as_mut().context("tar has no standard input")?,
        &archive.stdout,
    )?;
    if !tar.wait()?.success() {
        bail!("tar could not unpack {folder} of {commit}");
    }
    Ok(())
}

fn run(command: &mut Command) -> Result<Output> {
    let shown = xtask::cmd::describe(command);
    let output = command
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}
