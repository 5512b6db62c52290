//! TLS-4 on the wire: CORS grants for allowlisted origins only, on success and error responses.

use crate::helpers::{TestApp, header, spawn_app_with};

const ALLOWED: &str = "https://app.example.test";

async fn app_allowing_one_origin() -> TestApp {
    spawn_app_with(&format!("[cors]\nallowed_origins = [\"{ALLOWED}\"]\n")).await
}

#[tokio::test]
async fn an_allowed_origin_gets_a_credentialed_grant_on_success_and_error() {
    let app = app_allowing_one_origin().await;
    for path in [
        "/health/live",
        "/v1/users/00000000-0000-0000-0000-000000000000",
    ] {
        let response = app
            .client
            .get(app.url(path))
            .header("origin", ALLOWED)
            .send()
            .await
            .expect("request");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            ALLOWED,
            "{path}"
        );
        assert_eq!(
            header(&response, "access-control-allow-credentials"),
            "true"
        );
        assert!(header(&response, "vary").contains("Origin"));
        assert!(header(&response, "access-control-expose-headers").contains("x-request-id"));
    }
}

#[tokio::test]
async fn a_foreign_origin_gets_no_grant_and_a_failed_preflight() {
    let app = app_allowing_one_origin().await;
    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.test.evil.example",
    ] {
        let response = app
            .client
            .get(app.url("/health/live"))
            .header("origin", origin)
            .send()
            .await
            .expect("request");
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{origin}"
        );
        assert!(header(&response, "vary").contains("Origin"));

        let preflight = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/v1/users"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .expect("preflight");
        assert_eq!(preflight.status(), 403, "{origin}");
        assert!(
            preflight
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
    }
}

#[tokio::test]
async fn an_allowed_preflight_lists_methods_and_headers() {
    let app = app_allowing_one_origin().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/users"))
        .header("origin", ALLOWED)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type, authorization",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 204);
    assert_eq!(header(&preflight, "access-control-allow-origin"), ALLOWED);
    assert!(header(&preflight, "access-control-allow-methods").contains("POST"));
    assert!(header(&preflight, "access-control-allow-headers").contains("authorization"));
    assert_eq!(header(&preflight, "access-control-max-age"), "600");
}
