//! The binary measured, and the build times reported: a debug build of `bench-service` for a
//! smoke run; for a full run the service's release builds, timed (clean, then incremental), and
//! then the release `bench-service`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use super::options::BenchOptions;
use crate::cmd;

/// The package of the benchmark service (`crates/bench-service`), and its binary's name.
const BENCH_SERVICE: &str = "bench-service";

/// The `bench-service` binary to measure, and the build times (`null` when nothing was built in
/// release: a smoke run, or a binary given).
pub fn binary(root: &Path, options: &BenchOptions) -> Result<(PathBuf, Value)> {
    match &options.binary {
        Some(binary) => Ok((binary.clone(), Value::Null)),
        None if options.smoke => Ok((smoke_build(root)?, Value::Null)),
        None => release_builds(root),
    }
}

/// A debug `bench-service` build in the usual target folder.
fn smoke_build(root: &Path) -> Result<PathBuf> {
    cmd::step("bench: debug build of bench-service");
    cmd::run(cmd::cargo().current_dir(root).args([
        "build",
        "--locked",
        "--package",
        BENCH_SERVICE,
    ]))?;
    Ok(target_dir(root).join("debug").join(BENCH_SERVICE))
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The release builds, timed in a target folder of their own: `app` clean, then incremental
/// after one source file of the service changed; then the `bench-service` that is measured.
fn release_builds(root: &Path) -> Result<(PathBuf, Value)> {
    let target = root.join("target").join("bench-build");
    let build = |package: &str| -> Result<Duration> {
        let mut command = cmd::cargo();
        command
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "--locked", "--package", package]);
        let started = Instant::now();
        cmd::run(&mut command)?;
        Ok(started.elapsed())
    };
    cmd::step("bench: clean release build");
    let _ = std::fs::remove_dir_all(&target);
    let clean = build("app")?;
    let binary_bytes = std::fs::metadata(target.join("release").join("app"))?.len();

    cmd::step("bench: incremental release build (crates/app/src/lib.rs changed)");
    std::fs::File::options()
        .append(true)
        .open(root.join("crates/app/src/lib.rs"))?
        .set_modified(std::time::SystemTime::now())?;
    let incremental = build("app")?;

    cmd::step("bench: release build of bench-service");
    build(BENCH_SERVICE)?;
    Ok((
        target.join("release").join(BENCH_SERVICE),
        json!({
            "clean_build_seconds": clean.as_secs_f64(),
            "incremental_build_seconds": incremental.as_secs_f64(),
            "release_binary_bytes": binary_bytes,
        }),
    ))
}
