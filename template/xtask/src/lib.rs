//! The project's tasks, as a library so that tools built on this project (Rampart's own xtask
//! among them) run exactly the same checks.
//!
//! - [`ci`]: everything CI checks, in order;
//! - [`supply_chain`]: cargo-audit and cargo-deny (OPS-1), online or with a local advisory DB;
//! - [`advisory_db`]: prepares a local copy of the RustSec advisory database;
//! - [`pins`]: SPKI pins of the serving and backup keys for mobile clients (TLS-3);
//! - [`project`]: what the project is configured with (its database and rate-limit store);
//! - [`service`]: the service started as a real process, with the tokens a client obtains;
//! - [`bench`]: the security stack's cost against a bare handler, and the footprint;
//! - [`scaffold`]: `cargo xtask scaffold`, a new resource owned by its creator, secure from the start;
//! - [`remove_demo`]: `cargo xtask remove-demo`, the demo resources taken out (the scaffold in
//!   reverse);
//! - [`scans`]: sslyze, drheader, schemathesis, detect-secrets and the SBOM (OPS-2);
//! - [`services`]: finds out whether the PostgreSQL and Redis servers the tests use are there;
//! - [`cmd`]: runs commands, echoing them;
//! - [`cli`]: the command-line arguments the tasks share.

pub mod advisory_db;
pub mod bench;
pub mod ci;
pub mod cli;
pub mod cmd;
pub mod pins;
pub mod project;
pub mod remove_demo;
pub mod scaffold;
pub mod scans;
pub mod service;
pub mod services;
pub mod supply_chain;
