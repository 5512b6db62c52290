//! Each scanner check fails when its control is turned off, and every check passes when none is:
//! the harness `crates/weakened-service` (the generated service assembled with one control off,
//! named by its `--off` argument) is started once with every control on and once per control,
//! on the default variant's configuration, and scanned from outside.
//!
//! Ignored by a plain `cargo test` (it builds the harness and starts it nine times);
//! `cargo xtask ci` runs it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_scanner::Status;
use rampart_xtask::render::{self, Variant};
use rampart_xtask::scan;
use xtask::service::RunningService;

/// `weakened-service --off` values and the check that must fail for each.
const WEAKENED: [(&str, &str); 8] = [
    ("hsts", "headers.hsts"),
    ("tls13-only", "tls.legacy-versions-refused"),
    ("unknown-field-rejection", "input.unknown-fields-rejected"),
    ("scope-check", "auth.scopes-enforced"),
    ("rate-limit", "rate-limit.trips-with-retry-after"),
    ("security-headers", "headers.security"),
    ("banner", "headers.no-banner"),
    ("cors-allowlist", "cors.foreign-origin-refused"),
];

#[test]
#[ignore = "builds the service again and starts it nine times; `cargo xtask ci` runs it"]
fn each_weakened_control_fails_its_scanner_check_and_none_fails_without() {
    let root = rampart_xtask::repository_root();
    let scratch = root.join("target").join("xtask").join("weakened");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).expect("scratch folder");
    let project =
        render::render_fresh(&root, Variant::DEFAULT, "weakened", &scratch).expect("rendered");
    let binary = build_weakened_service(&root);

    let baseline = RunningService::start(&binary, &project, &scratch.join("data-none"), &[])
        .expect("the service starts");
    let report = scan::scan(&baseline).expect("scan");
    drop(baseline);
    assert!(
        report.passed() && report.findings.iter().all(|f| f.status == Status::Pass),
        "with no control off every check must run and pass:\n{}",
        rampart_scanner::report::table(&report)
    );
    eprint!("{}", rampart_scanner::report::table(&report));

    for (control, check) in WEAKENED {
        let service = RunningService::start(
            &with_control_off(&binary, control, &scratch),
            &project,
            &scratch.join(format!("data-{control}")),
            &[],
        )
        .expect("the weakened service starts");
        let report = scan::scan(&service).expect("scan");
        let finding = report.finding(check).expect("the check ran");
        assert_eq!(
            finding.status,
            Status::Fail,
            "with {control} off, {check} must fail:\n{}",
            rampart_scanner::report::table(&report)
        );
        eprintln!(
            "{control} off: {check} failed as it must: {}",
            finding.detail
        );
    }
}

/// Builds the harness and names its executable.
fn build_weakened_service(root: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "--locked", "--package", "weakened-service"])
        .args(["--bin", "weakened-service"])
        .args(["--message-format", "json-render-diagnostics"])
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "cargo build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("the build names the executable")
}

/// A script that runs the harness with `control` off and the arguments it is given (`init`, or
/// none to serve), as `RunningService` runs a service binary.
fn with_control_off(binary: &Path, control: &str, scratch: &Path) -> PathBuf {
    let script = scratch.join(format!("weakened-{control}"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' --off {control} \"$@\"\n",
            binary.display()
        ),
    )
    .expect("script written");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("script made executable");
    script
}
