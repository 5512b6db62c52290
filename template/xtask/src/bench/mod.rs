//! `cargo xtask bench`: what the security stack costs, and the service's footprint.
//!
//! The benchmark service (`crates/bench-service`: the service exactly as `app serve` runs it,
//! plus `GET /v1/bench/ping`) is built in release and measured over loopback by wrk, every
//! configuration in the same run and interleaved round by round, so that drift of the machine
//! affects them alike:
//!
//! - (a) `baseline`: one small JSON handler, bare, on the service's own TLS 1.3 listener;
//! - (b) `full-stack`: the same handler behind every default control (bearer JWT verified, scope
//!   checked, in-process rate limit charged, headers, request id, metrics, audit events);
//! - (c) `redis-store`: (b) with the rate limits in Redis;
//! - (d) `token`: `POST /oauth/token` with `client_credentials`;
//! - (e) `login`: `POST /v1/auth/login`, Argon2id on purpose slow;
//! - (f) `own-record`: `GET /v1/me`, a read of the caller's own row, the common shape of an endpoint;
//! - (g) `isolation`: (b) while 200 connections post wrong passwords to the same instance.
//!
//! Rate limits are raised on the measured instances (see [`raised_rate_limits`]): every request
//! is still checked and charged, none refused, so the cost measured is the check. Reports go to
//! `target/bench/` (`bench.md`, `bench.json`); [`BUDGETS`] are judged against the run.
//!
//! `--smoke` runs everything briefly on a debug build, to prove the bench works; its numbers
//! mean nothing and no budget is judged.
//!
//! Reading order: `options`; `build` (the binary, and the build times); `instances` (starting
//! the services) and `credentials`; `configurations` (what each of (a) to (g) sends); the load
//! generator, `wrk` with its `wrk_scripts`; the measurements, `throughput` (requests per second,
//! latency, CPU time), `isolation` (the wrong-login flood of (g)), `login` (the password hashing
//! parameters reported beside (e)) and `memory` (at idle and under a flood of client addresses),
//! read from `procfs`; `measure`, which runs them all; then `summary`, `budgets`, `machine` and
//! `report` (`bench.json`, `bench.md`).

mod budgets;
mod build;
mod configurations;
mod credentials;
mod instances;
mod isolation;
mod login;
mod machine;
mod measure;
mod memory;
mod options;
mod procfs;
mod report;
mod summary;
mod throughput;
mod wrk;
mod wrk_scripts;

use std::path::Path;

use anyhow::{Result, bail};
use instances::Setup;

pub use budgets::{BUDGETS, Budget};
pub use instances::raised_rate_limits;
pub use options::BenchOptions;
pub use wrk::wrk_installed;

/// `cargo xtask bench`.
pub fn run(root: &Path, options: &BenchOptions) -> Result<()> {
    if !Path::new("/proc/self/stat").is_file() {
        bail!("the bench reads CPU time and memory from /proc: it runs on Linux only");
    }
    if !wrk_installed() {
        return wrk::missing_wrk();
    }
    let (binary, builds) = build::binary(root, options)?;
    let out = &options.out;
    let data = out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let scripts = wrk_scripts::write(out)?;

    let setup = Setup {
        binary: &binary,
        project: root,
        data: &data,
    };
    let measurements = measure::run(setup, &scripts, options)?;
    report::write(out, &report::json(options, &binary, builds, measurements))
}
