//! `cargo xtask`: the project's tasks. Run `cargo xtask --help`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::bench::{self, BenchOptions};
use xtask::cli::{AdvisoryDbArg, CiArgs};
use xtask::{advisory_db, ci, pins, remove_demo, scaffold, scans, supply_chain};

#[derive(Debug, Parser)]
#[command(about = "Project tasks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Everything CI checks: fmt, clippy, tests, shipped config, cargo-audit, cargo-deny.
    Ci(CiArgs),
    /// cargo-audit: known vulnerabilities in Cargo.lock.
    Audit(AdvisoryDbArg),
    /// cargo-deny: advisories, bans, licenses and sources against deny.toml.
    Deny(AdvisoryDbArg),
    /// The running service scanned by sslyze (Mozilla modern), drheader and schemathesis, the
    /// repository by detect-secrets, and an SBOM: the tools from `SCAN_TOOLS` (a virtual
    /// environment's bin folder) and cargo-cyclonedx; reports in target/scan/.
    Scan,
    /// What the security stack costs against a bare handler on the same TLS listener, and the
    /// service's footprint (memory, start-up, binary size, build times): a release build
    /// measured with wrk; reports in target/bench/.
    Bench(BenchArgs),
    /// SPKI pins (base64 SHA-256) of the serving certificate's key and of a backup key, for
    /// mobile clients; creates the backup key on first use.
    Pins {
        /// The serving certificate (PEM) [default: data/tls/server.pem, the development one].
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The backup private key (PEM), created if missing [default: data/tls/backup-key.pem].
        #[arg(long)]
        backup_key: Option<PathBuf>,
    },
    /// Add a resource owned by its creator: handlers, entity, migration, tests, registrations.
    Scaffold(scaffold::ScaffoldArgs),
    /// Take the demo resources (notes, payments) out of the project: their modules, routes,
    /// scopes, rate-limit tier, tables, tests and documentation.
    RemoveDemo(remove_demo::RemoveDemoArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// A few seconds on a debug build, to prove the bench works (its numbers mean nothing).
    #[arg(long)]
    smoke: bool,
    /// Measure this `bench-service` binary instead of building one (no build times are reported).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where bench.md and bench.json go [default: target/bench].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds of each measurement [default: 8; smoke: 1].
    #[arg(long)]
    seconds: Option<u32>,
    /// Rounds over every configuration [default: 3; smoke: 1].
    #[arg(long)]
    rounds: Option<u32>,
}

impl BenchArgs {
    fn options(self, root: &Path) -> BenchOptions {
        let defaults = BenchOptions::new(root, self.smoke);
        BenchOptions {
            binary: self.binary,
            out: self.out.unwrap_or(defaults.out.clone()),
            seconds: self.seconds.unwrap_or(defaults.seconds),
            rounds: self.rounds.unwrap_or(defaults.rounds),
            ..defaults
        }
    }
}

fn main() -> Result<()> {
    let root = project_root();
    let scratch = ci::scratch_dir(&root);
    match Cli::parse().command {
        Task::Ci(args) => ci::run(&root, &args.options()),
        Task::Audit(args) => {
            let db = advisory_db::prepare_optional(args.advisory_db.as_deref(), &scratch)?;
            supply_chain::audit(&root, db.as_ref())
        }
        Task::Deny(args) => {
            let db = advisory_db::prepare_optional(args.advisory_db.as_deref(), &scratch)?;
            supply_chain::deny(&root, db.as_ref(), &scratch)
        }
        Task::Scan => scans::run(&root),
        Task::Bench(args) => bench::run(&root, &args.options(&root)),
        Task::Pins { cert, backup_key } => pins::run(&root, cert, backup_key),
        Task::Scaffold(args) => scaffold::run(&root, &args),
        Task::RemoveDemo(args) => remove_demo::run(&root, &args),
    }
}

/// The workspace root: the parent of this crate's folder.
///
/// Read from `CARGO_MANIFEST_DIR` as `cargo run` sets it, falling back to the compile-time value:
/// cargo reuses a binary built from another checkout with the same layout when they share a
/// target folder, and the compile-time path would then point at that other checkout.
fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
