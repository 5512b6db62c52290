//! INPUT-4 over a real listener: oversized and slow bodies.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, json_body, spawn_app, spawn_app_with};

/// Sends `request` raw over TLS and returns the whole response text (the server closes the
/// connection).
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    let mut stream = app.tls_stream().await;
    stream.write_all(request).await.expect("write");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413() {
    let app = spawn_app().await;
    let response = app
        .admin
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body(format!("{{\"name\":\"{}\"}}", "a".repeat(70 * 1024)))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    assert_eq!(json_body(response).await["error"], "Payload too large");
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_a_413() {
    let app = spawn_app().await;
    let chunk = "a".repeat(16 * 1024);
    let mut request = format!(
        "POST /v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.admin_token
    );
    for _ in 0..5 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let response = raw_exchange(&app, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
}

#[tokio::test]
async fn a_body_trickling_in_is_cut_with_408() {
    let app = spawn_app_with("[limits]\nbody_read_timeout_seconds = 1\n").await;
    // Announces 100 bytes, sends one, then goes quiet.
    let request = format!(
        "POST /v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{",
        app.admin_token
    );
    let response = raw_exchange(&app, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("Request timeout"), "{response}");
}
