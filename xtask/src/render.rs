//! Renders the template with the cargo-generate library: the same code as the `cargo generate`
//! CLI, so `cargo xtask new` and `cargo generate --path template` produce the same tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cargo_generate::{GenerateArgs, TemplatePath, Vcs};

/// One combination of the template's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub database: &'static str,
    pub rate_limit_store: &'static str,
}

/// Every combination of the template's options; the first is the default.
pub const VARIANTS: [Variant; 4] = [
    Variant {
        database: "sqlite",
        rate_limit_store: "memory",
    },
    Variant {
        database: "sqlite",
        rate_limit_store: "redis",
    },
    Variant {
        database: "postgres",
        rate_limit_store: "memory",
    },
    Variant {
        database: "postgres",
        rate_limit_store: "redis",
    },
];

impl Variant {
    /// The default options (`sqlite`, `memory`).
    pub const DEFAULT: Variant = VARIANTS[0];

    /// The variant the heavy, variant-independent steps run in (the third-party scanners and the
    /// brief bench): once per CI run, on the shape production uses, not once per variant.
    pub const HEAVY_STEPS: Variant = VARIANTS[3];

    /// A short name such as `sqlite-memory`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.database, self.rate_limit_store)
    }

    /// The options as `key=value` definitions.
    pub fn defines(&self) -> Vec<String> {
        vec![
            format!("database={}", self.database),
            format!("rate_limit_store={}", self.rate_limit_store),
        ]
    }
}

/// The template folder of this repository.
pub fn template_dir(root: &Path) -> PathBuf {
    root.join("template")
}

/// Renders the template at `template` as project `name` into `destination/name`, without
/// prompting, and returns the project's folder. Fails if that folder exists.
pub fn render(
    template: &Path,
    name: &str,
    defines: &[String],
    destination: &Path,
) -> Result<PathBuf> {
    if std::env::var_os("CARGO_NAME").is_none() && std::env::var_os("USER").is_none() {
        // cargo-generate reads the author from the environment and fails without one.
        bail!("cargo-generate needs USER or CARGO_NAME set");
    }
    std::fs::create_dir_all(destination)
        .with_context(|| format!("cannot create {}", destination.display()))?;
    let args = GenerateArgs {
        template_path: TemplatePath {
            path: Some(template.display().to_string()),
            ..TemplatePath::default()
        },
        name: Some(name.to_owned()),
        silent: true,
        quiet: true,
        define: defines.to_vec(),
        destination: Some(destination.to_path_buf()),
        // Never edit an enclosing Cargo workspace (this repository's, when rendering into
        // target/): the generated project is a workspace of its own.
        no_workspace: true,
        vcs: Some(Vcs::None),
        ..GenerateArgs::default()
    };
    cargo_generate::generate(args).with_context(|| format!("rendering {name} failed"))
}

/// Renders `variant` as `name` into `parent/name`, replacing an earlier rendering; the project
/// records the commit checked out at `root`.
pub fn render_fresh(root: &Path, variant: Variant, name: &str, parent: &Path) -> Result<PathBuf> {
    let project = parent.join(name);
    if project.exists() {
        std::fs::remove_dir_all(&project)
            .with_context(|| format!("cannot remove {}", project.display()))?;
    }
    let mut defines = variant.defines();
    defines.extend(crate::provenance::checkout_defines(root));
    render(&template_dir(root), name, &defines, parent)
}
