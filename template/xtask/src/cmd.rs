//! Running commands: each is echoed before it runs, and a failure names the command.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `command`, inheriting standard streams; fails if it exits non-zero.
pub fn run(command: &mut Command) -> Result<()> {
    let shown = describe(command);
    eprintln!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns whether it succeeded, printing nothing (for probes).
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `cargo` as the running cargo (the one that invoked the xtask) knows it.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Prints a step heading with the seconds since the first step of this process, so a CI log
/// shows where its time went.
pub fn step(name: &str) {
    static FIRST_STEP: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let since = FIRST_STEP.get_or_init(std::time::Instant::now).elapsed();
    eprintln!("\n==> {name} [{} s]", since.as_secs());
}

pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
