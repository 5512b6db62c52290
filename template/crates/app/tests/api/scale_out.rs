//! Several instances behind one address: what one instance does, the others honour at once,
//! because the state lives in the shared database (tokens, refresh families, API keys, signing
//! keys) and in Redis (rate limits). Runs on the suite's database (SQLite shared by two
//! processes by default; PostgreSQL with `TEST_DATABASE=postgres`).

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::backend;
use crate::helpers::{
    BootstrapCredentials, RunningBinary, TestApp, admin_access_token, client_trusting, json_body,
    spawn_app_with,
};

/// One key-encryption key for every instance of a test (32 bytes, base64).
const KEY_ENCRYPTION_KEY: &str = "bX8vQ2xN7kR4tZ1wY6pL3sH9dF0gJ5cA2eU8iO4rT7o=";

/// The `kid` in a JWT's header.
fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("a JWT");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&header).expect("JSON header");
    header["kid"].as_str().expect("a kid").to_owned()
}

/// `token` with its header's `kid` replaced (the signature no longer matters: the key is unknown).
fn with_kid(token: &str, kid: &str) -> String {
    let (header, rest) = token.split_once('.').expect("a JWT");
    let mut decoded: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("base64url"),
    )
    .expect("JSON");
    decoded["kid"] = json!(kid);
    format!(
        "{}.{rest}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(decoded.to_string())
    )
}

fn shared_signing_keys() -> String {
    format!(
        "[auth]\nsigning_keys = \"database\"\n\
         signing_key_encryption_key = \"{KEY_ENCRYPTION_KEY}\"\n"
    )
}

/// A second instance of `first`'s service: same database and secrets, its own process state.
async fn second_instance(first: &TestApp) -> TestApp {
    spawn_app_with(&format!(
        "{}key_dir = \"{}\"\n[database]\nurl = \"{}\"\n",
        shared_signing_keys(),
        first.data_dir.path().join("keys").display(),
        first.database_url()
    ))
    .await
}

