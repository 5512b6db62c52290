//! TLS-1, TLS-2 and INPUT-4 on the wire: TLS 1.3 only, handshake and header timeouts, header
//! limits, certificate reload, the plain-HTTP redirect listener and trusted-proxy mode.

use std::path::Path;
use std::time::Duration;

use security::transport::dev_ca;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    RunningBinary, TLS_1_2, TLS_1_3, TestApp, client_trusting, header, json_body, spawn_app,
    spawn_app_with, tls_client_config,
};

/// Reads until the peer closes, for at most `limit`; returns what arrived and whether it closed.
async fn read_until_closed<S: AsyncReadExt + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> (Vec<u8>, bool) {
    let mut received = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut received))
        .await
        .is_ok();
    (received, closed)
}

/// Asks `/health/live` over an open connection and expects 200.
async fn assert_live_over<S: AsyncReadExt + AsyncWriteExt + Unpin>(stream: &mut S) {
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (received, _) = read_until_closed(stream, Duration::from_secs(10)).await;
    assert!(
        received.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&received)
    );
}

/// Writes a raw request over TLS and returns the response head's status line.
async fn raw_status_line(app: &TestApp, request: &[u8]) -> String {
    let mut stream = app.tls_stream().await;
    stream.write_all(request).await.expect("write");
    let (received, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    String::from_utf8_lossy(&received)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_tls_1_2_client_is_refused_and_a_tls_1_3_client_is_served() {
    let app = spawn_app().await;
    let old = app
        .tls_stream_with(tls_client_config(app.ca_cert.as_deref(), TLS_1_2))
        .await;
    assert!(
        old.is_err(),
        "a TLS 1.2-only client must fail the handshake"
    );

    let mut stream = app.tls_stream().await;
    let (_, session) = stream.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_live_over(&mut stream).await;
}

#[tokio::test]
async fn alpn_offers_h2_and_http_1_1() {
    let app = spawn_app().await;
    let mut config = (*tls_client_config(app.ca_cert.as_deref(), TLS_1_3)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let stream = app
        .tls_stream_with(std::sync::Arc::new(config))
        .await
        .expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn requests_are_served_over_http_2_when_the_client_offers_it() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert!(header(&response, "strict-transport-security").starts_with("max-age="));
}

#[tokio::test]
async fn a_client_that_never_sends_a_client_hello_blocks_nobody_and_is_dropped() {
    let app = spawn_app_with("[tls]\nhandshake_timeout_seconds = 1\n").await;
    let mut silent = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");

    // While the silent connection is open, others are served.
    for _ in 0..3 {
        let response = app
            .client
            .get(app.url("/health/live"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }

    // And the silent one is closed once its handshake time is up.
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(
        closed,
        "the server must drop a client that never completes its handshake"
    );
}

#[tokio::test]
async fn request_headers_trickling_in_are_timed_out() {
    let app = spawn_app_with("[limits]\nheader_read_timeout_seconds = 1\n").await;
    let mut stream = app.tls_stream().await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: local")
        .await
        .expect("write");
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed, "a request whose headers never finish must be cut");
}

#[tokio::test]
async fn oversized_or_too_many_headers_are_refused_with_431() {
    let app = spawn_app().await;
    let big = format!(
        "GET /health/live HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let status = raw_status_line(&app, big.as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");

    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /health/live HTTP/1.1\r\nHost: localhost\r\n{many}\r\n");
    let status = raw_status_line(&app, request.as_bytes()).await;
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
}

/// Two certificates from two development CAs, and a folder serving the first (`cert.pem`,
/// `key.pem`) until [`TwoCertificates::serve_second`].
struct TwoCertificates {
    first: dev_ca::DevCertificates,
    second: dev_ca::DevCertificates,
    serving: tempfile::TempDir,
    _cas: (tempfile::TempDir, tempfile::TempDir),
}

impl TwoCertificates {
    fn new() -> Self {
        let cas = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let this = Self {
            first: dev_ca::ensure(cas.0.path(), &[]).expect("certificate"),
            second: dev_ca::ensure(cas.1.path(), &[]).expect("certificate"),
            serving: tempfile::tempdir().expect("dir"),
            _cas: cas,
        };
        this.copy(&this.first);
        this
    }

    fn copy(&self, from: &dev_ca::DevCertificates) {
        let to = self.serving.path();
        std::fs::copy(&from.server.cert, to.join("cert.pem")).expect("copy cert");
        std::fs::copy(&from.server.key, to.join("key.pem")).expect("copy key");
    }

    fn serve_second(&self) {
        self.copy(&self.second);
    }

    /// `[tls]` settings serving the folder's files, plus `extra` lines.
    fn files_mode(&self, extra: &str) -> String {
        format!(
            "[tls]\nmode = \"files\"\ncert_path = \"{dir}/cert.pem\"\nkey_path = \"{dir}/key.pem\"\n{extra}",
            dir = self.serving.path().display()
        )
    }
}

#[tokio::test]
async fn a_replaced_certificate_is_served_on_the_next_connection_without_dropping_open_ones() {
    let certificates = TwoCertificates::new();
    let (first, second) = (&certificates.first, &certificates.second);

    let app = spawn_app_with(&certificates.files_mode("")).await;
    let trusts_first = tls_client_config(Some(&first.ca_cert), TLS_1_3);
    let trusts_second = tls_client_config(Some(&second.ca_cert), TLS_1_3);
    let mut open = app
        .tls_stream_with(trusts_first.clone())
        .await
        .expect("the first certificate is served");
    assert!(app.tls_stream_with(trusts_second.clone()).await.is_err());

    certificates.serve_second();
    let mut reloaded = false;
    for _ in 0..50 {
        if app.tls_stream_with(trusts_second.clone()).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        reloaded,
        "the replaced certificate is served without a restart"
    );
    assert!(app.tls_stream_with(trusts_first).await.is_err());

    // The connection opened before the switch still works.
    assert_live_over(&mut open).await;
}

#[tokio::test]
async fn plain_http_navigations_go_to_the_configured_origin_not_the_host_header() {
    let app = spawn_app().await;
    let http = app
        .http_address
        .clone()
        .expect("the redirect listener runs");
    let client = client_trusting(None);
    for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
        let response = client
            .request(method.clone(), format!("{http}/v1/users?page=2"))
            .header("host", "evil.example")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 308, "{method}");
        assert_eq!(
            response.headers()["location"],
            "https://localhost/v1/users?page=2",
            "{method}"
        );
    }
}

#[tokio::test]
async fn credentialed_or_unsafe_plaintext_requests_are_refused_not_redirected() {
    let app = spawn_app().await;
    let http = app
        .http_address
        .clone()
        .expect("the redirect listener runs");
    let client = client_trusting(None);
    let url = format!("{http}/v1/users");
    let attempts = [
        client
            .get(&url)
            .header("authorization", "Bearer secret-token"),
        client.get(&url).header("cookie", "session=secret"),
        client.get(&url).header("x-api-key", "secret-key"),
        client.get(format!("{url}?access_token=secret")),
        client
            .post(&url)
            .header("content-type", "application/json")
            .body("{}"),
    ];
    for attempt in attempts {
        let response = attempt.send().await.expect("request");
        assert_eq!(response.status(), 403);
        assert!(response.headers().get("location").is_none());
        let body = json_body(response).await;
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("HTTPS required")),
            "{body}"
        );
        assert!(!body.to_string().contains("secret"), "{body}");
    }
}

