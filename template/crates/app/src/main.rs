//! `app`: runs the service. `app --help` lists the commands; each has its own `--help`.
//!
//! - `app` or `app serve` serves until Ctrl-C or SIGTERM;
//! - `app check-config` only loads and validates the configuration, and prints the effective
//!   settings with their secrets redacted;
//! - `app init` prepares everything start-up would (database, migrations, development
//!   certificate and, outside production, the development administrator) and exits;
//! - `app bootstrap-admin <email>` creates an administrator and prints its one-time password:
//!   the only way to get the first account in production;
//! - `app rotate-signing-key [--revoke-previous]` (keys in the database) makes a new key sign on
//!   every instance; the old one verifies until the tokens it signed expire, or, revoked (it
//!   leaked), is deleted.
//!
//! The arguments are parsed before the configuration is loaded: `--help` and `--version` need
//! none. Exit status: 0 done, 1 failed (or the arguments were not understood), 78 (sysexits.h
//! `EX_CONFIG`) the configuration is unusable.

use std::process::ExitCode;

use app::config::Settings;
use app::startup::App;
use clap::{Parser, Subcommand};

/// mimalloc rather than the system's malloc: glibc keeps the 19 MiB of each Argon2id hash in the
/// arena of the thread that ran it (its mmap threshold rises to that size after the first free),
/// so a burst of logins left the process tens of MiB larger for good. mimalloc gives such blocks
/// back, and its size classes keep many small allocations (rate-limit keys, tokens) compact.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h `EX_CONFIG`: the configuration is unusable.
const EXIT_CONFIG: u8 = 78;

/// The service and its operator commands. Configuration: `config/default.toml`, then
/// `config/<APP_ENVIRONMENT>.toml`, then `APP_*` environment variables.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve until Ctrl-C or SIGTERM (the default).
    Serve,
    /// Load and validate the configuration, and print the effective settings (secrets redacted).
    CheckConfig,
    /// Prepare what start-up would (database, migrations, development certificate and, outside
    /// production, the development administrator), then exit.
    Init,
    /// Create an administrator and print its one-time password: the first account in production.
    BootstrapAdmin {
        /// The administrator's email address.
        email: String,
    },
    /// Make a new signing key sign on every instance (keys in the database).
    RotateSigningKey {
        /// Delete every older key at once (it leaked): its tokens stop verifying.
        #[arg(long)]
        revoke_previous: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` print to standard output and succeed.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Init => init(settings).await,
        Command::CheckConfig => check_config(&settings),
        Command::BootstrapAdmin { email } => bootstrap_admin(settings, &email).await,
        Command::RotateSigningKey { revoke_previous } => {
            rotate_signing_key(settings, revoke_previous).await
        }
    }
}

/// Serves until Ctrl-C or SIGTERM.
async fn serve(settings: Settings) -> ExitCode {
    let Some(app) = start(settings).await else {
        return ExitCode::FAILURE;
    };
    match app.serve_until_signalled().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// Does everything start-up does, then exits.
async fn init(settings: Settings) -> ExitCode {
    match start(settings).await {
        Some(_) => {
            println!("initialised");
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

/// Starts logging and builds the service, saying why when it cannot.
async fn start(settings: Settings) -> Option<App> {
    app::telemetry::init(&settings.log);
    match App::build(settings).await {
        Ok(app) => Some(app),
        Err(error) => {
            tracing::error!(error = %error, "start-up failed");
            eprintln!("start-up failed: {error}");
            None
        }
    }
}

/// Says the configuration is valid, and prints the effective settings, after every file and
/// environment variable, for an operator to read; secrets (URLs with passwords, the pepper)
/// print as [redacted].
fn check_config(settings: &Settings) -> ExitCode {
    println!(
        "configuration is valid for the {} environment",
        settings.environment.as_str()
    );
    if let Ok(effective) = serde_json::to_string_pretty(settings) {
        println!("{effective}");
    }
    ExitCode::SUCCESS
}

/// Rotates the shared signing keys: each instance signs with the new key once it re-reads them
/// (within `auth.signing_key_refresh_seconds`) and verifies the new key's tokens at once.
async fn rotate_signing_key(settings: Settings, revoke_previous: bool) -> ExitCode {
    if settings.auth.signing_keys != app::config::SigningKeySource::Database {
        eprintln!(
            "rotate-signing-key works on keys in the database (auth.signing_keys = \"database\"); \
             key files rotate through auth.signing_key_path and auth.retired_signing_keys"
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let rotated = async {
        let db = app::persistence::connect(&settings.database).await?;
        app::persistence::migrate(&db).await?;
        let keys = app::auth::database_keys(&settings.auth, db)?;
        let kid = keys.rotate(chrono::Utc::now(), revoke_previous).await?;
        Ok::<_, Box<dyn std::error::Error>>(kid)
    };
    match rotated.await {
        Ok(kid) if revoke_previous => {
            println!(
                "signing key {kid} now signs; every older key is deleted: instances refuse its \
                 tokens once they re-read the keys (within auth.signing_key_refresh_seconds)"
            );
            ExitCode::SUCCESS
        }
        Ok(kid) => {
            println!(
                "signing key {kid} now signs; the previous key verifies until its tokens expire"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("rotate-signing-key failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Creates an administrator with a random password, printed once on standard output.
async fn bootstrap_admin(settings: Settings, email: &str) -> ExitCode {
    let created = async {
        let db = app::persistence::connect(&settings.database).await?;
        app::persistence::migrate(&db).await?;
        let auth = app::auth::AuthContext::new(&settings, db, app::auth::system_clock()).await?;
        let (admin, password) =
            app::auth::bootstrap::create_admin(&auth, email, "Administrator").await?;
        Ok::<_, Box<dyn std::error::Error>>((admin.email, password))
    };
    match created.await {
        Ok((email, password)) => {
            println!("administrator {email} created; one-time password (shown once):\n{password}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bootstrap-admin failed: {error}");
            ExitCode::FAILURE
        }
    }
}
