//! TLS-5 over a real listener: the security headers on success and error responses, no
//! banners, 405 for TRACE.

use reqwest::{Method, Response};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::{TestApp, header, json_body, spawn_app};

const EXPECTED: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store, max-age=0"),
    ("pragma", "no-cache"),
    ("x-frame-options", "DENY"),
    ("x-xss-protection", "0"),
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

fn assert_security_headers(response: &Response, what: &str) {
    for (name, value) in EXPECTED {
        assert_eq!(header(response, name), *value, "{what}: {name}");
    }
    for banner in ["server", "x-powered-by"] {
        assert!(
            response.headers().get(banner).is_none(),
            "{what}: no {banner} banner"
        );
    }
}

/// Makes every query on `users` fail: the service then has an internal error to report.
async fn break_the_users_table(app: &TestApp) {
    let db = sea_orm::Database::connect(app.database_url())
        .await
        .expect("second connection");
    db.execute_unprepared("ALTER TABLE users RENAME TO users_gone")
        .await
        .expect("drop");
    db.close().await.expect("close");
}

#[tokio::test]
async fn success_and_error_responses_carry_every_security_header() {
    let app = spawn_app().await;
    let ok = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    assert_security_headers(&ok, "200");

    let bad = app
        .admin
        .post(app.url("/v1/users"))
        .json(&json!({"unexpected": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    assert_security_headers(&bad, "400");

    let missing = app
        .client
        .get(app.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    assert_security_headers(&missing, "404");

    break_the_users_table(&app).await;
    let failed = app
        .admin
        .get(app.url(&format!("/v1/users/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .expect("request");
    assert_eq!(failed.status(), 500);
    assert_security_headers(&failed, "500");
    let body = json_body(failed).await;
    assert_eq!(body["error"], "Internal server error");
    let text = body.to_string();
    assert!(
        !text.contains("users") && !text.contains("table") && !text.contains("sqlite"),
        "no internals in a 500: {text}"
    );
}

#[tokio::test]
async fn trace_is_refused_with_a_json_405() {
    let app = spawn_app().await;
    for path in ["/health/live", "/v1/users", "/nowhere"] {
        let response = app
            .client
            .request(Method::TRACE, app.url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 405, "TRACE {path}");
        assert_security_headers(&response, "405");
        assert_eq!(json_body(response).await["error"], "Method not allowed");
    }
}

#[tokio::test]
async fn the_docs_page_has_its_own_policy_that_still_forbids_framing() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/docs"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let csp = header(&response, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'") && csp.starts_with("default-src 'none'"));
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    // The hashes are those of the page actually served.
    let html = response.text().await.expect("body");
    assert_eq!(
        csp,
        security::transport::secure_headers::hashed_page_policy(&html)
    );
    assert!(
        html.contains("\"additionalProperties\": false"),
        "the docs show the published (closed) document"
    );
}
