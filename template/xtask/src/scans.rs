//! Third-party scanners, installed from the package registries, run against a generated service
//! as a real process (OPS-2): sslyze with Mozilla's "modern" profile, drheader for the security
//! headers, and schemathesis fuzzing the service's own OpenAPI document with every check, both
//! anonymous and authenticated; plus a secret scan of the repository and an SBOM.
//!
//! The Python tools live in a virtual environment named by `RAMPART_SCAN_TOOLS` (its `bin`
//! folder); `.ci/run` and the workflows install them there at pinned versions.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use xtask::cmd;

use crate::scan::RunningService;

/// The pinned versions `.ci/run` and the workflows install.
pub const PYTHON_TOOLS: &[&str] = &[
    "sslyze==6.3.1",
    "schemathesis==4.32.5",
    "drheader==2.0.0",
    "detect-secrets==1.5.0",
];

/// The `bin` folder of the tools' virtual environment, when there is one.
pub fn tools_dir() -> Option<PathBuf> {
    std::env::var_os("RAMPART_SCAN_TOOLS")
        .map(PathBuf::from)
        .filter(|dir| dir.join("sslyze").is_file())
}

fn tool(dir: &Path, name: &str) -> Command {
    Command::new(dir.join(name))
}

/// The environment of the instance the third-party scanners run against: every rate-limit tier
/// raised, so the fuzzer reaches the logic behind the limits instead of a wall of 429s. The
/// limits themselves are checked by the checklist scanner on an instance with the defaults.
pub fn raised_rate_limits() -> Vec<(String, String)> {
    [
        "ANONYMOUS",
        "AUTHENTICATED",
        "LOGIN",
        "LOGIN_ACCOUNT",
        "PASSWORD_RESET",
        "PASSWORD_RESET_ACCOUNT",
        "PASSWORD_RESET_CONFIRM",
        "TOKEN",
        "API_KEY_MANAGEMENT",
        "PAYMENT",
    ]
    .iter()
    .map(|tier| {
        (
            format!("APP_RATE_LIMIT__{tier}__REQUESTS"),
            "50000".to_owned(),
        )
    })
    .collect()
}

/// sslyze, drheader and schemathesis against `service` (started with [`raised_rate_limits`]),
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
    for (name, header) in [
        ("anonymous", None),
        (
            "authenticated",
            Some(format!("Authorization: Bearer {}", tokens[0])),
        ),
    ] {
        cmd::step(&format!("schemathesis: every check, {name}"));
        let mut run = tool(dir, "st");
        run.arg("--config-file")
            .arg(&config)
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
            .env("NO_COLOR", "1");
        if let Some(header) = &header {
            run.args(["--header", header]);
        }
        cmd::run(&mut run).with_context(|| format!("schemathesis ({name}) found failures"))?;
    }
    Ok(())
}

/// detect-secrets over the repository's tracked files: nothing beyond the reviewed baseline
/// (`.secrets.baseline`: test fixtures and documented placeholders). A planted secret must be
/// caught too, or the scan proves nothing.
pub fn secret_scan(dir: &Path, root: &Path) -> Result<()> {
    cmd::step("detect-secrets: no secrets in the repository beyond the reviewed baseline");
    let hook = |files: &[String]| {
        tool(dir, "detect-secrets-hook")
            .current_dir(root)
            .args(["--baseline", ".secrets.baseline"])
            .args(files)
            .output()
            .context("cannot run detect-secrets-hook")
    };
    let scan = hook(&tracked_files(root)?)?;
    if !scan.status.success() {
        bail!(
            "detect-secrets found secrets that are not in .secrets.baseline:\n{}",
            String::from_utf8_lossy(&scan.stdout)
        );
    }
    let planted = root.join("target").join("xtask").join("planted-secret.txt");
    std::fs::create_dir_all(planted.parent().context("scratch folder")?)?;
    // A made-up key in the shape of a cloud provider's, assembled so this file holds none.
    let fake_key = ["wJalrXUtnFEMI", "K7MDENG", "bPxRfiCYzq4Xk8TnPvL2"].join("/");
    std::fs::write(
        &planted,
        format!("aws_secret_access_key = \"{fake_key}\"\n"),
    )?;
    let canary = hook(&[planted.to_string_lossy().into_owned()])?;
    if canary.status.success() {
        bail!("detect-secrets did not notice a planted secret: the secret scan cannot fail");
    }
    eprintln!("detect-secrets: tracked files clean, a planted secret caught");
    Ok(())
}

fn tracked_files(root: &Path) -> Result<Vec<String>> {
    let output = Command::new("git")
        .current_dir(root)
        .args(["ls-files"])
        .output()
        .context("cannot run git ls-files")?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
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
