//! The scaffold checked end to end: `cargo xtask scaffold` run in a rendered project, which must
//! then pass clippy with warnings denied and its whole suite (the walks over the whole OpenAPI
//! document included) without a hand edit.
//!
//! Rendering ([`render_project`]) is kept apart from the check ([`scaffold_and_test`]), so one
//! rendered project can serve this check and others.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use xtask::cmd;

use crate::demo::shared_target_dir;
use crate::render::{self, Variant};

/// The resource scaffolded: every field type, and the sensitive tier.
pub const SCAFFOLD_ARGUMENTS: &[&str] = &[
    "gadget",
    "name:string:80",
    "notes:text",
    "quantity:int:0..500",
    "status:enum:draft,active",
    "--sensitive",
];

/// Renders the default variant afresh into `target/scaffold/project`.
pub fn render_project(root: &Path) -> Result<PathBuf> {
    let parent = root.join("target").join("scaffold");
    render::render_fresh(root, Variant::DEFAULT, "project", &parent)
}

/// Scaffolds [`SCAFFOLD_ARGUMENTS`] into `project`, then runs its clippy with warnings denied
/// and its whole suite, on the shared target folder; how long that took.
pub fn scaffold_and_test(root: &Path, project: &Path) -> Result<Duration> {
    let started = Instant::now();
    let target_dir = shared_target_dir(root);
    let cargo = |args: &[&str]| {
        let mut command = cmd::cargo();
        // The suite runs on the database and store the project's own configuration names.
        command
            .current_dir(project)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("TEST_DATABASE")
            .env_remove("TEST_RATE_LIMIT_STORE")
            .args(args);
        command
    };
    cmd::step("scaffolding a resource into the rendered project");
    cmd::run(cargo(&["xtask", "scaffold"]).args(SCAFFOLD_ARGUMENTS))?;
    cmd::step("the scaffolded project's clippy and suite");
    cmd::run(&mut cargo(&[
        "clippy",
        "--locked",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    cmd::run(&mut cargo(&["test", "--locked"]))?;
    Ok(started.elapsed())
}

/// Renders the default variant and checks the scaffold in it.
pub fn run(root: &Path) -> Result<()> {
    let project = render_project(root)?;
    let took = scaffold_and_test(root, &project)?;
    eprintln!(
        "the scaffolded project passed clippy and its suite in {}s",
        took.as_secs()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "renders, builds and tests a whole project: many minutes"]
    fn a_scaffolded_resource_passes_the_rendered_projects_clippy_and_suite() {
        run(&crate::repository_root()).unwrap_or_else(|error| panic!("{error:#}"));
    }
}
