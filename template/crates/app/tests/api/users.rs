use crate::helpers::{header, json_body, spawn_app};
use serde_json::json;

#[tokio::test]
async fn a_created_user_can_be_read_back() {
    let app = spawn_app().await;
    let response = app
        .admin
        .post(app.url("/v1/users"))
        .json(&json!({"email": "Ada@Example.com", "name": "Ada Lovelace", "role": "user", "password": "plover-quartz-lantern-9"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let created = json_body(response).await;
    assert_eq!(
        created["email"], "ada@example.com",
        "addresses are stored in one case"
    );
    let id = created["id"].as_str().expect("an id");

    let response = app
        .admin
        .get(app.url(&format!("/v1/users/{id}")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await, created);
}

#[tokio::test]
async fn an_unknown_user_is_a_json_404_with_the_request_id() {
    let app = spawn_app().await;
    let response = app
        .admin
        .get(app.url(&format!("/v1/users/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let request_id = header(&response, "x-request-id");
    assert!(!request_id.is_empty(), "an X-Request-Id");
    let body = json_body(response).await;
    assert_eq!(body["error"], "Not found");
    assert_eq!(body["request_id"], request_id.as_str());
}

#[tokio::test]
async fn a_duplicate_email_is_a_409() {
    let app = spawn_app().await;
    for expected in [201, 409] {
        let response = app
            .admin
            .post(app.url("/v1/users"))
            .json(&json!({"email": "grace@example.com", "name": "Grace Hopper", "role": "admin", "password": "plover-quartz-lantern-9"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), expected);
    }
}

#[tokio::test]
async fn malformed_requests_are_json_400s() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "a@example.com", "name": "A", "role": "user", "isAdmin": true}),
            "an unknown field",
        ),
        (
            json!({"email": "a@example.com", "name": "A", "role": "superuser"}),
            "a role outside the enum",
        ),
        (
            json!({"email": "a@example.com", "role": "user", "password": "plover-quartz-lantern-9"}),
            "a missing name",
        ),
        (
            json!({"email": "a@example.com", "name": "R2D2", "role": "user", "password": "plover-quartz-lantern-9"}),
            "digits in the name",
        ),
    ];
    for (body, why) in cases {
        let response = app
            .admin
            .post(app.url("/v1/users"))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{why}");
        let body = json_body(response).await;
        assert_eq!(body["error"], "Validation failed", "{why}");
        assert!(
            !body.to_string().contains("superuser") && !body.to_string().contains("R2D2"),
            "{why}: the rejected value is not echoed: {body}"
        );
    }
    let response = app
        .admin
        .get(app.url("/v1/users/not-a-uuid"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400, "a path id that is not a UUID");
    let body = json_body(response).await;
    assert_eq!(body["error"], "Validation failed");
    let id_errors = body["details"]["fieldErrors"]["id"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        id_errors.len(),
        1,
        "the error names the parameter as the API does: {body}"
    );
    assert!(
        !body.to_string().contains("not-a-uuid"),
        "the value is not echoed: {body}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_404_and_405() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(json_body(response).await["error"], "Not found");

    let response = app
        .admin
        .delete(app.url("/v1/users"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    assert_eq!(json_body(response).await["error"], "Method not allowed");
}

#[tokio::test]
async fn sql_injection_payloads_are_stored_as_data() {
    // INPUT-3: values are bound as parameters, so SQL in a value is just text.
    let app = spawn_app().await;
    let payload = "x');DROP_TABLE_users;--@example.com";
    let response = app
        .admin
        .post(app.url("/v1/users"))
        .json(&json!({"email": payload, "name": "O'Brien", "role": "user", "password": "plover-quartz-lantern-9"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let created = json_body(response).await;
    assert_eq!(created["email"], payload.to_lowercase());
    assert_eq!(created["name"], "O'Brien");

    let id = created["id"].as_str().expect("an id");
    let response = app
        .admin
        .get(app.url(&format!("/v1/users/{id}")))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "the table is intact");
}

#[tokio::test]
async fn xml_bodies_are_refused_unparsed() {
    // The API speaks JSON only. XML is refused on its content type, before the body is read, so
    // the XML parser that comes with poem-openapi never sees client input (see deny.toml).
    let app = spawn_app().await;
    let attributes: String = (0..2000).map(|i| format!(" a{i}=\"x\"")).collect();
    let response = app
        .admin
        .post(app.url("/v1/users"))
        .header("content-type", "application/xml")
        .body(format!("<user{attributes}/>"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);
    assert_eq!(json_body(response).await["error"], "Unsupported media type");
}
