//! Login, refresh-token rotation, API keys and authorization beyond scopes, over HTTPS
//! (AUTH-2, AUTH-3, AUTH-6, LOG-1, LOG-2).

use serde_json::{Value, json};

use crate::helpers::{
    TestApp, audit_events_for, client_with_token, json_body, login, reset_token_in, spawn_app,
};

/// A password the policy accepts.
pub(crate) const PASSWORD: &str = "plover-quartz-lantern-9";

/// `POST /oauth/token` with `form`.
pub(crate) async fn token_request(app: &TestApp, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .send()
        .await
        .expect("request")
}

pub(crate) async fn refresh(app: &TestApp, refresh_token: &str) -> reqwest::Response {
    token_request(
        app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

pub(crate) fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned()
}

/// Creates a user with the `user` role and logs them in; returns (id, tokens).
pub(crate) async fn user(app: &TestApp, email: &str) -> (String, Value) {
    let response = app
        .admin
        .post(app.url("/v1/users"))
        .json(&json!({"email": email, "name": "Test User", "role": "user", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let id = json_body(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    (id, login(&app.client, &app.address, email, PASSWORD).await)
}

pub(crate) fn bearer_client(app: &TestApp, tokens: &Value) -> reqwest::Client {
    client_with_token(
        app.ca_cert.as_deref(),
        tokens["access_token"].as_str().expect("access token"),
    )
}

#[tokio::test]
async fn a_login_returns_a_short_lived_token_and_a_refresh_token_never_cached() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": app.credentials.admin.email, "password": app.credentials.admin.password}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store, max-age=0");
    let id = request_id(&response);
    let tokens = json_body(response).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert_eq!(tokens["refresh_token"].as_str().map(str::len), Some(43));
    let events = audit_events_for(&id);
    let login_event = events
        .iter()
        .find(|event| event["event"] == "authn.password")
        .expect("an authentication event");
    assert_eq!(login_event["outcome"], "allowed");
    assert!(events.iter().any(|event| event["event"] == "token.issued"));
    for event in &events {
        assert!(!format!("{event:?}").contains(&app.credentials.admin.password));
    }
    // The demo API key written beside the administrator works too.
    assert_eq!(
        with_key(&app, &app.credentials.api_key, "/v1/me")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer_after_the_same_hash_work() {
    let app = spawn_app().await;
    let attempt = |email: String| {
        let client = app.client.clone();
        let url = app.url("/v1/auth/login");
        async move {
            client
                .post(url)
                .json(&json!({"email": email, "password": "not-the-password-at-all"}))
                .send()
                .await
                .expect("request")
        }
    };
    let before = app.auth.passwords.hashes_computed();
    let unknown = attempt("nobody@example.com".to_owned()).await;
    assert_eq!(
        app.auth.passwords.hashes_computed(),
        before + 1,
        "the unknown address ran one password hash"
    );
    let wrong = attempt(app.credentials.admin.email.clone()).await;
    assert_eq!(app.auth.passwords.hashes_computed(), before + 2);
    assert_eq!(unknown.status(), 401);
    assert_eq!(wrong.status(), 401);
    let (unknown_id, wrong_id) = (request_id(&unknown), request_id(&wrong));
    let unknown_body = json_body(unknown).await;
    let wrong_body = json_body(wrong).await;
    assert_eq!(unknown_body["error"], wrong_body["error"]);
    let reason = |id: &str| {
        audit_events_for(id)
            .into_iter()
            .find(|event| event["event"] == "authn.password")
            .map(|event| event["reason"].clone())
    };
    assert_eq!(reason(&unknown_id).as_deref(), Some("unknown_email"));
    assert_eq!(reason(&wrong_id).as_deref(), Some("wrong_password"));
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_reuse_revokes_the_whole_family() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "rotation@example.com").await;
    let first = tokens["refresh_token"].as_str().expect("refresh token");

    let rotated = refresh(&app, first).await;
    assert_eq!(rotated.status(), 200);
    assert_eq!(rotated.headers()["cache-control"], "no-store, max-age=0");
    let rotated = json_body(rotated).await;
    let second = rotated["refresh_token"].as_str().expect("a successor");
    assert_ne!(second, first);
    assert!(rotated["access_token"].is_string());

    // The first token again: someone copied it. The family, successor included, is revoked.
    let reuse = refresh(&app, first).await;
    assert_eq!(reuse.status(), 400);
    let reuse_id = request_id(&reuse);
    assert_eq!(json_body(reuse).await["error"], "invalid_grant");
    let event = audit_events_for(&reuse_id)
        .into_iter()
        .find(|event| event["event"] == "token.refresh_reuse")
        .expect("a reuse event");
    assert_eq!(event["reason"], "reused");
    let successor = refresh(&app, second).await;
    assert_eq!(
        successor.status(),
        400,
        "the successor died with its family"
    );
}

#[tokio::test]
async fn of_two_concurrent_refreshes_of_one_token_exactly_one_succeeds() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "race@example.com").await;
    let token = tokens["refresh_token"].as_str().expect("refresh token");
    let (a, b) = tokio::join!(refresh(&app, token), refresh(&app, token));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400]);
}

