//! Schema migrations, in order. Each migration is written once with sea-query's schema builder
//! and runs unchanged on SQLite and PostgreSQL.
//!
//! The service applies pending migrations at start-up ([`Migrator::up`]); applied ones are
//! recorded in `seaql_migrations`, so running them again is a no-op.

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::{MigrationTrait, async_trait};

mod m20260101_000001_create_users;
mod m20261128_000002_authentication;
mod m20261128_000003_password_reset;
mod m20261128_000004_payments;
mod m20261128_000005_signing_keys;
mod m20261204_000006_api_key_provenance;
mod m20261204_000007_sealed_outbox;

/// The ordered list of every migration of the service.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20260101_000001_create_users::Migration),
            Box::new(m20261128_000002_authentication::Migration),
            Box::new(m20261128_000003_password_reset::Migration),
            Box::new(m20261128_000004_payments::Migration),
            Box::new(m20261128_000005_signing_keys::Migration),
            Box::new(m20261204_000006_api_key_provenance::Migration),
            Box::new(m20261204_000007_sealed_outbox::Migration),
        ]
    }
}
