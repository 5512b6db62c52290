//! Graceful shutdown drains a request already in flight.

use std::time::Duration;

use sea_orm::{EntityTrait, PaginatorTrait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{settings, spawn_app};

#[tokio::test]
async fn shutdown_drains_an_in_flight_request_and_then_refuses_new_connections() {
    let mut app = spawn_app().await;
    let body = br#"{"email":"late@example.com","name":"Late Writer","role":"user","password":"plover-quartz-lantern-9"}"#;

    // Send the head with `Expect: 100-continue`: the server answers "100 Continue" only once the
    // handler is reading the body, which proves the request is in flight.
    let mut stream = app.tls_stream().await;
    let head = format!(
        "POST /v1/users HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        app.admin_token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut interim = [0u8; 25];
    stream
        .read_exact(&mut interim)
        .await
        .expect("read 100 Continue");
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );

    app.trigger_shutdown();

    // New connections are refused once the listener has closed.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", app.port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the listener still accepts after the shutdown signal"
    );

    // The in-flight request still completes.
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read response");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");

    app.wait_stopped().await.expect("clean stop");

    // And its write is in the database.
    let settings = settings(app.data_dir.path(), "");
    let db = app::persistence::connect(&settings.database)
        .await
        .expect("reopen");
    use sea_orm::{ColumnTrait, QueryFilter};
    let written = app::persistence::users::Entity::find()
        .filter(app::persistence::users::Column::Email.eq("late@example.com"))
        .count(&db)
        .await
        .expect("count");
    assert_eq!(written, 1);
}
