//! The demo resource owned by its creator, over HTTPS: object-level authorization (AUTH-6:
//! another user's note is 404, audited as `authz.object`) and principals that are no local
//! user (`authz.principal`). `cargo xtask remove-demo` deletes this file with the notes.

use serde_json::json;

use crate::auth::{bearer_client, request_id, user};
use crate::helpers::{audit_events_for, json_body, spawn_app};
use crate::oauth_audit::{assert_principal_refused, client_as};

#[tokio::test]
async fn another_users_note_is_not_found() {
    let app = spawn_app().await;
    let (_, alice) = user(&app, "alice@example.com").await;
    let (_, mallory) = user(&app, "mallory@example.com").await;
    let (alice, mallory) = (bearer_client(&app, &alice), bearer_client(&app, &mallory));
    let note = alice
        .post(app.url("/v1/notes"))
        .json(&json!({"title": "private", "body": "alice's"}))
        .send()
        .await
        .expect("request");
    assert_eq!(note.status(), 201);
    let id = json_body(note).await["id"].as_str().expect("id").to_owned();
    let path = app.url(&format!("/v1/notes/{id}"));
    assert_eq!(
        alice.get(&path).send().await.expect("request").status(),
        200
    );
    let stolen = mallory.get(&path).send().await.expect("request");
    assert_eq!(stolen.status(), 404);
    let event = audit_events_for(&request_id(&stolen))
        .into_iter()
        .find(|event| event["event"] == "authz.object")
        .expect("a denied authorization event");
    assert_eq!(event["outcome"], "denied");
    assert_eq!(
        mallory
            .delete(&path)
            .send()
            .await
            .expect("request")
            .status(),
        404
    );
    assert_eq!(
        alice.get(&path).send().await.expect("request").status(),
        200,
        "still there"
    );
}

#[tokio::test]
async fn a_note_by_a_principal_that_is_no_local_user_is_refused_with_an_audit_event() {
    let app = spawn_app().await;
    let subject = "https://idp.example.com#partner-service";
    let client = client_as(&app, subject, &["notes:write"]);
    let note = client
        .post(app.url("/v1/notes"))
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .expect("request");
    assert_principal_refused(&note, subject, "not_a_local_user");
}
