//! Command-line arguments shared by `cargo xtask` here and by tools built on this library.

use std::path::PathBuf;

use crate::advisory_db;
use crate::ci::CiOptions;

/// `--advisory-db PATH`, or `ADVISORY_DB`.
#[derive(Debug, clap::Args)]
pub struct AdvisoryDbArg {
    /// A local RustSec advisory database (git repository or bundle) for offline runs; without
    /// it the tools fetch the live database.
    #[arg(long, env = advisory_db::ADVISORY_DB_ENV)]
    pub advisory_db: Option<PathBuf>,
}

/// The arguments of `cargo xtask ci`.
#[derive(Debug, clap::Args)]
pub struct CiArgs {
    #[command(flatten)]
    pub db: AdvisoryDbArg,
    /// Fail instead of skipping when PostgreSQL or Redis cannot be reached.
    #[arg(long)]
    pub require_services: bool,
    /// Leave out the brief bench run (Rampart's own CI runs it in one variant, not in all).
    #[arg(long)]
    pub skip_bench: bool,
}

impl CiArgs {
    pub fn options(self) -> CiOptions {
        CiOptions {
            advisory_db: self.db.advisory_db,
            require_services: self.require_services,
            skip_bench: self.skip_bench,
        }
    }
}
