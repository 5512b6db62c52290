//! The operator binary's command line, run as an operator runs it (`CARGO_BIN_EXE_app`): help
//! and version need no configuration, every command has its help, and the exit statuses stay
//! what scripts rely on (78 for an unusable configuration, 1 for arguments not understood).

use std::path::Path;
use std::process::{Command, Output};

/// Runs `app` with `args` in `dir`, with no `APP_*` variable and no other environment.
fn app_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_app"))
        .current_dir(dir)
        .env_clear()
        .args(args)
        .output()
        .expect("app runs")
}

/// Runs `app` with `args` in an empty folder: no configuration at all.
fn app_without_configuration(args: &[&str]) -> Output {
    let empty = tempfile::tempdir().expect("temporary folder");
    app_in(empty.path(), args)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn help_and_version_need_no_configuration() {
    // Without a configuration any command that loads it fails as unusable (78) ...
    let unconfigured = app_without_configuration(&["check-config"]);
    assert_eq!(unconfigured.status.code(), Some(78), "{unconfigured:?}");

    // ... but help and version are answered before it is read.
    let help = app_without_configuration(&["--help"]);
    assert!(help.status.success(), "{help:?}");
    for command in [
        "serve",
        "check-config",
        "init",
        "bootstrap-admin",
        "rotate-signing-key",
    ] {
        assert!(
            stdout(&help).contains(command),
            "{command} in:\n{}",
            stdout(&help)
        );
    }

    let version = app_without_configuration(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        stdout(&version).trim(),
        format!("app {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn every_command_has_its_own_help() {
    for (command, says) in [
        ("serve", "Serve until Ctrl-C or SIGTERM"),
        ("check-config", "Load and validate the configuration"),
        ("init", "Prepare what start-up would"),
        ("bootstrap-admin", "<EMAIL>"),
        ("rotate-signing-key", "--revoke-previous"),
    ] {
        let help = app_without_configuration(&[command, "--help"]);
        assert!(help.status.success(), "{command}: {help:?}");
        assert!(
            stdout(&help).contains(says),
            "`app {command} --help` should say {says:?}:\n{}",
            stdout(&help)
        );
    }
}

#[test]
fn arguments_not_understood_fail_with_usage_before_the_configuration_is_read() {
    for args in [
        &["unknown-command"][..],
        &["bootstrap-admin"],
        &["rotate-signing-key", "--revoke-everything"],
    ] {
        let output = app_without_configuration(args);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("Usage"),
            "{args:?}: {output:?}"
        );
    }
}
