//! Boots the real service for a test: a fresh SQLite file (or PostgreSQL database) and a free
//! port, through the same `App::build` and `run_until_stopped` as `main`.

use std::path::Path;
use std::sync::Arc;

use app::config::{Environment, Settings};

use crate::backend;
use app::startup::App;
use figment::providers::Env;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The settings every test starts from; a test overrides what it needs.
pub const BASE_CONFIG: &str = r#"
[service]
name = "test-service"

[server]
host = "127.0.0.1"
port = 0
public_origin = "https://localhost"
shutdown_grace_seconds = 10
trust_client_request_id = false
trusted_proxies = []
forwarded_header = "x-forwarded-for"

[tls]
mode = "self_signed"
dev_dir = "DATA_DIR/tls"
cert_path = ""
key_path = ""
handshake_timeout_seconds = 10
reload_interval_seconds = 1

[http_redirect]
enabled = true
port = 0

[admin]
enabled = true
host = "127.0.0.1"
port = 0
allow_non_loopback = false

[cors]
allowed_origins = []
allow_credentials = true
max_age_seconds = 600

[database]
url = "sqlite://DATA_DIR/app.db?mode=rwc"
max_connections = 4
min_connections = 0
connect_timeout_seconds = 2
acquire_timeout_seconds = 2
statement_timeout_seconds = 5

[headers]
hsts_max_age_seconds = 31536000
hsts_preload = false

[limits]
max_body_bytes = 65536
body_read_timeout_seconds = 10
header_read_timeout_seconds = 10
max_header_bytes = 16384
max_headers = 64
max_json_depth = 32

[connections]
first_request_timeout_ms = 10000
idle_timeout_ms = 60000
max_per_address = 64
max_per_trusted_proxy = 4096
max_total = 0
http2_max_concurrent_streams = 100
http2_max_pending_reset_streams = 20
http2_keep_alive_seconds = 20

[auth]
built_in_issuer = true
audience = ""
access_token_seconds = 900
refresh_token_idle_seconds = 86400
refresh_token_absolute_seconds = 2592000
api_key_prefix = "rmp"
api_key_overlap_seconds = 86400
api_key_pepper = "test-pepper-0123456789abcdef0123456789abcdef"
outbox_encryption_key = ""
password_hash_concurrency = 2
key_dir = "DATA_DIR/keys"
signing_key_path = ""
retired_signing_keys = []
external_issuers = []

[rate_limit]
store = "memory"
redis_url = "redis://127.0.0.1:6379"
redis_key_prefix = "test:"
redis_timeout_ms = 250
max_keys_per_tier = 100000
anonymous = { requests = 10000, period_seconds = 60 }
authenticated = { requests = 10000, period_seconds = 60 }
login = { requests = 10000, period_seconds = 60 }
login_account = { requests = 10000, period_seconds = 60 }
password_reset = { requests = 10000, period_seconds = 60 }
password_reset_account = { requests = 10000, period_seconds = 60 }
password_reset_confirm = { requests = 10000, period_seconds = 60 }
token = { requests = 10000, period_seconds = 60 }
api_key_management = { requests = 10000, period_seconds = 60 }
payment = { requests = 10000, period_seconds = 60 }

[payments]
idempotency_key_ttl_seconds = 86400

[log]
level = "warn"
format = "json"

[audit]
sink = "off"
file_path = "DATA_DIR/audit.log"

[anomaly]
window_seconds = 60
cooldown_seconds = 900
max_tracked_keys = 10000
auth_failures_per_ip = { per_window = 10, per_hour = 30 }
auth_failures_per_account = { per_window = 5, per_hour = 20 }
auth_failures_global = { min_count = 50, baseline_multiplier = 10.0 }
requests_per_principal = { min_count = 60, baseline_multiplier = 10.0 }
usage_history_windows = 10
unfamiliar_operation_requests = 10
min_history_requests = 100
geoip_database = ""
max_travel_speed_kmh = 1000.0
min_travel_distance_km = 500.0
"#;

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

