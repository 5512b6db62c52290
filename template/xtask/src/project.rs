//! What the project at hand is configured with: its database and rate-limit store, read from
//! `config/default.toml`. The test suite (`ci`) and the started service (`service`) both follow
//! it; this module imports nothing from the other tasks, so neither depends on the other for it.

use std::path::Path;

use anyhow::Result;

/// The database (`sqlite`, `postgres`) and rate-limit store (`memory`, `redis`) the project at
/// `root` is configured with in `config/default.toml`; the embedded ones when it has none or it
/// is not TOML yet (the template itself, before rendering).
pub fn backend(root: &Path) -> Result<(&'static str, &'static str)> {
    let Ok(text) = std::fs::read_to_string(root.join("config").join("default.toml")) else {
        return Ok(("sqlite", "memory"));
    };
    // The template's own file is Liquid, not TOML, until it is rendered.
    let Ok(config) = text.parse::<toml::Table>() else {
        return Ok(("sqlite", "memory"));
    };
    let setting = |section: &str, key: &str| {
        config
            .get(section)
            .and_then(|section| section.get(key))
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let database = if setting("database", "url").starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let store = if setting("rate_limit", "store") == "redis" {
        "redis"
    } else {
        "memory"
    };
    Ok((database, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_read_from_the_projects_configuration() {
        let project = tempfile::tempdir().expect("project");
        assert_eq!(
            backend(project.path()).expect("no config"),
            ("sqlite", "memory")
        );
        std::fs::create_dir(project.path().join("config")).expect("config dir");
        std::fs::write(
            project.path().join("config").join("default.toml"),
            "[database]\nurl = \"postgres://postgres@127.0.0.1:5432/svc\"\n\
             [rate_limit]\nstore = \"redis\"\n",
        )
        .expect("write");
        assert_eq!(
            backend(project.path()).expect("config"),
            ("postgres", "redis")
        );
    }
}
