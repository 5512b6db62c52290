//! `app`: runs the service. `app check-config` only loads and validates the configuration.

use std::process::ExitCode;

use app::config::Settings;
use app::startup::App;

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
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("unknown command `{other}`; usage: app [serve | check-config]");
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
    tracing::info!(address = %app.local_addr(), "listening");
    if let Some(address) = app.http_redirect_addr() {
        tracing::info!(address = %address, "redirecting plain HTTP to the public origin");
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