#[tokio::test]
async fn logout_revokes_the_family() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "logout@example.com").await;
    let token = tokens["refresh_token"].as_str().expect("refresh token");
    let response = app
        .client
        .post(app.url("/v1/auth/logout"))
        .json(&json!({"refresh_token": token}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 204);
    assert_eq!(refresh(&app, token).await.status(), 400);
}

#[tokio::test]
async fn a_refresh_token_expires_when_idle() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "idle@example.com").await;
    app.clock.advance(86_400);
    let response = refresh(&app, tokens["refresh_token"].as_str().expect("token")).await;
    assert_eq!(response.status(), 400);
}

/// Creates an API key for the client's principal.
pub(crate) async fn create_key(
    app: &TestApp,
    client: &reqwest::Client,
    scopes: &[&str],
) -> reqwest::Response {
    client
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "ci", "scopes": scopes}))
        .send()
        .await
        .expect("request")
}

pub(crate) async fn with_key(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn an_api_key_is_shown_once_recognisable_and_limited_to_its_scopes() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "keys@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let response = create_key(&app, &owner, &["profile"]).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store, max-age=0");
    let created = json_body(response).await;
    let secret = created["secret"].as_str().expect("the secret, once");
    assert!(secret.starts_with("rmp_") && secret.len() == 53, "{secret}");

    assert_eq!(with_key(&app, secret, "/v1/me").await.status(), 200);
    let beyond = with_key(&app, secret, "/v1/api-keys").await;
    assert_eq!(
        beyond.status(),
        403,
        "api_keys:read was not granted to the key"
    );

    let listed = json_body(
        owner
            .get(app.url("/v1/api-keys"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    let listed = listed.to_string();
    assert!(listed.contains(created["id"].as_str().expect("id")));
    assert!(!listed.contains(secret), "the secret is never shown again");

    let escalation = create_key(&app, &owner, &["users:write"]).await;
    assert_eq!(
        escalation.status(),
        403,
        "a key cannot hold more than its creator"
    );
    let last = if secret.ends_with('A') { 'Q' } else { 'A' };
    let tampered = format!("{}{last}", &secret[..secret.len() - 1]);
    assert_eq!(with_key(&app, &tampered, "/v1/me").await.status(), 401);
}

#[tokio::test]
async fn a_rotated_key_works_until_the_overlap_ends_and_not_a_second_longer() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "rotate@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let created = json_body(create_key(&app, &owner, &["profile"]).await).await;
    let (id, old) = (
        created["id"].as_str().expect("id"),
        created["secret"].as_str().expect("secret"),
    );
    let rotated = owner
        .post(app.url(&format!("/v1/api-keys/{id}/rotate")))
        .send()
        .await
        .expect("request");
    assert_eq!(rotated.status(), 201);
    let new = json_body(rotated).await["secret"]
        .as_str()
        .expect("successor")
        .to_owned();

    // The overlap is 86400 s (default). One second before its end both keys work...
    app.clock.advance(86_399);
    assert_eq!(with_key(&app, old, "/v1/me").await.status(), 200);
    assert_eq!(with_key(&app, &new, "/v1/me").await.status(), 200);
    // ...at its end the old key is refused, and the audit says why.
    app.clock.advance(1);
    let refused = with_key(&app, old, "/v1/me").await;
    assert_eq!(refused.status(), 401);
    let event = audit_events_for(&request_id(&refused))
        .into_iter()
        .find(|event| event["event"] == "authn.api_key")
        .expect("an authentication event");
    assert_eq!(event["reason"], "rotated_out");
    assert_eq!(with_key(&app, &new, "/v1/me").await.status(), 200);
}

#[tokio::test]
async fn revoked_and_expired_keys_are_refused() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "revoke@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let revoked = json_body(create_key(&app, &owner, &["profile"]).await).await;
    let response = owner
        .delete(app.url(&format!(
            "/v1/api-keys/{}",
            revoked["id"].as_str().expect("id")
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 204);
    let secret = revoked["secret"].as_str().expect("secret");
    assert_eq!(with_key(&app, secret, "/v1/me").await.status(), 401);

    let expires_at =
        chrono::DateTime::from_timestamp(i64::try_from(app.clock.now() + 3600).expect("time"), 0)
            .expect("time");
    let expiring = owner
        .post(app.url("/v1/api-keys"))
        .json(
            &json!({"name": "short", "scopes": ["profile"], "expires_at": expires_at.to_rfc3339()}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(expiring.status(), 201);
    let secret = json_body(expiring).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    app.clock.advance(3599);
    assert_eq!(with_key(&app, &secret, "/v1/me").await.status(), 200);
    app.clock.advance(1);
    assert_eq!(with_key(&app, &secret, "/v1/me").await.status(), 401);
}

#[tokio::test]
async fn client_credentials_narrows_the_requested_scopes_to_the_keys() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "client@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let created = json_body(create_key(&app, &owner, &["profile", "api_keys:read"]).await).await;
    let (id, secret) = (
        created["id"].as_str().expect("id"),
        created["secret"].as_str().expect("secret"),
    );

    // client_secret_post
    let response = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "api_keys:read users:write"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let granted = json_body(response).await;
    assert_eq!(
        granted["scope"], "api_keys:read",
        "narrowed to the key's scopes"
    );
    assert!(granted.get("refresh_token").is_none());

    // client_secret_basic
    let basic = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 200);
    let token = json_body(basic).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let me = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200, "the key's token acts for its owner");

    let nothing_granted = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "users:write"),
        ],
    )
    .await;
    assert_eq!(nothing_granted.status(), 400);
    assert_eq!(json_body(nothing_granted).await["error"], "invalid_scope");

    let wrong_id = token_request(
        &app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "00000000-0000-0000-0000-000000000000"),
            ("client_secret", secret),
        ],
    )
    .await;
    assert_eq!(wrong_id.status(), 401);
    assert_eq!(json_body(wrong_id).await["error"], "invalid_client");
}