const BEHIND_PROXY: &str = "[tls]\nmode = \"terminated_by_proxy\"\n\
    [http_redirect]\nenabled = false\n";

#[tokio::test]
async fn behind_a_proxy_forwarded_https_is_honoured_only_from_trusted_peers() {
    let app = spawn_app_with(&format!(
        "{BEHIND_PROXY}[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n"
    ))
    .await;
    assert!(
        app.http_address.is_none(),
        "no redirect listener behind a proxy"
    );
    let served = app
        .client
        .get(app.url("/health/live"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("request");
    assert_eq!(served.status(), 200);
    for proto in [None, Some("http"), Some("https, http")] {
        let mut request = app.client.get(app.url("/health/live"));
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 308, "{proto:?}");
        assert_eq!(
            response.headers()["location"],
            "https://localhost/health/live"
        );
    }

    let untrusting = spawn_app_with(&format!(
        "{BEHIND_PROXY}[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n"
    ))
    .await;
    let response = untrusting
        .client
        .get(untrusting.url("/health/live"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        308,
        "a forged X-Forwarded-Proto from an untrusted peer changes nothing"
    );
}

#[tokio::test]
async fn behind_a_proxy_writing_forwarded_only_its_proto_says_https() {
    let app = spawn_app_with(&format!(
        "{BEHIND_PROXY}[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         forwarded_header = \"forwarded\"\n"
    ))
    .await;
    let status = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = app.client.get(app.url("/health/live"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { request.send().await.expect("request").status() }
    };
    assert_eq!(
        status(&[(
            "forwarded",
            "for=1.1.1.1;proto=http, for=198.51.100.7;proto=https"
        )])
        .await,
        200,
        "the proto of the element the proxy appended"
    );
    for (headers, why) in [
        (
            &[(
                "forwarded",
                "for=198.51.100.7;proto=https, for=198.51.100.7;proto=http",
            )][..],
            "an earlier element is the client's word",
        ),
        (
            &[("x-forwarded-proto", "https")][..],
            "X-Forwarded-Proto is not the declared header",
        ),
    ] {
        assert_eq!(status(headers).await, 308, "{why}");
    }
}

#[test]
fn a_credentialed_plaintext_request_is_audited_without_the_credential() {
    use std::io::{Read, Write};

    let binary = RunningBinary::start("");
    let http_address = binary.address("redirecting plain HTTP to the public origin");
    let mut stream = std::net::TcpStream::connect(&http_address).expect("connect");
    stream
        .write_all(
            b"GET /v1/users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sekrit-token\r\n\
              Connection: close\r\n\r\n",
        )
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");

    let audit = binary.wait_for(|event| event["log"] == "audit");
    assert_eq!(audit["event"], "transport.plaintext_credentials");
    assert_eq!(audit["outcome"], "denied");
    assert_eq!(audit["reason"], "authorization_header");
    assert_eq!(audit["client_ip"], "127.0.0.1");
    assert!(!audit.to_string().contains("sekrit"), "{audit}");
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_a_replaced_certificate_at_once() {
    let certificates = TwoCertificates::new();
    let (first, second) = (&certificates.first, &certificates.second);
    // An hour between file checks: only the signal can explain a prompt switch.
    let binary = RunningBinary::start(&certificates.files_mode("reload_interval_seconds = 3600\n"));
    let address = binary.address("listening");
    let connect = |ca: &Path| {
        let config = tls_client_config(Some(ca), TLS_1_3);
        let address = address.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
            tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
        }
    };
    assert!(connect(&first.ca_cert).await.is_ok());

    certificates.serve_second();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &binary.child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let reloaded = binary.wait_for(|event| event["message"] == "TLS certificate reloaded");
    assert_eq!(reloaded["trigger"], "SIGHUP");
    assert!(
        connect(&second.ca_cert).await.is_ok(),
        "the new certificate is served"
    );
    assert!(connect(&first.ca_cert).await.is_err(), "the old one is not");
}
