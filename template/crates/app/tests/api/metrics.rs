//! LOG-6 over the real listeners: `/metrics` answers on the admin listener only, and each
//! security decision moves its counter, labelled by route template and reason, never by a raw
//! path, an address or a principal.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::json;

use crate::helpers::{
    TestApp, admin_access_token, client_from, client_trusting, client_with_token, json_body,
    spawn_app_with,
};

/// A scrape of the admin listener: each series (name and labels, as rendered) with its value.
async fn scrape(app: &TestApp) -> BTreeMap<String, f64> {
    let admin = app
        .admin_address
        .as_deref()
        .expect("the admin listener runs");
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// How much each series moved between two scrapes (absent counts as 0).
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_and_never_on_the_public_one() {
    let app = spawn_app_with("").await;
    let admin = app
        .admin_address
        .as_deref()
        .expect("the admin listener runs");
    assert!(admin.starts_with("http://127.0.0.1:"), "loopback: {admin}");

    let scraped = reqwest::get(format!("{admin}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(scraped.status(), 200);
    let content_type = scraped.headers()["content-type"].to_str().expect("ascii");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let public = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(public.status(), 404, "the public port never serves metrics");
    assert_eq!(json_body(public).await["error"], "Not found");
    let plain = client_trusting(None)
        .get(format!(
            "{}/metrics",
            app.http_address
                .as_deref()
                .expect("the redirect listener runs")
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(
        plain.status(),
        308,
        "plain HTTP only points to the public port"
    );
    assert!(
        !plain
            .text()
            .await
            .expect("text")
            .contains("http_requests_total"),
        "and never serves metrics"
    );

    // The admin listener serves nothing but the metrics.
    for path in ["/", "/health/live", "/v1/me", "/openapi.json"] {
        let response = reqwest::get(format!("{admin}{path}"))
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{path} on the admin listener");
    }
}

#[tokio::test]
async fn with_the_admin_listener_disabled_nothing_listens() {
    let app = spawn_app_with("[admin]\nenabled = false\n").await;
    assert!(app.admin_address.is_none());
}

#[tokio::test]
async fn each_refusal_moves_its_counter_and_requests_are_counted_by_route_template() {
    let app =
        spawn_app_with("[rate_limit]\nanonymous = { requests = 1, period_seconds = 60 }\n").await;
    // A key that may read the profile only, to be refused the management of keys; and another
    // user, to be refused the administrator's key.
    let created = app
        .admin
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "profile-only", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(created.status(), 201);
    let created = json_body(created).await;
    let profile_only = created["secret"].as_str().expect("secret").to_owned();
    let key_id = created["id"].as_str().expect("id").to_owned();
    let key_path = format!("/v1/api-keys/{key_id}");
    let other = app
        .admin
        .post(app.url("/v1/users"))
        .json(
            &json!({"email": "other@example.com", "name": "Other", "role": "user",
                      "password": "plover-quartz-lantern-9"}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 201);
    let other = client_with_token(
        app.ca_cert.as_deref(),
        &admin_access_token(&app.auth, "other@example.com").await,
    );
    let before = scrape(&app).await;

    // Each anonymous request from an address of its own: one request each fits the budget.
    let wrong_password = client_from(app.ca_cert.as_deref(), loopback(2))
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": app.credentials.admin.email, "password": "not-the-password"}))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_password.status(), 401);
    let without_credentials = client_from(app.ca_cert.as_deref(), loopback(3))
        .delete(app.url(&key_path))
        .send()
        .await
        .expect("request");
    assert_eq!(without_credentials.status(), 401);
    let without_scope = app
        .client
        .delete(app.url(&key_path))
        .header("x-api-key", &profile_only)
        .send()
        .await
        .expect("request");
    assert_eq!(without_scope.status(), 403);
    let not_owned = other
        .delete(app.url(&key_path))
        .send()
        .await
        .expect("request");
    assert_eq!(not_owned.status(), 404);
    let invalid = app
        .admin
        .post(app.url("/v1/api-keys"))
        .json(&json!({"name": "", "scopes": ["profile"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(invalid.status(), 400);
    let flooding = client_from(app.ca_cert.as_deref(), loopback(4));
    for expected in [200, 429] {
        let response = flooding
            .get(app.url("/.well-known/jwks.json"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), expected);
    }

    let after = scrape(&app).await;
    for (series, expected) in [
        (r#"auth_failures_total{reason="wrong_password"}"#, 1.0),
        (r#"auth_failures_total{reason="no_credential"}"#, 1.0),
        (
            r#"authz_denials_total{event="authz.scope",reason="missing_scope"}"#,
            1.0,
        ),
        (
            r#"authz_denials_total{event="authz.object",reason="not_owner"}"#,
            1.0,
        ),
        (r#"validation_failures_total{route="/v1/api-keys"}"#, 1.0),
        (r#"rate_limited_total{tier="anonymous"}"#, 1.0),
        (
            r#"http_requests_total{method="POST",route="/v1/auth/login",status="401"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="DELETE",route="/v1/api-keys/{id}",status="401"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="DELETE",route="/v1/api-keys/{id}",status="403"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="DELETE",route="/v1/api-keys/{id}",status="404"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="POST",route="/v1/api-keys",status="400"}"#,
            1.0,
        ),
        (
            r#"http_requests_total{method="GET",route="/.well-known/jwks.json",status="429"}"#,
            1.0,
        ),
        (
            r#"http_request_duration_seconds_count{method="DELETE",route="/v1/api-keys/{id}"}"#,
            3.0,
        ),
        // The store answered every decision: a refusal is not a store failure.
        (r#"rate_limit_store_failures_total{tier="anonymous"}"#, 0.0),
    ] {
        assert_eq!(moved(&before, &after, series), expected, "{series}");
    }

    // Labels name templates and reasons: never the key's id, an address, a principal or a key.
    let rendered: String = after.keys().map(|series| format!("{series}\n")).collect();
    for private in [
        key_id,
        "127.0.0.".to_owned(),
        app.credentials.admin.email.clone(),
        profile_only,
    ] {
        assert!(!rendered.contains(&private), "{private} in:\n{rendered}");
    }
}