#[tokio::test]
async fn user_management_and_other_principals_keys_are_admin_only() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "plain@example.com").await;
    let plain = bearer_client(&app, &tokens);
    let create = plain
        .post(app.url("/v1/users"))
        .json(
            &json!({"email": "x@example.com", "name": "X", "role": "admin", "password": PASSWORD}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(create.status(), 403);
    assert!(
        create.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .contains("users:write")
    );
    assert_eq!(
        plain
            .get(app.url("/v1/users"))
            .send()
            .await
            .expect("request")
            .status(),
        403
    );

    let admin_keys = json_body(
        app.admin
            .get(app.url("/v1/api-keys"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    let admin_key = admin_keys[0]["id"].as_str().expect("the demo key");
    let admin_id = admin_keys[0]["owner_id"].as_str().expect("owner");
    let listing = plain
        .get(app.url(&format!("/v1/api-keys?owner={admin_id}")))
        .send()
        .await
        .expect("request");
    assert_eq!(listing.status(), 403);
    let revoke = plain
        .delete(app.url(&format!("/v1/api-keys/{admin_key}")))
        .send()
        .await
        .expect("request");
    assert_eq!(
        revoke.status(),
        404,
        "another principal's key is not disclosed"
    );
    // The admin may.
    let audited = app
        .admin
        .get(app.url(&format!("/v1/api-keys?owner={admin_id}")))
        .send()
        .await
        .expect("request");
    assert_eq!(audited.status(), 200);
}

#[tokio::test]
async fn a_user_cannot_assign_their_own_role() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "climber@example.com").await;
    let client = bearer_client(&app, &tokens);
    let response = client
        .patch(app.url("/v1/me"))
        .json(&json!({"name": "Climber", "role": "admin"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    assert!(body["details"]["fieldErrors"]["role"].is_array(), "{body}");
    let me = json_body(client.get(app.url("/v1/me")).send().await.expect("request")).await;
    assert_eq!(me["role"], "user");
    assert_eq!(
        me["name"], "Test User",
        "nothing of the refused request was written"
    );

    let renamed = client
        .patch(app.url("/v1/me"))
        .json(&json!({"name": "Climber"}))
        .send()
        .await
        .expect("request");
    assert_eq!(renamed.status(), 200);
}

#[tokio::test]
async fn a_weak_password_is_refused_per_field_without_echo() {
    let app = spawn_app().await;
    let response = app
        .admin
        .post(app.url("/v1/users"))
        .json(&json!({"email": "weak@example.com", "name": "Weak", "role": "user", "password": "Qwerty123456"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body = json_body(response).await;
    let problems = body["details"]["fieldErrors"]["password"].to_string();
    assert!(problems.contains("too common"), "{body}");
    assert!(!body.to_string().contains("Qwerty123456"));
}

#[tokio::test]
async fn the_issuer_publishes_its_keys_and_metadata() {
    let app = spawn_app().await;
    let jwks = json_body(
        app.client
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], app.auth.keys.current().active().kid());
    assert_eq!(keys[0]["kty"], "OKP");
    assert!(keys[0].get("d").is_none(), "no private part");
    let metadata = json_body(
        app.client
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(metadata["issuer"], "https://localhost");
    assert_eq!(metadata["token_endpoint"], "https://localhost/oauth/token");
    assert_eq!(
        metadata["jwks_uri"],
        "https://localhost/.well-known/jwks.json"
    );
}

#[tokio::test]
async fn the_token_endpoint_answers_oauth_errors() {
    let app = spawn_app().await;
    let unsupported = token_request(&app, &[("grant_type", "password")]).await;
    assert_eq!(unsupported.status(), 400);
    assert_eq!(
        json_body(unsupported).await["error"],
        "unsupported_grant_type"
    );
    let repeated = app
        .client
        .post(app.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&grant_type=client_credentials")
        .send()
        .await
        .expect("request");
    assert_eq!(repeated.status(), 400);
    assert_eq!(json_body(repeated).await["error"], "invalid_request");
    let json = app
        .client
        .post(app.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .expect("request");
    assert_eq!(json.status(), 415);
}

/// The reset links' tokens mailed to `email`, oldest first.
async fn mailed_reset_tokens(app: &TestApp, email: &str) -> Vec<String> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    app::persistence::outbox::Entity::find()
        .filter(app::persistence::outbox::Column::Recipient.eq(email))
        .order_by_asc(app::persistence::outbox::Column::CreatedAt)
        .all(&app.auth.db)
        .await
        .expect("query")
        .iter()
        .filter_map(|message| reset_token_in(&app.auth.outbox_key, message))
        .collect()
}

/// The outbox messages to `email`, as stored.
async fn outbox_messages_to(app: &TestApp, email: &str) -> Vec<app::persistence::outbox::Model> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    app::persistence::outbox::Entity::find()
        .filter(app::persistence::outbox::Column::Recipient.eq(email))
        .all(&app.auth.db)
        .await
        .expect("query")
}

/// AUTH-1: whoever reads the outbox table (or a backup) finds no reset link; the relay, holding
/// `auth.outbox_encryption_key`, opens it.
#[tokio::test]
async fn a_reset_link_is_stored_sealed_in_the_outbox() {
    let app = spawn_app().await;
    let (_, _) = user(&app, "sealed@example.com").await;
    request_reset(&app, "sealed@example.com").await;
    let token = wait_for_reset_token(&app, "sealed@example.com", 1).await;
    let messages = outbox_messages_to(&app, "sealed@example.com").await;
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    let stored = format!("{message:?}");
    for secret in [token.as_str(), "#token=", "reset-password"] {
        assert!(!stored.contains(secret), "{secret} in {stored}");
        assert!(
            !message
                .sealed_body
                .windows(secret.len())
                .any(|window| window == secret.as_bytes()),
            "{secret} in the stored body"
        );
    }
    assert_eq!(
        message.expires_at - message.created_at,
        chrono::Duration::minutes(15),
        "worth sending as long as the link works"
    );
    assert!(message.sent_at.is_none());
}

/// AUTH-1: delivered messages and messages whose link has expired are purged; fresh ones wait
/// for the relay.
#[tokio::test]
async fn delivered_and_expired_outbox_messages_are_purged_and_fresh_ones_kept() {
    use app::persistence::outbox;
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    let app = spawn_app().await;
    for email in ["delivered@example.com", "waiting@example.com"] {
        let (_, _) = user(&app, email).await;
        request_reset(&app, email).await;
        wait_for_reset_token(&app, email, 1).await;
    }
    // The relay delivered one.
    let mut delivered = outbox_messages_to(&app, "delivered@example.com")
        .await
        .remove(0)
        .into_active_model();
    delivered.sent_at = Set(Some(app.auth.now()));
    delivered.update(&app.auth.db).await.expect("update");

    let purged = outbox::delete_delivered_and_expired(&app.auth.db, app.auth.now())
        .await
        .expect("purge");
    assert_eq!(purged, 1, "the delivered message");
    assert!(
        outbox_messages_to(&app, "delivered@example.com")
            .await
            .is_empty()
    );
    assert_eq!(
        outbox_messages_to(&app, "waiting@example.com").await.len(),
        1,
        "an undelivered message whose link still works is kept"
    );

    app.clock.advance(15 * 60 - 1);
    let purged = outbox::delete_delivered_and_expired(&app.auth.db, app.auth.now())
        .await
        .expect("purge");
    assert_eq!(purged, 0, "a second before the link expires");
    app.clock.advance(1);
    let purged = outbox::delete_delivered_and_expired(&app.auth.db, app.auth.now())
        .await
        .expect("purge");
    assert_eq!(purged, 1, "the link has expired");
    assert!(
        outbox_messages_to(&app, "waiting@example.com")
            .await
            .is_empty()
    );
}

/// The `count`-th reset token mailed to `email`, once the background task has written it.
pub(crate) async fn wait_for_reset_token(app: &TestApp, email: &str, count: usize) -> String {
    for _ in 0..100 {
        let tokens = mailed_reset_tokens(app, email).await;
        if tokens.len() >= count {
            return tokens[count - 1].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no reset message {count} for {email}");
}

pub(crate) async fn request_reset(app: &TestApp, email: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/password-reset"))
        .json(&json!({"email": email}))
        .send()
        .await
        .expect("request")
}

pub(crate) async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/auth/password-reset/confirm"))
        .json(&json!({"token": token, "new_password": password}))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn a_reset_request_answers_the_same_whether_or_not_the_account_exists() {
    let app = spawn_app().await;
    let (_, _) = user(&app, "reset@example.com").await;
    let known = request_reset(&app, "reset@example.com").await;
    let unknown = request_reset(&app, "nobody@example.com").await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    let known_id = request_id(&known);
    assert_eq!(json_body(known).await, json_body(unknown).await);
    let token = wait_for_reset_token(&app, "reset@example.com", 1).await;
    assert_eq!(token.len(), 43);
    assert!(
        mailed_reset_tokens(&app, "nobody@example.com")
            .await
            .is_empty()
    );
    for event in audit_events_for(&known_id) {
        assert!(
            !format!("{event:?}").contains(&token),
            "the token is logged"
        );
    }
}

#[tokio::test]
async fn a_reset_token_works_once_revokes_every_session_and_expires_in_15_minutes() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "once@example.com").await;
    request_reset(&app, "once@example.com").await;
    let token = wait_for_reset_token(&app, "once@example.com", 1).await;

    let weak = confirm_reset(&app, &token, "short").await;
    assert_eq!(weak.status(), 400, "the policy applies to the new password");
    let own_address = confirm_reset(&app, &token, "once@example.com-2026").await;
    assert_eq!(own_address.status(), 400, "not the account's address");
    let new_password = "saffron-glacier-pivot-4";
    assert_eq!(
        confirm_reset(&app, &token, new_password).await.status(),
        204
    );
    let again = confirm_reset(&app, &token, "another-fine-passphrase-5").await;
    assert_eq!(again.status(), 400, "single use");
    assert!(json_body(again).await["details"]["fieldErrors"]["token"].is_array());

    login(&app.client, &app.address, "once@example.com", new_password).await;
    let old_session = refresh(&app, tokens["refresh_token"].as_str().expect("token")).await;
    assert_eq!(
        old_session.status(),
        400,
        "sessions before the reset are revoked"
    );

    request_reset(&app, "once@example.com").await;
    let late = wait_for_reset_token(&app, "once@example.com", 2).await;
    app.clock.advance(15 * 60);
    assert_eq!(
        confirm_reset(&app, &late, "late-but-strong-passphrase-6")
            .await
            .status(),
        400,
        "expired after 15 minutes"
    );
}

/// The `Set-Cookie` value of a response.
fn set_cookie(response: &reqwest::Response) -> String {
    response.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// `name=value` of a `Set-Cookie` value.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().expect("pair").to_owned()
}

/// The attributes of a `Set-Cookie` value, after its `name=value`.
fn cookie_attributes(set_cookie: &str) -> Vec<&str> {
    set_cookie.split(';').skip(1).map(str::trim).collect()
}

/// A cookie-based refresh from the service's own origin, with `cookies` as `Cookie` headers.
async fn refresh_with_cookies(app: &TestApp, path: &str, cookies: &[&str]) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://localhost");
    for cookie in cookies {
        request = request.header("cookie", *cookie);
    }
    let body = if path == "/oauth/token" {
        "grant_type=refresh_token"
    } else {
        ""
    };
    request.body(body).send().await.expect("request")
}

/// AUTH-3: a `__Host-` cookie cannot be set by a sibling subdomain (cookie tossing), and a
/// request carrying the refresh cookie twice, which means one was planted, is refused.
#[tokio::test]
async fn the_refresh_cookie_is_host_only_and_a_request_carrying_two_is_refused() {
    let app = spawn_app().await;
    let (_, _) = user(&app, "host-cookie@example.com").await;
    let (_, _) = user(&app, "attacker@example.com").await;
    let cookie_login = |email: &'static str| {
        app.client
            .post(app.url("/v1/auth/login"))
            .json(&json!({"email": email, "password": PASSWORD, "refresh_cookie": true}))
            .send()
    };
    let response = cookie_login("host-cookie@example.com")
        .await
        .expect("request");
    let cookie = set_cookie(&response);
    let victim = cookie_pair(&cookie);
    assert!(victim.starts_with("__Host-refresh_token="), "{cookie}");
    let attributes = cookie_attributes(&cookie);
    for required in ["Secure", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(attributes.contains(&required), "{required} in {cookie}");
    }
    assert!(
        !attributes
            .iter()
            .any(|attribute| attribute.to_ascii_lowercase().starts_with("domain")),
        "no Domain: {cookie}"
    );
    // The attacker's own valid token, as a sibling subdomain would plant it.
    let planted = cookie_pair(&set_cookie(
        &cookie_login("attacker@example.com").await.expect("request"),
    ));

    for (path, cookies) in [
        ("/oauth/token", vec![format!("{planted}; {victim}")]),
        ("/oauth/token", vec![victim.clone(), planted.clone()]),
        ("/oauth/revoke", vec![format!("{victim}; {planted}")]),
    ] {
        let cookies: Vec<&str> = cookies.iter().map(String::as_str).collect();
        let refused = refresh_with_cookies(&app, path, &cookies).await;
        assert_eq!(refused.status(), 400, "{path} with {cookies:?}");
        assert!(refused.headers().get("set-cookie").is_none());
        let id = request_id(&refused);
        let body = json_body(refused).await;
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(
            audit_events_for(&id).iter().any(|event| {
                event.get("event").map(String::as_str) == Some("input.validation")
                    && event.get("reason").map(String::as_str) == Some("duplicate_refresh_cookie")
            }),
            "audited: {path}"
        );
    }

    // Nothing was rotated or revoked: the user's token still works, once.
    let refreshed = refresh_with_cookies(&app, "/oauth/token", &[&victim]).await;
    assert_eq!(refreshed.status(), 200);
    let rotated = cookie_pair(&set_cookie(&refreshed));

    // A cookie of the old `__Secure-` name is never read, whatever it holds.
    let token = rotated.split_once('=').expect("pair").1;
    let legacy = format!("__Secure-refresh_token={token}");
    let ignored = refresh_with_cookies(&app, "/oauth/token", &[&legacy]).await;
    assert_eq!(ignored.status(), 400);
    assert_eq!(json_body(ignored).await["error"], "invalid_request");
    assert_eq!(
        refresh_with_cookies(&app, "/oauth/token", &[&rotated])
            .await
            .status(),
        200,
        "the token was not spent through the old name"
    );
}

#[tokio::test]
async fn a_browser_keeps_its_refresh_token_in_an_http_only_cookie_usable_from_allowed_origins_only()
{
    let app = spawn_app().await;
    let (_, _) = user(&app, "browser@example.com").await;
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(
            &json!({"email": "browser@example.com", "password": PASSWORD, "refresh_cookie": true}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let cookie = set_cookie(&response);
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(
            cookie_attributes(&cookie).contains(&attribute),
            "{attribute} in {cookie}"
        );
    }
    assert!(cookie.starts_with("__Host-refresh_token="));
    let body = json_body(response).await;
    assert!(
        body.get("refresh_token").is_none(),
        "not readable by scripts: {body}"
    );

    let with_cookie = |cookie: String, origin: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", cookie)
            .body("grant_type=refresh_token");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let pair = cookie_pair(&cookie);
    let no_origin = with_cookie(pair.clone(), None).await.expect("request");
    assert_eq!(no_origin.status(), 403);
    let foreign = with_cookie(pair.clone(), Some("https://evil.example"))
        .await
        .expect("request");
    assert_eq!(foreign.status(), 403);

    let refreshed = with_cookie(pair, Some("https://localhost"))
        .await
        .expect("request");
    assert_eq!(refreshed.status(), 200);
    let rotated = set_cookie(&refreshed);
    assert_ne!(
        cookie_pair(&rotated),
        cookie_pair(&cookie),
        "the cookie rotates"
    );
    let body = json_body(refreshed).await;
    assert!(body["access_token"].is_string());
    assert!(body.get("refresh_token").is_none());

    let revoked = app
        .client
        .post(app.url("/oauth/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie_pair(&rotated))
        .header("origin", "https://localhost")
        .body("")
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 200);
    assert!(
        set_cookie(&revoked).contains("Max-Age=0"),
        "the cookie is cleared"
    );
    let after = with_cookie(cookie_pair(&rotated), Some("https://localhost"))
        .await
        .expect("request");
    assert_eq!(after.status(), 400, "the family is revoked");
}

/// A 15-minute token for the profile scope, signed by `key` at the app's current time.
fn signed_now(app: &TestApp, key: &security::auth::jwt::SigningKey) -> String {
    signed_at(app.clock.now(), key)
}

/// A 15-minute token for the profile scope, signed by `key` at `issued_at`.
fn signed_at(issued_at: u64, key: &security::auth::jwt::SigningKey) -> String {
    let grant = security::auth::jwt::AccessGrant {
        issuer: "https://localhost".to_owned(),
        subject: "00000000-0000-0000-0000-000000000001".to_owned(),
        audience: "https://localhost".to_owned(),
        scopes: vec!["profile".to_owned()],
        client_id: None,
        session_id: None,
        issued_at,
        lifetime: std::time::Duration::from_secs(900),
    };
    security::auth::jwt::issue_access_token(key, &grant).expect("signed")
}

#[tokio::test]
async fn a_retired_signing_key_stays_in_the_jwks_until_its_last_token_expired() {
    use security::auth::issuer_keys;
    let keys = tempfile::tempdir().expect("dir");
    // Two keys, created as the development key would be: the retired one and the new one.
    let old = issuer_keys::ensure_dev_signing_key(&keys.path().join("old")).expect("old key");
    let new = issuer_keys::ensure_dev_signing_key(&keys.path().join("new")).expect("new key");
    let now = chrono::Utc::now();
    let app = crate::helpers::spawn_app_with(&format!(
        "[auth]\nsigning_key_path = \"{}\"\nretired_signing_keys = [{{ path = \"{}\", retired_at = \"{}\" }}]\n",
        keys.path().join("new").join(issuer_keys::DEV_KEY_FILE).display(),
        keys.path().join("old").join(issuer_keys::DEV_KEY_FILE).display(),
        now.to_rfc3339(),
    ))
    .await;
    let published = |app: &TestApp| {
        let client = app.client.clone();
        let url = app.url("/.well-known/jwks.json");
        async move {
            let jwks = json_body(client.get(url).send().await.expect("request")).await;
            jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|key| key["kid"].as_str().expect("kid").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        app.auth.keys.current().active().kid(),
        new.kid(),
        "the new key signs"
    );
    // A token the old key signed just before retirement is still valid; one it claims to have
    // signed since is not (only a leaked retired key could make it).
    let retired_at = u64::try_from(now.timestamp()).expect("time");
    let old_token = signed_at(retired_at - 60, &old);
    app.clock.advance(120);
    let after_retirement = signed_now(&app, &old);
    let status = |token: String| {
        let client = app.client.clone();
        let url = app.url("/v1/me");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
                .status()
        }
    };
    // Accepted (the subject has no account: 404, not 401).
    assert_eq!(status(old_token).await, 404, "the old key still verifies");
    assert_eq!(status(after_retirement).await, 401);
    let kids = published(&app).await;
    assert!(kids.contains(&old.kid().to_owned()) && kids.contains(&new.kid().to_owned()));
    // 15 minutes of token lifetime and 5 of clock leeway after retirement, the old key leaves.
    app.clock
        .advance(retired_at + 20 * 60 + 1 - app.clock.now());
    assert_eq!(published(&app).await, vec![new.kid().to_owned()]);
    // And it verifies nothing any more, not even a token forged with it now (a leaked old key).
    let forged = signed_now(&app, &old);
    assert_eq!(status(forged).await, 401);
}

#[tokio::test]
async fn a_weaker_key_cannot_rotate_or_revoke_a_stronger_one_and_one_of_two_rotations_wins() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "rotator@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let strong = json_body(
        create_key(
            &app,
            &owner,
            &["profile", "api_keys:read", "api_keys:write"],
        )
        .await,
    )
    .await;
    let weak =
        json_body(create_key(&app, &owner, &["api_keys:read", "api_keys:write"]).await).await;
    let strong_id = strong["id"].as_str().expect("id");
    let weak_secret = weak["secret"].as_str().expect("secret");
    for (method, path) in [
        (
            reqwest::Method::POST,
            format!("/v1/api-keys/{strong_id}/rotate"),
        ),
        (reqwest::Method::DELETE, format!("/v1/api-keys/{strong_id}")),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .header("x-api-key", weak_secret)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 403, "{method} {path}");
    }
    let rotate = || {
        owner
            .post(app.url(&format!("/v1/api-keys/{strong_id}/rotate")))
            .send()
    };
    let (a, b) = tokio::join!(rotate(), rotate());
    let mut statuses = [
        a.expect("request").status().as_u16(),
        b.expect("request").status().as_u16(),
    ];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "one successor only");
}

#[tokio::test]
async fn a_key_created_with_a_key_expires_no_later_than_its_parent() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "parent@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let parent_end =
        chrono::DateTime::from_timestamp(i64::try_from(app.clock.now() + 3600).expect("time"), 0)
            .expect("time");
    let parent = json_body(
        owner
            .post(app.url("/v1/api-keys"))
            .json(&json!({"name": "parent", "scopes": ["profile", "api_keys:write"], "expires_at": parent_end.to_rfc3339()}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    let child = app
        .client
        .post(app.url("/v1/api-keys"))
        .header("x-api-key", parent["secret"].as_str().expect("secret"))
        .json(&json!({"name": "child", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(child.status(), 201);
    let child = json_body(child).await;
    let child_end =
        chrono::DateTime::parse_from_rfc3339(child["expires_at"].as_str().expect("capped"))
            .expect("a time");
    assert_eq!(child_end.timestamp(), parent_end.timestamp());
}
