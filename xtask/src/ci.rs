//! `cargo xtask ci` for this repository, and `cargo xtask variants`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use xtask::ci::CiOptions;
use xtask::{cmd, supply_chain};

use crate::demo;
use crate::render::{self, VARIANTS, Variant};
use crate::scaffold_check;
use crate::scan;
use crate::template_checks;
use xtask::scans as third_party;
use xtask::service::RunningService;

/// Everything CI checks, cheapest first: format, lint, tests, template agreement, the demo,
/// dependency advisories and policy, then every template variant's own CI.
pub fn run(root: &Path, options: &CiOptions, with_variants: bool) -> Result<()> {
    let scratch = xtask::ci::scratch_dir(root);

    xtask::ci::format_lint_test(root, options)?;

    cmd::step("the scanner fails each check whose control is turned off");
    run_ignored_tests(root, "weakened_builds")?;

    cmd::step("an upgraded project keeps its owners' changes and builds");
    run_ignored_tests(root, "upgrade")?;
    // The same project, upgraded, takes a scaffolded resource and must then pass clippy and its
    // whole suite: the upgrade's result and the scaffold's output tested in one extra project.
    let took = scaffold_check::scaffold_and_test(root, &owned_project_dir(root))?;
    eprintln!(
        "the upgraded, scaffolded project passed clippy and its suite in {} s",
        took.as_secs()
    );

    match third_party::tools_dir() {
        Some(dir) => third_party::secret_scan(&dir, root)?,
        None => third_party::tools_missing("the secret scan")?,
    }

    cmd::step("template agrees with this repository");
    template_checks::check_all(root, &scratch)?;

    cmd::step("demo");
    demo::smoke(root)?;

    xtask::ci::supply_chain_checks(root, options)?;

    cmd::step("a known-vulnerable dependency fails both advisory checks");
    vulnerable_dependency_canary(root, options)?;

    if with_variants {
        variants(root, options, None)?;
    }
    Ok(())
}

/// Runs the ignored (slow) tests of `rampart-xtask`'s integration test file `test`.
fn run_ignored_tests(root: &Path, test: &str) -> Result<()> {
    cmd::run(cmd::cargo().current_dir(root).args([
        "test",
        "--locked",
        "--package",
        "rampart-xtask",
        "--test",
        test,
        "--",
        "--ignored",
    ]))
}

/// The project the upgrade test leaves behind, generated, changed by its owners and upgraded
/// (`target/ownership/owned-service`): later steps reuse it rather than render another.
pub fn owned_project_dir(root: &Path) -> PathBuf {
    root.join("target").join("ownership").join(OWNED_PROJECT)
}

/// The name the upgrade test generates its project under.
pub const OWNED_PROJECT: &str = "owned-service";

/// The crate and version the canary adds: tar 0.4.35 has RUSTSEC-2021-0080 (and later ones).
/// It is not otherwise in the graph, so the version can be pinned without conflicts.
const VULNERABLE_DEPENDENCY: (&str, &str) = ("tar", "=0.4.35");
const VULNERABLE_ADVISORY: &str = "RUSTSEC-2021-0080";

