//! `bench-service`: the service as `cargo xtask bench` measures it, never as anyone uses it.
//!
//! - `bench-service serve`: the full service exactly as `app serve` runs it, plus
//!   `GET /v1/bench/ping` ([`ping`]) behind every layer;
//! - `bench-service baseline`: the same handler bare, on the service's own TLS listener
//!   ([`baseline`]);
//! - `bench-service params`: the password hashing parameters, as JSON ([`params`]).
//!
//! The difference between the first two is what the controls cost. The configuration is loaded
//! as `app` loads it; a production environment is refused (exit status 78, as `app` for an
//! unusable configuration). The shipped `app` has none of this: the bench's route and commands
//! live here, with the bench.

mod baseline;
mod params;
mod ping;

use std::process::ExitCode;

use app::startup::{self, App};
use clap::{Parser, Subcommand};

/// The service's allocator, so the bench measures the memory `app` would take (see `app`'s
/// `main.rs` for why mimalloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h `EX_CONFIG`: the configuration is unusable (here also: it is production's).
const EXIT_CONFIG: u8 = 78;

/// The service with a benchmark route, and bare, for `cargo xtask bench`. Never in production.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The full service, as `app serve`, plus `GET /v1/bench/ping` (scope `profile`).
    Serve,
    /// The ping handler bare: the service's TLS listener, certificate and limits, no middleware.
    Baseline,
    /// Print the password hashing parameters as JSON.
    Params,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match startup::settings_outside_production("bench-service") {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Params => {
            println!("{}", params::password_hashing(&settings));
            ExitCode::SUCCESS
        }
        Command::Serve => {
            app::telemetry::init(&settings.log);
            let app = match App::builder(settings)
                .extra_api(ping::BenchApi)
                .build()
                .await
            {
                Ok(app) => app,
                Err(error) => {
                    eprintln!("start-up failed: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match app.serve_until_signalled().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Command::Baseline => {
            app::telemetry::init(&settings.log);
            match baseline::serve(settings, startup::shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("baseline failed: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
