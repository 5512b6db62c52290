//! `cargo xtask ci` for this repository, and `cargo xtask variants`.

use std::path::Path;

use anyhow::{Context, Result};
use xtask::ci::CiOptions;
use xtask::{cmd, services};

use crate::demo;
use crate::render::{self, VARIANTS, Variant};
use crate::template_checks;

/// Everything CI checks, cheapest first: format, lint, tests, template agreement, the demo,
/// dependency advisories and policy, then every template variant's own CI.
pub fn run(root: &Path, options: &CiOptions, with_variants: bool) -> Result<()> {
    let scratch = xtask::ci::scratch_dir(root);

    cmd::step("format");
    cmd::run(
        cmd::cargo()
            .current_dir(root)
            .args(["fmt", "--all", "--check"]),
    )?;

    cmd::step("lint");
    cmd::run(cmd::cargo().current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;

    cmd::step("test servers");
    services::check(options.require_services)?;

    cmd::step("test");
    let mut test = cmd::cargo();
    test.current_dir(root)
        .args(["test", "--workspace", "--locked"]);
    if options.require_services {
        test.env("TEST_REQUIRE_SERVICES", "1");
    }
    cmd::run(&mut test)?;

    cmd::step("template agrees with this repository");
    template_checks::check_all(root, &scratch)?;

    cmd::step("demo");
    demo::smoke(root)?;

    xtask::ci::supply_chain_checks(root, options)?;

    if with_variants {
        variants(root, options, None)?;
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
        let project = render::render_fresh(root, variant, &variant.name(), &parent)?;
        let mut ci = cmd::cargo();
        ci.current_dir(&project)
            .env("CARGO_TARGET_DIR", &target_dir)
            .args(["xtask", "ci"]);
        if let Some(db) = &options.advisory_db {
            let db = std::path::absolute(db).context("advisory database path")?;
            ci.arg("--advisory-db").arg(db);
        }
        if options.require_services {
            ci.arg("--require-services");
        }
        cmd::run(&mut ci)?;
    }
    Ok(())
}