/// The protocol versions of a client limited to TLS 1.3, or to TLS 1.2.
pub const TLS_1_3: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
pub const TLS_1_2: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A rustls client that trusts `ca_cert` and speaks only `versions`, with ALPN http/1.1.
pub fn tls_client_config(
    ca_cert: Option<&Path>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca_cert) = ca_cert {
        for cert in CertificateDer::pem_file_iter(ca_cert).expect("read the CA") {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.trigger_shutdown();
        backend::release(self.data_dir.path());
    }
}

/// Settings from [`BASE_CONFIG`] plus `overrides` (TOML), with the files in `data_dir` and the
/// database and rate-limit store of this run ([`backend`]).
pub fn settings(data_dir: &Path, overrides: &str) -> Settings {
    let config_dir = tempfile::tempdir().expect("config dir");
    let base = backend::configure(BASE_CONFIG, data_dir);
    std::fs::write(config_dir.path().join("default.toml"), base).expect("write default.toml");
    std::fs::write(config_dir.path().join("test.toml"), overrides).expect("write test.toml");
    // A prefix no variable uses: tests never read the developer's APP_* variables.
    Settings::load_from(
        config_dir.path(),
        Environment::Test,
        Env::prefixed("RAMPART_TEST_UNUSED_"),
    )
    .expect("test settings are valid")
}

/// Boots the service with the base settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with("").await
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

/// What the development bootstrap wrote to `keys/bootstrap.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BootstrapCredentials {
    pub admin: AdminLogin,
    pub api_key: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AdminLogin {
    pub email: String,
    pub password: String,
}

/// Logs in and returns the token response.
pub async fn login(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> serde_json::Value {
    let response = client
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "login of {email}");
    json_body(response).await
}

/// An access token for the account `email`, with every scope its role allows.
pub async fn admin_access_token(auth: &app::auth::AuthContext, email: &str) -> String {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let admin = app::persistence::users::Entity::find()
        .filter(app::persistence::users::Column::Email.eq(email))
        .one(&auth.db)
        .await
        .expect("query")
        .expect("the bootstrap administrator exists");
    let scopes = app::auth::scopes::scopes_of_role(admin.role)
        .into_iter()
        .map(str::to_owned)
        .collect();
    app::auth::tokens::issue_access(auth, &admin.id.to_string(), scopes, None, None)
        .expect("signed")
        .token
}

/// A client whose connections leave from `local` (any 127.0.0.x reaches the service on
/// 127.0.0.1), to act as many clients from one machine.
pub fn client_from(ca_cert: Option<&Path>, local: std::net::IpAddr) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local);
    if let Some(ca_cert) = ca_cert {
        let pem = std::fs::read(ca_cert).expect("read the development CA");
        let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
        builder = builder.tls_certs_only([ca]);
    }
    builder.build().expect("client")
}

/// A client that sends `token` as the bearer credential on every request.
pub fn client_with_token(ca_cert: Option<&Path>, token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers);
    if let Some(ca_cert) = ca_cert {
        let pem = std::fs::read(ca_cert).expect("read the development CA");
        let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
        builder = builder.tls_certs_only([ca]);
    }
    builder.build().expect("client")
}

/// Boots the service with `overrides` applied to the base settings.
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

/// An HTTP client that trusts only `ca_cert` (when given) and follows no redirects.
pub fn client_trusting(ca_cert: Option<&Path>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(ca_cert) = ca_cert {
        let pem = std::fs::read(ca_cert).expect("read the development CA");
        let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
        builder = builder.tls_certs_only([ca]);
    }
    builder.build().expect("client")
}

/// The PostgreSQL server for tests that need one (`TEST_POSTGRES_URL`, default the local
/// server). Returns `None`, after saying so, when it cannot be reached, unless
/// `TEST_REQUIRE_SERVICES=1` makes its absence a failure.
pub async fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let reachable = match sea_orm::Database::connect(&url).await {
        Ok(db) => db.ping().await.is_ok(),
        Err(_) => false,
    };
    if reachable {
        return Some(url);
    }
    if std::env::var("TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("PostgreSQL is required (TEST_REQUIRE_SERVICES=1) but {url} cannot be reached");
    }
    eprintln!(
        "skipped: PostgreSQL at {url} cannot be reached (set TEST_REQUIRE_SERVICES=1 to fail instead)"
    );
    None
}

