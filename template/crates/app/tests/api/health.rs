use crate::helpers::{TestDatabase, json_body, postgres_admin_url, spawn_app, spawn_app_with};

#[tokio::test]
async fn liveness_answers_200() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(json_body(response).await["status"], "up");
}

#[tokio::test]
async fn readiness_answers_200_when_the_database_is_up() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body = json_body(response).await;
    assert_eq!(body["status"], "up");
    assert_eq!(body["database"], "up");
}

/// Polls readiness until it reports `expected` (bounded: the pool needs a moment to notice).
async fn wait_for_readiness(app: &crate::helpers::TestApp, expected: u16) -> serde_json::Value {
    let mut last = None;
    for _ in 0..100 {
        let response = app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body = json_body(response).await;
        if status == expected {
            return body;
        }
        last = Some((status, body));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("readiness never answered {expected}; last: {last:?}");
}

#[tokio::test]
async fn readiness_fails_with_503_json_while_the_database_is_unreachable_and_recovers() {
    let Some(admin_url) = postgres_admin_url().await else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let (proxy, url) = database.behind_proxy().await;
    let app = spawn_app_with(&format!("[database]\nurl = \"{url}\"\n")).await;
    wait_for_readiness(&app, 200).await;

    proxy.cut();
    let body = wait_for_readiness(&app, 503).await;
    assert_eq!(body["status"], "down");
    assert_eq!(body["database"], "down");
    // A request needing the database gets a JSON 503, not a hang or a 500.
    let response = app
        .admin
        .get(app.url(&format!("/v1/users/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    assert_eq!(json_body(response).await["error"], "Service unavailable");

    proxy.restore();
    let body = wait_for_readiness(&app, 200).await;
    assert_eq!(body["database"], "up");

    app.stop().await.expect("clean stop");
    database.drop_database().await;
}
