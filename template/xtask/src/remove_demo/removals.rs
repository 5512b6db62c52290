//! What the demo resources (notes, payments) are made of: the files that are only theirs, and
//! where each is registered in the project's shared files, as a [`Locator`] for each item and
//! the lines taken out there. When code moves, change the locator or the lines here; the test in
//! `remove_demo` fails first, naming them.

use crate::scaffold::locate::{Locator, Removal};
use crate::scaffold::registrations::{
    API_CONSTRUCTION, API_MODULES, API_TAGS, API_TUPLE, DEFAULT_QUOTAS, MIGRATION_MODULES,
    MIGRATIONS, PERSISTENCE_MODULES, QUOTA_COUNT, QUOTAS, RATE_LIMIT_SETTINGS, SCOPES,
    SENSITIVE_OPERATIONS, SENSITIVE_TIERS, TEST_MODULES, TEST_QUOTAS, TIER_OF_SENSITIVE, TIERS,
    TIERS_FROM_SETTINGS, USER_SCOPES,
};

/// The files only the demo resources use, from the project's root.
pub const DEMO_FILES: &[&str] = &[
    "crates/app/src/api/notes.rs",
    "crates/app/src/api/payments.rs",
    "crates/app/src/config/payments.rs",
    "crates/app/src/persistence/idempotency_keys.rs",
    "crates/app/src/persistence/notes.rs",
    "crates/app/src/persistence/payments.rs",
    "crates/app/tests/api/notes.rs",
    "crates/app/tests/api/payments.rs",
    // This command: a project without the demo has nothing for it to do.
    "xtask/src/remove_demo/mod.rs",
    "xtask/src/remove_demo/removals.rs",
];

/// The migration creating the payments tables (deleted unless `--keep-migrations`).
pub const PAYMENTS_MIGRATION: &str = "crates/migration/src/m20261128_000004_payments.rs";

/// The record of the option in the root manifest (`Cargo.toml`; in Rampart's template
/// `Cargo.toml.liquid`).
pub const fn record(manifest: &'static str) -> Locator {
    Locator {
        file: manifest,
        anchors: &["[workspace.metadata.rampart]"],
        item: "the record of what produced the project",
    }
}
/// The recorded option, with the demo resources and without.
pub const WITH_DEMO: &str = "demo_resources = \"true\"";
pub const WITHOUT_DEMO: &str = "demo_resources = \"false\"";

/// A Rust file from its module doc on: its runs of lines are unique in it.
const fn rust_file(file: &'static str, item: &'static str) -> Locator {
    Locator {
        file,
        anchors: &["//!"],
        item,
    }
}

/// A document or a TOML file from its first heading or comment on.
const fn text_file(file: &'static str, item: &'static str) -> Locator {
    Locator {
        file,
        anchors: &["#"],
        item,
    }
}

const CONFIG_MODULES: Locator = rust_file("crates/app/src/config/mod.rs", "the settings");
const STARTUP: Locator = rust_file("crates/app/src/startup.rs", "the hourly purge");
const RATE_LIMITS_DOC: Locator = rust_file("crates/app/src/rate_limits.rs", "the module doc");
const AUTHENTICATION_MIGRATION: Locator = rust_file(
    "crates/migration/src/m20261128_000002_authentication.rs",
    "the notes table",
);
const TEST_HELPERS: Locator = rust_file(
    "crates/app/tests/api/helpers/mod.rs",
    "the helpers' exports (only the payments tests build their own settings)",
);
const XTASK_MODULES: Locator = rust_file("xtask/src/lib.rs", "the project's tasks");
const XTASK_TASKS: Locator = rust_file("xtask/src/main.rs", "the command line");
const SCANS: Locator = rust_file("xtask/src/scans.rs", "the scanners' raised limits");
const BENCH_TIERS: Locator = Locator {
    file: "xtask/src/bench/instances.rs",
    anchors: &["pub fn raised_rate_limits()", "const TIERS"],
    item: "the bench's raised limits",
};
const SCANS_LIMITS: Locator = Locator {
    file: "xtask/src/scans.rs",
    anchors: &["pub const RAISED_RATE_LIMITS"],
    item: "the scanners' raised limits",
};

