//! Start-up and shutdown: [`App::build`] connects, migrates and binds; [`App::run_until_stopped`]
//! serves until the shutdown future completes, then drains in-flight requests within the
//! configured grace period and closes the pool.
//!
//! Tests boot the real server through the same two calls, on port 0. [`App::builder`] assembles
//! the same service with additions: another clock, extra operations behind every layer (the
//! bench's route). Every control is wired in on every path ([`Controls::ALL`]); no setting or
//! environment variable turns one off. Only the builder's `insecure_` calls, in code, wire fewer
//! ([`AppBuilder::insecure_controls`]) or wrap the finished endpoint
//! ([`AppBuilder::insecure_wrap_endpoint`]), for Rampart's own proof that its scanner notices a
//! missing control, and start-up refuses both in production.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use poem::http::header::HeaderName;
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApi;
use sea_orm::{DatabaseConnection, DbErr};
use security::auth::access_control::{AccessControl, AccessPolicy, PolicyError};
use security::disclosure::SECURITY_TXT_PATH;
use security::input::body_limit::BodyLimit;
use security::input::strict_json::{self, SchemaError, StrictJson};
use security::logging::audit::{AuditHub, AuditObserver};
use security::logging::metrics::ServiceMetrics;
use security::logging::request_id::RequestIdLayer;
use security::monitoring::anomaly::{AnomalyDetector, DetectorTask};
use security::monitoring::geoip::{GeoIp, GeoIpError};
use security::operations::{RouteTemplates, operations_and_routes};
use security::rate_limit::memory::LimiterClock;
use security::rate_limit::middleware::RateLimit;
use security::transport::client_ip::ClientIpLayer;
use security::transport::connection_limits::{self, ConnectionCaps, ConnectionLimiter};
use security::transport::cors::{Cors, CorsConfig, CorsConfigError};
use security::transport::plaintext::{PlaintextPolicy, RedirectToHttps, RequireHttpsBehindProxy};
use security::transport::secure_headers::{
    AllowedMethods, PagePolicy, RefuseUnusedMethods, SecureHeaders, SecureHeadersConfig,
    hashed_page_policy,
};
use security::transport::server::{BoundListener, Http2Limits, ListenerLimits};
use security::transport::tls::{
    self, CertificateFiles, ReloadingCertificate, ResolvesServerCert, TlsError,
};
use security::transport::{dev_ca, origin};
use tokio::sync::watch;

use crate::api;
use crate::audit;
use crate::auth::verifier::ServiceVerifier;
use crate::auth::{self as service_auth, AuthContext, AuthSetupError, SharedClock, bootstrap};
use crate::config::{Environment, Settings, TlsMode};
use crate::error::JsonErrors;
use crate::persistence;
use crate::policy::PUBLIC_OPERATIONS;
use crate::rate_limits::{RateLimitSetupError, RateLimits};
use crate::telemetry::AccessLog;

