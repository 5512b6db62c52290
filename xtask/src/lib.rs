//! Rampart's own tasks. `cargo xtask --help` lists them; `main.rs` is only the command line.
//!
//! - [`render`]: the template through the cargo-generate library, and the option variants;
//! - [`bench`]: the generated service's benchmarks (`xtask::bench`), from a fresh rendering;
//! - [`demo`]: the default variant built and run on its embedded defaults;
//! - [`scan`]: the checklist scanner run against a generated service as a real process (started,
//!   and scanned by the third-party tools, by the template's `xtask::service` and `xtask::scans`);
//! - [`scaffold_check`]: a resource scaffolded into a rendered project, whose clippy and suite
//!   must pass;
//! - [`module_cycles`]: no import cycle among the modules of the checked crates;
//! - [`template_checks`]: the template and this repository agree (policy, versions, lockfile);
//! - [`ci`]: everything CI checks, ending with every variant's own `cargo xtask ci`;
//! - [`new`]: a project for its owners, recording what produced it ([`provenance`]) in a git
//!   repository of its own, without the demo resources unless asked ([`demo_resources`]);
//! - [`upgrade`]: Rampart's later changes merged into such a project ([`git`] runs git).
//!
//! The generated project's tasks (`xtask` in `template/xtask`) are reused here as a library, so
//! both run the same audit and deny steps.

pub mod bench;
pub mod ci;
pub mod demo;
pub mod demo_resources;
pub mod git;
pub mod module_cycles;
pub mod new;
pub mod provenance;
pub mod render;
pub mod scaffold_check;
pub mod scan;
pub mod template_checks;
pub mod upgrade;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// This repository's root.
///
/// Read from `CARGO_MANIFEST_DIR` as `cargo run` sets it, falling back to the compile-time value:
/// cargo reuses a binary built from another checkout with the same layout when they share a
/// target folder, and the compile-time path would then point at that other checkout.
pub fn repository_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The TOML file at `path`, parsed.
pub fn read_toml(path: &Path) -> Result<toml::Table> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}
