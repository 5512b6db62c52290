//! Third-party scanners, installed from the package registries, run against a generated service
//! as a real process (OPS-2): sslyze with Mozilla's "modern" profile, drheader for the security
//! headers, and schemathesis fuzzing the service's own OpenAPI document with every check, both
//! anonymous and authenticated; plus a secret scan of the repository and an SBOM.
//!
//! The Python tools live in a virtual environment named by `SCAN_TOOLS` (its `bin`
//! folder); the CI workflow installs them there at the versions of [`PYTHON_TOOLS`].

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cmd;
use crate::service::RunningService;

/// The pinned versions `.ci/run` and the workflows install.
pub const PYTHON_TOOLS: &[&str] = &[
    "sslyze==6.3.1",
    "schemathesis==4.32.5",
    "drheader==2.0.0",
    "detect-secrets==1.5.0",
];

/// The `bin` folder of the tools' virtual environment, when there is one.
pub fn tools_dir() -> Option<PathBuf> {
    std::env::var_os("SCAN_TOOLS")
        .map(PathBuf::from)
        .filter(|dir| dir.join("sslyze").is_file())
}

/// Without the tools a local run says what it skips; with `REQUIRE_SCAN_TOOLS` set (CI) a missing
/// tool is a failure.
pub fn tools_missing(what: &str) -> Result<()> {
    let install = format!(
        "install {} in a virtual environment and set SCAN_TOOLS to its bin folder; \
         cargo install --locked cargo-cyclonedx --version 0.5.9",
        PYTHON_TOOLS.join(" ")
    );
    if std::env::var_os("REQUIRE_SCAN_TOOLS").is_some() {
        bail!("{what}: the scan tools are missing ({install})");
    }
    eprintln!("skipped {what}: {install}");
    Ok(())
}

/// Whether `cargo cyclonedx` is installed.
pub fn sbom_tool_installed() -> bool {
    cmd::succeeds(cmd::cargo().args(["cyclonedx", "--version"]))
}

