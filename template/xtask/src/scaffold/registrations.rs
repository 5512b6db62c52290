//! Where a new resource is registered in the project: every existing file the scaffold edits,
//! as a [`Locator`] for each item and what goes there. When code moves, change the locator here.

use super::fill::{Names, fill};
use super::locate::{Insertion, Locator};
use super::resource::Resource;

pub const API_MODULES: Locator = Locator {
    file: "crates/app/src/api/mod.rs",
    anchors: &["pub mod "],
    item: "the API modules",
};
pub const API_TAGS: Locator = Locator {
    file: "crates/app/src/api/mod.rs",
    anchors: &["pub enum ApiTags {"],
    item: "the OpenAPI tags",
};
pub const API_TUPLE: Locator = Locator {
    file: "crates/app/src/api/mod.rs",
    anchors: &["pub type Api = ("],
    item: "the API tuple",
};
pub const API_CONSTRUCTION: Locator = Locator {
    file: "crates/app/src/api/mod.rs",
    anchors: &["pub fn openapi_service", "let apis = ("],
    item: "the construction of the API tuple",
};
pub const SENSITIVE_OPERATIONS: Locator = Locator {
    file: "crates/app/src/policy.rs",
    anchors: &["pub const SENSITIVE_OPERATIONS"],
    item: "the sensitive operations",
};
pub const PERSISTENCE_MODULES: Locator = Locator {
    file: "crates/app/src/persistence/mod.rs",
    anchors: &["pub mod "],
    item: "the entity modules",
};
pub const SCOPES: Locator = Locator {
    file: "crates/app/src/auth/scopes.rs",
    anchors: &["pub enum Scope {"],
    item: "the scope catalogue",
};
pub const USER_SCOPES: Locator = Locator {
    file: "crates/app/src/auth/scopes.rs",
    anchors: &["const USER_SCOPES"],
    item: "the user role's scopes",
};
pub const SENSITIVE_TIERS: Locator = Locator {
    file: "crates/app/src/policy.rs",
    anchors: &["pub enum SensitiveTier {"],
    item: "the sensitive tiers",
};
pub const TIERS: Locator = Locator {
    file: "crates/app/src/rate_limits.rs",
    anchors: &["struct Tiers {"],
    item: "the tier table",
};
pub const TIERS_FROM_SETTINGS: Locator = Locator {
    file: "crates/app/src/rate_limits.rs",
    anchors: &["fn from_settings(", "Ok(Self {"],
    item: "the tier table's construction",
};
pub const TIER_OF_SENSITIVE: Locator = Locator {
    file: "crates/app/src/rate_limits.rs",
    anchors: &["fn sensitive(&self, tier: SensitiveTier)", "match tier {"],
    item: "the tier of each sensitive tier",
};
pub const RATE_LIMIT_SETTINGS: Locator = Locator {
    file: "crates/app/src/config/rate_limit.rs",
    anchors: &["pub struct RateLimitSettings {"],
    item: "the rate-limit settings",
};
pub const QUOTA_COUNT: Locator = Locator {
    file: "crates/app/src/config/rate_limit.rs",
    anchors: &["pub fn quotas(&self)"],
    item: "the number of quotas",
};
pub const QUOTAS: Locator = Locator {
    file: "crates/app/src/config/rate_limit.rs",
    anchors: &["pub fn quotas(&self)", "["],
    item: "the quotas validated",
};
pub const DEFAULT_QUOTAS: Locator = Locator {
    file: "config/default.toml",
    anchors: &["[rate_limit]"],
    item: "the shipped rate limits",
};
pub const TEST_QUOTAS: Locator = Locator {
    file: "crates/app/tests/api/helpers/config.rs",
    anchors: &["[rate_limit]"],
    item: "the integration tests' configuration",
};
pub const MIGRATION_MODULES: Locator = Locator {
    file: "crates/migration/src/lib.rs",
    anchors: &["mod m"],
    item: "the migration modules",
};
pub const MIGRATIONS: Locator = Locator {
    file: "crates/migration/src/lib.rs",
    anchors: &["fn migrations()", "vec!["],
    item: "the ordered migrations",
};
pub const TEST_MODULES: Locator = Locator {
    file: "crates/app/tests/api/main.rs",
    anchors: &["mod "],
    item: "the integration test modules",
};
pub const AUDIT_EVENTS: Locator = Locator {
    file: "docs/audit-events.md",
    anchors: &["| event | outcomes |"],
    item: "the audit event table",
};

