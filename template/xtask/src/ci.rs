//! `cargo xtask ci`: everything CI checks, in the order a failure is cheapest to find.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::{advisory_db, cmd, project, services, supply_chain};

/// Options of a CI run.
#[derive(Debug, Clone, Default)]
pub struct CiOptions {
    /// A local RustSec advisory database (git repository or bundle); `None` fetches online.
    pub advisory_db: Option<PathBuf>,
    /// Fail, rather than skip, when a test server (PostgreSQL, Redis) cannot be reached.
    pub require_services: bool,
    /// Leave out the brief bench run.
    pub skip_bench: bool,
}

/// Runs every check of the workspace at `root`.
pub fn run(root: &Path, options: &CiOptions) -> Result<()> {
    format_lint_test(root, options)?;

    cmd::step("shipped configuration");
    for environment in ["development", "test"] {
        cmd::run(
            cmd::cargo()
                .current_dir(root)
                .args([
                    "run",
                    "--quiet",
                    "--locked",
                    "--package",
                    "app",
                    "--",
                    "check-config",
                ])
                .env("APP_ENVIRONMENT", environment)
                .env("APP_CONFIG_DIR", root.join("config")),
        )?;
    }

    if options.skip_bench {
        cmd::step("bench: skipped (--skip-bench)");
    } else {
        cmd::step("bench, briefly: proves `cargo xtask bench` works (no numbers judged)");
        crate::bench::run(root, &crate::bench::BenchOptions::new(root, true))?;
    }

    supply_chain_checks(root, options)
}

/// The checks every Cargo workspace of the project gets: formatting, clippy with warnings
/// denied, and every test (after saying which test servers are reachable).
pub fn format_lint_test(root: &Path, options: &CiOptions) -> Result<()> {
    cmd::step("format");
    cmd::run(
        cmd::cargo()
            .current_dir(root)
            .args(["fmt", "--all", "--check"]),
    )?;

    cmd::step("lint");
    cmd::run(cmd::cargo().current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;

    cmd::step("test servers");
    let reachable = services::check(options.require_services)?;

    cmd::step("test");
    let mut test = cmd::cargo();
    test.current_dir(root)
        .args(["test", "--workspace", "--locked"]);
    if options.require_services {
        test.env("TEST_REQUIRE_SERVICES", "1");
    }
    // The suite runs on the project's own database and rate-limit store (or on the embedded
    // ones, said plainly, when that server is missing here). A variable already set wins.
    let (database, store) = project::backend(root)?;
    for (variable, wanted, server, fallback) in [
        ("TEST_DATABASE", database, services::POSTGRES, "sqlite"),
        ("TEST_RATE_LIMIT_STORE", store, services::REDIS, "memory"),
    ] {
        let chosen_already = std::env::var(variable).is_ok_and(|value| !value.is_empty());
        if chosen_already || wanted == fallback {
            continue;
        }
        if reachable.contains(&server) {
            eprintln!("the suite runs on {}: {variable}={wanted}", server.name);
            test.env(variable, wanted);
        } else {
            eprintln!(
                "{} cannot be reached: the suite runs on {fallback} instead of {wanted}",
                server.name
            );
        }
    }
    cmd::run(&mut test)
}

/// cargo-audit and cargo-deny, with the local advisory database when one is given.
pub fn supply_chain_checks(root: &Path, options: &CiOptions) -> Result<()> {
    let scratch = scratch_dir(root);
    let db = advisory_db::prepare_optional(options.advisory_db.as_deref(), &scratch)?;
    cmd::step("cargo audit");
    supply_chain::audit(root, db.as_ref())?;
    cmd::step("cargo deny");
    supply_chain::deny(root, db.as_ref(), &scratch)
}

/// Where the tasks keep their working files.
pub fn scratch_dir(root: &Path) -> PathBuf {
    root.join("target").join("xtask")
}
