//! Rampart's own tasks. `cargo xtask --help` lists them; `main.rs` is only the command line.
//!
//! - [`render`]: the template through the cargo-generate library, and the option variants;
//! - [`demo`]: the default variant built and run on its embedded defaults;
//! - [`template_checks`]: the template and this repository agree (policy, versions, lockfile);
//! - [`ci`]: everything CI checks, ending with every variant's own `cargo xtask ci`.
//!
//! The generated project's tasks (`xtask` in `template/xtask`) are reused here as a library, so
//! both run the same audit and deny steps.

pub mod ci;
pub mod demo;
pub mod render;
pub mod template_checks;

use std::path::{Path, PathBuf};

/// This repository's root.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
