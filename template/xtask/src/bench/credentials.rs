//! What a client of the measured service holds: the development administrator's access token
//! and login, a wrong login, and an API key's `client_credentials` request, obtained as clients
//! obtain them.

use std::path::Path;

use anyhow::Result;
use serde_json::json;

use super::instances::{Process, client};
use crate::service::{AdminSession, runtime};

/// What a client holds: the administrator's access token, its login body, and an API key's
/// `client_credentials` body.
pub struct Credentials {
    pub access_token: String,
    pub login_body: String,
    pub wrong_login_body: String,
    pub token_body: String,
}

impl Credentials {
    /// Logs the administrator in on `service` (whose data is in `data`) and creates an API key.
    pub fn obtain(service: &Process, data: &Path) -> Result<Self> {
        let client = client(data)?;
        let admin = runtime()?.block_on(AdminSession::open(
            &client,
            &service.base_url,
            &data.join("keys"),
            "bench",
        ))?;
        let login_body = json!({"email": admin.email, "password": admin.password});
        // The right one with a character more: wrong, and as long to hash.
        let wrong_password = format!("{}x", admin.password);
        let wrong_login_body = json!({"email": admin.email, "password": wrong_password});
        Ok(Self {
            token_body: admin.client_credentials_form()?,
            login_body: login_body.to_string(),
            wrong_login_body: wrong_login_body.to_string(),
            access_token: admin.access_token,
        })
    }
}
