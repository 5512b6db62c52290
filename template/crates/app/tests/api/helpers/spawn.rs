//! Boots the real service in-process for a test: a fresh SQLite file (or PostgreSQL database)
//! and free ports, built as `main` builds it but on a clock the test moves instead of sleeping
//! (`App::build_with_clock`), and served by the same `run_until_stopped`.

use std::path::Path;
use std::sync::Arc;

use app::config::Settings;
use app::startup::App;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::audit::capture_audit_events;
use super::clients::{TLS_1_3, client_trusting, client_with_token, json_body, tls_client_config};
use super::config::settings;
use super::credentials::{BootstrapCredentials, admin_access_token};
use crate::backend;

/// A running service and what a test needs to talk to it.
pub struct TestApp {
    /// `https://127.0.0.1:<port>`.
    pub address: String,
    pub port: u16,
    /// `http://127.0.0.1:<port>` of the redirect listener, when it runs.
    pub http_address: Option<String>,
    /// `http://127.0.0.1:<port>` of the admin listener (`GET /metrics`), when it runs.
    pub admin_address: Option<String>,
    /// The development CA that signed the serving certificate (`self_signed` mode).
    pub ca_cert: Option<std::path::PathBuf>,
    /// Trusts only the development CA; follows no redirects.
    pub client: reqwest::Client,
    /// `client` with the bootstrap administrator's access token on every request.
    pub admin: reqwest::Client,
    /// The bootstrap administrator's credentials and demo API key (`keys/bootstrap.json`).
    pub credentials: BootstrapCredentials,
    /// The administrator's access token (all admin scopes).
    pub admin_token: String,
    /// The clock every credential decision reads; tests move it instead of sleeping.
    pub clock: TestClock,
    /// The service's authentication state: issuer keys, password hasher.
    pub auth: Arc<app::auth::AuthContext>,
    /// The service's rate limiter: its store and counters.
    pub rate_limits: Arc<app::rate_limits::RateLimits>,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Signals shutdown and waits for the server to drain and stop.
    pub async fn stop(mut self) -> std::io::Result<()> {
        self.trigger_shutdown();
        self.wait_stopped().await
    }

    /// Sends the shutdown signal without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }

    /// Waits for the server task to end.
    pub async fn wait_stopped(&mut self) -> std::io::Result<()> {
        match self.server.take() {
            Some(handle) => handle.await.expect("the server task does not panic"),
            None => Ok(()),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The URL of the service's database.
    pub fn database_url(&self) -> String {
        backend::database_url(self.data_dir.path())
    }

    /// A raw HTTP/1.1 connection over TLS 1.3, for tests that write requests by hand.
    pub async fn tls_stream(&self) -> TlsStream<TcpStream> {
        self.tls_stream_with(tls_client_config(self.ca_cert.as_deref(), TLS_1_3))
            .await
            .expect("TLS handshake")
    }

    /// A TLS connection made with `config` (for example limited to TLS 1.2).
    pub async fn tls_stream_with(
        &self,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        TlsConnector::from(config).connect(name, tcp).await
    }

    /// A raw HTTP/1.1 connection over TLS 1.3 leaving from `local` (any 127.0.0.x), handshake
    /// done: many of them act as many clients, each ready to send at the same moment.
    pub async fn tls_stream_from(&self, local: std::net::IpAddr) -> TlsStream<TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind((local, 0).into())
            .expect("bind a loopback address");
        let tcp = socket
            .connect(([127, 0, 0, 1], self.port).into())
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").expect("server name");
        TlsConnector::from(tls_client_config(self.ca_cert.as_deref(), TLS_1_3))
            .connect(name, tcp)
            .await
            .expect("TLS handshake")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger_shutdown();
        backend::release(self.data_dir.path());
    }
}

/// Boots the service with the test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

/// Boots the service with `overrides` (TOML) on top of the test configuration.
pub async fn spawn_app_with(overrides: &str) -> TestApp {
    let data_dir = tempfile::tempdir().expect("data dir");
    let settings = settings(data_dir.path(), overrides);
    spawn_app_with_settings(data_dir, settings).await
}

/// Boots the service with `settings`, whose files live in `data_dir`.
pub async fn spawn_app_with_settings(data_dir: tempfile::TempDir, settings: Settings) -> TestApp {
    capture_audit_events();
    let clock = TestClock::new();
    let bootstrap_file = settings.auth.key_dir.join("bootstrap.json");
    let app = App::build_with_clock(settings, clock.shared())
        .await
        .expect("the app builds");
    let port = app.port();
    let auth = Arc::clone(app.auth_context());
    let rate_limits = Arc::clone(app.rate_limits());
    let scheme = if app.dev_ca_cert().is_some() {
        "https"
    } else {
        "http"
    };
    let http_address = app
        .http_redirect_addr()
        .map(|address| format!("http://{address}"));
    let admin_address = app.admin_addr().map(|address| format!("http://{address}"));
    let ca_cert = app.dev_ca_cert().map(Path::to_owned);
    let (shutdown, signal) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = signal.await;
    }));
    let address = format!("{scheme}://127.0.0.1:{port}");
    let client = client_trusting(ca_cert.as_deref());
    let credentials: BootstrapCredentials = serde_json::from_slice(
        &std::fs::read(&bootstrap_file).expect("the development bootstrap wrote its file"),
    )
    .expect("bootstrap.json");
    // The administrator's token comes straight from the issuer: no HTTP login, so tests that
    // serve plaintext behind a proxy, or move the clock, start the same way.
    let admin_token = admin_access_token(&auth, &credentials.admin.email).await;
    TestApp {
        address,
        port,
        http_address,
        admin_address,
        admin: client_with_token(ca_cert.as_deref(), &admin_token),
        admin_token,
        credentials,
        clock,
        auth,
        rate_limits,
        client,
        ca_cert,
        data_dir,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// The OpenAPI document the service publishes at `/openapi.json`.
pub async fn published_document(app: &TestApp) -> serde_json::Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    json_body(response).await
}

/// A clock a test sets; it starts at the real time.
#[derive(Debug, Clone)]
pub struct TestClock(Arc<std::sync::atomic::AtomicU64>);

impl TestClock {
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        Self(Arc::new(std::sync::atomic::AtomicU64::new(now)))
    }

    pub fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn advance(&self, seconds: u64) {
        self.0
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }

    fn shared(&self) -> app::auth::SharedClock {
        let time = Arc::clone(&self.0);
        Arc::new(move || time.load(std::sync::atomic::Ordering::SeqCst))
    }
}
