//! What a run of `cargo xtask bench` is asked for: a smoke or a full run, the binary, where the
//! reports go, and how long and how hard each measurement is.

use std::path::{Path, PathBuf};

/// What `cargo xtask bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A short run on a debug build: proves the bench works, judges nothing.
    pub smoke: bool,
    /// A `bench-service` binary to measure instead of building one (no build times then).
    pub binary: Option<PathBuf>,
    /// Where `bench.md` and `bench.json` go.
    pub out: PathBuf,
    /// Seconds of each measurement.
    pub seconds: u32,
    /// Rounds over every configuration.
    pub rounds: u32,
    /// Connections of each measurement.
    pub connections: u32,
}

impl BenchOptions {
    /// The defaults of a full run (`smoke`: of a smoke run) reporting under `root/target/bench`.
    pub fn new(root: &Path, smoke: bool) -> Self {
        Self {
            smoke,
            binary: None,
            out: root.join("target").join("bench"),
            seconds: if smoke { 1 } else { 8 },
            rounds: if smoke { 1 } else { 3 },
            connections: 32,
        }
    }
}
