//! `cargo xtask bench`: the default variant generated into `target/bench/project` and measured
//! by the generated project's own bench (`template/xtask/src/bench/`), which builds it in
//! release from clean; reports in `target/bench/`.

use std::path::Path;

use anyhow::Result;
use xtask::bench::BenchOptions;

use crate::render::{self, Variant};

/// Renders the default variant afresh and runs its bench with `options` (whose `out` is this
/// repository's `target/bench`).
pub fn run(root: &Path, options: &BenchOptions) -> Result<()> {
    let parent = root.join("target").join("bench");
    let project = render::render_fresh(root, Variant::DEFAULT, "project", &parent)?;
    xtask::bench::run(&project, options)
}
