//! What the integration tests share, one subject per module: booting the service in-process
//! (`spawn`), its test configuration (`config`), clients and TLS (`clients`), the login and
//! tokens of its bootstrap administrator (`credentials`), the real binary (`binary`), PostgreSQL
//! databases of a test's own (`database`) and the audit events services record (`audit`). Test
//! files import from here: `use crate::helpers::{spawn_app, json_body}`.

mod audit;
mod binary;
mod clients;
mod config;
mod credentials;
mod database;
mod spawn;

pub use audit::{audit_events_for, audit_events_named};
pub use binary::RunningBinary;
pub use clients::{
    TLS_1_2, TLS_1_3, client_from, client_trusting, client_with_token, header, json_body,
    tls_client_config,
};
pub use config::{settings, test_config};
pub use credentials::{BootstrapCredentials, admin_access_token, login, reset_token_in};
pub use database::{CuttableProxy, TestDatabase, postgres_admin_url};
pub use spawn::{TestApp, published_document, spawn_app, spawn_app_with, spawn_app_with_settings};
