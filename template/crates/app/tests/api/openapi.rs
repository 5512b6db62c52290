use crate::helpers::{header, published_document, spawn_app};

/// Every `$ref` in the document points at a schema the document defines.
fn dangling_refs(document: &serde_json::Value) -> Vec<String> {
    fn walk(value: &serde_json::Value, root: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    if let (true, Some(target)) = (key == "$ref", child.as_str()) {
                        let pointer = target.trim_start_matches('#');
                        if root.pointer(pointer).is_none() {
                            found.push(target.to_owned());
                        }
                    }
                    walk(child, root, found);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, root, found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(document, document, &mut found);
    found
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3() {
    let app = spawn_app().await;
    let document = published_document(&app).await;

    // The typed model of OpenAPI 3.0 rejects a document missing required members.
    let parsed: openapiv3::OpenAPI =
        serde_json::from_value(document.clone()).expect("an OpenAPI 3.0 document");
    assert!(
        parsed.openapi.starts_with("3.0"),
        "version {}",
        parsed.openapi
    );
    for path in [
        "/health/live",
        "/health/ready",
        "/v1/users",
        "/v1/users/{id}",
    ] {
        assert!(
            parsed.paths.paths.contains_key(path),
            "{path} is documented"
        );
    }
    assert_eq!(dangling_refs(&document), Vec::<String>::new());
    assert_eq!(
        parsed.servers.first().map(|server| server.url.as_str()),
        Some("https://localhost"),
        "the server URL is the configured public origin"
    );
}

#[tokio::test]
async fn the_docs_page_is_served() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/docs"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let content_type = header(&response, "content-type");
    assert!(content_type.starts_with("text/html"), "{content_type}");
}
