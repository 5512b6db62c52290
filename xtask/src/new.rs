//! `cargo xtask new`: a project rendered from this checkout's template, recording what produced
//! it (see [`crate::provenance`]), without the demo resources unless `-d demo_resources=true`
//! (see [`crate::demo_resources`]), and unless the owner opts out (`--no-git`), a git repository
//! whose first commit is the rendering as generated: `cargo xtask upgrade` needs that history to
//! tell the owners' changes from Rampart's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{demo_resources, git, provenance, render};

/// Renders the template as `name` into `destination/name` with the options in `defines` (the
/// demo resources taken out unless `demo_resources=true`), and with `with_git` makes it a git
/// repository with one commit. Returns the project's folder.
pub fn create(
    root: &Path,
    name: &str,
    defines: &[String],
    destination: &Path,
    with_git: bool,
) -> Result<PathBuf> {
    let (keep_demo, mut defines) = demo_resources::split(defines, demo_resources::KEPT_BY_NEW)?;
    defines.extend(provenance::checkout_defines(root));
    if git::uncommitted(root, "template").is_ok_and(|changes| !changes.is_empty()) {
        eprintln!(
            "warning: template/ has uncommitted changes: the project records the commit checked \
             out, which does not hold them, and an upgrade will count them as the project's own"
        );
    }
    let template = render::template_dir(root);
    let project = render::render(&template, name, &defines, destination)?;
    demo_resources::apply(&project, keep_demo).context("taking the demo resources out")?;
    if with_git {
        let version = provenance::release_version(&template)?;
        first_commit(&project, &version)
            .context("the project is rendered, but git could not record its first commit")?;
    }
    Ok(project)
}

/// `git init`, everything added, one commit (with the user's own git identity).
fn first_commit(project: &Path, version: &str) -> Result<()> {
    git::output(project, &["init", "--quiet"])?;
    git::output(project, &["add", "--all"])?;
    git::output(
        project,
        &[
            "commit",
            "--quiet",
            "--message",
            &format!("Generated from Rampart {version}"),
        ],
    )?;
    Ok(())
}
