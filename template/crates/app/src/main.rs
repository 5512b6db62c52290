//! `app`: runs the service.
//!
//! - `app check-config` only loads and validates the configuration, and prints the effective
//!   settings with their secrets redacted;
//! - `app init` prepares everything start-up would (database, migrations, development
//!   certificate and, outside production, the development administrator) and exits;
//! - `app bootstrap-admin <email>` creates an administrator and prints its one-time password:
//!   the only way to get the first account in production;
//! - `app rotate-signing-key [--revoke-previous]` (keys in the database) makes a new key sign on
//!   every instance; the old one verifies until the tokens it signed expire, or, revoked (it
//!   leaked), is deleted;
//! - `app bench-baseline` and `app bench-params`, only in `bench` builds: for `cargo xtask bench`.

use std::process::ExitCode;

use app::config::Settings;
use app::startup::App;

/// mimalloc rather than the system's malloc: glibc keeps the 19 MiB of each Argon2id hash in the
/// arena of the thread that ran it (its mmap threshold rises to that size after the first free),
/// so a burst of logins left the process tens of MiB larger for good. mimalloc gives such blocks
/// back, and its size classes keep many small allocations (rate-limit keys, tokens) compact.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sysexits.h `EX_CONFIG`: the configuration is unusable.
const EXIT_CONFIG: u8 = 78;

#[tokio::main]
async fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command.as_deref() {
        None | Some("serve") => {}
        Some("check-config") => {
            println!(
                "configuration is valid for the {} environment",
                settings.environment.as_str()
            );
            // The effective settings, after every file and environment variable, for an
            // operator to read; secrets (URLs with passwords, the pepper) print as [redacted].
            if let Ok(effective) = serde_json::to_string_pretty(&settings) {
                println!("{effective}");
            }
            return ExitCode::SUCCESS;
        }
        Some("bootstrap-admin") => {
            let Some(email) = std::env::args().nth(2) else {
                eprintln!("usage: app bootstrap-admin <email>");
                return ExitCode::FAILURE;
            };
            return bootstrap_admin(settings, &email).await;
        }
        Some("rotate-signing-key") => {
            let revoke_previous = match std::env::args().nth(2).as_deref() {
                None => false,
                Some("--revoke-previous") => true,
                Some(_) => {
                    eprintln!("usage: app rotate-signing-key [--revoke-previous]");
                    return ExitCode::FAILURE;
                }
            };
            return rotate_signing_key(settings, revoke_previous).await;
        }
        Some("init") => {}
        #[cfg(feature = "bench")]
        Some("bench-params") => {
            println!("{}", app::bench::password_hashing_params(&settings));
            return ExitCode::SUCCESS;
        }
        #[cfg(feature = "bench")]
        Some("bench-baseline") => {
            app::telemetry::init(&settings.log);
            return match app::bench::serve_baseline(settings, shutdown_signal()).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("bench-baseline failed: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        Some(other) => {
            eprintln!(
                "unknown command `{other}`; usage: app [serve | check-config | init | \
                 bootstrap-admin <email> | rotate-signing-key [--revoke-previous]]"
            );
            return ExitCode::FAILURE;
        }
    }

    app::telemetry::init(&settings.log);
    let app = match App::build(settings).await {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(error = %error, "start-up failed");
            eprintln!("start-up failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    if command.as_deref() == Some("init") {
        println!("initialised");
        return ExitCode::SUCCESS;
    }
    tracing::info!(address = %app.local_addr(), "listening");
    if let Some(address) = app.http_redirect_addr() {
        tracing::info!(address = %address, "redirecting plain HTTP to the public origin");
    }
    if let Some(address) = app.admin_addr() {
        tracing::info!(address = %address, "admin listener");
    }
    if let Some(ca) = app.dev_ca_cert() {
        tracing::info!(ca_cert = %ca.display(), "development certificate; trust this CA");
    }
    match app.run_until_stopped(shutdown_signal()).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %error, "server failed");
            ExitCode::FAILURE
        }
    }
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

/// Completes on Ctrl-C or SIGTERM (what orchestrators send before killing a process).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
