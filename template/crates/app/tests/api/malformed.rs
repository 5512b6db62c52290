//! INPUT-2, INPUT-4: malformed input anywhere (path, query, headers, body) gets a JSON 4xx,
//! never a 500, for every operation of the published document.

use serde_json::Value;

use crate::helpers::{TestApp, json_body, published_document, spawn_app};

/// Every `(method, path template)` of the published document.
async fn operations(app: &TestApp) -> Vec<(reqwest::Method, String)> {
    let document = published_document(app).await;
    let mut found = Vec::new();
    for (template, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())
                .expect("an HTTP method");
            found.push((method, template.clone()));
        }
    }
    assert!(!found.is_empty());
    found
}

/// The template with each `{parameter}` replaced by `value`.
fn with_parameters(template: &str, value: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                value
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn assert_client_error(response: reqwest::Response, what: &str) {
    let status = response.status();
    assert!(
        status.is_client_error() || status.is_success(),
        "{what}: {status}, never a server error"
    );
    if status.is_client_error() {
        let body: Value = json_body(response).await;
        assert!(
            body["error"].is_string(),
            "{what}: JSON error body, got {body}"
        );
        let text = body.to_string();
        for leak in ["panicked", "sqlx", "SELECT", "/src/", ".rs:"] {
            assert!(!text.contains(leak), "{what}: leaks {leak:?}: {text}");
        }
    }
}

#[tokio::test]
async fn malformed_requests_to_every_operation_are_json_4xx_never_5xx() {
    let app = spawn_app().await;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("invalid UTF-8", vec![0xff, 0xfe, b'{', 0xc3]),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("number", b"1e999999".to_vec()),
        ("truncated", br#"{"email": "a@b.co", "name": "#.to_vec()),
        ("NUL in a string", b"{\"name\": \"a\\u0000b\"}".to_vec()),
        ("lone surrogate", br#"{"name": "\ud800"}"#.to_vec()),
        ("deep", "[".repeat(10_000).into_bytes()),
    ];
    let parameter_values = ["%FF", "..%2F..%2Fetc%2Fpasswd", "' OR 1=1 --", "-1", "%00"];
    let content_types = [
        "application/json",
        "application/json; charset=latin1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json\u{0}",
    ];

    for (method, template) in operations(&app).await {
        for value in parameter_values {
            let path = with_parameters(&template, value);
            for query in [
                "",
                "?limit=abc",
                "?limit=-1",
                "?limit=99999999999999999999",
                "?a=%ZZ",
            ] {
                let response = app
                    .client
                    .request(method.clone(), app.url(&format!("{path}{query}")))
                    .send()
                    .await
                    .expect("request");
                assert_client_error(response, &format!("{method} {path}{query}")).await;
            }
        }
        let path = with_parameters(&template, &uuid::Uuid::new_v4().to_string());
        for (name, body) in &bodies {
            for content_type in content_types {
                let Ok(header) = reqwest::header::HeaderValue::from_str(content_type) else {
                    continue;
                };
                let response = app
                    .client
                    .request(method.clone(), app.url(&path))
                    .header("content-type", header)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("request");
                assert_client_error(
                    response,
                    &format!("{method} {path} {name} as {content_type}"),
                )
                .await;
            }
        }
    }
}
