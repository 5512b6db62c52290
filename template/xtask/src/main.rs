//! `cargo xtask`: the project's tasks. Run `cargo xtask --help`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::cli::{AdvisoryDbArg, CiArgs};
use xtask::{advisory_db, ci, pins, scans, supply_chain};

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
        Task::Pins { cert, backup_key } => pins::run(&root, cert, backup_key),
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