/// The quota the shipped configuration gives a sensitive resource's writes.
const DEFAULT_WRITE_QUOTA: &str = "{ requests = 30, period_seconds = 60 }";
/// The integration tests' quota: high, so only the tier's own test trips it.
const TEST_WRITE_QUOTA: &str = "{ requests = 10000, period_seconds = 60 }";

/// Every edit registering `resource`, whose migration module is `migration`.
pub fn edits(resource: &Resource, migration: &str) -> Vec<(Locator, Insertion)> {
    let names = Names::of(resource);
    let lines = |templates: &[&str]| filled_lines(&names, templates);
    let mut edits = vec![
        (
            API_MODULES,
            Insertion::SortedLine(fill("pub mod __plural__;", &names, &[])),
        ),
        (
            API_TAGS,
            Insertion::AppendToBlock(lines(&[
                "/// __Types__, owned by their creators.",
                "__Types__,",
            ])),
        ),
        (
            API_TUPLE,
            Insertion::AppendToBlock(lines(&["__plural__::__Types__Api,"])),
        ),
        (
            API_CONSTRUCTION,
            Insertion::AppendToBlock(lines(&["__plural__::__Types__Api::new(Arc::clone(auth)),"])),
        ),
        (
            PERSISTENCE_MODULES,
            Insertion::SortedLine(fill("pub mod __plural__;", &names, &[])),
        ),
        (
            SCOPES,
            Insertion::AppendToBlock(lines(&[
                "/// Read your __plural_words__.",
                "#[oai(rename = \"__plural__:read\")]",
                "__Types__Read,",
                "/// Create, replace and delete your __plural_words__.",
                "#[oai(rename = \"__plural__:write\")]",
                "__Types__Write,",
            ])),
        ),
        (
            USER_SCOPES,
            Insertion::AppendToBlock(lines(&["Scope::__Types__Read,", "Scope::__Types__Write,"])),
        ),
        (
            MIGRATION_MODULES,
            Insertion::SortedLine(format!("mod {migration};")),
        ),
        (
            MIGRATIONS,
            Insertion::AppendToBlock(vec![format!("Box::new({migration}::Migration),")]),
        ),
        (
            TEST_MODULES,
            Insertion::SortedLine(fill("mod __plural__;", &names, &[])),
        ),
        (
            AUDIT_EVENTS,
            Insertion::AppendToTable(lines(&[
                "| `__singular__.created`, `__singular__.updated`, `__singular__.deleted` | \
                 allowed | the owner created, replaced or deleted a __singular_words__ \
                 (`policy`: its id) | `created`, `updated`, `deleted` |",
            ])),
        ),
    ];
    if resource.sensitive {
        edits.extend(sensitive_edits(&names));
    }
    edits
}

/// `templates` with the resource's names filled in.
fn filled_lines(names: &Names, templates: &[&str]) -> Vec<String> {
    templates
        .iter()
        .map(|template| fill(template, names, &[]))
        .collect()
}