/// The headers that carry API keys: a credential like `Authorization` and `Cookie`.
pub const API_KEY_HEADERS: [HeaderName; 1] = [HeaderName::from_static("x-api-key")];

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the database: {0}")]
    Database(#[source] DbErr),
    #[error("cannot apply migrations: {0}")]
    Migration(#[source] DbErr),
    #[error("invalid security header configuration: {0}")]
    Headers(#[source] poem::http::header::InvalidHeaderValue),
    #[error("invalid CORS configuration: {0}")]
    Cors(#[source] CorsConfigError),
    #[error("TLS: {0}")]
    Tls(#[source] TlsError),
    #[error("{0}")]
    Schema(#[source] SchemaError),
    #[error("access policy: {0}")]
    Policy(#[source] PolicyError),
    #[error("authentication: {0}")]
    Auth(#[source] AuthSetupError),
    #[error("bootstrap: {0}")]
    Bootstrap(#[source] bootstrap::BootstrapError),
    #[error("rate limits: {0}")]
    RateLimit(#[source] RateLimitSetupError),
    #[error("audit sink: {0}")]
    Audit(#[source] std::io::Error),
    #[error("anomaly detection: {0}")]
    GeoIp(#[source] GeoIpError),
    #[error("a build with controls turned off (`insecure_controls`) must never run in production")]
    InsecureInProduction,
    #[error(
        "connections.max_total = {configured} must stay below the file-descriptor limit ({limit})"
    )]
    ConnectionTotal { configured: u32, limit: u64 },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A service that is connected, migrated and bound, ready to run.
pub struct App {
    settings: Settings,
    db: DatabaseConnection,
    listener: BoundListener,
    endpoint: poem::endpoint::BoxEndpoint<'static>,
    redirect_listener: Option<BoundListener>,
    /// Plain HTTP, loopback by default: `GET /metrics` only (LOG-6).
    admin_listener: Option<BoundListener>,
    metrics: ServiceMetrics,
    auth: Arc<AuthContext>,
    rate_limits: Arc<RateLimits>,
    /// Where every audit event goes besides the log: the sink, metrics, anomaly detectors.
    audit_hub: AuditHub,
    /// Drops idle keys of the in-process rate-limit store; stops with the app.
    _rate_limit_housekeeping: Option<AbortOnDrop>,
    /// Folds recorded latencies into the histogram between scrapes; stops with the app.
    _metrics_upkeep: AbortOnDrop,
    _signing_key_refresh: Option<AbortOnDrop>,
    /// Deletes expired idempotency keys and delivered or expired outbox messages every hour;
    /// stops with the app.
    _hourly_purge: AbortOnDrop,
    /// Runs the anomaly detectors over the audit events; stops with the app.
    _anomaly_detection: AbortOnDrop,
    /// Reloads the certificate on file change and SIGHUP from start-up on; stops with the app.
    _certificate_watcher: Option<AbortOnDrop>,
    dev_ca_cert: Option<PathBuf>,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("local_addr", &self.local_addr())
            .field("http_redirect_addr", &self.http_redirect_addr())
            .field("admin_addr", &self.admin_addr())
            .finish_non_exhaustive()
    }
}

/// A server's TLS configuration for its certificate.
pub type TlsServerConfig =
    fn(Arc<dyn ResolvesServerCert>) -> Result<Arc<tls::ServerConfig>, TlsError>;

/// The controls the router and the main listener wire in. Every shipped path uses
/// [`Controls::ALL`]: the value exists so that the router receives its controls from one place,
/// and so that Rampart's weakened-builds harness can wire fewer through
/// [`AppBuilder::insecure_controls`]. The controls that act on finished responses (security
/// headers, HSTS, banner, CORS) are not here: that harness weakens them by wrapping the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Controls {
    /// Request objects closed (`additionalProperties: false`) in the published document that
    /// `StrictJson` enforces (INPUT-1).
    pub unknown_field_rejection: bool,
    /// Each operation's declared scopes required of its caller (AUTH-4).
    pub scope_check: bool,
    /// Every operation not listed as exempt charged to its tiers (RATE-1 .. RATE-3).
    pub rate_limit: bool,
    /// The main listener's TLS configuration: [`tls::server_config`], TLS 1.3 only (TLS-2).
    pub tls_server_config: TlsServerConfig,
}

impl Controls {
    /// Every control, as the service always runs.
    pub const ALL: Self = Self {
        unknown_field_rejection: true,
        scope_check: true,
        rate_limit: true,
        tls_server_config: tls::server_config,
    };
}

/// A wrapper around the finished endpoint, outermost.
type EndpointWrapper =
    Box<dyn FnOnce(BoxEndpoint<'static>) -> BoxEndpoint<'static> + Send + 'static>;

/// [`App`] assembled with additions; [`AppBuilder::build`] does what [`App::build`] does.
pub struct AppBuilder<Extra = ()> {
    settings: Settings,
    clock: Option<SharedClock>,
    extra_api: Extra,
    wrapper: Option<EndpointWrapper>,
    controls: Controls,
    insecure: bool,
}

impl<Extra> std::fmt::Debug for AppBuilder<Extra> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppBuilder")
            .field("controls", &self.controls)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl<Extra: OpenApi + Send + Sync + 'static> AppBuilder<Extra> {
    /// The clock every credential decision and the in-process rate limiter read (tests move it
    /// instead of sleeping).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Operations served beside the service's own, in the same document and behind every
    /// layer: they declare their scopes or are refused at start-up, like any operation.
    pub fn extra_api<Other: OpenApi + Send + Sync + 'static>(
        self,
        api: Other,
    ) -> AppBuilder<Other> {
        AppBuilder {
            settings: self.settings,
            clock: self.clock,
            extra_api: api,
            wrapper: self.wrapper,
            controls: self.controls,
            insecure: self.insecure,
        }
    }

    /// INSECURE: wraps the finished endpoint, outside every layer, where it can undo what they
    /// did (strip the security headers, grant any origin). For Rampart's weakened-builds harness
    /// only: [`Self::build`] refuses it in a production environment.
    pub fn insecure_wrap_endpoint(
        mut self,
        wrapper: impl FnOnce(BoxEndpoint<'static>) -> BoxEndpoint<'static> + Send + 'static,
    ) -> Self {
        self.wrapper = Some(Box::new(wrapper));
        self.insecure = true;
        self
    }

    /// INSECURE: wires only `controls` instead of [`Controls::ALL`]. For Rampart's proof that
    /// its scanner notices a missing control, never for a service anyone uses: [`Self::build`]
    /// refuses it in a production environment.
    pub fn insecure_controls(mut self, controls: Controls) -> Self {
        self.controls = controls;
        self.insecure = true;
        self
    }

    /// Connects to the database, applies migrations, loads (or in development creates) the
    /// certificate and binds the listeners.
    pub async fn build(self) -> Result<App, StartupError> {
        let Self {
            settings,
            clock,
            extra_api,
            wrapper,
            controls,
            insecure,
        } = self;
        if insecure {
            if settings.environment == Environment::Production {
                return Err(StartupError::InsecureInProduction);
            }
            tracing::error!(
                ?controls,
                "INSECURE BUILD: security controls are turned off"
            );
        }
        let (clock, limiter_clock) = match clock {
            Some(clock) => {
                let seconds = Arc::clone(&clock);
                let limiter_clock =
                    LimiterClock::from_fn(move || Duration::from_secs(seconds.now()));
                (clock, limiter_clock)
            }
            None => (service_auth::system_clock(), LimiterClock::monotonic()),
        };
        App::assemble(
            settings,
            (clock, limiter_clock),
            Additions {
                extra_api,
                wrapper,
                controls,
            },
        )
        .await
    }
}

/// What [`AppBuilder`] adds to the service.
struct Additions<Extra> {
    extra_api: Extra,
    wrapper: Option<EndpointWrapper>,
    controls: Controls,
}

impl App {
    /// Connects to the database, applies migrations, loads (or in development creates) the
    /// certificate and binds the listeners.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::builder(settings).build().await
    }

    /// [`App::build`] with the clock every credential decision and the in-process rate limiter
    /// read (tests move it instead of sleeping).
    pub async fn build_with_clock(
        settings: Settings,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        Self::builder(settings).clock(clock).build().await
    }

    /// The service with additions (see [`AppBuilder`]); every control wired in.
    pub fn builder(settings: Settings) -> AppBuilder {
        AppBuilder {
            settings,
            clock: None,
            extra_api: (),
            wrapper: None,
            controls: Controls::ALL,
            insecure: false,
        }
    }

    async fn assemble<Extra: OpenApi + Send + Sync + 'static>(
        settings: Settings,
        (clock, limiter_clock): (SharedClock, LimiterClock),
        additions: Additions<Extra>,
    ) -> Result<Self, StartupError> {
        tls::install_crypto_provider();
        let (certificate, dev_ca_cert) = load_certificate(&settings)?;
        let tls_config = server_tls(certificate.clone(), additions.controls.tls_server_config)?;

        let db = persistence::connect(&settings.database)
            .await
            .map_err(StartupError::Database)?;
        persistence::migrate(&db)
            .await
            .map_err(StartupError::Migration)?;

        let auth = Arc::new(
            AuthContext::new(&settings, db.clone(), clock)
                .await
                .map_err(StartupError::Auth)?,
        );
        // Shared signing keys: re-read now and then, so a rotation reaches this instance.
        let signing_key_refresh = auth
            .keys
            .spawn_refresh(std::time::Duration::from_secs(
                settings.auth.signing_key_refresh_seconds,
            ))
            .map(AbortOnDrop);
        if settings.environment != Environment::Production {
            bootstrap::ensure_dev_admin(&auth)
                .await
                .map_err(StartupError::Bootstrap)?;
        }

        let rate_limits = Arc::new(
            RateLimits::new(
                &settings.rate_limit,
                auth.key_hasher.derive("rate-limit keys"),
                limiter_clock,
            )
            .map_err(StartupError::RateLimit)?,
        );
        // One count for every listener: the caps bound the process's descriptors.
        let connections = ConnectionLimiter::new(
            connection_caps(&settings)?,
            &settings.server.trusted_proxies,
        );
        let metrics = ServiceMetrics::new()
            .watching_dropped_log_fields(crate::telemetry::dropped_log_fields())
            .watching_connections(connections.counts());
        let (anomaly_detector, anomaly_task) = anomaly_detector(&settings)?;
        let audit_hub = audit::hub_with(
            &settings.audit,
            vec![Arc::new(metrics.clone()), anomaly_detector],
        )
        .map_err(StartupError::Audit)?;
        // Its anomalies go to the same hub: the sink, the metrics (the detector ignores them).
        let anomaly_detection = AbortOnDrop(anomaly_task.spawn(audit_hub.clone()));
        let service = Service {
            db: db.clone(),
            auth: &auth,
            rate_limits: &rate_limits,
            metrics: &metrics,
        };
        let endpoint = routes(&settings, service, additions.extra_api, additions.controls)?
            .data(audit_hub.clone())
            .boxed();
        let endpoint = match additions.wrapper {
            Some(wrap) => wrap(endpoint),
            None => endpoint,
        };
        let address = SocketAddr::new(settings.server.host, settings.server.port);
        let listener = bind(address, tls_config)
            .await?
            .sharing_caps(Arc::clone(&connections));
        let redirect_listener =
            if settings.http_redirect.enabled && settings.tls.mode != TlsMode::TerminatedByProxy {
                let address = SocketAddr::new(settings.server.host, settings.http_redirect.port);
                Some(
                    bind(address, None)
                        .await?
                        .sharing_caps(Arc::clone(&connections)),
                )
            } else {
                None
            };
        let admin_listener = if settings.admin.enabled {
            let address = SocketAddr::new(settings.admin.host, settings.admin.port);
            if !settings.admin.host.is_loopback() {
                tracing::warn!(
                    address = %address,
                    "metrics are served in plain HTTP beyond this host"
                );
            }
            // Caps of its own, within the descriptors the total leaves free: metrics stay
            // scrapeable while the public listeners are at their cap.
            let admin_caps = ConnectionCaps {
                per_address: ADMIN_CONNECTIONS / 4,
                per_trusted_proxy: ADMIN_CONNECTIONS,
                total: ADMIN_CONNECTIONS,
            };
            let admin_connections = ConnectionLimiter::new(admin_caps, &[]);
            Some(bind(address, None).await?.sharing_caps(admin_connections))
        } else {
            tracing::warn!("metrics are not served: admin.enabled = false");
            None
        };
        if settings.environment == Environment::Production
            && settings.rate_limit.store == crate::config::RateLimitStoreKind::Redis
            && redis_in_plaintext_beyond_this_host(settings.rate_limit.redis_url())
        {
            tracing::warn!("Redis is reached in plaintext across the network: use rediss://");
        }
        match settings.security_txt.file(&settings.server.public_origin) {
            None if settings.environment == Environment::Production => tracing::warn!(
                "no /.well-known/security.txt: set security_txt.contact and expires (RFC 9116)"
            ),
            Some(Ok(file)) if file.is_expired_at(time::OffsetDateTime::now_utc()) => {
                tracing::warn!("/.well-known/security.txt has expired: renew security_txt.expires")
            }
            _ => {}
        }
        let metrics_upkeep = AbortOnDrop(metrics.spawn_upkeep());
        let certificate_watcher = certificate
            .map(|certificate| AbortOnDrop(certificate.watch(settings.tls.reload_interval())));
        let rate_limit_housekeeping = rate_limits.spawn_housekeeping().map(AbortOnDrop);
        let hourly_purge = AbortOnDrop(spawn_hourly_purge(Arc::clone(&auth)));
        Ok(Self {
            settings,
            db,
            listener,
            endpoint,
            redirect_listener,
            admin_listener,
            metrics,
            auth,
            rate_limits,
            audit_hub,
            _rate_limit_housekeeping: rate_limit_housekeeping,
            _metrics_upkeep: metrics_upkeep,
            _signing_key_refresh: signing_key_refresh,
            _hourly_purge: hourly_purge,
            _anomaly_detection: anomaly_detection,
            _certificate_watcher: certificate_watcher,
            dev_ca_cert,
        })
    }

    /// The bound port of the main listener (useful when the configured port was 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().port()
    }

    /// The bound address of the main listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// The bound address of the plain-HTTP redirect listener, if it runs.
    pub fn http_redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect_listener
            .as_ref()
            .map(BoundListener::local_addr)
    }

    /// The bound address of the admin listener (`GET /metrics`), if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.as_ref().map(BoundListener::local_addr)
    }

    /// The authentication state (issuer keys, password hasher) the service runs with.
    pub fn auth_context(&self) -> &Arc<AuthContext> {
        &self.auth
    }

    /// The rate limiter the service runs with (its counters and store).
    pub fn rate_limits(&self) -> &Arc<RateLimits> {
        &self.rate_limits
    }

    /// In `self_signed` mode, the development CA certificate clients should trust.
    pub fn dev_ca_cert(&self) -> Option<&Path> {
        self.dev_ca_cert.as_deref()
    }

    /// `app serve`: logs where the service listens, then serves until Ctrl-C or SIGTERM.
    pub async fn serve_until_signalled(self) -> std::io::Result<()> {
        tracing::info!(address = %self.local_addr(), "listening");
        if let Some(address) = self.http_redirect_addr() {
            tracing::info!(address = %address, "redirecting plain HTTP to the public origin");
        }
        if let Some(address) = self.admin_addr() {
            tracing::info!(address = %address, "admin listener");
        }
        if let Some(ca) = self.dev_ca_cert() {
            tracing::info!(ca_cert = %ca.display(), "development certificate; trust this CA");
        }
        let served = self.run_until_stopped(shutdown_signal()).await;
        match &served {
            Ok(()) => tracing::info!("stopped"),
            Err(error) => tracing::error!(error = %error, "server failed"),
        }
        served
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// within `server.shutdown_grace_seconds`, and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = Duration::from_secs(self.settings.server.shutdown_grace_seconds);
        let limits = listener_limits(&self.settings);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };

        let redirect = self.redirect_listener.map(|listener| {
            let endpoint = RedirectToHttps::new(plaintext_policy(&self.settings))
                .with(AccessLog)
                .with(RequestIdLayer::trusting_incoming(false))
                .data(self.audit_hub.clone());
            tokio::spawn(listener.serve(
                endpoint,
                limits.clone(),
                until_stopped(stopped.clone()),
                grace,
            ))
        });
        let admin = self.admin_listener.map(|listener| {
            tokio::spawn(listener.serve(
                self.metrics.admin_endpoint(),
                limits.clone(),
                until_stopped(stopped.clone()),
                grace,
            ))
        });
        let served = self
            .listener
            .serve(self.endpoint, limits, until_stopped(stopped), grace)
            .await;
        for listener in [redirect, admin].into_iter().flatten() {
            listener.abort();
        }
        if let Err(error) = self.db.close().await {
            tracing::warn!(error = %error, "closing the database pool failed");
        }
        served
    }
}

/// The configuration `app` loads, refused in a production environment: for the binaries that
/// must never serve anyone (the bench's service, Rampart's weakened-builds harness). The error
/// is what to print; either way the configuration is unusable for `binary`.
pub fn settings_outside_production(binary: &str) -> Result<Settings, String> {
    let settings = Settings::load().map_err(|error| error.to_string())?;
    if settings.environment == Environment::Production {
        return Err(format!(
            "{binary} is a test or benchmark build: it never runs in production"
        ));
    }
    Ok(settings)
}

/// Completes on Ctrl-C or SIGTERM (what orchestrators send before killing a process).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// The anomaly detectors (LOG-4) as an audit observer, and the task that runs them. Geography
/// needs a GeoIP database: without one that detector is off, and start-up says so once.
fn anomaly_detector(
    settings: &Settings,
) -> Result<(Arc<dyn AuditObserver>, DetectorTask), StartupError> {
    let anomaly = &settings.anomaly;
    let geoip = if anomaly.geoip_database.as_os_str().is_empty() {
        tracing::info!("anomaly detection runs without geography: no anomaly.geoip_database");
        None
    } else {
        Some(GeoIp::open(&anomaly.geoip_database).map_err(StartupError::GeoIp)?)
    };
    let (detector, task) = AnomalyDetector::new(anomaly.detector_config(), geoip);
    Ok((detector, task))
}

/// Deletes, at start-up and every hour after, what has outlived its use: expired idempotency
/// keys, and outbox messages delivered or expired (a reset link kept in the table is one more
/// in every backup, even sealed).
fn spawn_hourly_purge(auth: Arc<AuthContext>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let now = auth.now();
            log_purge(
                "expired idempotency keys",
                persistence::idempotency_keys::delete_expired(&auth.db, now).await,
            );
            log_purge(
                "delivered or expired outbox messages",
                persistence::outbox::delete_delivered_and_expired(&auth.db, now).await,
            );
        }
    })
}

