//! OPS-3 over HTTPS: `/.well-known/security.txt` (RFC 9116) from the configuration.

use crate::helpers::{header, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_configured_contacts_are_published_in_rfc_9116_form() {
    let app = spawn_app_with(
        "[security_txt]\ncontact = [\"mailto:security@example.com\"]\n\
         expires = \"2099-01-01T00:00:00Z\"\npolicy = \"https://example.com/disclosure\"\n",
    )
    .await;
    let response = app
        .client
        .get(app.url("/.well-known/security.txt"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "text/plain; charset=utf-8"
    );
    assert!(!header(&response, "strict-transport-security").is_empty());
    let text = response.text().await.expect("text");
    assert_eq!(
        text,
        "Contact: mailto:security@example.com\n\
         Expires: 2099-01-01T00:00:00Z\n\
         Policy: https://example.com/disclosure\n\
         Canonical: https://localhost/.well-known/security.txt\n"
    );
    let head = app
        .client
        .head(app.url("/.well-known/security.txt"))
        .send()
        .await
        .expect("request");
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn without_a_contact_there_is_no_file() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/.well-known/security.txt"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    assert!(header(&response, "content-type").starts_with("application/json"));
}