/// `cargo xtask scan`: builds the service, starts it (rate limits raised, see
/// [`RAISED_RATE_LIMITS`]) and runs sslyze, drheader and schemathesis against it; then the secret
/// scan and the SBOM. Reports under `target/scan/`.
pub fn run(root: &Path) -> Result<()> {
    cmd::step("building the service");
    cmd::run(
        cmd::cargo()
            .current_dir(root)
            .args(["build", "--locked", "--package", "app"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("debug").join("app");
    let out = root.join("target").join("scan");
    let data = root.join("target").join("xtask").join("scan-data");
    let _ = std::fs::remove_dir_all(&data);
    match tools_dir() {
        Some(dir) => {
            let service = RunningService::start(&binary, root, &data, &RAISED_RATE_LIMITS)?;
            scan_service(&dir, &service, root, &out)?;
            drop(service);
            secret_scan(&dir, root)?;
        }
        None => tools_missing("sslyze, drheader, schemathesis and detect-secrets")?,
    }
    if sbom_tool_installed() {
        sbom(root, &out)
    } else {
        tools_missing("the SBOM (cargo-cyclonedx)")
    }
}

fn tool(dir: &Path, name: &str) -> Command {
    Command::new(dir.join(name))
}

/// The environment of the instance the third-party scanners run against: every rate-limit tier
/// raised, so the fuzzer reaches the logic behind the limits instead of a wall of 429s. The
/// limits themselves are checked by the checklist scanner on an instance with the defaults.
pub const RAISED_RATE_LIMITS: [(&str, &str); 11] = [
    ("APP_RATE_LIMIT__ANONYMOUS__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__AUTHENTICATED__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__LOGIN__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__LOGIN_ACCOUNT__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__PASSWORD_RESET__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__PASSWORD_RESET_ACCOUNT__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__PASSWORD_RESET_CONFIRM__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__TOKEN__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__API_KEY_MANAGEMENT__REQUESTS", "50000"),
    ("APP_RATE_LIMIT__PAYMENT__REQUESTS", "50000"),
    // The scanners are one client opening connections as fast as they send: the per-address
    // connection cap (TLS-1) is raised with the rate limits, as for a trusted proxy.
    ("APP_CONNECTIONS__MAX_PER_ADDRESS", "4096"),
];

/// sslyze, drheader and schemathesis against `service` (started with [`RAISED_RATE_LIMITS`]),
/// schemathesis configured by the project's `scans/schemathesis.toml`; reports under `out`.
pub fn scan_service(
    dir: &Path,
    service: &RunningService,
    project: &Path,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let host = service.base_url.trim_start_matches("https://");

    cmd::step("sslyze: Mozilla's modern TLS profile");
    cmd::run(
        tool(dir, "sslyze")
            .args(["--mozilla_config=modern", "--certinfo_ca_file"])
            .arg(&service.ca_cert)
            .arg("--json_out")
            .arg(out.join("sslyze.json"))
            .arg(host),
    )
    .context("sslyze: the TLS configuration is not compliant with Mozilla's modern profile")?;

    cmd::step("drheader: security headers, default rules");
    for path in ["/health/live", "/v1/me", "/openapi.json", "/no-such-path"] {
        let output = tool(dir, "drheader")
            .args(["scan", "single", "--output", "json"])
            .arg(format!("{}{path}", service.base_url))
            .arg("--verify")
            .arg(&service.ca_cert)
            .output()
            .context("cannot run drheader")?;
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        std::fs::write(
            out.join(format!("drheader{}.json", path.replace('/', "_"))),
            &report,
        )?;
        if !output.status.success() {
            bail!(
                "drheader found header problems on {path}:\n{report}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    let tokens = service.tokens()?;
    let config = project.join("scans").join("schemathesis.toml");
    // The authenticated run's configuration names the token through the environment, so it
    // appears in no command line, log or report.
    let authenticated = project
        .join("target")
        .join("xtask")
        .join("schemathesis-authenticated.toml");
    std::fs::create_dir_all(authenticated.parent().context("scratch folder")?)?;
    std::fs::write(
        &authenticated,
        format!(
            "{}\n[headers]\nAuthorization = \"Bearer ${{SCAN_BEARER_TOKEN}}\"\n",
            std::fs::read_to_string(&config)
                .with_context(|| format!("cannot read {}", config.display()))?
        ),
    )?;
    for (name, config) in [("anonymous", &config), ("authenticated", &authenticated)] {
        cmd::step(&format!("schemathesis: every check, {name}"));
        let mut run = tool(dir, "st");
        run.arg("--config-file")
            .arg(config)
            .args([
                "run",
                "--checks",
                "all",
                "--max-examples",
                "30",
                "--seed",
                "1",
            ])
            .arg(format!("--tls-verify={}", service.ca_cert.display()))
            .arg(format!("--url={}", service.base_url))
            .arg("--report=junit")
            .arg(format!(
                "--report-junit-path={}",
                out.join(format!("schemathesis-{name}.xml")).display()
            ))
            .arg(format!("{}/openapi.json", service.base_url))
            .env("SCAN_BEARER_TOKEN", &tokens[0])
            .env("NO_COLOR", "1");
        eprintln!("$ {}", cmd::describe(&run));
        let status = run.status().context("cannot run schemathesis")?;
        if !status.success() {
            bail!("schemathesis ({name}) found failures ({status})");
        }
    }
    Ok(())
}

/// detect-secrets over the project: every finding must be in the reviewed `.secrets.baseline`
/// (test fixtures and documented placeholders), compared by file and secret hash. Tracked files
/// in a git work tree; outside one (a freshly generated project), every file but build output
/// and local data. A planted secret must be found too, or the scan proves nothing.
pub fn secret_scan(dir: &Path, root: &Path) -> Result<()> {
    cmd::step("detect-secrets: no secrets beyond the reviewed baseline");
    let in_git = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|output| output.status.success());
    let mut scan = tool(dir, "detect-secrets");
    scan.current_dir(root).args([
        "scan",
        "--exclude-files",
        r"(^|/)(target|\.git|data)/|(^|/)\.secrets\.baseline$",
    ]);
    if !in_git {
        scan.arg("--all-files");
    }
    let found = findings(&mut scan)?;
    let baseline: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join(".secrets.baseline")).context("no .secrets.baseline")?,
    )?;
    let reviewed = secret_keys(&baseline);
    let new: Vec<String> = secret_keys(&found)
        .into_iter()
        .filter(|key| !reviewed.contains(key))
        .map(|(file, _, kind)| format!("{file}: {kind}"))
        .collect();
    if !new.is_empty() {
        bail!(
            "detect-secrets found secrets that are not in the reviewed .secrets.baseline:\n  {}",
            new.join("\n  ")
        );
    }

    let planted = root.join("target").join("xtask").join("planted-secret");
    std::fs::create_dir_all(&planted)?;
    // A made-up key in the shape of a cloud provider's, assembled so this file holds none.
    let fake_key = ["wJalrXUtnFEMI", "K7MDENG", "bPxRfiCYzq4Xk8TnPvL2"].join("/");
    std::fs::write(
        planted.join("settings.env"),
        format!("aws_secret_access_key = \"{fake_key}\"\n"),
    )?;
    let canary = findings(tool(dir, "detect-secrets").current_dir(&planted).args([
        "scan",
        "--all-files",
        ".",
    ]))?;
    if secret_keys(&canary).is_empty() {
        bail!("detect-secrets did not notice a planted secret: the secret scan cannot fail");
    }
    eprintln!(
        "detect-secrets: {} reviewed findings, nothing new; a planted secret was caught",
        reviewed.len()
    );
    Ok(())
}

/// Runs a `detect-secrets scan` and reads its JSON report.
fn findings(scan: &mut Command) -> Result<serde_json::Value> {
    let output = scan.output().context("cannot run detect-secrets")?;
    if !output.status.success() {
        bail!(
            "detect-secrets failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("detect-secrets wrote no JSON report")
}

/// `(file, secret hash, type)` of every result of a detect-secrets report or baseline.
fn secret_keys(report: &serde_json::Value) -> std::collections::BTreeSet<(String, String, String)> {
    report["results"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(file, results)| {
            results.as_array().into_iter().flatten().map(move |result| {
                (
                    file.clone(),
                    result["hashed_secret"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    result["type"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect()
}

/// A CycloneDX SBOM (JSON, spec 1.5) of each crate of the generated project, moved under `out`
/// (a CI artifact). Default features only: what a release build ships.
pub fn sbom(project: &Path, out: &Path) -> Result<()> {
    cmd::step("SBOM (CycloneDX)");
    cmd::run(cmd::cargo().current_dir(project).args([
        "cyclonedx",
        "--format",
        "json",
        "--spec-version",
        "1.5",
    ]))
    .context("cargo cyclonedx failed (install it: cargo install cargo-cyclonedx)")?;
    let sbom_dir = out.join("sbom");
    std::fs::create_dir_all(&sbom_dir)?;
    let mut written = Vec::new();
    for crate_dir in ["crates/app", "crates/security", "crates/migration", "xtask"] {
        let dir = project.join(crate_dir);
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.to_string_lossy().ends_with(".cdx.json") {
                let name = path.file_name().context("file name")?.to_owned();
                std::fs::rename(&path, sbom_dir.join(&name))?;
                written.push(name.to_string_lossy().into_owned());
            }
        }
    }
    let app: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sbom_dir.join("app.cdx.json"))
            .context("no SBOM for the app crate")?,
    )?;
    let components = app["components"].as_array().map_or(0, Vec::len);
    if app["bomFormat"] != "CycloneDX" || components == 0 {
        bail!("the app's SBOM is not a CycloneDX document listing its components");
    }
    eprintln!(
        "SBOM: {} ({components} components in app.cdx.json) in {}",
        written.join(", "),
        sbom_dir.display()
    );
    Ok(())
}
