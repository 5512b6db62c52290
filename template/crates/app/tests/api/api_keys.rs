//! Least privilege around API keys (AUTH-2, AUTH-4, AUTH-6): an administrator never obtains a
//! secret acting as another user, and a key ends with what it was derived from (its parent key,
//! its sign-in session, its owner's password), over HTTPS with the audit trail of each cascade.

use serde_json::{Value, json};

use crate::auth::{
    PASSWORD, bearer_client, confirm_reset, create_key, refresh, request_id, request_reset,
    token_request, user, wait_for_reset_token, with_key,
};
use crate::helpers::{TestApp, audit_events_for, json_body, login, spawn_app};

/// `POST /oauth/token` with `client_credentials`, the key's id as client and its secret.
async fn client_credentials(app: &TestApp, key: &Value) -> reqwest::Response {
    token_request(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", key["id"].as_str().expect("id")),
            ("client_secret", key["secret"].as_str().expect("secret")),
        ],
    )
    .await
}

/// A created key (201), with its secret.
async fn created_key(app: &TestApp, client: &reqwest::Client, scopes: &[&str]) -> Value {
    let response = create_key(app, client, scopes).await;
    assert_eq!(response.status(), 201, "key creation");
    json_body(response).await
}

/// A key created with `key` (as `X-API-Key`).
async fn key_created_with_key(app: &TestApp, key: &Value, scopes: &[&str]) -> Value {
    let response = app
        .client
        .post(app.url("/v1/api-keys"))
        .header("x-api-key", key["secret"].as_str().expect("secret"))
        .json(&json!({"name": "derived", "scopes": scopes}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201, "key creation with a key");
    json_body(response).await
}

/// An access token of `key` through `client_credentials`.
async fn token_of_key(app: &TestApp, key: &Value) -> String {
    let response = client_credentials(app, key).await;
    assert_eq!(response.status(), 200, "client_credentials");
    json_body(response).await["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// The status of `GET /v1/me` sent by `client`.
async fn me_status(app: &TestApp, client: &reqwest::Client) -> u16 {
    client
        .get(app.url("/v1/me"))
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// The status of `GET /v1/me` with `key` as `X-API-Key`.
async fn key_status(app: &TestApp, key: &Value) -> u16 {
    with_key(app, key["secret"].as_str().expect("secret"), "/v1/me")
        .await
        .status()
        .as_u16()
}

/// Whether `key` is refused everywhere it could be used: `X-API-Key` (401) and
/// `client_credentials` (401 `invalid_client`).
async fn assert_refused(app: &TestApp, key: &Value, what: &str) {
    assert_eq!(key_status(app, key).await, 401, "{what} as X-API-Key");
    let token = client_credentials(app, key).await;
    assert_eq!(token.status(), 401, "{what} at /oauth/token");
    assert_eq!(json_body(token).await["error"], "invalid_client");
}

/// `POST /v1/api-keys/{id}/rotate` with `request` (a client, or a key added as a header).
async fn rotate(
    app: &TestApp,
    client: &reqwest::Client,
    key_header: Option<&str>,
    id: &str,
) -> reqwest::Response {
    let mut request = client.post(app.url(&format!("/v1/api-keys/{id}/rotate")));
    if let Some(secret) = key_header {
        request = request.header("x-api-key", secret);
    }
    request.send().await.expect("request")
}

/// The `api_key.revoked` events of a request: (reason, policy) pairs.
fn revocations(request_id: &str) -> Vec<(String, String)> {
    audit_events_for(request_id)
        .into_iter()
        .filter(|event| event["event"] == "api_key.revoked")
        .map(|event| (event["reason"].clone(), event["policy"].clone()))
        .collect()
}

/// Moves the clock past every access token issued so far: 15 minutes and the validator's leeway.
fn past_access_token_lifetime(app: &TestApp) {
    app.clock
        .advance(900 + security::auth::jwt::DEFAULT_LEEWAY.as_secs() + 1);
}

fn id_of(key: &Value) -> &str {
    key["id"].as_str().expect("id")
}

/// `POST /v1/auth/logout` with the session's refresh token: 204.
async fn logout(app: &TestApp, tokens: &Value) {
    let response = app
        .client
        .post(app.url("/v1/auth/logout"))
        .json(&json!({"refresh_token": tokens["refresh_token"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 204, "logout");
}

#[tokio::test]
async fn an_administrator_cannot_rotate_another_users_key_but_may_list_and_revoke_it() {
    let app = spawn_app().await;
    let (owner_id, tokens) = user(&app, "victim@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let key = created_key(&app, &owner, &["profile", "api_keys:read"]).await;
    // The administrator's narrow automation key: key administration and nothing else.
    let automation = created_key(&app, &app.admin, &["api_keys:admin", "api_keys:write"]).await;
    let automation_secret = automation["secret"].as_str().expect("secret");
    let automation_token = token_of_key(&app, &automation).await;
    let with_token = crate::helpers::client_with_token(app.ca_cert.as_deref(), &automation_token);

    for (who, client, header) in [
        ("the administrator's session", &app.admin, None),
        ("the automation key", &app.client, Some(automation_secret)),
        ("the automation key's token", &with_token, None),
    ] {
        let refused = rotate(&app, client, header, id_of(&key)).await;
        assert_eq!(refused.status(), 403, "{who} rotates another user's key");
        let id = request_id(&refused);
        let body = json_body(refused).await;
        assert!(
            body.get("secret").is_none(),
            "{who} received a secret: {body}"
        );
        assert!(
            audit_events_for(&id)
                .iter()
                .any(|event| event["event"] == "authz.object" && event["reason"] == "not_owner"),
            "{who}: the refusal is audited"
        );
    }
    // Nothing was rotated: the owner's key is its own, unreplaced and working.
    let listed = json_body(
        app.admin
            .get(app.url(&format!("/v1/api-keys?owner={owner_id}")))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(listed[0].get("replaced_by").is_none(), "{listed}");
    assert!(
        !listed.to_string().contains("rmp_"),
        "a listing has no secret"
    );
    assert_eq!(key_status(&app, &key).await, 200);

    // A plain user does not even learn that the key exists.
    let (_, other_tokens) = user(&app, "bystander@example.com").await;
    let other = bearer_client(&app, &other_tokens);
    assert_eq!(rotate(&app, &other, None, id_of(&key)).await.status(), 404);

    // The narrow key cannot rotate its own owner's stronger key into a secret it could read.
    let admins_own = created_key(&app, &app.admin, &["profile", "users:read"]).await;
    assert_eq!(
        rotate(
            &app,
            &app.client,
            Some(automation_secret),
            id_of(&admins_own)
        )
        .await
        .status(),
        403
    );

    // Revoking (no secret involved) is the administrator's remedy, with the automation key too.
    let revoked = app
        .client
        .delete(app.url(&format!("/v1/api-keys/{}", id_of(&key))))
        .header("x-api-key", automation_secret)
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 204);
    assert_refused(&app, &key, "the revoked key").await;
}

#[tokio::test]
async fn a_key_always_belongs_to_its_creator_and_another_users_key_id_yields_no_token() {
    let app = spawn_app().await;
    let (owner_id, tokens) = user(&app, "owner@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let key = created_key(&app, &owner, &["profile"]).await;

    // There is no owner field: naming another owner is refused as an unknown field.
    let for_another = app
        .admin
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "mine", "scopes": ["profile"], "owner_id": owner_id}))
        .send()
        .await
        .expect("request");
    assert_eq!(for_another.status(), 400);
    let owners_keys = json_body(
        app.admin
            .get(app.url(&format!("/v1/api-keys?owner={owner_id}")))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(owners_keys.as_array().map(Vec::len), Some(1));

    // The token endpoint with the owner's key id and the administrator's own key secret.
    let admins = created_key(&app, &app.admin, &["profile", "api_keys:admin"]).await;
    let borrowed = json!({"id": id_of(&key), "secret": admins["secret"]});
    let refused = client_credentials(&app, &borrowed).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(json_body(refused).await["error"], "invalid_client");
}

#[tokio::test]
async fn revoking_a_key_revokes_its_children_and_grandchildren_and_their_tokens_make_nothing() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "tree@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let parent = created_key(&app, &owner, &["profile", "api_keys:write"]).await;
    let sibling = created_key(&app, &owner, &["profile"]).await;
    let child = key_created_with_key(&app, &parent, &["profile", "api_keys:write"]).await;
    // The grandchild is created with the child's client_credentials token.
    let child_token = token_of_key(&app, &child).await;
    let through_token = crate::helpers::client_with_token(app.ca_cert.as_deref(), &child_token);
    let grandchild = created_key(&app, &through_token, &["profile"]).await;
    for key in [&parent, &child, &grandchild] {
        assert_eq!(key_status(&app, key).await, 200);
    }

    let revoked = owner
        .delete(app.url(&format!("/v1/api-keys/{}", id_of(&parent))))
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 204);
    assert_refused(&app, &parent, "the parent").await;
    assert_refused(&app, &child, "the child").await;
    assert_refused(&app, &grandchild, "the grandchild").await;
    assert_eq!(
        key_status(&app, &sibling).await,
        200,
        "a sibling is no descendant"
    );

    // The audit trail shows the cascade, generation by generation.
    assert_eq!(
        revocations(&request_id(&revoked)),
        [
            ("revoked".to_owned(), id_of(&parent).to_owned()),
            (
                "parent_revoked".to_owned(),
                format!("{} cascade_from {}", id_of(&child), id_of(&parent))
            ),
            (
                "parent_revoked".to_owned(),
                format!("{} cascade_from {}", id_of(&grandchild), id_of(&child))
            ),
        ]
    );

    // A token the child minted before stays valid until it expires (15 minutes at most), but
    // nothing can be derived from it any more.
    assert_eq!(me_status(&app, &through_token).await, 200);
    let derived = create_key(&app, &through_token, &["profile"]).await;
    assert_eq!(derived.status(), 401, "a key derived from a revoked key");
    past_access_token_lifetime(&app);
    assert_eq!(me_status(&app, &through_token).await, 401);
}

#[tokio::test]
async fn the_keys_created_with_a_rotated_key_follow_its_successor() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "lineage@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let parent = created_key(&app, &owner, &["profile", "api_keys:write"]).await;
    let child = key_created_with_key(&app, &parent, &["profile"]).await;
    let rotated = rotate(&app, &owner, None, id_of(&parent)).await;
    assert_eq!(rotated.status(), 201);
    let successor = json_body(rotated).await;

    // The old key's overlap ends; the child lives on with the successor...
    app.clock.advance(86_400);
    assert_eq!(key_status(&app, &parent).await, 401);
    assert_eq!(key_status(&app, &child).await, 200);
    // ...and ends with it (revoked in a new session: the first one's token has expired).
    let tokens = login(&app.client, &app.address, "lineage@example.com", PASSWORD).await;
    let revoked = bearer_client(&app, &tokens)
        .delete(app.url(&format!("/v1/api-keys/{}", id_of(&successor))))
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 204);
    assert_refused(&app, &child, "the rotated parent's child").await;
    let trail = revocations(&request_id(&revoked));
    assert!(
        trail.contains(&(
            "parent_revoked".to_owned(),
            format!("{} cascade_from {}", id_of(&child), id_of(&parent))
        )),
        "{trail:?}"
    );
}

#[tokio::test]
async fn a_password_reset_revokes_the_keys_made_with_a_stolen_session() {
    let app = spawn_app().await;
    let (_, _) = user(&app, "stolen@example.com").await;
    // The attacker signs in with the stolen password and makes keys: one with the session, one
    // with that key.
    let stolen = login(&app.client, &app.address, "stolen@example.com", PASSWORD).await;
    let attacker = bearer_client(&app, &stolen);
    let planted = created_key(
        &app,
        &attacker,
        &["profile", "api_keys:read", "api_keys:write"],
    )
    .await;
    let planted_child = key_created_with_key(&app, &planted, &["profile"]).await;

    request_reset(&app, "stolen@example.com").await;
    let token = wait_for_reset_token(&app, "stolen@example.com", 1).await;
    let confirmed = confirm_reset(&app, &token, "saffron-glacier-pivot-4").await;
    assert_eq!(confirmed.status(), 204);

    assert_refused(&app, &planted, "the key made in the stolen session").await;
    assert_refused(&app, &planted_child, "the key made with it").await;
    let mut trail = revocations(&request_id(&confirmed));
    trail.sort();
    let mut expected = vec![
        ("password_reset".to_owned(), id_of(&planted).to_owned()),
        (
            "password_reset".to_owned(),
            id_of(&planted_child).to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(trail, expected);

    // The stolen access token lives out its 15 minutes, but makes no key any more...
    let after = create_key(&app, &attacker, &["profile"]).await;
    assert_eq!(after.status(), 401, "a key from a session the reset ended");
    assert_eq!(me_status(&app, &attacker).await, 200);
    // ...and then ends.
    past_access_token_lifetime(&app);
    assert_eq!(me_status(&app, &attacker).await, 401);
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_keys_made_in_its_session_and_a_logout_does_not() {
    let app = spawn_app().await;
    let (_, first) = user(&app, "copied@example.com").await;
    let copied = created_key(&app, &bearer_client(&app, &first), &["profile"]).await;
    let first_refresh = first["refresh_token"].as_str().expect("refresh token");
    assert_eq!(refresh(&app, first_refresh).await.status(), 200);
    let reused = refresh(&app, first_refresh).await;
    assert_eq!(
        reused.status(),
        400,
        "a rotated-out refresh token came back"
    );
    assert_refused(&app, &copied, "the key made in the copied session").await;
    let trail = revocations(&request_id(&reused));
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert_eq!(trail[0].0, "session_reused");
    assert!(
        trail[0]
            .1
            .starts_with(&format!("{} cascade_from session ", id_of(&copied))),
        "{trail:?}"
    );

    // Signing out of a browser leaves the automation keys made in that session working.
    let second = login(&app.client, &app.address, "copied@example.com", PASSWORD).await;
    let kept = created_key(&app, &bearer_client(&app, &second), &["profile"]).await;
    let logout = app
        .client
        .post(app.url("/v1/auth/logout"))
        .json(&json!({"refresh_token": second["refresh_token"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(logout.status(), 204);
    assert_eq!(key_status(&app, &kept).await, 200);
}

#[tokio::test]
async fn a_key_made_in_a_session_since_logged_out_rotates_and_its_successor_outlives_the_overlap() {
    let app = spawn_app().await;
    let (_, first) = user(&app, "signed-out@example.com").await;
    let key = created_key(&app, &bearer_client(&app, &first), &["profile"]).await;
    logout(&app, &first).await;

    let second = login(
        &app.client,
        &app.address,
        "signed-out@example.com",
        PASSWORD,
    )
    .await;
    let rotated = rotate(&app, &bearer_client(&app, &second), None, id_of(&key)).await;
    assert_eq!(rotated.status(), 201, "a logout is no compromise");
    let successor = json_body(rotated).await;
    assert_eq!(key_status(&app, &successor).await, 200);

    app.clock.advance(86_400);
    assert_eq!(
        key_status(&app, &key).await,
        401,
        "the old key after the overlap"
    );
    assert_eq!(
        key_status(&app, &successor).await,
        200,
        "its successor lives on"
    );
}

#[tokio::test]
async fn a_successor_ends_with_the_copied_session_or_the_revoked_key_that_rotated_it() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "rotated-by-thief@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let key = created_key(&app, &owner, &["profile", "api_keys:read"]).await;

    // A second session (a stolen password) rotates the owner's key and reads the new secret.
    let stolen = login(
        &app.client,
        &app.address,
        "rotated-by-thief@example.com",
        PASSWORD,
    )
    .await;
    let rotated = rotate(&app, &bearer_client(&app, &stolen), None, id_of(&key)).await;
    assert_eq!(rotated.status(), 201);
    let successor = json_body(rotated).await;
    // That session's refresh token comes back after use: it was copied.
    let stolen_refresh = stolen["refresh_token"].as_str().expect("refresh token");
    assert_eq!(refresh(&app, stolen_refresh).await.status(), 200);
    let reused = refresh(&app, stolen_refresh).await;
    assert_eq!(reused.status(), 400);
    assert_refused(&app, &successor, "the successor the copied session rotated").await;
    let trail = revocations(&request_id(&reused));
    let cascade = format!("{} cascade_from session ", id_of(&successor));
    assert!(
        trail
            .iter()
            .any(|(reason, policy)| reason == "session_reused" && policy.starts_with(&cascade)),
        "{trail:?}"
    );

    // A leaked key rotates another of the owner's keys; revoking the leaked key ends the successor.
    let leaked = created_key(&app, &owner, &["profile", "api_keys:write"]).await;
    let other = created_key(&app, &owner, &["profile"]).await;
    let rotated = rotate(
        &app,
        &app.client,
        Some(leaked["secret"].as_str().expect("secret")),
        id_of(&other),
    )
    .await;
    assert_eq!(rotated.status(), 201);
    let other_successor = json_body(rotated).await;
    let revoked = owner
        .delete(app.url(&format!("/v1/api-keys/{}", id_of(&leaked))))
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 204);
    assert_refused(
        &app,
        &other_successor,
        "the successor the leaked key rotated",
    )
    .await;
    assert!(
        revocations(&request_id(&revoked)).contains(&(
            "rotator_revoked".to_owned(),
            format!(
                "{} cascade_from {}",
                id_of(&other_successor),
                id_of(&leaked)
            )
        )),
        "the audit trail names the rotating key"
    );
}

#[tokio::test]
async fn a_used_refresh_token_presented_after_a_logout_is_still_reuse() {
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "thief-logs-out@example.com").await;
    // The thief refreshes with the stolen token, makes a key, and logs out to hide the session.
    let stolen = tokens["refresh_token"].as_str().expect("refresh token");
    let refreshed = refresh(&app, stolen).await;
    assert_eq!(refreshed.status(), 200);
    let refreshed = json_body(refreshed).await;
    let planted = created_key(&app, &bearer_client(&app, &refreshed), &["profile"]).await;
    logout(&app, &refreshed).await;
    assert_eq!(key_status(&app, &planted).await, 200, "a logout keeps keys");

    // The owner's copy of the used token comes back: the session was copied.
    let reused = refresh(&app, stolen).await;
    assert_eq!(reused.status(), 400);
    assert_refused(&app, &planted, "the key made in the copied session").await;
    let id = request_id(&reused);
    assert!(
        audit_events_for(&id)
            .iter()
            .any(|event| event["event"] == "token.refresh_reuse"),
        "the reuse is audited"
    );
    assert_eq!(revocations(&id).len(), 1);
}

#[tokio::test]
async fn a_key_that_rotated_itself_can_be_revoked_and_its_successor_keeps_working() {
    // Automation's usual rotation: the key rotates itself, the new secret is deployed, and the
    // old key is revoked to end the overlap early.
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "self-rotation@example.com").await;
    let owner = bearer_client(&app, &tokens);
    let key = created_key(&app, &owner, &["profile", "api_keys:write"]).await;
    let rotated = rotate(
        &app,
        &app.client,
        Some(key["secret"].as_str().expect("secret")),
        id_of(&key),
    )
    .await;
    assert_eq!(rotated.status(), 201);
    let successor = json_body(rotated).await;
    let revoked = owner
        .delete(app.url(&format!("/v1/api-keys/{}", id_of(&key))))
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 204);
    assert_eq!(key_status(&app, &key).await, 401, "the old key ended");
    assert_eq!(
        key_status(&app, &successor).await,
        200,
        "the successor is not the old key's child"
    );
}

#[tokio::test]
async fn an_expired_refresh_token_sent_twice_is_no_reuse_and_revokes_nothing() {
    // Two tabs waking after a day both send the same expired token: not a theft signal.
    let app = spawn_app().await;
    let (_, tokens) = user(&app, "two-tabs@example.com").await;
    let key = created_key(&app, &bearer_client(&app, &tokens), &["profile"]).await;
    app.clock.advance(86_401);
    let expired = tokens["refresh_token"].as_str().expect("refresh token");
    for attempt in ["first", "second"] {
        let response = refresh(&app, expired).await;
        assert_eq!(response.status(), 400, "{attempt} presentation");
    }
    assert_eq!(
        key_status(&app, &key).await,
        200,
        "the session's key is not revoked as if the session had been copied"
    );
}