async fn status_of_me(client: &reqwest::Client, base: &str, token: &str) -> u16 {
    client
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn instances_sharing_a_database_sign_alike_and_a_rotation_reaches_both() {
    let first = spawn_app_with(&shared_signing_keys()).await;
    let second = second_instance(&first).await;
    let old_kid = first.auth.keys.current().active().kid().to_owned();
    assert_eq!(second.auth.keys.current().active().kid(), old_kid);
    assert_eq!(
        status_of_me(&second.client, &second.address, &first.admin_token).await,
        200,
        "a token of one instance verifies on the other"
    );

    // An invented key id uses the second's re-read of this second just before the rotation: the
    // new key's token below arrives within that second, and waits for the next re-read instead
    // of being refused.
    assert_eq!(
        status_of_me(
            &second.client,
            &second.address,
            &with_kid(&first.admin_token, "invented")
        )
        .await,
        401
    );
    // `app rotate-signing-key` does this against the shared database.
    let db = sea_orm::Database::connect(first.database_url())
        .await
        .expect("database");
    let new_kid = app::auth::database_keys(&first.auth.settings, db)
        .expect("the key-encryption key")
        .rotate(chrono::Utc::now(), false)
        .await
        .expect("rotate");
    assert_ne!(new_kid, old_kid);
    // The first instance re-reads its keys (every signing_key_refresh_seconds); the second not yet.
    assert!(first.auth.keys.reload().await, "the rotation is seen");
    let email = &first.credentials.admin.email;
    let new_token = admin_access_token(&first.auth, email).await;
    assert_eq!(kid_of(&new_token), new_kid, "the new key signs");
    assert_eq!(second.auth.keys.current().active().kid(), old_kid);
    let generation = second.auth.keys.generation();
    assert_eq!(
        status_of_me(&second.client, &second.address, &new_token).await,
        200,
        "a token naming a key not held yet makes the instance re-read its keys"
    );
    assert_eq!(second.auth.keys.current().active().kid(), new_kid);
    assert_eq!(second.auth.keys.generation(), generation + 1);
    for app in [&first, &second] {
        assert_eq!(
            status_of_me(&app.client, &app.address, &first.admin_token).await,
            200,
            "tokens of the retired key verify until they expire"
        );
    }
    let jwks = json_body(
        second
            .client
            .get(second.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("request"),
    )
    .await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|key| key["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{jwks}"
    );
}

#[tokio::test]
async fn invented_key_ids_cannot_make_every_request_reread_the_keys() {
    let app = spawn_app_with(&shared_signing_keys()).await;
    // The same token with a key id nobody has: refused, and at most one re-read a second.
    let forged = with_kid(&app.admin_token, "invented");
    // Twenty at once: one re-reads now, the others wait for the next permitted re-read, which
    // one of them makes: two reads, not twenty.
    let reads = app.auth.keys.reads();
    let started = std::time::Instant::now();
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let base = app.address.clone();
        let forged = forged.clone();
        requests.spawn(async move { status_of_me(&client, &base, &forged).await });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.expect("no panic"), 401);
    }
    assert!(
        app.auth.keys.reads() <= reads + 2,
        "at most one re-read a second, not one per request: {}",
        app.auth.keys.reads() - reads
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(app.auth.keys.generation(), 0, "nothing changed");
}

#[tokio::test]
async fn an_instance_that_has_not_reread_the_keys_still_issues_tokens_that_verify_everywhere() {
    let first = spawn_app_with(&shared_signing_keys()).await;
    let second = second_instance(&first).await;
    let old_kid = first.auth.keys.current().active().kid().to_owned();
    let db = sea_orm::Database::connect(first.database_url())
        .await
        .expect("database");
    app::auth::database_keys(&first.auth.settings, db)
        .expect("the key-encryption key")
        .rotate(chrono::Utc::now(), false)
        .await
        .expect("rotate");
    // Half a minute on, the second instance has re-read the keys; the first not yet (it would
    // within signing_key_refresh_seconds) and still signs with the retired key.
    first.clock.advance(30);
    second.clock.advance(30);
    assert!(second.auth.keys.reload().await);
    let late = admin_access_token(&first.auth, &first.credentials.admin.email).await;
    assert_eq!(kid_of(&late), old_kid);
    assert_eq!(
        status_of_me(&second.client, &second.address, &late).await,
        200,
        "issued after the retirement, within the refresh interval and leeway"
    );
    // The grace is the refresh interval (60 s here) plus the 5-minute leeway: 330 s on, still
    // accepted; 400 s on, a token of the retired key is refused wherever it comes from.
    let email = first.credentials.admin.email.clone();
    for (advance, expected) in [(300, 200), (70, 401)] {
        first.clock.advance(advance);
        second.clock.advance(advance);
        let token = admin_access_token(&first.auth, &email).await;
        assert_eq!(kid_of(&token), old_kid);
        assert_eq!(
            status_of_me(&second.client, &second.address, &token).await,
            expected,
            "{advance} s further on"
        );
    }
}

#[tokio::test]
async fn a_rotation_with_another_key_encryption_key_changes_nothing() {
    let app = spawn_app_with(&shared_signing_keys()).await;
    let kid = app.auth.keys.current().active().kid().to_owned();
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("database");
    let mut other = app.auth.settings.clone();
    other.signing_key_encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into();
    let refused = app::auth::database_keys(&other, db)
        .expect("a valid key")
        .rotate(chrono::Utc::now(), false)
        .await;
    assert!(
        matches!(
            refused,
            Err(app::auth::signing_keys::SigningKeyStoreError::WrongKeyEncryptionKey(_))
        ),
        "{refused:?}"
    );
    assert!(!app.auth.keys.reload().await, "no new key was written");
    assert_eq!(app.auth.keys.current().active().kid(), kid);
}

/// The settings both processes of the multi-instance test share.
fn shared_settings(redis_prefix: &str) -> String {
    format!(
        "{}signing_key_refresh_seconds = 1\n\
         [rate_limit]\nstore = \"redis\"\nredis_url = \"{}\"\nredis_key_prefix = \"{redis_prefix}\"\n\
         password_reset = {{ requests = 5, period_seconds = 900 }}\n",
        shared_signing_keys(),
        backend::redis_url()
    )
}

#[tokio::test]
async fn two_processes_honour_each_others_tokens_refreshes_limits_keys_and_rotations() {
    if !backend::redis_reachable().await {
        return;
    }
    let prefix = format!("test-scale-out-{}:", uuid::Uuid::new_v4().simple());
    let one = RunningBinary::start(&shared_settings(&prefix));
    let one_base = format!("https://{}", one.address("listening"));
    let two = RunningBinary::start(&format!(
        "{}[database]\nurl = \"{}\"\n",
        shared_settings(&prefix),
        one.database_url()
    ));
    let two_base = format!("https://{}", two.address("listening"));
    let client_one = client_trusting(Some(&one.dev_ca_cert()));
    let client_two = client_trusting(Some(&two.dev_ca_cert()));
    let bootstrap: BootstrapCredentials = serde_json::from_slice(
        &std::fs::read(one.data_dir().join("keys").join("bootstrap.json")).expect("bootstrap"),
    )
    .expect("bootstrap.json");
    let login_on = |client: &reqwest::Client, base: &str| {
        let request = client.post(format!("{base}/v1/auth/login")).json(&json!({
            "email": bootstrap.admin.email,
            "password": bootstrap.admin.password
        }));
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 200, "login");
            json_body(response).await
        }
    };

    // A token issued by one verifies on the other.
    let tokens = login_on(&client_one, &one_base).await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    assert_eq!(status_of_me(&client_two, &two_base, &access).await, 200);

    // A refresh rotated on one and replayed on the other is reuse: the family is revoked.
    let refresh = |client: &reqwest::Client, base: &str, token: &str| {
        let request = client
            .post(format!("{base}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                ])
                .expect("form"),
            );
        async move { request.send().await.expect("request") }
    };
    let first_refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let rotated = refresh(&client_one, &one_base, &first_refresh).await;
    assert_eq!(rotated.status(), 200);
    let second_refresh = json_body(rotated).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let replayed = refresh(&client_two, &two_base, &first_refresh).await;
    assert_eq!(replayed.status(), 400);
    assert_eq!(json_body(replayed).await["error"], "invalid_grant");
    let after_reuse = refresh(&client_one, &one_base, &second_refresh).await;
    assert_eq!(
        after_reuse.status(),
        400,
        "the whole family was revoked by the other instance"
    );

    // One rate limit across both: 5 reset requests per address, wherever they land.
    for (client, base) in [
        (&client_one, &one_base),
        (&client_two, &two_base),
        (&client_one, &one_base),
        (&client_two, &two_base),
        (&client_one, &one_base),
    ] {
        let response = client
            .post(format!("{base}/v1/auth/password-reset"))
            .json(&json!({"email": "someone@example.com"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 202);
    }
    let limited = client_two
        .post(format!("{two_base}/v1/auth/password-reset"))
        .json(&json!({"email": "someone@example.com"}))
        .send()
        .await
        .expect("request");
    assert_eq!(limited.status(), 429, "the budget is shared through Redis");

    // An API key revoked on one is refused by the other at once. (The reuse above revoked that
    // session, and nothing can be derived from it any more: the key comes from a new login.)
    let tokens = login_on(&client_one, &one_base).await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let created = client_one
        .post(format!("{one_base}/v1/api-keys"))
        .bearer_auth(&access)
        .json(&json!({"name": "scale-out", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let created = json_body(created).await;
    let key_secret = created["secret"].as_str().expect("secret").to_owned();
    let with_key = |client: &reqwest::Client, base: &str| {
        let request = client
            .get(format!("{base}/v1/me"))
            .header("x-api-key", &key_secret);
        async move { request.send().await.expect("request").status().as_u16() }
    };
    assert_eq!(with_key(&client_two, &two_base).await, 200);
    let revoked = client_one
        .delete(format!(
            "{one_base}/v1/api-keys/{}",
            created["id"].as_str().expect("id")
        ))
        .bearer_auth(&access)
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), 204);
    assert_eq!(with_key(&client_two, &two_base).await, 401);

    // A signing-key rotation run against one instance's configuration reaches both.
    let old_kid = kid_of(&access);
    let rotated = one.run_command("rotate-signing-key");
    assert!(rotated.contains("now signs"), "{rotated}");
    let mut signed_by_new_key = None;
    for _ in 0..50 {
        let token = login_on(&client_one, &one_base).await["access_token"]
            .as_str()
            .expect("access")
            .to_owned();
        if kid_of(&token) != old_kid {
            signed_by_new_key = Some(token);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let new_token = signed_by_new_key.expect("the first instance signs with the new key");
    let new_kid = kid_of(&new_token);
    assert_eq!(status_of_me(&client_two, &two_base, &new_token).await, 200);
    let mut second_signs_alike = false;
    for _ in 0..50 {
        let token = login_on(&client_two, &two_base).await["access_token"]
            .as_str()
            .expect("access")
            .to_owned();
        if kid_of(&token) == new_kid {
            assert_eq!(status_of_me(&client_one, &one_base, &token).await, 200);
            second_signs_alike = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        second_signs_alike,
        "the second instance signs with the new key"
    );
    for (client, base) in [(&client_one, &one_base), (&client_two, &two_base)] {
        assert_eq!(
            status_of_me(client, base, &access).await,
            200,
            "the old key's tokens verify until they expire"
        );
    }

    drop((one, two));
    backend::delete_redis_keys(&prefix).await;
}

#[tokio::test]
async fn a_revoked_key_stops_verifying_once_the_keys_are_reread() {
    let app = spawn_app_with(&shared_signing_keys()).await;
    let leaked_kid = app.auth.keys.current().active().kid().to_owned();
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("database");
    let new_kid = app::auth::database_keys(&app.auth.settings, db)
        .expect("the key-encryption key")
        .rotate(chrono::Utc::now(), true)
        .await
        .expect("rotate");
    assert_eq!(
        status_of_me(&app.client, &app.address, &app.admin_token).await,
        200,
        "until this instance re-reads the keys"
    );
    assert!(app.auth.keys.reload().await);
    assert_eq!(
        status_of_me(&app.client, &app.address, &app.admin_token).await,
        401,
        "the revoked key's tokens are refused"
    );
    let kids: Vec<String> = app
        .auth
        .keys
        .current()
        .verifying_at(app.clock.now())
        .iter()
        .map(|key| key.kid().to_owned())
        .collect();
    assert_eq!(kids, [new_kid], "{leaked_kid} is gone");
}