/// Reads a JSON body, failing with the raw text when it is not JSON.
pub async fn json_body(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body, got: {text}"))
}

/// A TCP proxy in front of a real server whose link a test can cut and restore, to simulate the
/// server becoming unreachable without stopping it for everyone else.
pub struct CuttableProxy {
    pub port: u16,
    link_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    connections: std::sync::Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accept_loop: JoinHandle<()>,
}

impl CuttableProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let link_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections = std::sync::Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let accept_loop = tokio::spawn({
            let link_up = link_up.clone();
            let connections = connections.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !link_up.load(Ordering::SeqCst) {
                        drop(client); // Down: the connection is closed at once.
                        continue;
                    }
                    let upstream = upstream.clone();
                    connections
                        .lock()
                        .expect("connections lock")
                        .spawn(async move {
                            if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                                let _ =
                                    tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                }
            }
        });
        Self {
            port,
            link_up,
            connections,
            accept_loop,
        }
    }

    /// Breaks every open connection and refuses new ones.
    pub fn cut(&self) {
        self.link_up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.connections
            .lock()
            .expect("connections lock")
            .abort_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.link_up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept_loop.abort();
        self.connections
            .lock()
            .expect("connections lock")
            .abort_all();
    }
}

/// A fresh PostgreSQL database for one test, dropped afterwards.
pub struct TestDatabase {
    admin_url: String,
    pub name: String,
}

impl TestDatabase {
    pub async fn create(admin_url: &str) -> Self {
        use sea_orm::ConnectionTrait;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(admin_url)
            .await
            .expect("admin connection");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        Self {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// The URL of this database on the same server.
    pub fn url(&self) -> String {
        let (server, _) = self
            .admin_url
            .rsplit_once('/')
            .expect("a database in the admin URL");
        format!("{server}/{}", self.name)
    }

    /// A TCP proxy in front of the server, and the URL of this database through it: cutting the
    /// proxy makes the database unreachable for whoever uses that URL, and no one else.
    pub async fn behind_proxy(&self) -> (CuttableProxy, String) {
        let (scheme, rest) = self.admin_url.split_once("://").expect("a URL");
        let authority = rest.split('/').next().expect("an authority");
        let (user, server) = authority
            .rsplit_once('@')
            .map_or(("", authority), |(user, server)| (user, server));
        let proxy = CuttableProxy::start(server.to_owned()).await;
        let user = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        let url = format!("{scheme}://{user}127.0.0.1:{}/{}", proxy.port, self.name);
        (proxy, url)
    }

    /// Drops the database (closing any connection still open to it).
    pub async fn drop_database(self) {
        use sea_orm::ConnectionTrait;
        if let Ok(admin) = sea_orm::Database::connect(&self.admin_url).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await;
        }
    }
}

/// A response header as text ("" when absent or not text).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Audit events recorded by every service in this test process, with their fields as text.
/// Services run in-process, so a test finds its own events by the request id of its response.
#[derive(Debug, Default)]
struct AuditCapture {
    events: std::sync::Mutex<Vec<std::collections::BTreeMap<String, String>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for &'static AuditCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "audit" {
            return;
        }
        struct Fields(std::collections::BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(
                    field.name().to_owned(),
                    format!("{value:?}").trim_matches('"').to_owned(),
                );
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = Fields(std::collections::BTreeMap::new());
        event.record(&mut fields);
        self.events.lock().expect("audit lock").push(fields.0);
    }
}

static AUDIT: std::sync::OnceLock<&'static AuditCapture> = std::sync::OnceLock::new();

/// Starts capturing audit events (once per process).
pub fn capture_audit_events() {
    AUDIT.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let capture: &'static AuditCapture = Box::leak(Box::default());
        let subscriber = tracing_subscriber::registry().with(capture);
        let _ = tracing::subscriber::set_global_default(subscriber);
        capture
    });
}

/// The audit events named `name` recorded so far by every service of this process (detached
/// events, such as `security.anomaly`, carry no request id).
pub fn audit_events_named(name: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let capture = AUDIT.get().expect("capture_audit_events() was called");
    capture
        .events
        .lock()
        .expect("audit lock")
        .iter()
        .filter(|event| event.get("event").map(String::as_str) == Some(name))
        .cloned()
        .collect()
}