/// Logs what one purge deleted, or why it failed (it is tried again within the hour).
fn log_purge(what: &str, outcome: Result<u64, sea_orm::DbErr>) {
    match outcome {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "{what} deleted"),
        Err(error) => tracing::warn!(error = %error, "deleting {what}"),
    }
}

/// The certificate to serve and, in development, the CA that signed it.
fn load_certificate(
    settings: &Settings,
) -> Result<(Option<Arc<ReloadingCertificate>>, Option<PathBuf>), StartupError> {
    let tls = &settings.tls;
    match tls.mode {
        TlsMode::TerminatedByProxy => Ok((None, None)),
        TlsMode::Files => {
            let files = CertificateFiles {
                cert: tls.cert_path.clone(),
                key: tls.key_path.clone(),
            };
            let certificate = ReloadingCertificate::load(files).map_err(StartupError::Tls)?;
            Ok((Some(certificate), None))
        }
        TlsMode::SelfSigned => {
            let hosts: Vec<String> = origin::parse(&settings.server.public_origin)
                .map(|origin| origin.host.to_owned())
                .into_iter()
                .collect();
            let dev = dev_ca::ensure(&tls.dev_dir, &hosts).map_err(StartupError::Tls)?;
            let certificate = ReloadingCertificate::load(dev.server).map_err(StartupError::Tls)?;
            Ok((Some(certificate), Some(dev.ca_cert)))
        }
    }
}

