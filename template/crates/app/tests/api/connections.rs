//! TLS-1 on the wire: what one connection and one client may hold. Silent connections, half an
//! HTTP/2 preface and idle connections are closed within their bounds over HTTP/1.1 and HTTP/2;
//! one address cannot hold more than its cap while others are served; the total cap refuses at
//! once and the service recovers; HTTP/2 advertises its limits and ends a connection that resets
//! streams rapidly.
//!
//! The bounds are shortened to fractions of a second; every wait below is a generous upper bound
//! (several times the configured one), never a measurement.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use poem::http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::helpers::{TLS_1_3, TestApp, client_from, spawn_app_with, tls_client_config};

/// Longer than any bound configured here: a connection still open after it was never closed.
const PATIENCE: Duration = Duration::from_secs(5);

const SHORT_FIRST_REQUEST: &str = "[connections]\nfirst_request_timeout_ms = 300\n";

/// A TLS 1.3 connection from `local` offering `alpn`; `Err` when the server closes it before
/// the handshake completes.
async fn connect(
    app: &TestApp,
    local: IpAddr,
    alpn: &[u8],
) -> std::io::Result<TlsStream<TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((local, 0).into())?;
    let tcp = socket.connect(([127, 0, 0, 1], app.port).into()).await?;
    let mut config = (*tls_client_config(app.ca_cert.as_deref(), TLS_1_3)).clone();
    config.alpn_protocols = vec![alpn.to_vec()];
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(
        PATIENCE,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .unwrap_or_else(|_| Err(std::io::Error::other("handshake still pending")))
}

fn local(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Whether the server closes `stream` within [`PATIENCE`] (reading whatever it sends).
async fn closed_by_server<S: AsyncReadExt + Unpin>(stream: &mut S) -> bool {
    let mut sink = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut sink))
        .await
        .is_ok()
}

/// An HTTP/2 client over `stream`; its connection is driven by a task of its own, whose result
/// is the returned handle's.
async fn http2_client(
    stream: TlsStream<TcpStream>,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let (send, connection) = h2::client::handshake(stream).await.expect("HTTP/2 preface");
    (send, tokio::spawn(connection))
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("https://localhost{path}"))
        .body(())
        .expect("request")
}

/// Sends `GET /health/live` over HTTP/2 and returns its status.
async fn live_over_http2(send: &mut h2::client::SendRequest<Bytes>) -> u16 {
    let (response, _) = send
        .send_request(get("/health/live"), true)
        .expect("stream opened");
    response.await.expect("response").status().as_u16()
}

#[tokio::test]
async fn a_silent_connection_is_closed_within_the_first_request_bound_over_both_protocols() {
    let app = spawn_app_with(SHORT_FIRST_REQUEST).await;
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut silent = connect(&app, local(1), alpn).await.expect("handshake");
        assert!(
            closed_by_server(&mut silent).await,
            "a connection that sends nothing after its handshake ({}) must be closed",
            String::from_utf8_lossy(alpn)
        );
    }
}