/// The audit events recorded for the request whose response carried `request_id`.
pub fn audit_events_for(request_id: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let capture = AUDIT.get().expect("capture_audit_events() was called");
    capture
        .events
        .lock()
        .expect("audit lock")
        .iter()
        .filter(|event| event.get("request_id").map(String::as_str) == Some(request_id))
        .cloned()
        .collect()
}

/// The real binary, started on port 0 with `BASE_CONFIG` plus `extra` (TOML appended to the
/// file), its JSON log lines readable one by one.
pub struct RunningBinary {
    pub child: std::process::Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Every line the process wrote, stdout and stderr, as written.
    output: Arc<std::sync::Mutex<Vec<String>>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl RunningBinary {
    pub fn start(overrides: &str) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let config_dir = tempfile::tempdir().expect("config dir");
        let data_dir = tempfile::tempdir().expect("data dir");
        let config = backend::configure(BASE_CONFIG, data_dir.path())
            .replace("level = \"warn\"", "level = \"info\"")
            .replace("sink = \"off\"", "sink = \"stdout\"");
        std::fs::write(config_dir.path().join("default.toml"), config).expect("write config");
        std::fs::write(config_dir.path().join("test.toml"), overrides).expect("write overrides");
        let mut child = Command::new(env!("CARGO_BIN_EXE_app"))
            .env_clear()
            .env("APP_CONFIG_DIR", config_dir.path())
            .env("APP_ENVIRONMENT", "test")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let output: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (sender, events) = std::sync::mpsc::channel::<serde_json::Value>();
        let stdout_lines = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                stdout_lines.lock().expect("output").push(line.clone());
                if let Ok(event) = serde_json::from_str(&line) {
                    // The test may have stopped listening; keep collecting the output.
                    let _ = sender.send(event);
                }
            }
        });
        let stderr_lines = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                stderr_lines.lock().expect("output").push(line);
            }
        });
        Self {
            child,
            events,
            output,
            _dirs: (config_dir, data_dir),
        }
    }

    /// The next log event matching `wanted`; a missing event fails the test instead of hanging.
    pub fn wait_for(&self, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            let event = self
                .events
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("the expected log line within 30 s");
            if wanted(&event) {
                return event;
            }
        }
    }

    /// What `app check-config` prints for this binary's configuration (stdout and stderr).
    pub fn check_config_output(&self) -> String {
        self.run_command("check-config")
    }

    /// Runs `app <command>` with this binary's configuration; its output (stdout and stderr)
    /// once it succeeded.
    pub fn run_command(&self, command: &str) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_app"))
            .arg(command)
            .env_clear()
            .env("APP_CONFIG_DIR", self._dirs.0.path())
            .env("APP_ENVIRONMENT", "test")
            .output()
            .unwrap_or_else(|error| panic!("run {command}: {error}"));
        assert!(output.status.success(), "{command} failed: {output:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Every line written so far, stdout and stderr.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().expect("output").clone()
    }

    /// The URL of the binary's database.
    pub fn database_url(&self) -> String {
        backend::database_url(self._dirs.1.path())
    }

    /// The folder of the binary's data: `app.db`, `keys/`, `tls/`.
    pub fn data_dir(&self) -> &Path {
        self._dirs.1.path()
    }

    /// The development CA the binary created (`self_signed` mode).
    pub fn dev_ca_cert(&self) -> std::path::PathBuf {
        self._dirs.1.path().join("tls").join("ca.pem")
    }

    /// The address logged with `message`.
    pub fn address(&self, message: &str) -> String {
        let event = self.wait_for(|event| event["message"] == message);
        event["address"].as_str().expect("address").to_owned()
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        backend::release(self._dirs.1.path());
    }
}

/// The reset token in the link an outbox message carries, its body opened with `key` as the
/// relay would.
pub fn reset_token_in(
    key: &app::mail::OutboxKey,
    message: &app::persistence::outbox::Model,
) -> Option<String> {
    use secrecy::ExposeSecret;
    let body = key.open(message).expect("the outbox key opens the body");
    let (_, token) = body.expose_secret().split_once("#token=")?;
    Some(token.split_whitespace().next()?.to_owned())
}