/// Every edit taking the demo resources out of the shared files (the record is changed apart,
/// see [`super::plan`]).
pub fn edits() -> Vec<(Locator, Removal)> {
    vec![
        (API_MODULES, Removal::Lines(&["pub mod notes;"])),
        (API_MODULES, Removal::Lines(&["pub mod payments;"])),
        (
            API_TAGS,
            Removal::Lines(&[
                "/// Notes, the demo resource owned by its creator.",
                "Notes,",
                "/// Payments, the demo of a payment-like write: idempotent under retries.",
                "Payments,",
            ]),
        ),
        (
            API_TUPLE,
            Removal::Lines(&["notes::NotesApi,", "payments::PaymentsApi,"]),
        ),
        (
            API_CONSTRUCTION,
            Removal::Lines(&[
                "notes::NotesApi::new(Arc::clone(auth)),",
                "payments::PaymentsApi::new(Arc::clone(auth), &settings.payments),",
            ]),
        ),
        (
            PERSISTENCE_MODULES,
            Removal::Lines(&["pub mod idempotency_keys;", "pub mod notes;"]),
        ),
        (PERSISTENCE_MODULES, Removal::Lines(&["pub mod payments;"])),
        (
            SCOPES,
            Removal::Lines(&[
                "/// Read your notes.",
                "#[oai(rename = \"notes:read\")]",
                "NotesRead,",
                "/// Create and delete your notes.",
                "#[oai(rename = \"notes:write\")]",
                "NotesWrite,",
                "/// Make payments (the demo charge).",
                "#[oai(rename = \"payments:write\")]",
                "PaymentsWrite,",
            ]),
        ),
        (
            USER_SCOPES,
            Removal::Lines(&[
                "Scope::NotesRead,",
                "Scope::NotesWrite,",
                "Scope::PaymentsWrite,",
            ]),
        ),
        (SENSITIVE_TIERS, Removal::Lines(&["Payment,"])),
        (
            SENSITIVE_OPERATIONS,
            Removal::Lines(&["(\"POST /v1/payments\", SensitiveTier::Payment),"]),
        ),
        (TIERS, Removal::Lines(&["payment: Tier,"])),
        (
            TIERS_FROM_SETTINGS,
            Removal::Lines(&[
                "payment: Tier::sensitive(\"payment\", quota(\"payment\", settings.payment)?),",
            ]),
        ),
        (
            TIER_OF_SENSITIVE,
            Removal::Lines(&["SensitiveTier::Payment => &self.payment,"]),
        ),
        (
            RATE_LIMITS_DOC,
            Removal::Replace(
                &[
                    "//! /oauth/token`, API key creation and rotation, `POST /v1/payments`, each tier per address, or",
                ],
                &["//! /oauth/token`, API key creation and rotation, each tier per address, or"],
            ),
        ),
        (
            RATE_LIMITS_DOC,
            Removal::Replace(
                &[
                    "//! management 10 an hour; payments 20 a minute. Raising them lets more guesses through per",
                ],
                &["//! management 10 an hour. Raising them lets more guesses through per"],
            ),
        ),
        (
            RATE_LIMIT_SETTINGS,
            Removal::Lines(&[
                "/// `POST /v1/payments`, per principal.",
                "pub payment: QuotaSettings,",
            ]),
        ),
        (QUOTA_COUNT, Removal::ShrinkArrayLength(1)),
        (QUOTAS, Removal::Lines(&["(\"payment\", self.payment),"])),
        (
            DEFAULT_QUOTAS,
            Removal::Lines(&["payment = { requests = 20, period_seconds = 60 }"]),
        ),
        (
            DEFAULT_QUOTAS,
            Removal::Replace(
                &[
                    "# address (per principal for API keys and payments), and for login and password reset also per",
                ],
                &[
                    "# address (per principal for API keys), and for login and password reset also per",
                ],
            ),
        ),
        (
            text_file("config/default.toml", "the payments settings"),
            Removal::Lines(&[
                "[payments]",
                "# The demo POST /v1/payments requires an Idempotency-Key header. A retry with the same key and",
                "# body within this many seconds replays the first answer instead of charging twice; the same key",
                "# with another body is refused (422). 60 to 604800 (a week).",
                "idempotency_key_ttl_seconds = 86400",
                "",
            ]),
        ),
        (
            TEST_QUOTAS,
            Removal::Lines(&["payment = { requests = 10000, period_seconds = 60 }"]),
        ),
        (CONFIG_MODULES, Removal::Lines(&["mod payments;"])),
        (
            CONFIG_MODULES,
            Removal::Lines(&["pub use payments::{IDEMPOTENCY_KEY_TTL_SECONDS, PaymentSettings};"]),
        ),
        (
            CONFIG_MODULES,
            Removal::Lines(&["pub payments: PaymentSettings,"]),
        ),
        (
            CONFIG_MODULES,
            Removal::Lines(&["self.payments.validate(&mut refusals);"]),
        ),
        (
            STARTUP,
            Removal::Replace(
                &[
                    "/// Deletes expired idempotency keys and delivered or expired outbox messages every hour;",
                    "/// stops with the app.",
                ],
                &[
                    "/// Deletes delivered or expired outbox messages every hour; stops with the app.",
                ],
            ),
        ),
        (
            STARTUP,
            Removal::Replace(
                &[
                    "/// Deletes, at start-up and every hour after, what has outlived its use: expired idempotency",
                    "/// keys, and outbox messages delivered or expired (a reset link kept in the table is one more",
                ],
                &[
                    "/// Deletes, at start-up and every hour after, what has outlived its use: outbox messages",
                    "/// delivered or expired (a reset link kept in the table is one more",
                ],
            ),
        ),
        (
            STARTUP,
            Removal::Lines(&[
                "log_purge(",
                "\"expired idempotency keys\",",
                "persistence::idempotency_keys::delete_expired(&auth.db, now).await,",
                ");",
            ]),
        ),
        (TEST_MODULES, Removal::Lines(&["mod notes;"])),
        (TEST_MODULES, Removal::Lines(&["mod payments;"])),
        (
            TEST_HELPERS,
            Removal::Replace(
                &[
                    "pub use spawn::{TestApp, published_document, spawn_app, spawn_app_with, spawn_app_with_settings};",
                ],
                &["pub use spawn::{TestApp, published_document, spawn_app, spawn_app_with};"],
            ),
        ),
        (
            XTASK_MODULES,
            Removal::Lines(&[
                "//! - [`remove_demo`]: `cargo xtask remove-demo`, the demo resources taken out (the scaffold in",
                "//!   reverse);",
            ]),
        ),
        (XTASK_MODULES, Removal::Lines(&["pub mod remove_demo;"])),
        (
            XTASK_TASKS,
            Removal::Replace(
                &[
                    "use xtask::{advisory_db, ci, pins, remove_demo, scaffold, scans, supply_chain};",
                ],
                &["use xtask::{advisory_db, ci, pins, scaffold, scans, supply_chain};"],
            ),
        ),
        (
            XTASK_TASKS,
            Removal::Lines(&[
                "/// Take the demo resources (notes, payments) out of the project: their modules, routes,",
                "/// scopes, rate-limit tier, tables, tests and documentation.",
                "RemoveDemo(remove_demo::RemoveDemoArgs),",
            ]),
        ),
        (
            XTASK_TASKS,
            Removal::Lines(&["Task::RemoveDemo(args) => remove_demo::run(&root, &args),"]),
        ),
        (BENCH_TIERS, Removal::ShrinkArrayLength(1)),
        (BENCH_TIERS, Removal::Lines(&["\"PAYMENT\","])),
        (SCANS_LIMITS, Removal::ShrinkArrayLength(1)),
        (
            SCANS,
            Removal::Lines(&["(\"APP_RATE_LIMIT__PAYMENT__REQUESTS\", \"50000\"),"]),
        ),
        (
            text_file("scans/schemathesis.toml", "the fuzzer's payments settings"),
            Removal::Lines(&[
                "[[operations]]",
                "include-path = \"/v1/payments\"",
                "# An Idempotency-Key reused with another body answers 422, as the IETF idempotency-key draft asks;",
                "# generated requests reuse keys with other bodies.",
                "checks.positive_data_acceptance.expected-statuses = [\"2xx\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\"]",
                "",
            ]),
        ),
        (
            text_file("README.md", "the list of endpoints"),
            Removal::Lines(&[
                "- `POST /v1/notes`, `GET /v1/notes/{id}`, `DELETE /v1/notes/{id}`: a resource owned by its",
                "creator.",
                "- `POST /v1/payments`: a demo charge that is safe to retry. It requires an `Idempotency-Key`",
                "header: the same key and body within `payments.idempotency_key_ttl_seconds` (24 hours) replay",
                "the first answer with `Idempotent-Replayed: true` instead of charging twice; the same key with",
                "another body is refused (422).",
            ]),
        ),
        (
            text_file("README.md", "how to take the demo out"),
            Removal::Lines(&[
                "**Take the demo out:** `cargo xtask remove-demo` deletes the demo resources (notes; payments and",
                "its idempotency keys) with their scopes, rate-limit tier, tables, tests and documentation, and",
                "itself, and records `demo_resources = \"false\"` for upgrades (`--dry-run` shows the plan). Once a",
                "database has run the demo's migrations, add `--keep-migrations`: they stay, and a new one drops",
                "the demo's tables.",
                "",
            ]),
        ),
        (
            text_file("README.md", "the sensitive operations"),
            Removal::Replace(
                &[
                    "`POST /oauth/token`, API key creation and rotation, `POST /v1/payments`) have a stricter tier of",
                ],
                &["`POST /oauth/token`, API key creation and rotation) have a stricter tier of"],
            ),
        ),
        (
            text_file("README.md", "the idempotency keys"),
            Removal::Lines(&[
                "`POST /v1/payments` (a demo charge) requires an `Idempotency-Key` header: a retry with the same",
                "key and body within `payments.idempotency_key_ttl_seconds` returns the first answer with",
                "`Idempotent-Replayed: true` instead of charging twice; the same key with another body gets 422.",
                "",
            ]),
        ),
        (
            text_file("docs/audit-events.md", "the audit event table"),
            Removal::Lines(&[
                "| `payment.created`, `payment.replayed`, `payment.idempotency_conflict` | allowed, denied | the demo payment and its idempotency key | |",
            ]),
        ),
        (
            text_file("docs/audit-events.md", "the principal refusals"),
            Removal::Replace(
                &[
                    "| `authz.principal` | denied | the caller is no local user (answered 403; `principal`: the caller) | `not_a_local_user` (an external issuer's `<issuer>#<sub>` at notes, payments or API keys), `unknown_user` (a user id with no account, at payments) |",
                ],
                &[
                    "| `authz.principal` | denied | the caller is no local user (answered 403; `principal`: the caller) | `not_a_local_user` (an external issuer's `<issuer>#<sub>` at API keys) |",
                ],
            ),
        ),
        (
            text_file("docs/deployment.md", "the shared state"),
            Removal::Replace(
                &[
                    "| users, API keys, refresh-token families (rotation, reuse detection), password-reset tokens, outbox, payments and idempotency keys, notes | PostgreSQL (`users`, `api_keys`, `refresh_tokens`, `password_reset_tokens`, `outbox_messages`, `payments`, `idempotency_keys`, `notes`) | shared; a refresh token reused on another replica still revokes its family |",
                ],
                &[
                    "| users, API keys, refresh-token families (rotation, reuse detection), password-reset tokens, outbox | PostgreSQL (`users`, `api_keys`, `refresh_tokens`, `password_reset_tokens`, `outbox_messages`) | shared; a refresh token reused on another replica still revokes its family |",
                ],
            ),
        ),
        (
            text_file("docs/deployment.md", "the hourly purge"),
            Removal::Replace(
                &[
                    "| hourly purge of expired idempotency keys and of delivered or expired outbox messages | each process | runs on every replica; the duplicates are harmless |",
                ],
                &[
                    "| hourly purge of delivered or expired outbox messages | each process | runs on every replica; the duplicates are harmless |",
                ],
            ),
        ),
        (
            text_file("docs/deployment.md", "the fail-closed tiers"),
            Removal::Replace(
                &[
                    "`password_reset_confirm`, `token`, `api_key_management`, `payment`) **fail closed**: 503 with",
                ],
                &[
                    "`password_reset_confirm`, `token`, `api_key_management`) **fail closed**: 503 with",
                ],
            ),
        ),
        (
            text_file("docs/controls.md", "RATE-3"),
            Removal::Replace(
                &[
                    "| RATE-3 | Sensitive operations (login, password reset, token, key management, payment) have their own stricter limits, keyed by IP and by target account | brute-force tests from many addresses |",
                ],
                &[
                    "| RATE-3 | Sensitive operations (login, password reset, token, key management) have their own stricter limits, keyed by IP and by target account | brute-force tests from many addresses |",
                ],
            ),
        ),
        (
            text_file("docs/controls.md", "RATE-6"),
            Removal::Replace(
                &[
                    "| RATE-6 | 429 with Retry-After and RateLimit headers; idempotency keys on payment-like writes | response tests |",
                ],
                &["| RATE-6 | 429 with Retry-After and RateLimit headers | response tests |"],
            ),
        ),
    ]
}

