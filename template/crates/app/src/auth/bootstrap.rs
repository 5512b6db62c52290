//! The first administrator. Production never has a default account or password.
//!
//! - Development and test: on a first run with no users, an administrator `admin@example.com`
//!   with a random password and a demo API key (user scopes only) are created, and written to
//!   `auth.key_dir/bootstrap.json`, readable by the owner only (`cargo xtask demo` copies them
//!   into `target/demo/demo.json`).
//! - Production: `app bootstrap-admin <email>` creates the administrator explicitly and prints
//!   its one-time password once; nothing is created at start-up.

use std::path::PathBuf;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, DbErr, EntityTrait, PaginatorTrait, Set};
use security::auth::secrets::OpaqueToken;
use serde::Serialize;
use uuid::Uuid;

use super::scopes::scopes_of_role;
use super::{AuthContext, api_keys, write_owner_only};
use crate::persistence::users::{self, Role};

/// The development administrator's address.
pub const DEV_ADMIN_EMAIL: &str = "admin@example.com";

/// The file the development credentials are written to.
pub const BOOTSTRAP_FILE: &str = "bootstrap.json";

/// Why bootstrapping failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("API key: {0}")]
    ApiKey(#[from] api_keys::IssueError),
    #[error("password hashing: {0}")]
    Password(#[from] security::auth::password::PasswordError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an account with this email already exists")]
    Exists,
}

/// The development credentials.
#[derive(Debug, Serialize)]
pub struct DevCredentials {
    pub admin: AdminCredentials,
    pub api_key: String,
}

#[derive(Debug, Serialize)]
pub struct AdminCredentials {
    pub email: String,
    pub password: String,
}

/// Creates an administrator with a random password, returned once.
pub async fn create_admin(
    auth: &AuthContext,
    email: &str,
    name: &str,
) -> Result<(users::Model, String), BootstrapError> {
    let email = email.to_lowercase();
    let password = OpaqueToken::generate().expose().to_owned();
    let hash = auth.passwords.hash(&password).await?;
    let admin = users::ActiveModel {
        id: Set(Uuid::new_v4()),
        email: Set(email),
        name: Set(name.to_owned()),
        role: Set(Role::Admin),
        created_at: Set(Utc::now()),
        password_hash: Set(Some(hash)),
    }
    .insert(&auth.db)
    .await
    .map_err(|error| match error.sql_err() {
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => BootstrapError::Exists,
        _ => BootstrapError::Database(error),
    })?;
    Ok((admin, password))
}

/// Development and test: the first run's administrator and demo key, written to
/// `key_dir/bootstrap.json`. Does nothing once any user exists.
pub async fn ensure_dev_admin(auth: &AuthContext) -> Result<(), BootstrapError> {
    if users::Entity::find().count(&auth.db).await? > 0 {
        return Ok(());
    }
    let (admin, password) = create_admin(auth, DEV_ADMIN_EMAIL, "Admin").await?;
    let user_scopes: Vec<String> = scopes_of_role(Role::User)
        .into_iter()
        .map(str::to_owned)
        .collect();
    // Made by the operator's first run, not by a session or a key: no provenance.
    let key = api_keys::issue(
        auth,
        &auth.db,
        admin.id,
        "demo",
        &user_scopes,
        None,
        api_keys::Provenance::default(),
    )
    .await?;
    let credentials = DevCredentials {
        admin: AdminCredentials {
            email: admin.email,
            password,
        },
        api_key: key.secret.expose().to_owned(),
    };
    let path = auth.settings.key_dir.join(BOOTSTRAP_FILE);
    let json = serde_json::to_vec_pretty(&credentials).unwrap_or_default();
    // A leftover file from an earlier database is replaced.
    let _ = std::fs::remove_file(&path);
    write_owner_only(&path, &json).map_err(|source| BootstrapError::Write { path, source })?;
    tracing::info!(
        file = %auth.settings.key_dir.join(BOOTSTRAP_FILE).display(),
        "development administrator and demo API key created"
    );
    Ok(())
}
