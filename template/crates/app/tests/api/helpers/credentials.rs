//! The bootstrap administrator a development start-up creates, and the credentials a test gets
//! from the service: a login's tokens, an access token straight from the issuer, a reset token
//! from the outbox.

use super::clients::json_body;

/// What the development bootstrap wrote to `keys/bootstrap.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BootstrapCredentials {
    pub admin: AdminLogin,
    pub api_key: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AdminLogin {
    pub email: String,
    pub password: String,
}

/// Logs in and returns the token response.
pub async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> serde_json::Value {
    let response = client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "login of {email}");
    json_body(response).await
}

/// An access token for the account `email`, with every scope its role allows.
pub async fn admin_access_token(auth: &app::auth::AuthContext, email: &str) -> String {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let admin = app::persistence::users::Entity::find()
        .filter(app::persistence::users::Column::Email.eq(email))
        .one(&auth.db)
        .await
        .expect("query")
        .expect("the bootstrap administrator exists");
    let scopes = app::auth::scopes::scopes_of_role(admin.role)
        .into_iter()
        .map(str::to_owned)
        .collect();
    app::auth::tokens::issue_access(auth, &admin.id.to_string(), scopes, None, None)
        .expect("signed")
        .token
}

/// The reset token in the link an outbox message carries, its body opened with `key` as the
/// relay would.
pub fn reset_token_in(
    key: &app::mail::OutboxKey,
    message: &app::persistence::outbox::Model,
) -> Option<String> {
    use secrecy::ExposeSecret;
    let body = key.open(message).expect("the outbox key opens the body");
    let (_, token) = body.expose_secret().split_once("#token=")?;
    Some(token.split_whitespace().next()?.to_owned())
}
