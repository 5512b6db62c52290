//! The starting point of every test configuration: the service's own `config/default.toml`, so a
//! setting added there reaches the tests without a second edit; a test states only what it
//! changes ([`with_overrides`]). Used by the unit tests of `config` and, through `#[path]`, by
//! the integration tests' `helpers/config.rs`: one copy for both.

/// The template's options when `config/default.toml` is rendered here, in Rampart's own
/// workspace: `cargo-generate.toml`'s defaults and a project name. A generated project's file is
/// already rendered and is read as it is.
const TEMPLATE_OPTIONS: [(&str, &str); 4] = [
    ("project-name", "rampart-service"),
    ("crate_name", "rampart_service"),
    ("database", "sqlite"),
    ("rate_limit_store", "memory"),
];

/// `config/default.toml`, rendered if it is still the template's Liquid.
pub fn default_toml() -> String {
    render(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/default.toml"
    )))
}

/// `base` with every key of `overrides` (both TOML) replacing its own, tables merged key by key
/// as the configuration's layers are.
pub fn with_overrides(base: &str, overrides: &str) -> String {
    let mut merged: toml::Table = base.parse().expect("the base configuration is TOML");
    merge(
        &mut merged,
        overrides.parse().expect("the overrides are TOML"),
    );
    toml::to_string(&merged).expect("a table serialises to TOML")
}

fn merge(base: &mut toml::Table, overrides: toml::Table) {
    for (key, value) in overrides {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(base)), toml::Value::Table(overrides)) => {
                merge(base, overrides);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Renders the Liquid `config/default.toml` uses: `{{ option }}`, and `{% if option == "value"
/// %}`, `{% else %}`, `{% endif %}`, with `-` trimming whitespace on its side. Anything else
/// fails loudly, naming it, rather than leaving the file half rendered.
fn render(template: &str) -> String {
    let option = |name: &str| {
        TEMPLATE_OPTIONS
            .iter()
            .find(|(option, _)| *option == name)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("config/default.toml uses an unknown option: {name}"))
    };
    let mut output = String::new();
    // Per open `if`, whether its current branch is written.
    let mut branches: Vec<bool> = Vec::new();
    let mut rest = template;
    while let Some(start) = [rest.find("{{"), rest.find("{%")]
        .into_iter()
        .flatten()
        .min()
    {
        let statement = rest[start..].starts_with("{%");
        let close = if statement { "%}" } else { "}}" };
        let end = start + rest[start..].find(close).expect("a closed Liquid tag") + close.len();
        let tag = &rest[start + 2..end - 2];
        let text = &rest[..start];
        let written = branches.iter().all(|branch| *branch);
        if written {
            output.push_str(if tag.starts_with('-') {
                text.trim_end()
            } else {
                text
            });
        }
        rest = if tag.ends_with('-') {
            rest[end..].trim_start()
        } else {
            &rest[end..]
        };
        let tag = tag.trim_matches('-').trim();
        if !statement {
            if written {
                output.push_str(option(tag));
            }
            continue;
        }
        match tag.split_whitespace().collect::<Vec<_>>()[..] {
            ["if", name, "==", value] => branches.push(option(name) == value.trim_matches('"')),
            ["else"] => {
                let branch = branches.last_mut().expect("else inside an if");
                *branch = !*branch;
            }
            ["endif"] => {
                branches.pop().expect("endif closing an if");
            }
            _ => panic!("config/default.toml uses Liquid this renderer lacks: {{% {tag} %}}"),
        }
    }
    output.push_str(rest);
    output
}
