//! The template renders into a complete, placeholder-free project for every option, and the
//! cargo-generate CLI renders the same tree as `cargo xtask new`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_xtask::render::{self, VARIANTS, Variant};
use rampart_xtask::repository_root;

/// Every file under `dir` (except `.git`), by relative path.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|name| name == ".git") {
                continue;
            }
            if path.is_dir() {
                walk(base, &path, files);
            } else {
                let relative = path.strip_prefix(base).expect("inside base").to_path_buf();
                files.insert(relative, std::fs::read(&path).expect("read"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

fn render_variant(variant: Variant, destination: &Path) -> PathBuf {
    render::render(
        &render::template_dir(&repository_root()),
        "sample-service",
        &variant.defines(),
        destination,
    )
    .expect("the template renders")
}

#[test]
fn every_variant_renders_completely_with_rust_sources_copied_verbatim() {
    let template = render::template_dir(&repository_root());
    for variant in VARIANTS {
        let destination = tempfile::tempdir().expect("tempdir");
        let project = render_variant(variant, destination.path());
        let rendered = tree(&project);

        for (path, content) in &rendered {
            let original = std::fs::read(template.join(path))
                .or_else(|_| std::fs::read(template.join(path).with_extension("toml.liquid")))
                .ok();
            let must_be_verbatim =
                path.extension().is_some_and(|ext| ext == "rs") || path.ends_with("Cargo.lock");
            if must_be_verbatim {
                assert_eq!(
                    original.as_ref(),
                    Some(content),
                    "{}: {} must be copied byte for byte",
                    variant.name(),
                    path.display()
                );
            } else if original.as_ref() != Some(content) {
                // A rendered file: no Liquid may be left in it.
                let text = String::from_utf8_lossy(content);
                assert!(
                    !text.contains("{{") && !text.contains("{%"),
                    "{}: Liquid left in {}",
                    variant.name(),
                    path.display()
                );
            }
        }
        for required in [
            "Cargo.toml",
            "Cargo.lock",
            "README.md",
            "SECURITY.md",
            "deny.toml",
            "config/default.toml",
            ".github/workflows/ci.yml",
            ".github/dependabot.yml",
            "crates/app/src/main.rs",
            "crates/security/src/lib.rs",
            "crates/migration/src/lib.rs",
            "xtask/src/main.rs",
        ] {
            assert!(
                rendered.contains_key(Path::new(required)),
                "{}: {required} is missing",
                variant.name()
            );
        }
        assert!(
            !rendered.contains_key(Path::new("cargo-generate.toml")),
            "the template's own config is not part of the project"
        );

        let manifest = String::from_utf8_lossy(&rendered[Path::new("Cargo.toml")]).into_owned();
        assert!(manifest.contains(&format!("database = \"{}\"", variant.database)));
        assert!(manifest.contains(&format!(
            "rate_limit_store = \"{}\"",
            variant.rate_limit_store
        )));
        let config =
            String::from_utf8_lossy(&rendered[Path::new("config/default.toml")]).into_owned();
        let expected_url = match variant.database {
            "postgres" => "url = \"postgres://postgres@127.0.0.1:5432/sample_service\"",
            _ => "url = \"sqlite://data/app.db?mode=rwc\"",
        };
        assert!(
            config.contains(expected_url),
            "{}: {config}",
            variant.name()
        );
        assert!(config.contains("name = \"sample-service\""));
    }
}

#[test]
fn the_cargo_generate_cli_renders_the_same_tree_as_xtask_new() {
    let cli_available = Command::new("cargo")
        .args(["generate", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !cli_available {
        if std::env::var("TEST_REQUIRE_CARGO_GENERATE").as_deref() == Ok("1") {
            panic!("cargo-generate is required (TEST_REQUIRE_CARGO_GENERATE=1) but not installed");
        }
        eprintln!("skipped: the cargo-generate CLI is not installed");
        return;
    }
    for variant in VARIANTS {
        let by_xtask = tempfile::tempdir().expect("tempdir");
        let by_cli = tempfile::tempdir().expect("tempdir");
        let xtask_project = render_variant(variant, by_xtask.path());

        let mut command = Command::new("cargo");
        command
            .args(["generate", "--path"])
            .arg(render::template_dir(&repository_root()))
            .args(["--name", "sample-service", "--silent", "--vcs", "none"])
            .arg("--destination")
            .arg(by_cli.path());
        for define in variant.defines() {
            command.args(["-d", &define]);
        }
        let status = command.status().expect("run cargo generate");
        assert!(
            status.success(),
            "cargo generate failed for {}",
            variant.name()
        );

        let from_xtask = tree(&xtask_project);
        let from_cli = tree(&by_cli.path().join("sample-service"));
        assert_eq!(
            from_xtask.keys().collect::<Vec<_>>(),
            from_cli.keys().collect::<Vec<_>>(),
            "{}: the same files",
            variant.name()
        );
        for (path, content) in &from_xtask {
            assert!(
                &from_cli[path] == content,
                "{}: {} differs between the CLI and xtask",
                variant.name(),
                path.display()
            );
        }
    }
}
