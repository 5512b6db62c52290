//! Audit events of refusals answered outside the API's JSON error mapping, over HTTPS (LOG-2,
//! LOG-3): `POST /oauth/token` and `POST /oauth/revoke` refusing their input, and principals
//! that are no local user refused by the user-owned resources (each demo resource's own tests
//! check it there too).

use std::collections::BTreeMap;

use crate::helpers::{TestApp, audit_events_for, client_with_token, header, spawn_app};

/// A value no audit event may repeat.
const SENT_VALUE: &str = "urn:example:grant-value-never-logged";

fn request_id(response: &reqwest::Response) -> String {
    let id = header(response, "x-request-id");
    assert!(!id.is_empty(), "the response carries its request id");
    id
}

/// `POST path` with `content_type` and `body` sent as written.
async fn post(app: &TestApp, path: &str, content_type: &str, body: &str) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("request")
}

/// The `input.validation` events recorded for the request `request_id`.
fn validation_events(request_id: &str) -> Vec<BTreeMap<String, String>> {
    audit_events_for(request_id)
        .into_iter()
        .filter(|event| event["event"] == "input.validation")
        .collect()
}

/// Asserts `response` has `status` and its request recorded exactly one `input.validation`
/// event, denied, with `reason` and the route template `route`, and nothing of the values sent.
async fn assert_one_validation_event(
    response: reqwest::Response,
    status: u16,
    route: &str,
    reason: &str,
) {
    assert_eq!(response.status(), status, "{route} {reason}");
    let id = request_id(&response);
    assert_eq!(header(&response, "cache-control"), "no-store, max-age=0");
    let events = validation_events(&id);
    assert_eq!(events.len(), 1, "{route} {reason}: {events:?}");
    let event = &events[0];
    assert_eq!(event["outcome"], "denied");
    assert_eq!(event["reason"], reason);
    assert_eq!(event["route"], route);
    for event in audit_events_for(&id) {
        assert!(
            !format!("{event:?}").contains(SENT_VALUE),
            "an audit event repeats a value sent: {event:?}"
        );
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn every_refusal_of_the_token_endpoints_input_records_one_validation_event() {
    let app = spawn_app().await;
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "application/json",
            r#"{"grant_type":"client_credentials"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            "text/plain",
            "grant_type=client_credentials",
            415,
            "unsupported_media_type",
        ),
        (
            FORM,
            "grant_type=refresh_token&grant_type=client_credentials",
            400,
            "request_malformed",
        ),
        (
            FORM,
            "grant_type=refresh_token&refresh_token=a&refresh_token=b",
            400,
            "request_malformed",
        ),
        (FORM, "scope=profile", 400, "missing_grant_type"),
        (
            FORM,
            "grant_type=refresh_token",
            400,
            "missing_refresh_token",
        ),
    ];
    for &(content_type, body, status, reason) in cases {
        let response = post(&app, "/oauth/token", content_type, body).await;
        assert_one_validation_event(response, status, "/oauth/token", reason).await;
    }
    let unsupported = post(
        &app,
        "/oauth/token",
        FORM,
        &serde_urlencoded::to_string([("grant_type", SENT_VALUE)]).expect("form"),
    )
    .await;
    assert_one_validation_event(unsupported, 400, "/oauth/token", "unsupported_grant_type").await;
}

#[tokio::test]
async fn every_refusal_of_the_revocation_endpoints_input_records_one_validation_event() {
    let app = spawn_app().await;
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "application/json",
            r#"{"token":"x"}"#,
            415,
            "unsupported_media_type",
        ),
        (FORM, "token=a&token=b", 400, "request_malformed"),
        (
            FORM,
            "token_type_hint=refresh_token",
            400,
            "missing_refresh_token",
        ),
    ];
    for &(content_type, body, status, reason) in cases {
        let response = post(&app, "/oauth/revoke", content_type, body).await;
        assert_one_validation_event(response, status, "/oauth/revoke", reason).await;
    }
}

#[tokio::test]
async fn refusals_that_are_not_about_the_input_record_no_validation_event() {
    let app = spawn_app().await;
    // A well-formed request with a wrong client: an authentication failure, not bad input.
    let refused = post(
        &app,
        "/oauth/token",
        FORM,
        &serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_id", "00000000-0000-0000-0000-000000000000"),
            ("client_secret", SENT_VALUE),
        ])
        .expect("form"),
    )
    .await;
    assert_eq!(refused.status(), 401);
    let id = request_id(&refused);
    assert!(validation_events(&id).is_empty());
    let events = audit_events_for(&id);
    let client = events
        .iter()
        .find(|event| event["event"] == "authn.client")
        .expect("an authn.client event");
    assert_eq!(client["outcome"], "denied");
    assert_eq!(client["reason"], "invalid_client");
    assert!(!format!("{events:?}").contains(SENT_VALUE));

    // No client authentication at all.
    let anonymous = post(&app, "/oauth/token", FORM, "grant_type=client_credentials").await;
    assert_eq!(anonymous.status(), 401);
    let id = request_id(&anonymous);
    assert!(validation_events(&id).is_empty());
    assert!(
        audit_events_for(&id).iter().any(|event| {
            event["event"] == "authn.client" && event["reason"] == "no_client_auth"
        })
    );

    // An unknown refresh token is refused by the token store, also not as bad input.
    let unknown = post(
        &app,
        "/oauth/revoke",
        FORM,
        &serde_urlencoded::to_string([("token", SENT_VALUE)]).expect("form"),
    )
    .await;
    assert_eq!(unknown.status(), 200);
    assert!(validation_events(&request_id(&unknown)).is_empty());
}

/// A client whose bearer token names `subject` with `scopes`, signed by the built-in issuer.
pub(crate) fn client_as(app: &TestApp, subject: &str, scopes: &[&str]) -> reqwest::Client {
    let token = app::auth::tokens::issue_access(
        &app.auth,
        subject,
        scopes.iter().map(|&scope| scope.to_owned()).collect(),
        None,
        None,
    )
    .expect("signed")
    .token;
    client_with_token(app.ca_cert.as_deref(), &token)
}

/// Asserts `response` is a 403 whose request recorded one `authz.principal` event, denied for
/// `reason`, naming `subject`.
pub(crate) fn assert_principal_refused(response: &reqwest::Response, subject: &str, reason: &str) {
    assert_eq!(response.status(), 403, "{reason}");
    let events: Vec<_> = audit_events_for(&request_id(response))
        .into_iter()
        .filter(|event| event["event"] == "authz.principal")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["outcome"], "denied");
    assert_eq!(events[0]["reason"], reason);
    assert_eq!(events[0]["subject"], subject);
}

#[tokio::test]
async fn a_principal_that_is_no_local_user_is_refused_with_an_audit_event() {
    let app = spawn_app().await;
    let subject = "https://idp.example.com#partner-service";
    let client = client_as(&app, subject, &["api_keys:write", "api_keys:read"]);
    let keys = client
        .get(app.url("/v1/api-keys"))
        .send()
        .await
        .expect("request");
    assert_principal_refused(&keys, subject, "not_a_local_user");
}