/// Proves that the supply-chain checks can fail: a project rendered with one known-vulnerable
/// dependency added must fail both cargo-audit and cargo-deny, with the same advisory database
/// the real checks used. Without this, a misconfigured database could pass everything.
pub fn vulnerable_dependency_canary(root: &Path, options: &CiOptions) -> Result<()> {
    let scratch = xtask::ci::scratch_dir(root);
    let project = render::render_fresh(root, Variant::DEFAULT, "vulnerable-canary", &scratch)?;
    let manifest = project.join("crates/app/Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    let (name, version) = VULNERABLE_DEPENDENCY;
    let text = text.replacen(
        "[dependencies]\n",
        &format!("[dependencies]\n{name} = \"{version}\"\n"),
        1,
    );
    std::fs::write(&manifest, text)?;
    template_checks::resolve(&project)?;

    let project_scratch = xtask::ci::scratch_dir(&project);
    let db =
        xtask::advisory_db::prepare_optional(options.advisory_db.as_deref(), &project_scratch)?;
    let checks = [
        (
            "cargo-audit",
            supply_chain::audit_command(&project, db.as_ref())?,
        ),
        (
            "cargo-deny",
            supply_chain::deny_command(&project, db.as_ref(), &project_scratch)?,
        ),
    ];
    for (tool, mut command) in checks {
        let output = command.output()?;
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if output.status.success() || !report.contains(VULNERABLE_ADVISORY) {
            bail!(
                "{tool} did not refuse {name} {version} for {VULNERABLE_ADVISORY} \
                 (exit {}):\n{report}",
                output.status
            );
        }
        eprintln!("{tool} refused {name} {version}, citing {VULNERABLE_ADVISORY}, as it must");
    }
    Ok(())
}

/// Renders every variant (or the one named `only`) into `target/variants/` and runs its own
/// `cargo xtask ci` there, all sharing one target folder.
pub fn variants(root: &Path, options: &CiOptions, only: Option<&str>) -> Result<()> {
    let parent = root.join("target").join("variants");
    let target_dir = demo::shared_target_dir(root);
    let selected: Vec<Variant> = VARIANTS
        .into_iter()
        .filter(|variant| only.is_none_or(|name| variant.name() == name))
        .collect();
    if selected.is_empty() {
        anyhow::bail!(
            "no variant is named {}; variants: {}",
            only.unwrap_or_default(),
            VARIANTS.map(|variant| variant.name()).join(", ")
        );
    }
    for variant in selected {
        cmd::step(&format!("variant {}", variant.name()));
        let heavy_steps = variant == Variant::HEAVY_STEPS;
        let project = render::render_fresh(root, variant, &variant.name(), &parent)?;
        let mut ci = cmd::cargo();
        // Each variant's suite runs on the database and store its own configuration names.
        ci.current_dir(&project)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("TEST_DATABASE")
            .env_remove("TEST_RATE_LIMIT_STORE")
            .args(["xtask", "ci"]);
        if !heavy_steps {
            ci.arg("--skip-bench");
        }
        if let Some(db) = &options.advisory_db {
            let db = std::path::absolute(db).context("advisory database path")?;
            ci.arg("--advisory-db").arg(db);
        }
        if options.require_services {
            ci.arg("--require-services");
        }
        cmd::run(&mut ci)?;
        scan_variant(root, &project, &target_dir, &variant.name(), heavy_steps)?;
    }
    Ok(())
}

/// The variant's service (built by its own CI) started as a real process and scanned: first by
/// the checklist scanner, then (in the heavy-steps variant only), on a fresh instance so neither
/// spends the other's rate limits, by the third-party scanners; then its secret scan and SBOM.
/// Reports go to `target/scan/<variant>/`.
fn scan_variant(
    root: &Path,
    project: &Path,
    target_dir: &Path,
    name: &str,
    heavy_steps: bool,
) -> Result<()> {
    let binary = target_dir.join("debug").join("app");
    let out = root.join("target").join("scan").join(name);
    // The services' data (keys, the development administrator's password) stays out of the
    // report folder that CI uploads.
    let data = root
        .join("target")
        .join("xtask")
        .join("scan-data")
        .join(name);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&data);

    cmd::step(&format!(
        "checklist scanner against the running {name} service"
    ));
    let service = RunningService::start(&binary, project, &data.join("scanner"), &[])?;
    scan::scan_and_report(&service, &out, "rampart-scan")?;
    drop(service);

    match third_party::tools_dir() {
        Some(dir) => {
            if heavy_steps {
                let service = RunningService::start(
                    &binary,
                    project,
                    &data.join("third-party"),
                    &third_party::RAISED_RATE_LIMITS,
                )?;
                third_party::scan_service(&dir, &service, project, &out)?;
                drop(service);
            } else {
                eprintln!(
                    "sslyze, drheader and schemathesis run in the {} variant only",
                    Variant::HEAVY_STEPS.name()
                );
            }
            // The generated project's own baseline fits the files it is generated with.
            third_party::secret_scan(&dir, project)?;
        }
        None => third_party::tools_missing("sslyze, drheader and schemathesis")?,
    }
    if third_party::sbom_tool_installed() {
        third_party::sbom(project, &out)?;
    } else {
        third_party::tools_missing("the SBOM (cargo-cyclonedx)")?;
    }
    Ok(())
}
