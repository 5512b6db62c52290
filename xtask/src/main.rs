//! `cargo xtask`: Rampart's tasks. Run `cargo xtask --help`.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use rampart_xtask::{bench, ci, demo, new, repository_root, template_checks, upgrade};
use xtask::advisory_db;
use xtask::cli::{AdvisoryDbArg, CiArgs};

#[derive(Debug, Parser)]
#[command(about = "Rampart's tasks", long_about = None)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Generate a new service from the template (no cargo-generate install needed).
    New {
        /// The project name (a folder of that name is created).
        name: String,
        /// Template options as key=value: database=sqlite|postgres, rate_limit_store=memory|redis,
        /// demo_resources=false|true (default false: without the notes and payments demo).
        #[arg(short = 'd', long = "define", value_name = "KEY=VALUE")]
        defines: Vec<String>,
        /// Where to create the project folder (default: the current folder).
        #[arg(long)]
        destination: Option<PathBuf>,
        /// Do not make the project a git repository with the rendering as its first commit
        /// (`cargo xtask upgrade` needs one; make it yourself before upgrading).
        #[arg(long)]
        no_git: bool,
    },
    /// Merge Rampart's changes since a project was generated into it (run from a Rampart
    /// checkout at the version to upgrade to). Leaves the result uncommitted; exits 1 when
    /// conflicts are left to resolve.
    Upgrade {
        /// The project's folder: a git repository with no uncommitted changes.
        #[arg(long)]
        project: PathBuf,
        /// Print what would happen to each file; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The Rampart commit the project was generated from, for a project that records none.
        #[arg(long, value_name = "COMMIT")]
        from: Option<String>,
    },
    /// Generate the default service into target/demo/ and run it on its embedded defaults.
    Demo {
        /// The HTTPS port of the service.
        #[arg(long, default_value_t = 8443)]
        port: u16,
        /// The plain-HTTP port that redirects to HTTPS.
        #[arg(long, default_value_t = 8080)]
        http_port: u16,
    },
    /// Everything CI checks, including every template variant's own CI.
    Ci {
        #[command(flatten)]
        args: CiArgs,
        /// Skip rendering and testing the template variants.
        #[arg(long)]
        skip_variants: bool,
    },
    /// Render every template variant into target/variants/ and run its `cargo xtask ci`.
    Variants {
        #[command(flatten)]
        args: CiArgs,
        /// Only this variant (e.g. sqlite-memory).
        #[arg(long)]
        only: Option<String>,
    },
    /// Generate the default service into target/bench/project, build it in release from clean
    /// and measure what its security stack costs against a bare handler, and its footprint;
    /// reports in target/bench/ (bench.md, bench.json).
    Bench {
        /// A few seconds on a debug build, to prove the bench works (its numbers mean nothing).
        #[arg(long)]
        smoke: bool,
        /// Seconds of each measurement [default: 8; smoke: 1].
        #[arg(long)]
        seconds: Option<u32>,
        /// Rounds over every configuration [default: 3; smoke: 1].
        #[arg(long)]
        rounds: Option<u32>,
    },
    /// cargo-audit on this repository.
    Audit(AdvisoryDbArg),
    /// cargo-deny on this repository.
    Deny(AdvisoryDbArg),
    /// Rewrite template/Cargo.lock from Cargo.lock.
    SyncLock,
}

fn main() -> Result<ExitCode> {
    // cargo-generate takes the author from USER or CARGO_NAME and fails without one (some CI
    // and container environments set neither): run again with a neutral one.
    if std::env::var_os("USER").is_none() && std::env::var_os("CARGO_NAME").is_none() {
        let status = Command::new(std::env::current_exe()?)
            .args(std::env::args_os().skip(1))
            .env("CARGO_NAME", "developer")
            .status()?;
        return Ok(ExitCode::from(
            status.code().unwrap_or(1).clamp(0, 255) as u8
        ));
    }

    let root = repository_root();
    let scratch = xtask::ci::scratch_dir(&root);
    match Cli::parse().task {
        Task::New {
            name,
            defines,
            destination,
            no_git,
        } => {
            let destination = match destination {
                Some(destination) => destination,
                None => std::env::current_dir()?,
            };
            let project = new::create(&root, &name, &defines, &destination, !no_git)?;
            eprintln!(
                "Created {}{}",
                project.display(),
                if no_git {
                    ""
                } else {
                    ", a git repository with one commit"
                }
            );
        }
        Task::Upgrade {
            project,
            dry_run,
            from,
        } => {
            let outcome = upgrade::run(&upgrade::UpgradeRequest {
                rampart: root,
                project,
                dry_run,
                from,
            })?;
            let applied = matches!(outcome, upgrade::Outcome::Applied(_));
            if applied && !outcome.conflicts().is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Task::Demo { port, http_port } => demo::run(&root, port, http_port)?,
        Task::Ci {
            args,
            skip_variants,
        } => ci::run(&root, &args.options(), !skip_variants)?,
        Task::Bench {
            smoke,
            seconds,
            rounds,
        } => {
            let defaults = xtask::bench::BenchOptions::new(&root, smoke);
            let options = xtask::bench::BenchOptions {
                seconds: seconds.unwrap_or(defaults.seconds),
                rounds: rounds.unwrap_or(defaults.rounds),
                ..defaults
            };
            bench::run(&root, &options)?;
        }
        Task::Variants { args, only } => ci::variants(&root, &args.options(), only.as_deref())?,
        Task::Audit(arg) => {
            let db = advisory_db::prepare_optional(arg.advisory_db.as_deref(), &scratch)?;
            xtask::supply_chain::audit(&root, db.as_ref())?;
        }
        Task::Deny(arg) => {
            let db = advisory_db::prepare_optional(arg.advisory_db.as_deref(), &scratch)?;
            xtask::supply_chain::deny(&root, db.as_ref(), &scratch)?;
        }
        Task::SyncLock => template_checks::sync_lock(&root, &scratch)?,
    }
    Ok(ExitCode::SUCCESS)
}
