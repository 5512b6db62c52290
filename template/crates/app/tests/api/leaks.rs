//! LOG-5 and LOG-1 .. LOG-3 on the real binary: one scenario drives every credential flow while
//! all the process writes (stdout and stderr, at debug level) is captured, with what
//! `app check-config` prints of the same configuration; then no password, token, key secret,
//! reset token, card number, email, pepper or configured password may appear anywhere in it, and
//! each flow's audit event appears exactly once. Every line carries allowlisted field names
//! only, and what the allowlist refused shows in `log_fields_dropped_total`.

use std::time::Duration;

use security::logging::allowlist::{LOGGED_FIELDS, SERVICE_TARGETS};
use serde_json::{Value, json};

use crate::helpers::{BootstrapCredentials, RunningBinary, client_trusting, reset_token_in};

/// A request id, an audit event name and its outcome, expected exactly once.
type Expected = (String, &'static str, &'static str);

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .expect("a request id")
        .to_owned()
}

/// The reset token mailed to `email`, read from the binary's outbox once its background task
/// wrote it, and opened with the outbox key as the relay would.
async fn mailed_reset_token(database: &str, outbox_key: &str, email: &str) -> String {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let db = sea_orm::Database::connect(database)
        .await
        .expect("database");
    let outbox_key = app::mail::OutboxKey::new(
        security::auth::key_wrapping::KeyEncryptionKey::from_base64(outbox_key).expect("a key"),
    );
    for _ in 0..100 {
        let messages = app::persistence::outbox::Entity::find()
            .filter(app::persistence::outbox::Column::Recipient.eq(email))
            .all(&db)
            .await
            .expect("query");
        if let Some(token) = messages
            .iter()
            .find_map(|message| reset_token_in(&outbox_key, message))
        {
            return token;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no reset token was mailed to {email}");
}

#[tokio::test]
async fn no_secret_reaches_any_log_line_and_each_flow_is_audited_once() {
    // Secrets in the configuration too: a pepper, a key-encryption key, and a Redis URL with a
    // password (unused: the in-process store is pinned, but part of the settings `check-config`
    // prints).
    let pepper = "leak-test-pepper-Zk3v9QmT2xWc7LbN5rYh";
    let redis_password = "Redis-Passw0rd-leak-test";
    // Signing keys in the database, sealed under this key.
    let key_encryption_key = "bGVhay10ZXN0IGtleS1lbmNyeXB0aW9uIGtleSAzMiE=";
    // Reset links sealed in the outbox under this one.
    let outbox_key = "b29vb29vb29vb29vb29vb29vb29vb29vb29vb29vb28=";
    let binary = RunningBinary::start(&format!(
        "[log]\nlevel = \"debug\"\n[auth]\napi_key_pepper = \"{pepper}\"\n\
         signing_keys = \"database\"\nsigning_key_encryption_key = \"{key_encryption_key}\"\n\
         outbox_encryption_key = \"{outbox_key}\"\n\
         [rate_limit]\nstore = \"memory\"\nredis_url = \"redis://:{redis_password}@127.0.0.1:6379\"\n"
    ));
    let base = format!("https://{}", binary.address("listening"));
    let client = client_trusting(Some(&binary.dev_ca_cert()));
    let bootstrap: BootstrapCredentials = serde_json::from_slice(
        &std::fs::read(binary.data_dir().join("keys").join("bootstrap.json")).expect("bootstrap"),
    )
    .expect("bootstrap.json");
    let admin = bootstrap.admin.email.clone();
    // Personal data is held to the same rule: no email address in any line.
    let mut secrets = vec![
        bootstrap.admin.password.clone(),
        bootstrap.api_key.clone(),
        admin.clone(),
        pepper.to_owned(),
        redis_password.to_owned(),
        key_encryption_key.to_owned(),
        outbox_key.to_owned(),
    ];
    let mut expected: Vec<Expected> = Vec::new();
    let form = |pairs: &[(&str, &str)]| serde_urlencoded::to_string(pairs).expect("form");

    // Login: a failure, then a success.
    let wrong_password = "wrong-Password-4711";
    secrets.push(wrong_password.to_owned());
    let failed = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": admin, "password": wrong_password}))
        .send()
        .await
        .expect("request");
    assert_eq!(failed.status(), 401);
    expected.push((request_id(&failed), "authn.password", "denied"));
    let logged_in = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": admin, "password": bootstrap.admin.password}))
        .send()
        .await
        .expect("request");
    assert_eq!(logged_in.status(), 200);
    expected.push((request_id(&logged_in), "authn.password", "allowed"));
    expected.push((request_id(&logged_in), "token.issued", "allowed"));
    let tokens: Value = logged_in.json().await.expect("tokens");
    let access_token = tokens["access_token"].as_str().expect("access").to_owned();
    let first_refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    secrets.extend([access_token.clone(), first_refresh.clone()]);

    // Refresh, then reuse of the rotated-out refresh token.
    let refreshed = client
        .post(format!("{base}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ]))
        .send()
        .await
        .expect("request");
    assert_eq!(refreshed.status(), 200);
    expected.push((request_id(&refreshed), "token.issued", "allowed"));
    let rotated: Value = refreshed.json().await.expect("tokens");
    secrets.push(rotated["access_token"].as_str().expect("access").to_owned());
    secrets.push(
        rotated["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    );
    let reused = client
        .post(format!("{base}/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &first_refresh),
        ]))
        .send()
        .await
        .expect("request");
    assert_eq!(reused.status(), 400);
    expected.push((request_id(&reused), "token.refresh_reuse", "denied"));

    // The reuse revoked that session, and nothing can be derived from it any more: the keys
    // come from a new login.
    let logged_in_again = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": admin, "password": bootstrap.admin.password}))
        .send()
        .await
        .expect("request");
    assert_eq!(logged_in_again.status(), 200);
    expected.push((request_id(&logged_in_again), "authn.password", "allowed"));
    expected.push((request_id(&logged_in_again), "token.issued", "allowed"));
    let tokens: Value = logged_in_again.json().await.expect("tokens");
    let access_token = tokens["access_token"].as_str().expect("access").to_owned();
    secrets.extend([
        access_token.clone(),
        tokens["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    ]);

    // API key: create, rotate, use.
    let created = client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(&access_token)
        .json(&json!({"name": "leak-test", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    expected.push((request_id(&created), "api_key.created", "allowed"));
    let created: Value = created.json().await.expect("key");
    secrets.push(created["secret"].as_str().expect("secret").to_owned());
    let rotated_key = client
        .post(format!(
            "{base}/v1/api-keys/{}/rotate",
            created["id"].as_str().expect("id")
        ))
        .bearer_auth(&access_token)
        .send()
        .await
        .expect("request");
    assert_eq!(rotated_key.status(), 201);
    expected.push((request_id(&rotated_key), "api_key.rotated", "allowed"));
    let rotated_key: Value = rotated_key.json().await.expect("key");
    let key_secret = rotated_key["secret"].as_str().expect("secret").to_owned();
    secrets.push(key_secret.clone());
    let used = client
        .get(format!("{base}/v1/me"))
        .header("x-api-key", &key_secret)
        .send()
        .await
        .expect("request");
    assert_eq!(used.status(), 200);
    expected.push((request_id(&used), "authn.api_key", "allowed"));
    expected.push((request_id(&used), "authz.scope", "allowed"));

    // The key as the client secret of client_credentials, over HTTP Basic.
    let key_id = rotated_key["id"].as_str().expect("id").to_owned();
    let by_basic = client
        .post(format!("{base}/oauth/token"))
        .basic_auth(&key_id, Some(&key_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("grant_type", "client_credentials")]))
        .send()
        .await
        .expect("request");
    assert_eq!(by_basic.status(), 200);
    expected.push((request_id(&by_basic), "authn.client", "allowed"));
    let by_basic: Value = by_basic.json().await.expect("token");
    secrets.push(
        by_basic["access_token"]
            .as_str()
            .expect("access")
            .to_owned(),
    );

    // A forged bearer token, and a key pasted into a path by mistake: refused, never logged.
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.forged-signature-value";
    secrets.push(forged.to_owned());
    let refused_token = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(forged)
        .send()
        .await
        .expect("request");
    assert_eq!(refused_token.status(), 401);
    expected.push((request_id(&refused_token), "authn.access_token", "denied"));
    let key_in_path = client
        .get(format!("{base}/v1/users/{key_secret}"))
        .bearer_auth(&access_token)
        .send()
        .await
        .expect("request");
    assert_eq!(key_in_path.status(), 400);

    // A token and a card number in a query string (clients get this wrong): the access log
    // records the route template, never the path or its query.
    let in_query = client
        .get(format!(
            "{base}/v1/me?access_token={access_token}&card=4111111111111111"
        ))
        .header("x-api-key", &key_secret)
        .send()
        .await
        .expect("request");
    assert!(in_query.status().as_u16() < 500);

    // Password reset: request, then confirm with the mailed token.
    let requested = client
        .post(format!("{base}/v1/auth/password-reset"))
        .json(&json!({"email": admin}))
        .send()
        .await
        .expect("request");
    assert_eq!(requested.status(), 202);
    expected.push((
        request_id(&requested),
        "password_reset.requested",
        "allowed",
    ));
    let reset_token = mailed_reset_token(&binary.database_url(), outbox_key, &admin).await;
    let new_password = "quartz-lantern-plover-8";
    secrets.extend([reset_token.clone(), new_password.to_owned()]);
    let confirmed = client
        .post(format!("{base}/v1/auth/password-reset/confirm"))
        .json(&json!({"token": reset_token, "new_password": new_password}))
        .send()
        .await
        .expect("request");
    assert!(confirmed.status().is_success(), "{}", confirmed.status());
    expected.push((
        request_id(&confirmed),
        "password_reset.completed",
        "allowed",
    ));

    // Logout with the current refresh token in the body.
    let logged_out = client
        .post(format!("{base}/v1/auth/logout"))
        .json(&json!({"refresh_token": rotated["refresh_token"]}))
        .send()
        .await
        .expect("request");
    assert!(logged_out.status().is_success());
    expected.push((request_id(&logged_out), "token.logout", "allowed"));

    // A credential sent over plain HTTP: refused, audited, never logged.
    let plaintext_secret = "plaintext-Bearer-Secret-0042";
    secrets.push(plaintext_secret.to_owned());
    let http_address = binary.address("redirecting plain HTTP to the public origin");
    let plaintext = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("http://{http_address}/v1/me"))
        .bearer_auth(plaintext_secret)
        .send()
        .await
        .expect("request");
    assert_eq!(plaintext.status(), 403);
    expected.push((
        request_id(&plaintext),
        "transport.plaintext_credentials",
        "denied",
    ));

    // Validation failures whose bodies carry a card number and a password.
    let card = "4111 1111 1111 1111";
    let body_password = "Body-Secret-Pa55word";
    secrets.extend([
        card.to_owned(),
        card.replace(' ', ""),
        body_password.to_owned(),
    ]);
    let refused = client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(&access_token)
        .json(&json!({
            "name": card,
            "scopes": "profile",
            "card_number": card.replace(' ', ""),
            "password": body_password
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 400);
    expected.push((request_id(&refused), "input.validation", "denied"));
    let malformed = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": admin, "password": body_password, "card": card}))
        .send()
        .await
        .expect("request");
    assert_eq!(malformed.status(), 400);
    expected.push((request_id(&malformed), "input.validation", "denied"));

    // The access log line of the last request is written after its response: wait for it.
    let last = request_id(&malformed);
    for _ in 0..50 {
        if binary
            .output()
            .iter()
            .filter(|line| line.contains(&last))
            .count()
            >= 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut output = binary.output();
    assert!(
        output.len() > 20,
        "too little output to prove anything: {output:?}"
    );
    // The allowlist itself: each application-log line is JSON with allowlisted names only, and a
    // dependency speaks only at WARN or above (at debug level, rustls, hyper and poem have plenty
    // to say, none of it written).
    for line in &output {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
            panic!("a line that bypassed the JSON log: {line}");
        };
        if fields.get("log").is_some_and(|log| log == "audit") {
            continue;
        }
        for name in fields.keys() {
            assert!(
                ["timestamp", "level", "target", "message"].contains(&name.as_str())
                    || LOGGED_FIELDS.contains(&name.as_str()),
                "a field not on the allowlist was written: {line}"
            );
        }
        let target = fields["target"].as_str().expect("target");
        let ours = SERVICE_TARGETS
            .iter()
            .any(|crate_name| target.split("::").next() == Some(*crate_name));
        assert!(
            ours || ["WARN", "ERROR"].contains(&fields["level"].as_str().expect("level")),
            "a dependency's message below WARN was written: {line}"
        );
    }
    // What was refused is counted, and the count is exported.
    let admin = binary.address("admin listener");
    let scrape = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics");
    let dropped: u64 = scrape
        .lines()
        .find_map(|line| line.strip_prefix("log_fields_dropped_total "))
        .unwrap_or_else(|| panic!("no log_fields_dropped_total: {scrape}"))
        .trim()
        .parse()
        .expect("a count");
    assert!(dropped > 0, "nothing was dropped at debug level: {scrape}");
    // What an operator sees of the same configuration.
    let effective = binary.check_config_output();
    assert!(effective.contains("[redacted]"), "{effective}");
    output.extend(effective.lines().map(str::to_owned));
    assert!(
        output.len() > 20,
        "too little output to prove anything: {output:?}"
    );
    for secret in &secrets {
        assert!(
            secret.len() >= 12,
            "a secret this short could match by chance: {secret}"
        );
        if let Some(line) = output.iter().find(|line| line.contains(secret.as_str())) {
            panic!("a secret reached the log: {line}");
        }
    }
    let audit: Vec<Value> = output
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["log"] == "audit")
        .collect();
    for (request_id, event, outcome) in &expected {
        let matching = audit
            .iter()
            .filter(|line| line["request_id"] == request_id.as_str() && line["event"] == *event)
            .collect::<Vec<_>>();
        assert_eq!(
            matching.len(),
            1,
            "{event} for request {request_id}: {matching:?}"
        );
        assert_eq!(matching[0]["outcome"], *outcome, "{event}");
        for field in ["timestamp", "reason", "client_ip"] {
            assert!(!matching[0][field].is_null(), "{event} lacks {field}");
        }
        // The plain-HTTP listener serves no operation, so its events name no route.
        if !event.starts_with("transport.") {
            assert!(!matching[0]["route"].is_null(), "{event} lacks its route");
        }
    }
}
