//! The demo payment endpoint and its idempotency keys, over HTTPS (RATE-6: idempotency keys on
//! payment-like writes; AUTH-4 scopes; LOG-1 audit).

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestDatabase, admin_access_token, audit_events_for, client_with_token, header,
    json_body, postgres_admin_url, spawn_app, spawn_app_with,
};
use crate::oauth_audit::{assert_principal_refused, client_as};
use crate::rate_limits::{assert_limited, limits};

/// A password the policy accepts.
const PASSWORD: &str = "plover-quartz-lantern-9";

/// The configured key lifetime (`payments.idempotency_key_ttl_seconds` in the test settings).
const KEY_TTL_SECONDS: u64 = 86_400;

/// A user with the `user` role: their id, and the email to mint further tokens with.
async fn payer(app: &TestApp, email: &str) -> (Uuid, String) {
    let response = app
        .admin
        .post(app.url("/v1/users"))
        .json(&json!({"email": email, "name": "Test Payer", "role": "user", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let id = json_body(response).await["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("a uuid");
    (id, email.to_owned())
}

/// A client with a fresh access token (every scope of the user's role) at the app's clock.
async fn client_of(app: &TestApp, email: &str) -> reqwest::Client {
    let token = admin_access_token(&app.auth, email).await;
    client_with_token(app.ca_cert.as_deref(), &token)
}

/// `POST /v1/payments` with `body` sent as written, and `key` as `Idempotency-Key`.
async fn pay(
    app: &TestApp,
    client: &reqwest::Client,
    key: Option<&str>,
    body: &str,
) -> reqwest::Response {
    let mut request = client
        .post(app.url("/v1/payments"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.expect("request")
}

/// The payments stored for `owner`, counted in the database.
async fn payments_of(app: &TestApp, owner: Uuid) -> u64 {
    app::persistence::payments::Entity::find()
        .filter(app::persistence::payments::Column::OwnerId.eq(owner))
        .count(&app.auth.db)
        .await
        .expect("count")
}

fn request_id(response: &reqwest::Response) -> String {
    header(response, "x-request-id")
}

/// The audit event named `name` recorded for the request `request_id`.
fn audit_event(request_id: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    audit_events_for(request_id)
        .into_iter()
        .find(|event| event["event"] == name)
        .unwrap_or_else(|| panic!("a {name} event"))
}

const TEN_EUROS: &str =
    r#"{"amount_cents": 1000, "currency": "EUR", "description": "Coffee beans"}"#;

#[tokio::test]
async fn a_payment_is_captured_once_and_a_retry_replays_the_same_answer() {
    let app = spawn_app().await;
    let (owner, email) = payer(&app, "payer@example.com").await;
    let client = client_of(&app, &email).await;
    let key = Uuid::new_v4().to_string();

    let first = pay(&app, &client, Some(&key), TEN_EUROS).await;
    assert_eq!(first.status(), 201);
    assert_eq!(header(&first, "idempotent-replayed"), "", "not a replay");
    let first_id = request_id(&first);
    let first_body = first.text().await.expect("a body");
    let payment: Value = serde_json::from_str(&first_body).expect("JSON");
    assert_eq!(payment["amount_cents"], 1000);
    assert_eq!(payment["currency"], "EUR");
    assert_eq!(payment["description"], "Coffee beans");
    assert_eq!(payment["status"], "captured");
    assert!(
        payment["id"]
            .as_str()
            .is_some_and(|id| id.parse::<Uuid>().is_ok())
    );
    assert!(payment["created_at"].is_string());
    assert_eq!(payments_of(&app, owner).await, 1);
    let event = audit_event(&first_id, "payment.created");
    assert_eq!(event["outcome"], "allowed");
    assert_eq!(event["subject"], owner.to_string());
    assert!(
        !format!("{event:?}").contains("Coffee beans"),
        "the body is never logged"
    );

    // The same request, written differently (key order, whitespace): the stored answer.
    let retry = pay(
        &app,
        &client,
        Some(&key),
        r#"{ "description":"Coffee beans","currency":"EUR",   "amount_cents":1000 }"#,
    )
    .await;
    assert_eq!(retry.status(), 201);
    assert_eq!(header(&retry, "idempotent-replayed"), "true");
    assert_eq!(retry.text().await.expect("a body"), first_body, "identical");
    assert_eq!(payments_of(&app, owner).await, 1, "charged once");
}

#[tokio::test]
async fn a_key_reused_with_a_different_request_is_refused() {
    let app = spawn_app().await;
    let (owner, email) = payer(&app, "reuser@example.com").await;
    let client = client_of(&app, &email).await;
    assert_eq!(
        pay(&app, &client, Some("order-42"), TEN_EUROS)
            .await
            .status(),
        201
    );

    let other = pay(
        &app,
        &client,
        Some("order-42"),
        r#"{"amount_cents": 100000, "currency": "EUR", "description": "Coffee beans"}"#,
    )
    .await;
    assert_eq!(other.status(), 422);
    let id = request_id(&other);
    let body = json_body(other).await;
    assert_eq!(
        body["error"],
        "This Idempotency-Key was used with a different request"
    );
    assert!(body["request_id"].is_string(), "{body}");
    let event = audit_event(&id, "payment.idempotency_conflict");
    assert_eq!(event["outcome"], "denied");
    assert!(
        !format!("{event:?}").contains("100000"),
        "the body is never logged"
    );
    assert_eq!(payments_of(&app, owner).await, 1);
}

#[tokio::test]
async fn a_missing_or_malformed_key_is_a_json_400_and_charges_nothing() {
    let app = spawn_app().await;
    let (owner, email) = payer(&app, "keyless@example.com").await;
    let client = client_of(&app, &email).await;
    let missing = pay(&app, &client, None, TEN_EUROS).await;
    assert_eq!(missing.status(), 400);
    let body = json_body(missing).await;
    assert_eq!(body["error"], "Validation failed");
    assert_eq!(
        body["details"]["fieldErrors"]["Idempotency-Key"],
        json!(["is required"]),
        "{body}"
    );

    let too_long = "k".repeat(256);
    for (key, why) in [
        (too_long.as_str(), "256 characters"),
        ("tab\there", "a control character"),
        ("", "empty"),
    ] {
        let response = pay(&app, &client, Some(key), TEN_EUROS).await;
        assert_eq!(response.status(), 400, "{why}");
        let body = json_body(response).await;
        assert!(
            body["details"]["fieldErrors"]["Idempotency-Key"].is_array(),
            "{why}: {body}"
        );
    }
    let not_ascii = app
        .client
        .post(app.url("/v1/payments"))
        .bearer_auth(admin_access_token(&app.auth, &email).await)
        .header(
            "idempotency-key",
            reqwest::header::HeaderValue::from_bytes("clé".as_bytes()).expect("obs-text"),
        )
        .header("content-type", "application/json")
        .body(TEN_EUROS)
        .send()
        .await
        .expect("request");
    assert_eq!(not_ascii.status(), 400, "not printable ASCII");
    let longest = "k".repeat(255);
    assert_eq!(
        pay(&app, &client, Some(&longest), TEN_EUROS).await.status(),
        201
    );
    assert_eq!(
        payments_of(&app, owner).await,
        1,
        "only the valid key charged"
    );
}

#[tokio::test]
async fn keys_are_scoped_to_their_caller() {
    let app = spawn_app().await;
    let (alice, alice_email) = payer(&app, "alice@example.com").await;
    let (bob, bob_email) = payer(&app, "bob@example.com").await;
    let alice_client = client_of(&app, &alice_email).await;
    let bob_client = client_of(&app, &bob_email).await;

    let from_alice = pay(&app, &alice_client, Some("shared-key"), TEN_EUROS).await;
    let from_bob = pay(&app, &bob_client, Some("shared-key"), TEN_EUROS).await;
    assert_eq!(from_alice.status(), 201);
    assert_eq!(from_bob.status(), 201);
    assert_eq!(
        header(&from_bob, "idempotent-replayed"),
        "",
        "not alice's answer"
    );
    let (from_alice, from_bob) = (json_body(from_alice).await, json_body(from_bob).await);
    assert_ne!(from_alice["id"], from_bob["id"]);
    assert_eq!(payments_of(&app, alice).await, 1);
    assert_eq!(payments_of(&app, bob).await, 1);
}

#[tokio::test]
async fn an_expired_key_is_forgotten_and_makes_a_new_payment() {
    let app = spawn_app().await;
    let (owner, email) = payer(&app, "later@example.com").await;
    let client = client_of(&app, &email).await;
    let first = json_body(pay(&app, &client, Some("monthly"), TEN_EUROS).await).await;

    // One second before the end of its lifetime the key still replays...
    app.clock.advance(KEY_TTL_SECONDS - 1);
    let client = client_of(&app, &email).await; // The first token has expired meanwhile.
    let replay = pay(&app, &client, Some("monthly"), TEN_EUROS).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(header(&replay, "idempotent-replayed"), "true");
    assert_eq!(json_body(replay).await["id"], first["id"]);

    // ...at its end it is forgotten: the same key and body make a second payment.
    app.clock.advance(1);
    let again = pay(&app, &client, Some("monthly"), TEN_EUROS).await;
    assert_eq!(again.status(), 201);
    assert_eq!(header(&again, "idempotent-replayed"), "");
    assert_ne!(json_body(again).await["id"], first["id"]);
    assert_eq!(payments_of(&app, owner).await, 2);
}

#[tokio::test]
async fn expired_keys_of_callers_who_never_return_are_purged() {
    use app::persistence::idempotency_keys;
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = spawn_app().await;
    let (_, email) = payer(&app, "once@example.com").await;
    let client = client_of(&app, &email).await;
    assert_eq!(
        pay(&app, &client, Some("one-off"), TEN_EUROS)
            .await
            .status(),
        201
    );
    let stored = || async {
        idempotency_keys::Entity::find()
            .count(&app.auth.db)
            .await
            .expect("count")
    };
    assert_eq!(stored().await, 1);
    // Not yet expired: kept.
    let now = || chrono::DateTime::from_timestamp(app.clock.now() as i64, 0).expect("time");
    assert_eq!(
        idempotency_keys::delete_expired(&app.auth.db, now())
            .await
            .expect("purge"),
        0
    );
    app.clock.advance(KEY_TTL_SECONDS);
    // The hourly purge the service runs: the caller never paid again, the key goes anyway.
    assert_eq!(
        idempotency_keys::delete_expired(&app.auth.db, now())
            .await
            .expect("purge"),
        1
    );
    assert_eq!(stored().await, 0);
}

/// Sends ten identical requests at once; expects one payment, and every answer a 201 with its id.
/// The key table is locked (through `database_url`, beside the service's pool) until all ten
/// wait on it, so their transactions really race when it is released.
async fn ten_concurrent_duplicates_capture_one_payment(app: &TestApp, database_url: &str) {
    use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    let (owner, email) = payer(app, "eager@example.com").await;
    let client = client_of(app, &email).await;
    let blocker = sea_orm::Database::connect(database_url)
        .await
        .expect("a second connection");
    let lock = blocker.begin().await.expect("begin");
    let take_lock = match blocker.get_database_backend() {
        DbBackend::Postgres => "LOCK TABLE idempotency_keys IN EXCLUSIVE MODE",
        // Any write takes SQLite's one write lock.
        _ => "DELETE FROM idempotency_keys WHERE owner_id IS NULL",
    };
    lock.execute_unprepared(take_lock).await.expect("lock");
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let request = client
            .post(app.url("/v1/payments"))
            .header("idempotency-key", "double-click")
            .header("content-type", "application/json")
            .body(TEN_EUROS);
        requests.spawn(async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let replayed = header(&response, "idempotent-replayed") == "true";
            let body = json_body(response).await;
            (status, replayed, body)
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        requests.try_join_next().is_none(),
        "every request waits for the key table"
    );
    lock.commit().await.expect("unlock");
    let answers = requests.join_all().await;
    for (status, _, body) in &answers {
        assert_eq!(*status, 201, "{body}");
    }
    let first_id = &answers[0].2["id"];
    assert!(
        answers.iter().all(|(_, _, body)| &body["id"] == first_id),
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1,
        "one original, nine replays"
    );
    assert_eq!(payments_of(app, owner).await, 1, "charged once");
}

#[tokio::test]
async fn concurrent_duplicates_capture_one_payment_on_sqlite() {
    let data_dir = tempfile::tempdir().expect("data dir");
    let url = format!("sqlite://{}/app.db?mode=rwc", data_dir.path().display());
    let settings =
        crate::helpers::settings(data_dir.path(), &format!("[database]\nurl = \"{url}\"\n"));
    let app = crate::helpers::spawn_app_with_settings(data_dir, settings).await;
    ten_concurrent_duplicates_capture_one_payment(&app, &url).await;
}

#[tokio::test]
async fn concurrent_duplicates_capture_one_payment_on_postgres() {
    let Some(admin_url) = postgres_admin_url().await else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let url = database.url();
    let app = spawn_app_with(&format!("[database]\nurl = \"{url}\"\n")).await;
    ten_concurrent_duplicates_capture_one_payment(&app, &url).await;
    app.stop().await.expect("stopped");
    database.drop_database().await;
}

#[tokio::test]
async fn a_credential_without_payments_write_is_refused() {
    let app = spawn_app().await;
    let (owner, email) = payer(&app, "viewer@example.com").await;
    let client = client_of(&app, &email).await;
    let created = client
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "read-only", "scopes": ["profile", "notes:read"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let secret = json_body(created).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let refused = app
        .client
        .post(app.url("/v1/payments"))
        .header("x-api-key", secret)
        .header("idempotency-key", "no-scope")
        .json(&json!({"amount_cents": 1000, "currency": "EUR"}))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 403);
    assert!(
        header(&refused, "www-authenticate").contains("payments:write"),
        "names the missing scope"
    );
    assert_eq!(payments_of(&app, owner).await, 0);
}

#[tokio::test]
async fn the_document_declares_the_key_the_replay_header_and_the_422() {
    let app = spawn_app().await;
    let document = crate::helpers::published_document(&app).await;
    let operation = &document["paths"]["/v1/payments"]["post"];
    let key = operation["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["name"] == "Idempotency-Key")
        .expect("the Idempotency-Key parameter");
    assert_eq!(key["in"], "header");
    assert_eq!(key["required"], true);
    assert_eq!(key["schema"]["maxLength"], 255);
    let created = &operation["responses"]["201"];
    assert!(
        created["headers"].as_object().is_some_and(|headers| headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("idempotent-replayed"))),
        "{created}"
    );
    assert!(operation["responses"]["422"].is_object(), "{operation}");
    let scopes = operation["security"].to_string();
    assert!(scopes.contains("payments:write"), "{scopes}");
}

/// Issue 7's fault test: the link to PostgreSQL is cut while payments are in flight. Each request
/// gets a 201 or a JSON 503 (never a 500), and once the database is back a retry with the same key
/// leaves exactly one payment per key: the payment and its idempotency record are written in one
/// transaction, so a cut never leaves one without the other (a lost or a doubled write).
#[tokio::test]
async fn a_database_cut_mid_write_leaves_no_partial_payment_and_retries_capture_each_once() {
    let Some(admin_url) = postgres_admin_url().await else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let (proxy, url) = database.behind_proxy().await;
    let app = spawn_app_with(&format!("[database]\nurl = \"{url}\"\n")).await;
    let (owner, email) = payer(&app, "interrupted@example.com").await;
    let client = client_of(&app, &email).await;
    let body = |key: &str| {
        json!({"amount_cents": 1000, "currency": "EUR", "description": key}).to_string()
    };

    let mut keys = Vec::new();
    let mut interrupted = Vec::new();
    // Requests leave every few milliseconds and the link is cut among them, so some have
    // finished, some are inside their transaction and some have not reached the database.
    for (round, spacing_ms) in [2u64, 5, 10].into_iter().enumerate() {
        let mut requests = tokio::task::JoinSet::new();
        for n in 0..10 {
            let key = format!("cut-{round}-{n}");
            keys.push(key.clone());
            let request = client
                .post(app.url("/v1/payments"))
                .header("content-type", "application/json")
                .header("idempotency-key", &key)
                .body(body(&key));
            requests.spawn(async move {
                let response = request.send().await.expect("request");
                let status = response.status().as_u16();
                let body = response.text().await.expect("body");
                (key, status, body)
            });
            tokio::time::sleep(std::time::Duration::from_millis(spacing_ms)).await;
            if n == 6 {
                proxy.cut();
            }
        }
        while let Some(answered) = requests.join_next().await {
            let (key, status, body) = answered.expect("no panic");
            match status {
                201 => {}
                503 => {
                    let body: Value = serde_json::from_str(&body).expect("a JSON 503");
                    assert_eq!(body["error"], "Service unavailable");
                    interrupted.push(key);
                }
                other => panic!("{key}: {other} {body}"),
            }
        }
        proxy.restore();
    }

    assert!(!interrupted.is_empty(), "the cut interrupted nothing");
    // Back: every interrupted payment is retried with its key until it is answered.
    for key in &interrupted {
        let mut captured = false;
        for _ in 0..50 {
            let response = pay(&app, &client, Some(key), &body(key)).await;
            if response.status() == 201 {
                captured = true;
                break;
            }
            assert_eq!(response.status(), 503, "{key}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(captured, "{key} was never captured");
    }
    let stored = app::persistence::payments::Entity::find()
        .filter(app::persistence::payments::Column::OwnerId.eq(owner))
        .all(&app.auth.db)
        .await
        .expect("payments");
    for key in &keys {
        let of_key = stored
            .iter()
            .filter(|payment| payment.description.as_deref() == Some(key.as_str()))
            .count();
        assert_eq!(of_key, 1, "{key}: one payment, not {of_key}");
    }
    assert_eq!(payments_of(&app, owner).await, keys.len() as u64);
    app.stop().await.expect("clean stop");
    database.drop_database().await;
}

#[tokio::test]
async fn a_payment_by_a_principal_that_is_no_local_user_is_refused_with_an_audit_event() {
    let app = spawn_app().await;
    let subject = "https://idp.example.com#partner-service";
    let client = client_as(&app, subject, &["payments:write"]);
    let payment = client
        .post(app.url("/v1/payments"))
        .header("idempotency-key", "external-1")
        .json(&json!({"amount_cents": 1000, "currency": "EUR"}))
        .send()
        .await
        .expect("request");
    assert_principal_refused(&payment, subject, "not_a_local_user");
}

#[tokio::test]
async fn a_payment_by_a_user_id_with_no_account_is_refused_with_an_audit_event() {
    let app = spawn_app().await;
    let subject = uuid::Uuid::new_v4().to_string();
    let client = client_as(&app, &subject, &["payments:write"]);
    let payment = client
        .post(app.url("/v1/payments"))
        .header("idempotency-key", "unknown-user-1")
        .json(&json!({"amount_cents": 1000, "currency": "EUR"}))
        .send()
        .await
        .expect("request");
    assert_principal_refused(&payment, &subject, "unknown_user");
}

#[tokio::test]
async fn payments_have_their_own_tier_per_principal() {
    let app = spawn_app_with(&limits(&[("payment", 1, 60)])).await;
    let pay = |key: &'static str| {
        app.admin
            .post(app.url("/v1/payments"))
            .header("idempotency-key", key)
            .json(&json!({"amount_cents": 1250, "currency": "EUR"}))
            .send()
    };
    assert_eq!(pay("first").await.expect("request").status(), 201);
    assert_limited(
        pay("second").await.expect("request"),
        "payment",
        "principal",
    )
    .await;
    app.clock.advance(60);
    assert_eq!(pay("third").await.expect("request").status(), 201);
}
