//! `weakened-service`: the generated service with one control turned off, so the checklist
//! scanner's tests (`xtask/tests/weakened_builds.rs`) can prove that each of its checks fails
//! when its control is missing (a check that cannot fail proves nothing).
//!
//! It lives in Rampart's own workspace, never in a generated project: the template's service has
//! no switch, setting or environment variable that turns a control off. This binary assembles
//! the same service through `App::builder`, names the control to turn off with its own
//! `--off` argument, and refuses a production environment outright.
//!
//! `weakened-service [--off CONTROL] [serve | init]`, on the configuration `app` would load.

mod probe;
mod tls12;
mod weakening;

use std::process::ExitCode;

use app::startup::{self, App};
use clap::{Parser, Subcommand};

use crate::weakening::Weakening;

/// The service with one control turned off, for the checklist scanner's tests only.
#[derive(Debug, Parser)]
struct Cli {
    /// The control to turn off; without it, every control is on.
    #[arg(long, value_enum)]
    off: Option<Weakening>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve until Ctrl-C or SIGTERM (the default).
    Serve,
    /// Prepare what start-up would, then exit (as `app init`).
    Init,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match startup::settings_outside_production("weakened-service") {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    app::telemetry::init(&settings.log);
    let builder = App::builder(settings).extra_api(probe::ProbeApi);
    let builder = match cli.off {
        Some(weakening) => weakening.apply(builder),
        None => builder,
    };
    let app = match builder.build().await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("start-up failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Init => {
            println!("initialised");
            ExitCode::SUCCESS
        }
        Command::Serve => match app.serve_until_signalled().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
    }
}