/// The edits that keep the demo tables out of a new database: `notes` out of the authentication
/// migration, the payments migration out of the list (left alone with `--keep-migrations`).
pub fn migration_edits() -> Vec<(Locator, Removal)> {
    vec![
        (
            MIGRATION_MODULES,
            Removal::Lines(&["mod m20261128_000004_payments;"]),
        ),
        (
            MIGRATIONS,
            Removal::Lines(&["Box::new(m20261128_000004_payments::Migration),"]),
        ),
        (
            AUTHENTICATION_MIGRATION,
            Removal::Replace(
                &[
                    "//! Credentials: users' password hashes, API keys and refresh tokens; and `notes`, the demo",
                    "//! resource owned by its creator (object-level authorization). Secrets are stored only as",
                ],
                &[
                    "//! Credentials: users' password hashes, API keys and refresh tokens. Secrets are stored only as",
                ],
            ),
        ),
        (
            AUTHENTICATION_MIGRATION,
            Removal::Lines(&[
                "#[derive(DeriveIden)]",
                "enum Notes {",
                "Table,",
                "Id,",
                "OwnerId,",
                "Title,",
                "Body,",
                "CreatedAt,",
                "}",
                "",
            ]),
        ),
        (
            AUTHENTICATION_MIGRATION,
            Removal::Lines(&[
                "",
                "manager",
                ".create_table(",
                "Table::create()",
                ".table(Notes::Table)",
                ".if_not_exists()",
                ".col(ColumnDef::new(Notes::Id).uuid().not_null().primary_key())",
                ".col(ColumnDef::new(Notes::OwnerId).uuid().not_null())",
                ".col(ColumnDef::new(Notes::Title).string_len(200).not_null())",
                ".col(ColumnDef::new(Notes::Body).string_len(10_000).not_null())",
                ".col(",
                "ColumnDef::new(Notes::CreatedAt)",
                ".timestamp_with_time_zone()",
                ".not_null(),",
                ")",
                ".foreign_key(",
                "ForeignKey::create()",
                ".from(Notes::Table, Notes::OwnerId)",
                ".to(Users::Table, Users::Id)",
                ".on_delete(ForeignKeyAction::Cascade),",
                ")",
                ".to_owned(),",
                ")",
                ".await?;",
            ]),
        ),
        (
            AUTHENTICATION_MIGRATION,
            Removal::Lines(&[
                "manager",
                ".drop_table(Table::drop().table(Notes::Table).to_owned())",
                ".await?;",
            ]),
        ),
    ]
}

/// The migration `--keep-migrations` adds, named `name`: it drops the demo's tables where the
/// earlier migrations created them.
pub fn dropping_migration(name: &str) -> (String, String) {
    (
        format!("crates/migration/src/{name}.rs"),
        DROPPING_MIGRATION.to_owned(),
    )
}

const DROPPING_MIGRATION: &str = r#"//! Drops the tables of the demo resources (notes; payments and its idempotency keys), taken out
//! of the code by `cargo xtask remove-demo --keep-migrations` after the migrations creating them
//! had run. Those migrations stay: sea-orm refuses to migrate a database whose applied
//! migration's module is missing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum DemoTables {
    IdempotencyKeys,
    Payments,
    Notes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DemoTables::IdempotencyKeys,
            DemoTables::Payments,
            DemoTables::Notes,
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The demo's rows are gone; its tables are not brought back.
        Ok(())
    }
}
"#;