async fn bind(
    address: SocketAddr,
    tls: Option<Arc<tls::ServerConfig>>,
) -> Result<BoundListener, StartupError> {
    BoundListener::bind(address, tls)
        .await
        .map_err(|source| StartupError::Bind { address, source })
}

/// The TLS configuration of the main listener for `certificate`, if it serves TLS.
fn server_tls(
    certificate: Option<Arc<ReloadingCertificate>>,
    server_config: TlsServerConfig,
) -> Result<Option<Arc<tls::ServerConfig>>, StartupError> {
    certificate
        .map(|certificate| server_config(certificate).map_err(StartupError::Tls))
        .transpose()
}

/// The main listener alone, on the configured certificate and TLS configuration, with nothing
/// behind it yet: the bench's bare baseline serves on it (with [`listener_limits`]).
pub async fn bind_main_listener(settings: &Settings) -> Result<BoundListener, StartupError> {
    tls::install_crypto_provider();
    let (certificate, _) = load_certificate(settings)?;
    let tls_config = server_tls(certificate, tls::server_config)?;
    bind(
        SocketAddr::new(settings.server.host, settings.server.port),
        tls_config,
    )
    .await
}

/// The timeouts and header limits of every listener, from the configuration.
pub fn listener_limits(settings: &Settings) -> ListenerLimits {
    let connections = &settings.connections;
    let keep_alive = Duration::from_secs(connections.http2_keep_alive_seconds);
    ListenerLimits {
        handshake_timeout: settings.tls.handshake_timeout(),
        first_request_timeout: connections.first_request_timeout(),
        idle_timeout: connections.idle_timeout(),
        header_read_timeout: Duration::from_secs(settings.limits.header_read_timeout_seconds),
        max_header_bytes: settings.limits.max_header_bytes,
        max_headers: settings.limits.max_headers,
        http2: Http2Limits {
            max_concurrent_streams: connections.http2_max_concurrent_streams,
            max_pending_reset_streams: connections.http2_max_pending_reset_streams,
            keep_alive_interval: keep_alive,
            keep_alive_timeout: keep_alive,
            ..Http2Limits::default()
        },
        ..ListenerLimits::default()
    }
}