#[tokio::test]
async fn half_an_http2_preface_or_a_preface_without_a_request_is_closed() {
    let app = spawn_app_with(SHORT_FIRST_REQUEST).await;
    let mut partial = connect(&app, local(1), b"h2").await.expect("handshake");
    partial
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");
    assert!(
        closed_by_server(&mut partial).await,
        "half a preface must not hold the connection"
    );

    // A whole preface and SETTINGS, then no request: closed too.
    let stream = connect(&app, local(1), b"h2").await.expect("handshake");
    let (_send, connection) = http2_client(stream).await;
    let ended = tokio::time::timeout(PATIENCE, connection).await;
    assert!(
        ended.is_ok(),
        "an HTTP/2 connection that never sends a request must be closed"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_its_last_request() {
    let app = spawn_app_with("[connections]\nidle_timeout_ms = 300\n").await;
    let stream = connect(&app, local(1), b"h2").await.expect("handshake");
    let (mut send, connection) = http2_client(stream).await;
    assert_eq!(live_over_http2(&mut send).await, 200);
    let ended = tokio::time::timeout(PATIENCE, connection).await;
    assert!(
        ended.is_ok(),
        "an HTTP/2 connection idle past idle_timeout_ms must be closed"
    );
}

#[tokio::test]
async fn a_slow_response_keeps_its_connection_past_the_idle_bound() {
    // In flight is not idle: a request whose answer takes longer than idle_timeout_ms (here a
    // body trickling in under the body read limit) is answered, not cut.
    let app = spawn_app_with("[connections]\nidle_timeout_ms = 200\n").await;
    let mut stream = connect(&app, local(1), b"http/1.1")
        .await
        .expect("handshake");
    stream
        .write_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\n{",
        )
        .await
        .expect("write the head");
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.write_all(b"}").await.expect("write the rest");
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("answered")
        .expect("read");
    let head = String::from_utf8_lossy(&received);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_cap_while_another_address_is_served() {
    let app = spawn_app_with("[connections]\nmax_per_address = 4\n").await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            connect(&app, local(7), b"http/1.1")
                .await
                .expect("within the cap"),
        );
    }
    assert!(
        connect(&app, local(7), b"http/1.1").await.is_err(),
        "a fifth connection from the same address must be closed at once"
    );
    let other = client_from(app.ca_cert.as_deref(), local(8));
    let response = other
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("another address is served");
    assert_eq!(response.status(), 200);

    // A closed connection frees its place.
    drop(held.pop());
    let again = client_from(app.ca_cert.as_deref(), local(7));
    let response = tokio::time::timeout(PATIENCE, async {
        loop {
            match again.get(app.url("/health/live")).send().await {
                Ok(response) => return response,
                // The server may not have seen the close yet.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("served again once a connection closed");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_total_cap_refuses_at_once_and_the_service_recovers() {
    let app = spawn_app_with("[connections]\nmax_total = 3\n").await;
    let mut held = Vec::new();
    for last in 2..5 {
        held.push(
            connect(&app, local(last), b"http/1.1")
                .await
                .expect("within the cap"),
        );
    }
    assert!(
        connect(&app, local(5), b"http/1.1").await.is_err(),
        "past the total cap a new connection is closed at once"
    );

    // The admin listener has caps of its own: metrics stay scrapeable while the public
    // listeners are full, and show the refusal.
    let metrics = reqwest::get(format!(
        "{}/metrics",
        app.admin_address.as_deref().expect("admin listener")
    ))
    .await
    .expect("scrape while the cap is full")
    .text()
    .await
    .expect("metrics");
    assert!(
        metrics.lines().any(
            |line| line.starts_with("connections_refused_total{cap=\"total\"}")
                && !line.ends_with(" 0")
        ),
        "{metrics}"
    );

    held.clear();
    let client = client_from(app.ca_cert.as_deref(), local(5));
    let response = tokio::time::timeout(PATIENCE, async {
        loop {
            match client.get(app.url("/health/live")).send().await {
                Ok(response) => return response,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("served again once connections closed");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_client_that_never_takes_its_response_is_cut_after_the_idle_bound() {
    // An HTTP/2 client whose flow-control window stays at zero: its response can never be
    // written, so the request would stay in flight, and the connection open, forever.
    let app = spawn_app_with("[connections]\nidle_timeout_ms = 300\n").await;
    let stream = connect(&app, local(1), b"h2").await.expect("handshake");
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(stream)
        .await
        .expect("HTTP/2 preface");
    let connection = tokio::spawn(connection);
    let mut send = send.ready().await.expect("ready");
    let (response, _) = send
        .send_request(get("/openapi.json"), true)
        .expect("stream opened");
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("headers arrive")
        .expect("response");
    assert_eq!(response.status(), 200);
    let ended = tokio::time::timeout(PATIENCE, connection).await;
    assert!(
        ended.is_ok(),
        "a response the client never takes must not hold its connection"
    );
}

#[tokio::test]
async fn http2_limits_are_advertised_and_rapid_resets_end_the_connection() {
    let app = spawn_app_with(
        "[connections]\nhttp2_max_concurrent_streams = 7\nhttp2_max_pending_reset_streams = 5\n",
    )
    .await;
    let stream = connect(&app, local(1), b"h2").await.expect("handshake");
    let (mut send, connection) = http2_client(stream).await;
    assert_eq!(live_over_http2(&mut send).await, 200);
    assert_eq!(
        send.current_max_send_streams(),
        7,
        "SETTINGS_MAX_CONCURRENT_STREAMS is the configured one"
    );

    // Open a stream and reset it at once, in bursts as an attacker writes them (CVE-2023-44487).
    let mut resets = 0;
    let refusal = 'attack: loop {
        for _ in 0..50 {
            match send.send_request(get("/health/live"), false) {
                Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                Err(error) => break 'attack Some(error),
            }
            resets += 1;
        }
        if resets >= 10_000 {
            break None;
        }
        // Let the client's connection write the burst, and the server read it.
        tokio::task::yield_now().await;
        send = match tokio::time::timeout(PATIENCE, send.ready()).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => break Some(error),
            Err(_) => panic!("the connection neither served nor ended"),
        };
    };
    let refusal = refusal.expect("10,000 rapid resets must not all be accepted");
    assert!(
        refusal.is_go_away() && refusal.is_remote(),
        "the server ends the connection: {refusal}"
    );
    assert_eq!(
        refusal.reason(),
        Some(h2::Reason::ENHANCE_YOUR_CALM),
        "GOAWAY ENHANCE_YOUR_CALM after {resets} resets"
    );
    tokio::time::timeout(PATIENCE, connection)
        .await
        .expect("the connection is closed")
        .expect("the task")
        .expect_err("closed by the server");

    // Others are still served.
    let stream = connect(&app, local(2), b"h2").await.expect("handshake");
    let (mut send, _connection) = http2_client(stream).await;
    assert_eq!(live_over_http2(&mut send).await, 200);
}
