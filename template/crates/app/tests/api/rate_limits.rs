//! RATE-1 .. RATE-6 over a real listener: each tier trips at its configured limit and recovers
//! (the in-process store reads the test clock), client addresses from 127.0.0.x, forwarded
//! headers, the bounded key map, and the Redis store shared by two instances and cut off.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{
    CuttableProxy, RunningBinary, TestApp, audit_events_for, client_from, client_trusting,
    json_body, spawn_app_with,
};

/// `[rate_limit]` overrides: `name = { requests, period_seconds }` each, on the in-process
/// store whatever the run's store: these tests move the test clock to recover, and only the
/// in-process store follows it (the Redis store's tests below use Redis's own clock).
pub(crate) fn limits(quotas: &[(&str, u32, u64)]) -> String {
    rate_limit_section("store = \"memory\"\n", quotas)
}

/// [`limits`] on the run's store (in-process, or Redis with `TEST_RATE_LIMIT_STORE=redis`): for
/// tests that never move the clock.
fn limits_on_the_runs_store(quotas: &[(&str, u32, u64)]) -> String {
    rate_limit_section("", quotas)
}

fn rate_limit_section(store: &str, quotas: &[(&str, u32, u64)]) -> String {
    let mut toml = format!("[rate_limit]\n{store}");
    for (name, requests, period) in quotas {
        toml.push_str(&format!(
            "{name} = {{ requests = {requests}, period_seconds = {period} }}\n"
        ));
    }
    toml
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// The audit events of a response's request.
fn events_of(response: &reqwest::Response) -> Vec<std::collections::BTreeMap<String, String>> {
    audit_events_for(header(response, "x-request-id"))
}

async fn get(client: &reqwest::Client, app: &TestApp, path: &str) -> reqwest::Response {
    client.get(app.url(path)).send().await.expect("request")
}

async fn login(
    client: &reqwest::Client,
    app: &TestApp,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request")
}

/// Asserts a 429 with the uniform body, `Retry-After` and the tier's headers, audited with the
/// tier and the kind of key.
pub(crate) async fn assert_limited(response: reqwest::Response, tier: &str, key_kind: &str) {
    assert_eq!(response.status(), 429, "tier {tier}");
    let retry_after: u64 = header(&response, "retry-after")
        .parse()
        .expect("Retry-After");
    assert!(retry_after >= 1);
    assert!(
        header(&response, "ratelimit-policy").starts_with(&format!("\"{tier}\";q=")),
        "{:?}",
        response.headers()
    );
    assert!(header(&response, "ratelimit").starts_with(&format!("\"{tier}\";r=0;t=")));
    let events = events_of(&response);
    let exceeded = events
        .iter()
        .find(|event| event.get("event").map(String::as_str) == Some("ratelimit.exceeded"))
        .unwrap_or_else(|| panic!("no ratelimit.exceeded event in {events:?}"));
    assert_eq!(exceeded["reason"], key_kind);
    assert_eq!(exceeded["policy"], tier);
    assert_eq!(json_body(response).await["error"], "Too many requests");
}

#[tokio::test]
async fn anonymous_requests_are_limited_per_address_and_recover() {
    let app = spawn_app_with(&limits(&[("anonymous", 3, 60)])).await;
    for remaining in [2, 1, 0] {
        let response = get(&app.client, &app, "/.well-known/jwks.json").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"anonymous\";q=3;w=60"
        );
        assert!(
            header(&response, "ratelimit").starts_with(&format!("\"anonymous\";r={remaining};"))
        );
    }
    let limited = get(&app.client, &app, "/.well-known/jwks.json").await;
    assert_eq!(header(&limited, "retry-after"), "20");
    assert_limited(limited, "anonymous", "client_ip").await;
    // A credential that is refused counts as anonymous: guessing tokens spends the same budget.
    let guessed = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth("guessed")
        .send()
        .await
        .expect("request");
    assert_eq!(guessed.status(), 429);
    // Another address has its own budget.
    let neighbour = client_from(app.ca_cert.as_deref(), loopback(2));
    assert_eq!(
        get(&neighbour, &app, "/.well-known/jwks.json")
            .await
            .status(),
        200
    );
    // One request's allowance returns after a third of the period.
    app.clock.advance(20);
    assert_eq!(
        get(&app.client, &app, "/.well-known/jwks.json")
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&app.client, &app, "/.well-known/jwks.json")
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn the_exempt_probes_are_never_limited() {
    let app = spawn_app_with(&limits(&[("anonymous", 1, 60)])).await;
    for _ in 0..10 {
        for path in ["/health/live", "/health/ready"] {
            let response = get(&app.client, &app, path).await;
            assert_eq!(response.status(), 200);
            assert!(response.headers().get("ratelimit").is_none());
        }
        // HEAD is served by the GET handler and follows its rule.
        let head = app
            .client
            .head(app.url("/health/live"))
            .send()
            .await
            .expect("request");
        assert_eq!(head.status(), 200);
    }
    assert_eq!(
        get(&app.client, &app, "/.well-known/jwks.json")
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&app.client, &app, "/.well-known/jwks.json")
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn an_admitted_request_answered_with_an_error_carries_the_headers_too() {
    let app = spawn_app_with(&limits(&[("authenticated", 5, 60)])).await;
    let missing = app
        .admin
        .get(app.url(&format!("/v1/users/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    assert_eq!(
        header(&missing, "ratelimit-policy"),
        "\"authenticated\";q=5;w=60"
    );
    assert!(header(&missing, "ratelimit").starts_with("\"authenticated\";r=4;"));
    let invalid = app
        .admin
        .post(app.url("/v1/users"))
        .json(&json!({"name": ""}))
        .send()
        .await
        .expect("request");
    assert_eq!(invalid.status(), 400);
    assert!(header(&invalid, "ratelimit").starts_with("\"authenticated\";r=3;"));
}

#[tokio::test]
async fn authenticated_requests_are_limited_per_principal_from_any_address() {
    let app = spawn_app_with(&limits(&[("authenticated", 3, 60), ("anonymous", 1, 60)])).await;
    for last in 2..=4 {
        let response = client_from(app.ca_cert.as_deref(), loopback(last))
            .get(app.url("/v1/me"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"authenticated\";q=3;w=60"
        );
    }
    // The budget is the principal's: a fresh address does not renew it, and the principal's API
    // key draws on it too.
    let fresh = client_from(app.ca_cert.as_deref(), loopback(5));
    let limited = fresh
        .get(app.url("/v1/me"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("request");
    assert_limited(limited, "authenticated", "principal").await;
    let with_key = fresh
        .get(app.url("/v1/me"))
        .header("x-api-key", &app.credentials.api_key)
        .send()
        .await
        .expect("request");
    assert_eq!(with_key.status(), 429);
    // The addresses the principal used keep their anonymous budget (one request each).
    assert_eq!(
        get(&fresh, &app, "/.well-known/jwks.json").await.status(),
        200
    );
    app.clock.advance(20);
    assert_eq!(
        fresh
            .get(app.url("/v1/me"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
}

#[tokio::test]
async fn login_is_limited_per_address_over_many_accounts() {
    let app = spawn_app_with(&limits(&[("login", 2, 60)])).await;
    for n in 0..2 {
        let response = login(&app.client, &app, &format!("guess{n}@example.com"), "wrong").await;
        assert_eq!(response.status(), 401);
    }
    let limited = login(&app.client, &app, "guess9@example.com", "wrong").await;
    assert_limited(limited, "login", "client_ip").await;
    // The refused login did not spend the address's general budget.
    assert_eq!(
        get(&app.client, &app, "/.well-known/jwks.json")
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn login_is_limited_per_account_over_many_addresses() {
    let app = spawn_app_with(&limits(&[("login_account", 3, 300)])).await;
    let admin = app.credentials.admin.email.clone();
    for last in 10..13 {
        let attacker = client_from(app.ca_cert.as_deref(), loopback(last));
        assert_eq!(
            login(&attacker, &app, &admin, "wrong-guess").await.status(),
            401
        );
    }
    // A fourth address, and a spelling with other case and spaces: the same account, refused.
    let attacker = client_from(app.ca_cert.as_deref(), loopback(13));
    let limited = login(&attacker, &app, &format!(" {}", admin.to_uppercase()), "x").await;
    let events = events_of(&limited);
    assert_limited(limited, "login_account", "account").await;
    let recorded = format!("{events:?}");
    assert!(
        !recorded.to_lowercase().contains(&admin),
        "the email was logged: {recorded}"
    );
    // Even the right password waits: the account is what is protected.
    let owner = client_from(app.ca_cert.as_deref(), loopback(20));
    let password = app.credentials.admin.password.clone();
    assert_eq!(login(&owner, &app, &admin, &password).await.status(), 429);
    // Other accounts are not affected.
    assert_eq!(
        login(&owner, &app, "other@example.com", "x").await.status(),
        401
    );
    // Three failures per 300 seconds: one returns every 100 seconds.
    app.clock.advance(100);
    assert_eq!(login(&owner, &app, &admin, &password).await.status(), 200);
    // Only failures count: the owner logging in again and again is never limited.
    for _ in 0..5 {
        assert_eq!(login(&owner, &app, &admin, &password).await.status(), 200);
    }
}

/// One response read off a raw connection: its status and its request id.
struct RawAnswer {
    status: u16,
    request_id: String,
}

/// Writes `request` (a whole HTTP/1.1 request asking to close) on `stream` once `start` lets
/// every sender go, and reads the answer to the end.
async fn send_when_released(
    mut stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    request: Vec<u8>,
    start: std::sync::Arc<tokio::sync::Barrier>,
) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    start.wait().await;
    stream.write_all(&request).await.expect("write");
    stream.flush().await.expect("flush");
    let mut answer = Vec::new();
    // The server closes after its answer (`Connection: close`); a reset after it is no error.
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let request_id = answer
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no X-Request-Id in {answer:?}"));
    RawAnswer { status, request_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_wrong_logins_for_one_account_get_no_more_password_checks_than_its_quota() {
    const ATTEMPTS: u8 = 30;
    let app = spawn_app_with(&limits_on_the_runs_store(&[("login_account", 3, 300)])).await;
    let body = json!({"email": app.credentials.admin.email, "password": "wrong-guess"}).to_string();
    let request = format!(
        "POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    // Every connection is open, from an address of its own, before any request is written;
    // then all requests leave together.
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(usize::from(ATTEMPTS)));
    let hashes_before = app.auth.passwords.hashes_computed();
    let mut senders = Vec::new();
    for n in 0..ATTEMPTS {
        let stream = app.tls_stream_from(loopback(100 + n)).await;
        senders.push(tokio::spawn(send_when_released(
            stream,
            request.clone(),
            std::sync::Arc::clone(&start),
        )));
    }
    let mut answers = Vec::new();
    for sender in senders {
        answers.push(sender.await.expect("sender"));
    }
    let password_checks = app.auth.passwords.hashes_computed() - hashes_before;
    let statuses: Vec<u16> = answers.iter().map(|answer| answer.status).collect();
    let checked_answers = answers
        .iter()
        .filter(|answer| {
            audit_events_for(&answer.request_id)
                .iter()
                .any(|event| event.get("event").map(String::as_str) == Some("authn.password"))
        })
        .count();
    // Three failures per 300 seconds: three guesses are checked (and answered 401), every other
    // attempt is refused before any password work.
    assert_eq!(password_checks, 3, "statuses {statuses:?}");
    assert_eq!(checked_answers, 3, "statuses {statuses:?}");
    assert_eq!(
        statuses.iter().filter(|status| **status == 401).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|status| [401, 429].contains(status)),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn the_token_endpoint_has_its_own_tier() {
    let app = spawn_app_with(&limits(&[("token", 2, 60)])).await;
    let attempt = || async {
        app.client
            .post(app.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&client_id=nobody&client_secret=wrong")
            .send()
            .await
            .expect("request")
    };
    for _ in 0..2 {
        assert_ne!(attempt().await.status(), 429);
    }
    assert_limited(attempt().await, "token", "client_ip").await;
}

#[tokio::test]
async fn password_reset_is_limited_per_account_and_per_address_and_confirm_per_address() {
    let app = spawn_app_with(&limits(&[
        ("password_reset_account", 2, 3600),
        ("password_reset", 4, 3600),
        ("password_reset_confirm", 2, 900),
    ]))
    .await;
    let reset = |client: reqwest::Client, email: &'static str| {
        let url = app.url("/v1/auth/password-reset");
        async move {
            client
                .post(url)
                .json(&json!({ "email": email }))
                .send()
                .await
                .expect("request")
        }
    };
    let ca = app.ca_cert.as_deref();
    assert_eq!(
        reset(client_from(ca, loopback(30)), "victim@example.com")
            .await
            .status(),
        202
    );
    assert_eq!(
        reset(client_from(ca, loopback(31)), "Victim@Example.com")
            .await
            .status(),
        202
    );
    let limited = reset(client_from(ca, loopback(32)), "victim@example.com").await;
    assert_limited(limited, "password_reset_account", "account").await;
    // One address asking for many accounts runs out of its own tier.
    for email in [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ] {
        assert_eq!(reset(app.client.clone(), email).await.status(), 202);
    }
    let limited = reset(app.client.clone(), "e@example.com").await;
    assert_limited(limited, "password_reset", "client_ip").await;

    let confirm = || async {
        app.client
            .post(app.url("/v1/auth/password-reset/confirm"))
            .json(&json!({"token": "A".repeat(43), "new_password": "plover-quartz-lantern-9"}))
            .send()
            .await
            .expect("request")
    };
    for _ in 0..2 {
        assert_ne!(confirm().await.status(), 429);
    }
    assert_limited(confirm().await, "password_reset_confirm", "client_ip").await;
}

#[tokio::test]
async fn api_key_creation_and_rotation_share_a_tier_per_principal() {
    let app = spawn_app_with(&limits(&[("api_key_management", 2, 3600)])).await;
    let created = app
        .admin
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "ci", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let id = json_body(created).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let rotated = app
        .admin
        .post(app.url(&format!("/v1/api-keys/{id}/rotate")))
        .send()
        .await
        .expect("request");
    assert_eq!(rotated.status(), 201, "{:?}", rotated.text().await);
    let limited = app
        .admin
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "ci2", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_limited(limited, "api_key_management", "principal").await;
    // Listing keys is not a sensitive operation.
    assert_eq!(
        app.admin
            .get(app.url("/v1/api-keys"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
}

#[tokio::test]
async fn a_credential_without_the_scopes_does_not_spend_its_owners_sensitive_budget() {
    let app = spawn_app_with(&limits(&[("api_key_management", 2, 3600)])).await;
    let created = app
        .admin
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "read-only", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let weak_key = json_body(created).await["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    // A leaked read-only key trying to mint keys: refused, and the owner's budget untouched.
    for _ in 0..3 {
        let refused = app
            .client
            .post(app.url("/v1/api-keys"))
            .header("x-api-key", &weak_key)
            .json(&json!({"name": "stolen", "scopes": ["profile"]}))
            .send()
            .await
            .expect("request");
        assert_eq!(refused.status(), 403);
    }
    let second = app
        .admin
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "ci", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(second.status(), 201);
}

/// The statuses of `/.well-known/jwks.json` requests naming each of `forwarded` in `X-Forwarded-For`.
async fn statuses(app: &TestApp, forwarded: &[&str]) -> Vec<u16> {
    let mut statuses = Vec::new();
    for address in forwarded {
        statuses.push(anonymous_status(app, &[("x-forwarded-for", address.to_string())]).await);
    }
    statuses
}

/// The status of one anonymous `/.well-known/jwks.json` request carrying `headers`.
async fn anonymous_status(app: &TestApp, headers: &[(&str, String)]) -> u16 {
    let mut request = app.client.get(app.url("/.well-known/jwks.json"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("request").status().as_u16()
}

/// An address nobody has used before, as a client inventing one per request would write it.
fn random_address() -> IpAddr {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[tokio::test]
async fn a_forged_forwarded_for_is_ignored_and_a_trusted_proxys_is_honoured() {
    let direct = spawn_app_with(&limits(&[("anonymous", 2, 60)])).await;
    // From an untrusted peer, each "client" named in the header is the same peer.
    assert_eq!(
        statuses(&direct, &["203.0.113.1", "203.0.113.2", "203.0.113.3"]).await,
        [200, 200, 429]
    );
    let behind_proxy = spawn_app_with(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{}",
        limits(&[("anonymous", 2, 60)])
    ))
    .await;
    assert_eq!(
        statuses(
            &behind_proxy,
            &[
                "203.0.113.1",
                "203.0.113.2",
                "203.0.113.3",
                "203.0.113.1",
                "203.0.113.1"
            ]
        )
        .await,
        [200, 200, 200, 200, 429]
    );
}

/// A forwarding header naming `address`, as a proxy (or a client) writes it.
type ForwardingHeader = fn(IpAddr) -> (&'static str, String);

fn x_forwarded_for(address: IpAddr) -> (&'static str, String) {
    ("x-forwarded-for", address.to_string())
}

fn forwarded(address: IpAddr) -> (&'static str, String) {
    ("forwarded", format!("for={address};proto=https"))
}

/// Behind a trusted proxy declared to write `declared` (`server.forwarded_header`), every
/// request names the same client in it and a fresh invented address in the other header: the
/// anonymous tier trips as for one client, and another client the proxy names has its own budget
/// (RATE-5).
async fn assert_the_undeclared_header_changes_nothing(
    declared: &str,
    proxy_writes: ForwardingHeader,
    client_writes: ForwardingHeader,
) {
    let app = spawn_app_with(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\nforwarded_header = \"{declared}\"\n{}",
        limits(&[("anonymous", 3, 60)])
    ))
    .await;
    let client = IpAddr::from([203, 0, 113, 7]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let headers = [proxy_writes(client), client_writes(random_address())];
        statuses.push(anonymous_status(&app, &headers).await);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429], "declared {declared}");
    let another_client = proxy_writes(IpAddr::from([203, 0, 113, 8]));
    assert_eq!(anonymous_status(&app, &[another_client]).await, 200);
}

#[tokio::test]
async fn behind_a_proxy_writing_x_forwarded_for_a_clients_own_forwarded_header_changes_nothing() {
    assert_the_undeclared_header_changes_nothing("x-forwarded-for", x_forwarded_for, forwarded)
        .await;
}

#[tokio::test]
async fn behind_a_proxy_writing_forwarded_a_clients_own_x_forwarded_for_changes_nothing() {
    assert_the_undeclared_header_changes_nothing("forwarded", forwarded, x_forwarded_for).await;
}

#[tokio::test]
async fn a_trusted_proxys_request_without_the_declared_header_is_the_proxys_own() {
    let app = spawn_app_with(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\nforwarded_header = \"forwarded\"\n{}",
        limits(&[("anonymous", 2, 60)])
    ))
    .await;
    // Only the undeclared header, a new address each time: the proxy's own requests.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(anonymous_status(&app, &[x_forwarded_for(random_address())]).await);
    }
    assert_eq!(statuses, [200, 200, 429]);
    // Direct from another loopback address (not a trusted proxy): its own budget.
    let other = client_from(app.ca_cert.as_deref(), loopback(2));
    assert_eq!(
        get(&other, &app, "/.well-known/jwks.json").await.status(),
        200
    );
}

#[tokio::test]
async fn a_flood_of_client_addresses_stays_within_the_key_bound() {
    let app = spawn_app_with(&format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{}max_keys_per_tier = 1000\n",
        limits(&[("anonymous", 5, 60)])
    ))
    .await;
    let security::rate_limit::Store::Memory(store) = app.rate_limits.limiter().store() else {
        panic!("the test configuration uses the in-process store");
    };
    let known = client_from(app.ca_cert.as_deref(), loopback(1));
    for batch in 0..30u32 {
        let requests = (0..50u32).map(|n| {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + batch * 50 + n);
            app.client
                .get(app.url("/nowhere"))
                .header("x-forwarded-for", address.to_string())
                .send()
        });
        for response in futures_util::future::join_all(requests).await {
            assert_ne!(response.expect("request").status(), 500);
        }
        assert!(
            store.len("anonymous") <= 1000,
            "{} keys",
            store.len("anonymous")
        );
    }
    // Newcomers to the full map were pooled in overflow buckets; once the flood's buckets are
    // full again they are dropped and the memory returns.
    app.clock.advance(120);
    store.retain_recent();
    assert!(
        store.len("anonymous") < 10,
        "{} keys",
        store.len("anonymous")
    );
    assert_eq!(
        get(&known, &app, "/.well-known/jwks.json").await.status(),
        200
    );
}

#[tokio::test]
async fn a_flood_of_invented_accounts_does_not_lift_the_limit_on_a_victims_reset_mails() {
    let app = spawn_app_with(&format!(
        "{}max_keys_per_tier = 1000\n",
        limits(&[("password_reset_account", 2, 3600)])
    ))
    .await;
    let security::rate_limit::Store::Memory(store) = app.rate_limits.limiter().store() else {
        panic!("the test configuration uses the in-process store");
    };
    let reset = |client: &reqwest::Client, email: String| {
        client
            .post(app.url("/v1/auth/password-reset"))
            .json(&json!({ "email": email }))
            .send()
    };
    // The attacker fills the account map with invented addresses (the last ones already share
    // buckets, and some of those run out)...
    for batch in 0..20u32 {
        let requests = (0..50u32).map(|n| {
            reset(
                &app.client,
                format!("invented{}@example.com", batch * 50 + n),
            )
        });
        for response in futures_util::future::join_all(requests).await {
            let status = response.expect("request").status();
            assert!([202, 429].contains(&status.as_u16()), "{status}");
        }
    }
    assert!(
        store.len("password_reset_account") <= 1000,
        "{} keys",
        store.len("password_reset_account")
    );
    // ...then asks for reset mails to a victim from many addresses: still two an hour at most
    // (the victim's budget may be shared with some invented accounts, never unlimited).
    let mut statuses = Vec::new();
    let mut pooled = Vec::new();
    for last in 40..45 {
        let response = reset(
            &client_from(app.ca_cert.as_deref(), loopback(last)),
            "victim@example.com".to_owned(),
        )
        .await
        .expect("request");
        statuses.push(response.status().as_u16());
        pooled.extend(events_of(&response).into_iter().filter(|event| {
            event.get("event").map(String::as_str) == Some("ratelimit.key_pooled")
        }));
    }
    assert!(
        statuses.iter().filter(|status| **status == 202).count() <= 2,
        "{statuses:?}"
    );
    assert!(
        statuses[2..].iter().all(|status| *status == 429),
        "{statuses:?}"
    );
    // Each request charged to a shared bucket is audited with its tier.
    assert_eq!(pooled.len(), statuses.len(), "{pooled:?}");
    assert!(
        pooled.iter().all(
            |event| event["policy"] == "password_reset_account" && event["reason"] == "account"
        ),
        "{pooled:?}"
    );
}

#[tokio::test]
async fn the_published_document_declares_the_limits() {
    let app = spawn_app_with("").await;
    let document = json_body(get(&app.client, &app, "/openapi.json").await).await;
    let responses = |path: &str, method: &str| document["paths"][path][method]["responses"].clone();
    assert!(responses("/v1/me", "get")["429"]["headers"]["Retry-After"].is_object());
    assert!(responses("/v1/auth/login", "post")["429"].is_object());
    assert!(responses("/v1/auth/login", "post")["503"].is_object());
    assert!(responses("/health/live", "get")["429"].is_null());
    assert!(responses("/health/ready", "get")["429"].is_null());
}

/// The Redis server for these tests (`TEST_REDIS_URL`, default the local one), as host:port;
/// `None`, after saying so, when unreachable, unless `TEST_REQUIRE_SERVICES=1`.
async fn redis_address() -> Option<String> {
    if !crate::backend::redis_reachable().await {
        return None;
    }
    let url = crate::backend::redis_url();
    let authority = url
        .split_once("://")
        .map_or(url.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let address = authority
        .rsplit_once('@')
        .map_or(authority, |(_, address)| address);
    Some(address.to_owned())
}

/// Settings for an instance using Redis at `address` under `prefix`; instances sharing a Redis
/// share the pepper too, so they derive the same keys.
fn redis_settings(address: &str, prefix: &str, quotas: &[(&str, u32, u64)]) -> String {
    let quotas = limits(quotas).replace("store = \"memory\"", "store = \"redis\"");
    format!(
        "[auth]\napi_key_pepper = \"k3Jx9vQm2LpT8wZr5NcY7bHd4FgA6sUe1oIiPqWn\"\n{quotas}\
         redis_url = \"redis://{address}\"\nredis_key_prefix = \"{prefix}\"\nredis_timeout_ms = 200\n"
    )
}

#[tokio::test]
async fn two_service_processes_sharing_redis_enforce_one_limit() {
    let Some(redis) = redis_address().await else {
        return;
    };
    let prefix = format!("test-{}:", uuid::Uuid::new_v4());
    let settings = redis_settings(&redis, &prefix, &[("anonymous", 4, 60)]);
    // The real binary twice: two processes, two ports, two databases, one Redis.
    let processes = [
        RunningBinary::start(&settings),
        RunningBinary::start(&settings),
    ];
    let instances: Vec<(String, reqwest::Client)> = processes
        .iter()
        .map(|process| {
            let address = process.address("listening");
            let client = client_trusting(Some(&process.dev_ca_cert()));
            (format!("https://{address}/.well-known/jwks.json"), client)
        })
        .collect();
    assert_ne!(instances[0].0, instances[1].0);
    let mut statuses = Vec::new();
    for round in 0..6 {
        let (url, client) = &instances[round % 2];
        let response = client.get(url).send().await.expect("request");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    crate::backend::delete_redis_keys(&prefix).await;
}

/// Waits (at most ten seconds) for a wrong-password login to be answered 401 again, not 503:
/// the store reconnected after Redis returned.
async fn assert_login_recovers(app: &TestApp) {
    let mut status = 0;
    for _ in 0..100 {
        status = login(&app.client, app, "x@example.com", "wrong")
            .await
            .status()
            .as_u16();
        if status == 401 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("login did not recover after Redis returned: still {status}");
}

#[tokio::test]
async fn with_redis_cut_off_general_tiers_fail_open_sensitive_ones_closed_and_both_recover() {
    let Some(redis) = redis_address().await else {
        return;
    };
    let proxy = CuttableProxy::start(redis.clone()).await;
    let prefix = format!("test-{}:", uuid::Uuid::new_v4());
    let app = spawn_app_with(&redis_settings(
        &format!("127.0.0.1:{}", proxy.port),
        &prefix,
        &[("login", 100, 60)],
    ))
    .await;
    assert_eq!(
        login(&app.client, &app, "x@example.com", "wrong")
            .await
            .status(),
        401
    );
    let counters = app.rate_limits.limiter().counters();
    assert_eq!(counters.store_failures(), 0);

    proxy.cut();
    // General tier: fails open, audited.
    let open = app
        .admin
        .get(app.url("/v1/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(open.status(), 200);
    let events = events_of(&open);
    assert!(
        events
            .iter()
            .any(|event| event.get("event").map(String::as_str)
                == Some("ratelimit.store_unavailable")
                && event["outcome"] == "allowed"),
        "{events:?}"
    );
    // Sensitive tier: fails closed with Retry-After, audited.
    let closed = login(&app.client, &app, "x@example.com", "wrong").await;
    assert_eq!(closed.status(), 503);
    assert_eq!(header(&closed, "retry-after"), "5");
    let events = events_of(&closed);
    assert!(
        events
            .iter()
            .any(|event| event.get("event").map(String::as_str)
                == Some("ratelimit.store_unavailable")
                && event["outcome"] == "denied"),
        "{events:?}"
    );
    assert_eq!(json_body(closed).await["error"], "Service unavailable");
    assert!(counters.store_failures() >= 2);

    // Redis returns: the store reconnects by itself after its short back-off.
    proxy.restore();
    assert_login_recovers(&app).await;
    crate::backend::delete_redis_keys(&prefix).await;
}

/// A Redis server of the test's own (`redis-server` on a free port, nothing saved), so the test
/// can stop and restart it without disturbing the machine's shared one.
struct OwnRedis {
    port: u16,
    process: Option<std::process::Child>,
}

impl OwnRedis {
    /// `None`, after saying so, when `redis-server` is not installed (the workflows install it;
    /// the cut-link test above covers the same behaviour without it).
    fn start() -> Option<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let mut server = Self {
            port,
            process: None,
        };
        if let Err(error) = server.run() {
            eprintln!("skipped: redis-server cannot be started here: {error}");
            return None;
        }
        Some(server)
    }

    fn run(&mut self) -> std::io::Result<()> {
        let process = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.process = Some(process);
        // Ready when it answers.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(std::io::Error::other("redis-server did not start"))
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn with_redis_stopped_and_started_again_the_tiers_fail_as_specified_and_recover() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let address = format!("127.0.0.1:{}", redis.port);
    let app = spawn_app_with(&redis_settings(&address, "test:", &[("login", 100, 60)])).await;
    assert_eq!(
        login(&app.client, &app, "x@example.com", "wrong")
            .await
            .status(),
        401
    );

    redis.stop();
    let open = app
        .admin
        .get(app.url("/v1/me"))
        .send()
        .await
        .expect("request");
    assert_eq!(open.status(), 200, "general tiers fail open");
    let closed = login(&app.client, &app, "x@example.com", "wrong").await;
    assert_eq!(closed.status(), 503, "sensitive tiers fail closed");
    assert_eq!(header(&closed, "retry-after"), "5");
    // Readiness reports the store down but stays 200: every instance shares this Redis.
    let readiness = readiness_with_store(&app, "down").await;
    assert_eq!(readiness["status"], "up", "{readiness}");

    redis.run().expect("redis-server starts again");
    assert_login_recovers(&app).await;
    readiness_with_store(&app, "up").await;
}

/// The readiness report once it says the rate-limit store is `state` (checks are reused for a
/// second, so it may take a few tries); always answered with 200.
async fn readiness_with_store(app: &TestApp, state: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..50 {
        let response = app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status(),
            200,
            "a Redis outage alone leaves rotation"
        );
        last = json_body(response).await;
        if last["rate_limit_store"] == state {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("readiness never reported the store {state}: {last}");
}