/// Connections the admin listener holds at most, all addresses together (taken from the
/// descriptors `connection_limits::RESERVED_DESCRIPTORS` keeps free).
const ADMIN_CONNECTIONS: u32 = 16;

/// The connection caps; the total below the process's file-descriptor limit.
fn connection_caps(settings: &Settings) -> Result<ConnectionCaps, StartupError> {
    let connections = &settings.connections;
    let limit = connection_limits::descriptor_limit();
    let total = match (connections.max_total, limit) {
        (0, limit) => connection_limits::total_below_descriptor_limit(limit),
        (configured, Some(limit)) if u64::from(configured) >= limit => {
            return Err(StartupError::ConnectionTotal { configured, limit });
        }
        (configured, _) => configured,
    };
    Ok(ConnectionCaps {
        per_address: connections.max_per_address,
        per_trusted_proxy: connections.max_per_trusted_proxy,
        total,
    })
}

fn plaintext_policy(settings: &Settings) -> PlaintextPolicy {
    PlaintextPolicy::new(&settings.server.public_origin, &API_KEY_HEADERS)
        .trusting_proxies(settings.server.proxies())
}

/// Whether `url` is `redis://` to a host other than this one (credentials and counters would
/// cross the network in clear).
fn redis_in_plaintext_beyond_this_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("redis://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let local = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    !local
}