/// The edits giving the resource's writes a stricter rate-limit tier of their own (RATE-3),
/// wired as the other sensitive tiers are.
fn sensitive_edits(names: &Names) -> Vec<(Locator, Insertion)> {
    let lines = |templates: &[&str]| filled_lines(names, templates);
    let quota = |value: &str| {
        lines(&[
            "# POST /v1/__plural__, PUT and DELETE /v1/__plural__/{id}, per principal.",
            &format!("__plural__ = {value}"),
        ])
    };
    vec![
        (
            SENSITIVE_OPERATIONS,
            Insertion::AppendToBlock(lines(&[
                "(\"POST /v1/__plural__\", SensitiveTier::__Types__),",
                "(\"PUT /v1/__plural__/{id}\", SensitiveTier::__Types__),",
                "(\"DELETE /v1/__plural__/{id}\", SensitiveTier::__Types__),",
            ])),
        ),
        (
            SENSITIVE_TIERS,
            Insertion::AppendToBlock(lines(&["__Types__,"])),
        ),
        (
            TIERS,
            Insertion::AppendToBlock(lines(&["__plural__: Tier,"])),
        ),
        (
            TIERS_FROM_SETTINGS,
            Insertion::AppendToBlock(lines(&[
                "__plural__: Tier::sensitive(\"__plural__\", quota(\"__plural__\", settings.__plural__)?),",
            ])),
        ),
        (
            TIER_OF_SENSITIVE,
            Insertion::AppendToBlock(lines(&["SensitiveTier::__Types__ => &self.__plural__,"])),
        ),
        (
            RATE_LIMIT_SETTINGS,
            Insertion::AppendToBlock(lines(&[
                "/// `POST /v1/__plural__`, `PUT` and `DELETE /v1/__plural__/{id}`, per principal.",
                "pub __plural__: QuotaSettings,",
            ])),
        ),
        (QUOTA_COUNT, Insertion::GrowArrayLength(1)),
        (
            QUOTAS,
            Insertion::AppendToBlock(lines(&["(\"__plural__\", self.__plural__),"])),
        ),
        (
            DEFAULT_QUOTAS,
            Insertion::AppendToTomlSection(quota(DEFAULT_WRITE_QUOTA)),
        ),
        (
            TEST_QUOTAS,
            Insertion::AppendToTomlSection(vec![format!("{} = {TEST_WRITE_QUOTA}", names.plural)]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    /// This project's root (the parent of `xtask`).
    fn project_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("a parent")
            .to_path_buf()
    }

    /// Each locator finds its item in this project's files as they are, and each insertion
    /// lands there: a refactoring that moves an item fails here, naming the locator to update.
    #[test]
    fn every_locator_finds_its_item_in_this_project() {
        // A name no project is likely to hold, so the test passes after real scaffolds too.
        let resource = Resource::parse(
            "locator_probe",
            &[
                "name:string:80".to_owned(),
                "status:enum:draft,active".to_owned(),
            ],
            None,
            true,
        )
        .expect("ok");
        let migration = "m20990101_999999_create_locator_probes";
        let mut files: BTreeMap<&str, String> = BTreeMap::new();
        for (locator, insertion) in edits(&resource, migration) {
            // As the scaffold does: a document the owners deleted is theirs to go without.
            let deleted_document =
                locator.file.ends_with(".md") && !project_root().join(locator.file).exists();
            if deleted_document {
                continue;
            }
            let text = match files.remove(locator.file) {
                Some(text) => text,
                None => std::fs::read_to_string(project_root().join(locator.file))
                    .unwrap_or_else(|error| panic!("{}: {error}", locator.file)),
            };
            let edited = super::super::locate::insert(&text, &locator, &insertion)
                .unwrap_or_else(|error| panic!("{error:#}"));
            assert_ne!(edited, text, "{}", locator.item);
            files.insert(locator.file, edited);
        }
        let expectations = [
            ("crates/app/src/api/mod.rs", "pub mod locator_probes;"),
            (
                "crates/app/src/api/mod.rs",
                "locator_probes::LocatorProbesApi::new(Arc::clone(auth)),",
            ),
            (
                "crates/app/src/policy.rs",
                "(\"PUT /v1/locator_probes/{id}\", SensitiveTier::LocatorProbes),",
            ),
            (
                "crates/app/src/auth/scopes.rs",
                "Scope::LocatorProbesWrite,",
            ),
            (
                "crates/app/src/rate_limits.rs",
                "SensitiveTier::LocatorProbes => &self.locator_probes,",
            ),
            (
                "crates/app/src/config/rate_limit.rs",
                "pub locator_probes: QuotaSettings,",
            ),
            (
                "crates/app/src/config/rate_limit.rs",
                "(\"locator_probes\", self.locator_probes),",
            ),
            (
                "crates/app/tests/api/helpers/config.rs",
                "locator_probes = { requests = 10000",
            ),
            ("config/default.toml", "locator_probes = { requests = 30"),
            (
                "crates/migration/src/lib.rs",
                "Box::new(m20990101_999999_create_locator_probes::Migration),",
            ),
            ("crates/app/tests/api/main.rs", "mod locator_probes;"),
            ("docs/audit-events.md", "| `locator_probe.created`"),
        ];
        for (file, expected) in expectations {
            if let Some(text) = files.get(file) {
                assert!(text.contains(expected), "{file}: {expected}");
            } else {
                assert!(file.ends_with(".md"), "{file} was edited");
            }
        }
    }
}