/// Every route served beside the OpenAPI document, as the rate-limit plan and route templates
/// name them.
const PLAIN_ROUTES: &[&str] = &[
    "POST /oauth/token",
    "POST /oauth/revoke",
    "GET /.well-known/jwks.json",
    "GET /.well-known/oauth-authorization-server",
    "GET /openapi.json",
    "GET /docs",
    "GET /.well-known/security.txt",
];

/// `GET /openapi.json`: the document as published, serialised once.
fn openapi_document(body: String) -> impl Endpoint<Output = poem::Response> {
    poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(body.clone())
    })
}

/// The state the routes serve from.
#[derive(Debug)]
pub struct Service<'a> {
    pub db: DatabaseConnection,
    pub auth: &'a Arc<AuthContext>,
    pub rate_limits: &'a Arc<RateLimits>,
    pub metrics: &'a ServiceMetrics,
}

/// Every route of the service and `extra_api`'s behind the middleware stack, outermost last,
/// with `controls` wired in ([`Controls::ALL`] on every shipped path).
pub(crate) fn routes(
    settings: &Settings,
    service: Service<'_>,
    extra_api: impl OpenApi + Send + Sync + 'static,
    controls: Controls,
) -> Result<impl Endpoint<Output = poem::Response> + 'static, StartupError> {
    let Service {
        db,
        auth,
        rate_limits,
        metrics,
    } = service;
    let api = api::openapi_service(settings, db, auth, rate_limits, extra_api);
    let generated_spec = api.spec();
    let mut document: serde_json::Value = serde_json::from_str(&generated_spec).unwrap_or_default();
    // One source for docs and enforcement: request objects are closed (`additionalProperties:
    // false`) in the document that is both served and checked by `StrictJson`.
    if controls.unknown_field_rejection {
        strict_json::close_request_body_objects(&mut document);
    }
    let strict_json = StrictJson::from_openapi(&document, settings.limits.max_json_depth)
        .map_err(StartupError::Schema)?;
    // Default deny: every operation declares its scopes or is listed as public.
    let access_policy =
        AccessPolicy::from_openapi(&document, PUBLIC_OPERATIONS).map_err(StartupError::Policy)?;
    let access_policy = if controls.scope_check {
        access_policy
    } else {
        access_policy.insecure_without_scope_checks()
    };
    let access_control = AccessControl::new(
        access_policy,
        Arc::new(ServiceVerifier::new(Arc::clone(auth))),
        API_KEY_HEADERS[0].clone(),
    );
    // Every operation is limited unless listed as exempt; the published document says so.
    let rate_plan = rate_limits
        .plan(&document, PLAIN_ROUTES)
        .map_err(StartupError::RateLimit)?;
    let error_schema = serde_json::json!({ "$ref": "#/components/schemas/ErrorBody" });
    rate_plan.document(&mut document, &error_schema);
    let rate_limit = RateLimit::new(rate_plan, Arc::clone(rate_limits.limiter()));
    let published_spec = serde_json::to_string_pretty(&document).unwrap_or_default();
    // Swagger UI is one HTML page with inline script and style: its policy allows exactly
    // those elements by hash, never 'unsafe-inline'. It shows the published document.
    let docs_html = api
        .swagger_ui_html()
        .replacen(&generated_spec, &published_spec, 1);
    let spec = openapi_document(published_spec);
    let docs_policy = hashed_page_policy(&docs_html);
    let docs = poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone()));
    let secure_headers = SecureHeaders::new(&SecureHeadersConfig {
        hsts_max_age: Duration::from_secs(settings.headers.hsts_max_age_seconds),
        hsts_preload: settings.headers.hsts_preload,
        page: Some(PagePolicy {
            path_prefix: "/docs".to_owned(),
            content_security_policy: docs_policy,
        }),
    })
    .map_err(StartupError::Headers)?;
    let cors = Cors::new(&CorsConfig {
        allowed_origins: settings.cors.allowed_origins.clone(),
        allow_credentials: settings.cors.allow_credentials,
        max_age: Duration::from_secs(settings.cors.max_age_seconds),
    })
    .map_err(StartupError::Cors)?;
    let behind_proxy = settings.tls.mode == TlsMode::TerminatedByProxy;
    let mut plain = Route::new();
    // Validated with the configuration; not served without a contact.
    if let Some(Ok(security_txt)) = settings.security_txt.file(&settings.server.public_origin) {
        plain = plain.at(SECURITY_TXT_PATH, security_txt.endpoint());
    }
    let endpoint = plain
        .at("/openapi.json", spec)
        .nest("/docs", Route::new().at("/", docs))
        .at(
            "/oauth/token",
            api::oauth::TokenEndpoint::new(Arc::clone(auth)),
        )
        .at(
            "/oauth/revoke",
            api::oauth::RevocationEndpoint::new(Arc::clone(auth)),
        )
        .at("/.well-known/jwks.json", api::oauth::jwks(Arc::clone(auth)))
        .at(
            "/.well-known/oauth-authorization-server",
            api::oauth::metadata(auth),
        )
        .nest("/", api)
        // JSON bodies parsed strictly, checked against the served document, all errors at once.
        .with(strict_json)
        // Bodies are read once, here, within the size and time limits (413, 408).
        .with(BodyLimit::new(
            settings.limits.max_body_bytes,
            Duration::from_secs(settings.limits.body_read_timeout_seconds),
        ))
        // The document's scopes for the authenticated principal (401, 403).
        .with(access_control.authorize())
        // Per principal, else per client address; sensitive operations' own tiers (429).
        .with_if(controls.rate_limit, rate_limit)
        // The one credential presented, verified; who is calling is known from here on.
        .with(access_control.authenticate())
        // TRACE, TRACK and CONNECT are answered 405 before routing.
        .with(RefuseUnusedMethods)
        // Every error, from a handler or from routing, becomes the uniform JSON body.
        .with(JsonErrors::for_openapi(&document))
        // A 405 names the methods the path does allow (`Allow`, RFC 9110).
        .with(AllowedMethods::new(operations_and_routes(
            &document,
            PLAIN_ROUTES,
        )))
        // Cross-origin grants for allowlisted origins only, on success and error responses.
        .with(cors)
        // Behind a TLS proxy: plaintext only from the proxy, for requests it received over HTTPS.
        .with_if(
            behind_proxy,
            RequireHttpsBehindProxy::new(plaintext_policy(settings)),
        )
        // One line per request: method, path without query, status, latency.
        .with(AccessLog)
        // Request count and latency by route template and status, for the admin listener.
        .with(metrics.requests())
        // The operation's route template, for audit events and metrics.
        .with(RouteTemplates::new(&document, PLAIN_ROUTES))
        // Outside the error mapping, so error responses get the headers too.
        .with(secure_headers)
        // The client's address, from the peer or the header the trusted proxies are declared
        // to write.
        .with(ClientIpLayer::new(settings.server.proxies()))
        // Outermost: the id is assigned before anything logs and returned on every response.
        .with(RequestIdLayer::trusting_incoming(
            settings.server.trust_client_request_id,
        ));
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{load, production};

    /// The refusal comes before anything is connected or bound, so no database is needed.
    #[tokio::test]
    async fn production_refuses_an_app_with_a_control_off_or_a_wrapped_endpoint() {
        let settings =
            load(&production(""), Environment::Production, &[]).expect("production settings");
        let fewer = App::builder(settings.clone())
            .insecure_controls(Controls {
                scope_check: false,
                ..Controls::ALL
            })
            .build()
            .await;
        assert!(matches!(fewer, Err(StartupError::InsecureInProduction)));
        let wrapped = App::builder(settings)
            .insecure_wrap_endpoint(|endpoint| endpoint)
            .build()
            .await;
        assert!(matches!(wrapped, Err(StartupError::InsecureInProduction)));
    }

    #[test]
    fn plaintext_redis_is_told_apart_from_tls_and_from_this_host() {
        for remote in [
            "redis://redis.internal:6379",
            "redis://:secret@10.0.0.5:6379/0",
            "redis://[2001:db8::1]:6379",
        ] {
            assert!(redis_in_plaintext_beyond_this_host(remote), "{remote}");
        }
        for fine in [
            "rediss://redis.internal:6380",
            "redis://127.0.0.1:6379",
            "redis://:secret@localhost:6379",
            "redis://[::1]:6379",
            "redis+unix:///run/redis.sock",
        ] {
            assert!(!redis_in_plaintext_beyond_this_host(fine), "{fine}");
        }
    }
}
