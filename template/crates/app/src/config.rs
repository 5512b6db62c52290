//! Typed, layered, validated configuration (OPS-4: unsafe production configuration refuses to
//! start, naming the setting).
//!
//! Layers, later ones winning:
//! 1. `config/default.toml`: every setting with its development default;
//! 2. `config/{environment}.toml`, if present, where the environment is `APP_ENVIRONMENT`
//!    (`development` by default, `test` or `production`);
//! 3. environment variables `APP_<SECTION>__<KEY>`, for example `APP_SERVER__PORT=8443`.
//!
//! `APP_CONFIG_DIR` moves the config folder. An unknown key in any layer, a malformed value and
//! an unsafe production setting all stop start-up with a message naming the key: a typo such as
//! `APP_SERVER__PROT` must never be silently ignored while the service runs on a default.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use security::auth::jwt::AcceptedTokenTypes;
use security::monitoring::anomaly::{AnomalyConfig, FailureThreshold, SpikeThreshold};
use security::transport::client_ip::{ForwardedHeader, TrustedProxies};
use security::transport::secure_headers::ONE_YEAR;
use serde::{Deserialize, Serialize};

/// Prefix of the environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "APP_";
/// Environment variable selecting the environment (and so the second config layer).
pub const ENVIRONMENT_VAR: &str = "APP_ENVIRONMENT";
/// Environment variable moving the folder the config files are read from.
pub const CONFIG_DIR_VAR: &str = "APP_CONFIG_DIR";

/// Where the service runs. Production turns every safety rule into a start-up refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    /// Reads `APP_ENVIRONMENT`; unset means development.
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(ENVIRONMENT_VAR) {
            Err(_) => Ok(Self::Development),
            Ok(value) => Self::parse(&value).ok_or_else(|| {
                ConfigError::single(
                    ENVIRONMENT_VAR,
                    "must be one of development, test, production",
                )
            }),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "development" => Some(Self::Development),
            "test" => Some(Self::Test),
            "production" => Some(Self::Production),
            _ => None,
        }
    }

    /// The name used for the environment's config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Production => "production",
        }
    }
}

/// All settings of the service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Not read from files: set from `APP_ENVIRONMENT` by [`Settings::load`].
    #[serde(skip_deserializing, default = "development")]
    pub environment: Environment,
    pub service: ServiceSettings,
    pub server: ServerSettings,
    pub tls: TlsSettings,
    pub http_redirect: HttpRedirectSettings,
    pub admin: AdminSettings,
    pub cors: CorsSettings,
    pub database: DatabaseSettings,
    pub headers: HeaderSettings,
    pub limits: LimitSettings,
    pub connections: ConnectionSettings,
    pub rate_limit: RateLimitSettings,
    pub auth: AuthSettings,
    pub payments: PaymentSettings,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub anomaly: AnomalySettings,
    /// `/.well-known/security.txt` (RFC 9116), served when a contact is set.
    #[serde(default)]
    pub security_txt: SecurityTxtSettings,
}

/// Where to report vulnerabilities (OPS-3): the fields of `/.well-known/security.txt`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityTxtSettings {
    /// `mailto:`, `https:` or `tel:` URIs, most preferred first; empty serves no file.
    pub contact: Vec<String>,
    /// When the file stops being valid (RFC 3339; less than a year ahead, renewed before then).
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    /// An `https:` URL of the disclosure policy.
    pub policy: String,
    /// An `https:` URL thanking reporters.
    pub acknowledgments: String,
    /// An `https:` URL of a key to encrypt reports with.
    pub encryption: String,
    /// Languages reports may be written in, e.g. `en, de`.
    pub preferred_languages: String,
}

impl SecurityTxtSettings {
    /// The file to serve, if a contact is configured.
    pub fn file(
        &self,
        public_origin: &str,
    ) -> Option<Result<security::disclosure::SecurityTxt, String>> {
        if self.contact.is_empty() {
            return None;
        }
        let Some(expires) = self.expires else {
            return Some(Err(
                "expires is required with a contact (RFC 9116)".to_owned()
            ));
        };
        let expires = time::OffsetDateTime::from_unix_timestamp(expires.timestamp())
            .map_err(|error| error.to_string());
        Some(expires.and_then(|expires| {
            security::disclosure::SecurityTxt::new(
                &self.contact,
                expires,
                public_origin,
                &self.policy,
                &self.acknowledgments,
                &self.encryption,
                &self.preferred_languages,
            )
            .map_err(|error| error.to_string())
        }))
    }
}

fn development() -> Environment {
    Environment::Development
}

/// What the service calls itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Shown as the title of the OpenAPI document.
    pub name: String,
}

/// The public listener: HTTPS, or plaintext behind a TLS-terminating proxy (see [`TlsMode`]).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: IpAddr,
    /// `0` picks a free port (tests).
    pub port: u16,
    /// The origin clients use to reach the service (`https://api.example.com`); it is the
    /// OpenAPI server URL and never derived from a request's Host header.
    pub public_origin: String,
    /// How long in-flight requests may run after a shutdown signal before they are cut.
    pub shutdown_grace_seconds: u64,
    /// Reuse a client's `X-Request-Id` (only behind a gateway that sets it).
    pub trust_client_request_id: bool,
    /// Reverse proxies allowed to speak for clients (CIDRs): their forwarding header is
    /// believed, nobody else's.
    pub trusted_proxies: Vec<IpNet>,
    /// The one header the trusted proxies write the client's address and scheme in
    /// (`x-forwarded-for` with `X-Forwarded-Proto`, or `forwarded`); the other is never read.
    pub forwarded_header: ForwardedHeader,
}

impl ServerSettings {
    /// The trusted proxies and the header they write.
    pub fn proxies(&self) -> TrustedProxies {
        TrustedProxies::new(&self.trusted_proxies, self.forwarded_header)
    }
}

/// Where the listener's TLS comes from (TLS-1, TLS-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// A certificate from a local development CA, generated on first run (refused in
    /// production).
    SelfSigned,
    /// `cert_path` and `key_path` (PEM), reloaded when they change or on SIGHUP.
    Files,
    /// No TLS here: plaintext is accepted only from `server.trusted_proxies` that report
    /// `https` in `server.forwarded_header` (`X-Forwarded-Proto`, or `Forwarded: proto=`).
    TerminatedByProxy,
}

/// TLS of the public listener. TLS 1.3 is the only version offered; there is no setting for it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// `self_signed`: the folder holding the development CA and certificate.
    pub dev_dir: PathBuf,
    /// `files`: the certificate chain (PEM).
    pub cert_path: PathBuf,
    /// `files`: the private key (PEM).
    pub key_path: PathBuf,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout_seconds: u64,
    /// How often the certificate files are checked for a replacement.
    pub reload_interval_seconds: u64,
}

impl TlsSettings {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_seconds)
    }

    pub fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_seconds)
    }
}

/// The plain-HTTP listener: redirects browser navigations to `server.public_origin` and
/// refuses requests that carry credentials (TLS-1).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRedirectSettings {
    pub enabled: bool,
    /// On `server.host`; `0` picks a free port (tests).
    pub port: u16,
}

/// The admin listener (LOG-6): `GET /metrics` in the Prometheus text format, never on the public
/// port. Plain HTTP: it is meant for loopback, where a local agent scrapes it and no network sees
/// the traffic; the metrics hold counts by route and reason, no secret and no identity.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub enabled: bool,
    /// Loopback by default; production refuses another address unless `allow_non_loopback`.
    pub host: IpAddr,
    /// `0` picks a free port (tests); never `server.port`.
    pub port: u16,
    /// Lets production serve metrics beyond this host (plain HTTP: only on a private network).
    pub allow_non_loopback: bool,
}

/// Cross-origin access for browser clients (TLS-4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`); `*` and `null` are refused.
    pub allowed_origins: Vec<String>,
    /// Whether those origins may send cookies or HTTP authentication.
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    pub max_age_seconds: u64,
}

/// The database: SQLite (embedded, the default) or PostgreSQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://data/app.db?mode=rwc` or `postgres://user:password@host/db`. Secret: a
    /// PostgreSQL URL usually carries a password, so it is never printed.
    #[serde(serialize_with = "serialize_redacted")]
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    /// Bound on opening one connection.
    pub connect_timeout_seconds: u64,
    /// Bound on waiting for a free pooled connection.
    pub acquire_timeout_seconds: u64,
    /// Bound on one statement (PostgreSQL `statement_timeout`; SQLite busy timeout).
    pub statement_timeout_seconds: u64,
}

fn serialize_redacted<S: serde::Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

impl DatabaseSettings {
    /// The connection URL (secret: do not log).
    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_seconds)
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_secs(self.acquire_timeout_seconds)
    }

    pub fn statement_timeout(&self) -> Duration {
        Duration::from_secs(self.statement_timeout_seconds)
    }
}

/// Security headers (TLS-5). There is no switch to turn them off.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderSettings {
    /// HSTS `max-age`; production refuses less than a year (31536000).
    pub hsts_max_age_seconds: u64,
    /// Adds `preload` to HSTS: only once the domain is ready for the browsers' preload lists.
    pub hsts_preload: bool,
}

/// Request limits (INPUT-4).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// The largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// The time a client has to deliver its whole body (408 after it).
    pub body_read_timeout_seconds: u64,
    /// The time a client has to deliver a request's headers (the connection is closed after).
    pub header_read_timeout_seconds: u64,
    /// The request line and headers together, in bytes (at least 8192; 431 above it).
    pub max_header_bytes: usize,
    /// Header fields per request (431 above it).
    pub max_headers: usize,
    /// The deepest nesting of objects and arrays accepted in a JSON body (400 beyond it).
    pub max_json_depth: usize,
}

/// What a connection may hold, and for how long (TLS-1; `security::transport::server` and
/// `security::transport::connection_limits`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    /// From the end of the TLS handshake to the first complete request head, HTTP/1.1 and
    /// HTTP/2 alike; a connection that has not sent one by then is closed.
    pub first_request_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (HTTP/2: GOAWAY first).
    /// HTTP/1.1 also waits at most `limits.header_read_timeout_seconds` between requests.
    pub idle_timeout_ms: u64,
    /// Open connections per client address (IPv6 per /64), from the TCP accept on.
    pub max_per_address: u32,
    /// Open connections per address of `server.trusted_proxies`: every client behind a proxy
    /// arrives through its connections.
    pub max_per_trusted_proxy: u32,
    /// Open connections over every listener; 0 means 90% of the file-descriptor limit. Past it
    /// new connections are closed at once. Must stay below the descriptor limit.
    pub max_total: u32,
    /// HTTP/2 streams one connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may reset before they are answered; past it, GOAWAY (rapid reset).
    pub http2_max_pending_reset_streams: usize,
    /// An HTTP/2 ping after this long without a frame from the client; no answer within as long
    /// closes the connection.
    pub http2_keep_alive_seconds: u64,
}

impl ConnectionSettings {
    pub fn first_request_timeout(&self) -> Duration {
        Duration::from_millis(self.first_request_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// Authentication (AUTH-1 to AUTH-4): the built-in issuer, token lifetimes, API keys.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// The built-in OAuth 2.0 issuer (login, `/oauth/token`, its JWKS). Off: only
    /// `external_issuers` are trusted, and login and the token endpoint refuse.
    pub built_in_issuer: bool,
    /// The `aud` access tokens must carry; empty means `server.public_origin`.
    pub audience: String,
    /// Lifetime of the built-in issuer's access tokens (60 to 900 seconds).
    pub access_token_seconds: u64,
    /// A refresh token unused for this long expires.
    pub refresh_token_idle_seconds: u64,
    /// No refresh token of a login outlives this, however often it rotates.
    pub refresh_token_absolute_seconds: u64,
    /// The recognisable prefix of this service's API keys (`rmp_...`).
    pub api_key_prefix: String,
    /// After a rotation, the old API key keeps working this long.
    pub api_key_overlap_seconds: u64,
    /// The secret keying stored API-key hashes (at least 32 bytes). Empty in development: one is
    /// generated in `key_dir`. Set it with `APP_AUTH__API_KEY_PEPPER`; never commit it.
    #[serde(serialize_with = "serialize_redacted")]
    pub api_key_pepper: SecretString,
    /// Password hashes computed at once (each takes about 19 MiB); the rest wait briefly. 0: half
    /// the CPU cores, at least 1 ([`AuthSettings::password_hashes_at_once`]).
    pub password_hash_concurrency: usize,
    /// Development: the built-in issuer's key, the pepper and the bootstrap admin live here.
    pub key_dir: PathBuf,
    /// Production: the built-in issuer's Ed25519 key (PEM PKCS#8). Empty in development.
    pub signing_key_path: PathBuf,
    /// Keys that signed before the current one: they verify until their last token expired.
    pub retired_signing_keys: Vec<RetiredKeySettings>,
    /// Where the issuer's keys live: `file` (the two settings above) or `database` (shared by
    /// every instance, sealed under `signing_key_encryption_key`, rotated for all at once by
    /// `app rotate-signing-key`).
    #[serde(default)]
    pub signing_keys: SigningKeySource,
    /// `database` keys: the key-encryption key (32 random bytes, base64; `openssl rand -base64
    /// 32`). Empty in development: generated in `key_dir`. Set it with
    /// `APP_AUTH__SIGNING_KEY_ENCRYPTION_KEY`; never commit it, never store it in the database.
    #[serde(default = "empty_secret", serialize_with = "serialize_redacted")]
    pub signing_key_encryption_key: SecretString,
    /// The key password-reset mails (and any other outbox message) are sealed under in the
    /// database outbox (32 random bytes, base64; `openssl rand -base64 32`), so reading the
    /// table or a backup yields no reset link. Empty in development: generated in `key_dir`.
    /// Set it with `APP_AUTH__OUTBOX_ENCRYPTION_KEY`; never store it in the database; the mail
    /// relay needs the same one.
    #[serde(default = "empty_secret", serialize_with = "serialize_redacted")]
    pub outbox_encryption_key: SecretString,
    /// `database` keys: each instance re-reads them this often (1 to 3600 seconds); a token
    /// naming a key it has not seen makes it re-read at once.
    #[serde(default = "default_signing_key_refresh")]
    pub signing_key_refresh_seconds: u64,
    /// OpenID Connect providers whose access tokens are accepted too.
    pub external_issuers: Vec<ExternalIssuerSettings>,
}

/// An external OpenID Connect issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerSettings {
    /// Exactly the `iss` of its tokens (`https://login.example.com/`); discovery is read from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// Fetched keys are trusted this long without a successful refresh (60 to 86400).
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_seconds: u64,
    /// A private CA for the provider's certificate; empty trusts the system's roots.
    #[serde(default)]
    pub ca_cert: PathBuf,
    /// The `aud` this provider puts in tokens for this API (e.g. `api://my-service`); empty
    /// means `auth.audience`.
    #[serde(default)]
    pub audience: String,
    /// The scopes its tokens may grant here; others in a token are ignored.
    pub allowed_scopes: Vec<String>,
    /// The `typ` header values of its access tokens, without regard to case or an
    /// `application/` prefix; `""` accepts a token without `typ`. The default, `["at+jwt"]`
    /// (RFC 9068), refuses the provider's ID tokens even where their `aud` names this API.
    /// Providers whose access tokens say `JWT` need `["JWT"]`, those that write no `typ` `[""]`
    /// (README, provider notes). Tokens carrying `nonce`, `at_hash` or `c_hash` are refused
    /// whatever this says.
    #[serde(default = "default_accepted_token_types")]
    pub accepted_token_types: Vec<String>,
}

fn default_jwks_ttl() -> u64 {
    3600
}

fn default_accepted_token_types() -> Vec<String> {
    vec![security::auth::jwt::ACCESS_TOKEN_TYPE.to_owned()]
}

/// Where the built-in issuer's keys live (`auth.signing_keys`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SigningKeySource {
    /// Files: one instance, or one secret mounted on every instance.
    #[default]
    File,
    /// The shared database, each private key sealed.
    Database,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn default_signing_key_refresh() -> u64 {
    60
}

/// A signing key taken out of service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetiredKeySettings {
    pub path: PathBuf,
    /// When it stopped signing (RFC 3339).
    pub retired_at: chrono::DateTime<chrono::Utc>,
}

/// The most hashes `password_hash_concurrency = 0` runs at once, whatever the core count.
pub const MAX_AUTOMATIC_HASHES: usize = 4;

impl AuthSettings {
    /// Argon2id hashes run at once: `password_hash_concurrency`, or when 0 half the CPU cores,
    /// at least 1 and at most [`MAX_AUTOMATIC_HASHES`]. Hashing then never takes more than half
    /// the machine, however many logins arrive (isolation), nor more than 4 × 19 MiB of memory
    /// on a large node whose cores the container does not own.
    pub fn password_hashes_at_once(&self) -> usize {
        match self.password_hash_concurrency {
            0 => std::thread::available_parallelism()
                .map_or(1, |cores| cores.get() / 2)
                .clamp(1, MAX_AUTOMATIC_HASHES),
            configured => configured,
        }
    }

    /// The audience of this API: the configured one, or the public origin.
    pub fn audience_or<'a>(&'a self, public_origin: &'a str) -> &'a str {
        if self.audience.is_empty() {
            public_origin
        } else {
            &self.audience
        }
    }

    pub fn access_token_lifetime(&self) -> Duration {
        Duration::from_secs(self.access_token_seconds)
    }
}

/// The shortest API-key pepper accepted.
pub const MIN_PEPPER_BYTES: usize = 32;

/// The demo `POST /v1/payments` (RATE-6: idempotency keys on payment-like writes).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    /// How long an `Idempotency-Key` is remembered (60 to 604800 seconds): a retry within it
    /// replays the first answer; after it the same key makes a new payment.
    pub idempotency_key_ttl_seconds: u64,
}

impl PaymentSettings {
    pub fn idempotency_key_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_key_ttl_seconds)
    }
}

/// Where rate-limit state lives (RATE-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStoreKind {
    /// In this process: one instance.
    Memory,
    /// In Redis: every instance shares one budget per client.
    Redis,
}

/// `requests` per `period_seconds` (bursts up to `requests`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSettings {
    pub requests: u32,
    pub period_seconds: u64,
}

/// Rate limits (RATE-1 .. RATE-4): the general tiers and each sensitive operation's own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub store: RateLimitStoreKind,
    /// `rediss://[:password@]host:port/db` (TLS), or `redis://` on a private network. Secret: it
    /// may carry a password, so it is never printed.
    #[serde(serialize_with = "serialize_redacted")]
    pub redis_url: SecretString,
    /// With `rediss://`: a private CA (PEM) the server's certificate must chain to; empty trusts
    /// the system's roots.
    #[serde(default)]
    pub redis_ca_cert: PathBuf,
    /// Every key this service writes starts with it (services sharing a Redis must differ).
    pub redis_key_prefix: String,
    /// Bound on one Redis call, connecting included.
    pub redis_timeout_ms: u64,
    /// In-process store: keys kept per tier. Newcomers beyond it share one bucket, so a flood
    /// of addresses cannot exhaust memory.
    pub max_keys_per_tier: usize,
    /// Per client address, for requests without a valid credential.
    pub anonymous: QuotaSettings,
    /// Per principal, from any address.
    pub authenticated: QuotaSettings,
    /// `POST /v1/auth/login`, per client address.
    pub login: QuotaSettings,
    /// `POST /v1/auth/login`, per account named in the body, from any address.
    pub login_account: QuotaSettings,
    /// `POST /v1/auth/password-reset`, per client address.
    pub password_reset: QuotaSettings,
    /// `POST /v1/auth/password-reset`, per account named in the body.
    pub password_reset_account: QuotaSettings,
    /// `POST /v1/auth/password-reset/confirm`, per client address.
    pub password_reset_confirm: QuotaSettings,
    /// `POST /oauth/token`, per client address.
    pub token: QuotaSettings,
    /// Creating and rotating API keys, per principal.
    pub api_key_management: QuotaSettings,
    /// `POST /v1/payments`, per principal.
    pub payment: QuotaSettings,
}

impl RateLimitSettings {
    /// The redis URL (secret: do not log).
    pub fn redis_url(&self) -> &str {
        self.redis_url.expose_secret()
    }

    /// Every quota with its key, for validation.
    pub fn quotas(&self) -> [(&'static str, QuotaSettings); 10] {
        [
            ("anonymous", self.anonymous),
            ("authenticated", self.authenticated),
            ("login", self.login),
            ("login_account", self.login_account),
            ("password_reset", self.password_reset),
            ("password_reset_account", self.password_reset_account),
            ("password_reset_confirm", self.password_reset_confirm),
            ("token", self.token),
            ("api_key_management", self.api_key_management),
            ("payment", self.payment),
        ]
    }
}

/// The shortest and longest time an idempotency key may be remembered: long enough for a
/// client's retries, short enough that the table does not grow without bound.
pub const IDEMPOTENCY_KEY_TTL_SECONDS: std::ops::RangeInclusive<u64> = 60..=604_800;

/// Log output.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter such as `info` or `info,sqlx=warn`.
    pub level: String,
    pub format: LogFormat,
}

/// Where audit events are written (LOG-1 .. LOG-3), apart from the application log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    pub sink: AuditSinkKind,
    /// The file appended to when `sink = "file"`.
    pub file_path: PathBuf,
}

/// The audit sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSinkKind {
    /// JSON lines on stdout, beside the application log (marked `"log": "audit"`).
    Stdout,
    /// JSON lines appended to `file_path`.
    File,
    /// Not written (metrics and detectors still see every event). Refused in production.
    Off,
}

/// Anomaly detection over the audit events (LOG-4): failed-authentication spikes, unusual
/// geography and unusual usage, each finding a `security.anomaly` audit event. An address or an
/// account alerts at fixed limits per window and per hour (nothing learned); elsewhere a window
/// alerts at `max(min_count, baseline_multiplier x the key's own baseline)`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalySettings {
    /// The counting window of every rate (1 to 3600 seconds).
    pub window_seconds: u64,
    /// An address, account or principal alerts at most once per cool-down for each finding.
    pub cooldown_seconds: u64,
    /// Addresses, accounts and principals remembered per detector (at least 100); the least
    /// recently seen makes room, so a flood of keys costs bounded memory.
    pub max_tracked_keys: usize,
    /// Refused credentials and authentication rate-limit refusals per client address (IPv6 per
    /// /64), per window and per hour.
    pub auth_failures_per_ip: FailureThreshold,
    /// Refused passwords per account, from any address, per window and per hour.
    pub auth_failures_per_account: FailureThreshold,
    /// Refused credentials and authentication rate-limit refusals over the whole service per
    /// window, against its baseline.
    pub auth_failures_global: SpikeThreshold,
    /// Requests per principal and window.
    pub requests_per_principal: SpikeThreshold,
    /// Active windows of a principal learned before its request rate is judged.
    pub usage_history_windows: u32,
    /// Requests in one window to operations under 1% of the principal's history.
    pub unfamiliar_operation_requests: u32,
    /// Events of a principal learned before its operations and countries are judged.
    pub min_history_requests: u32,
    /// A MaxMind DB (GeoLite2 or GeoIP2, City or Country); empty turns geography off.
    pub geoip_database: PathBuf,
    /// Faster than this between two places is impossible travel.
    pub max_travel_speed_kmh: f64,
    /// Places closer than this are never impossible travel (GeoIP is approximate).
    pub min_travel_distance_km: f64,
}

impl AnomalySettings {
    /// The detectors' thresholds.
    pub fn detector_config(&self) -> AnomalyConfig {
        AnomalyConfig {
            window: Duration::from_secs(self.window_seconds),
            cooldown: Duration::from_secs(self.cooldown_seconds),
            max_tracked_keys: self.max_tracked_keys,
            auth_failures_per_ip: self.auth_failures_per_ip,
            auth_failures_per_account: self.auth_failures_per_account,
            auth_failures_global: self.auth_failures_global,
            requests_per_principal: self.requests_per_principal,
            usage_history_windows: self.usage_history_windows,
            unfamiliar_operation_requests: self.unfamiliar_operation_requests,
            min_history_requests: self.min_history_requests,
            max_travel_speed_kmh: self.max_travel_speed_kmh,
            min_travel_distance_km: self.min_travel_distance_km,
        }
    }
}

/// `json` for machines (the default), `pretty` for a developer's terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl Settings {
    /// Loads the layers from `APP_CONFIG_DIR` (default `config`) for `APP_ENVIRONMENT`, then
    /// validates the result.
    pub fn load() -> Result<Self, ConfigError> {
        let environment = Environment::from_env()?;
        let dir = std::env::var_os(CONFIG_DIR_VAR)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        Self::load_from(&dir, environment, Env::prefixed(ENV_PREFIX))
    }

    /// Loads from `dir` with the given environment-variable layer (tests pass their own).
    pub fn load_from(dir: &Path, environment: Environment, env: Env) -> Result<Self, ConfigError> {
        let defaults = dir.join("default.toml");
        if !defaults.is_file() {
            return Err(ConfigError::single(
                CONFIG_DIR_VAR,
                format!("no default.toml in {}", dir.display()),
            ));
        }
        let figment = Figment::new()
            .merge(Toml::file_exact(defaults))
            .merge(Toml::file(
                dir.join(format!("{}.toml", environment.as_str())),
            ))
            .merge(
                env.ignore(&["ENVIRONMENT", "CONFIG_DIR"])
                    .split("__")
                    .lowercase(true),
            );
        Self::from_figment(figment, environment)
    }

    fn from_figment(figment: Figment, environment: Environment) -> Result<Self, ConfigError> {
        let mut settings: Settings = figment.extract().map_err(ConfigError::from_figment)?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the rules no type can express. Each rule names its key and says why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut refuse = |key: &str, reason: &str| {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };

        if self.service.name.trim().is_empty() {
            refuse("service.name", "must not be empty");
        }
        match parse_origin(&self.server.public_origin) {
            None => refuse(
                "server.public_origin",
                "must be an origin such as https://api.example.com (scheme, host, optional port; no path)",
            ),
            Some(scheme) if scheme != "https" => refuse(
                "server.public_origin",
                "must use https: the service is reached over HTTPS only (its own listener or its \
                 TLS proxy), and plain HTTP redirects there",
            ),
            Some(_) => {}
        }
        if self.server.shutdown_grace_seconds == 0 {
            refuse(
                "server.shutdown_grace_seconds",
                "must be at least 1, or in-flight requests are cut at every deploy",
            );
        }
        if self.limits.max_body_bytes == 0 {
            refuse("limits.max_body_bytes", "must be at least 1");
        }
        if self.limits.body_read_timeout_seconds == 0 {
            refuse(
                "limits.body_read_timeout_seconds",
                "must be at least 1: an unbounded wait lets slow clients hold connections",
            );
        }
        if self.limits.header_read_timeout_seconds == 0 {
            refuse(
                "limits.header_read_timeout_seconds",
                "must be at least 1: an unbounded wait lets slow clients hold connections",
            );
        }
        if self.limits.max_header_bytes < 8192 {
            refuse("limits.max_header_bytes", "must be at least 8192");
        }
        if self.limits.max_headers == 0 {
            refuse("limits.max_headers", "must be at least 1");
        }
        if self.limits.max_json_depth == 0 {
            refuse(
                "limits.max_json_depth",
                "must be at least 1: a JSON body is at least one object or array deep",
            );
        }
        let connections = &self.connections;
        for (key, value) in [
            (
                "connections.first_request_timeout_ms",
                connections.first_request_timeout_ms,
            ),
            ("connections.idle_timeout_ms", connections.idle_timeout_ms),
            (
                "connections.http2_keep_alive_seconds",
                connections.http2_keep_alive_seconds,
            ),
        ] {
            if value == 0 {
                refuse(
                    key,
                    "must be at least 1: an unbounded wait lets idle clients hold connections",
                );
            }
        }
        for (key, value) in [
            ("connections.max_per_address", connections.max_per_address),
            (
                "connections.max_per_trusted_proxy",
                connections.max_per_trusted_proxy,
            ),
            (
                "connections.http2_max_concurrent_streams",
                connections.http2_max_concurrent_streams,
            ),
        ] {
            if value == 0 {
                refuse(key, "must be at least 1");
            }
        }
        if connections.http2_max_pending_reset_streams == 0 {
            refuse(
                "connections.http2_max_pending_reset_streams",
                "must be at least 1",
            );
        }
        if self.tls.handshake_timeout_seconds == 0 {
            refuse(
                "tls.handshake_timeout_seconds",
                "must be at least 1: a client that never completes its handshake would hold \
                 a connection forever",
            );
        }
        if self.tls.reload_interval_seconds == 0 {
            refuse("tls.reload_interval_seconds", "must be at least 1");
        }
        match self.tls.mode {
            TlsMode::Files => {
                if self.tls.cert_path.as_os_str().is_empty() {
                    refuse(
                        "tls.cert_path",
                        "must name the certificate chain (PEM) in files mode",
                    );
                }
                if self.tls.key_path.as_os_str().is_empty() {
                    refuse(
                        "tls.key_path",
                        "must name the private key (PEM) in files mode",
                    );
                }
            }
            TlsMode::TerminatedByProxy => {
                if self.server.trusted_proxies.is_empty() {
                    refuse(
                        "server.trusted_proxies",
                        "must list the TLS-terminating proxy: with tls.mode = \
                         \"terminated_by_proxy\" plaintext is accepted only from it",
                    );
                }
                if self.http_redirect.enabled {
                    refuse(
                        "http_redirect.enabled",
                        "must be false with tls.mode = \"terminated_by_proxy\": the proxy owns \
                         plain HTTP",
                    );
                }
            }
            TlsMode::SelfSigned => {
                if self.tls.dev_dir.as_os_str().is_empty() {
                    refuse("tls.dev_dir", "must name a folder for the development CA");
                }
            }
        }
        if self.admin.enabled && self.admin.port != 0 && self.admin.port == self.server.port {
            refuse(
                "admin.port",
                "must differ from server.port: metrics are never served on the public port",
            );
        }
        for origin in &self.cors.allowed_origins {
            if let Err(error) = security::transport::cors::check_origin(origin) {
                refuse("cors.allowed_origins", &error.to_string());
            }
        }
        if self.database.max_connections == 0 {
            refuse("database.max_connections", "must be at least 1");
        }
        if self.database.min_connections > self.database.max_connections {
            refuse(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        for (key, value) in [
            (
                "database.connect_timeout_seconds",
                self.database.connect_timeout_seconds,
            ),
            (
                "database.acquire_timeout_seconds",
                self.database.acquire_timeout_seconds,
            ),
            (
                "database.statement_timeout_seconds",
                self.database.statement_timeout_seconds,
            ),
        ] {
            if value == 0 {
                refuse(
                    key,
                    "must be at least 1: an unbounded wait ties up the service",
                );
            }
        }
        if !(self.database.url().starts_with("sqlite:")
            || self.database.url().starts_with("postgres://")
            || self.database.url().starts_with("postgresql://"))
        {
            refuse(
                "database.url",
                "must start with sqlite:, postgres:// or postgresql://",
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            refuse(
                "log.level",
                "is not a valid filter (examples: info, warn, info,sqlx=warn)",
            );
        }

        let auth = &self.auth;
        if !(60..=security::auth::jwt::MAX_OWN_LIFETIME.as_secs())
            .contains(&auth.access_token_seconds)
        {
            refuse(
                "auth.access_token_seconds",
                "must be between 60 and 900: access tokens live at most 15 minutes",
            );
        }
        if auth.refresh_token_idle_seconds == 0
            || auth.refresh_token_idle_seconds > auth.refresh_token_absolute_seconds
        {
            refuse(
                "auth.refresh_token_idle_seconds",
                "must be positive and at most auth.refresh_token_absolute_seconds",
            );
        }
        if security::auth::secrets::KeyPrefix::new(&auth.api_key_prefix).is_err() {
            refuse(
                "auth.api_key_prefix",
                "must be 2 to 10 lowercase letters or digits, starting with a letter",
            );
        }
        for (index, external) in auth.external_issuers.iter().enumerate() {
            if !external.issuer.starts_with("https://") {
                refuse(
                    &format!("auth.external_issuers[{index}].issuer"),
                    "must be an https URL",
                );
            }
            if !(60..=86_400).contains(&external.jwks_ttl_seconds) {
                refuse(
                    &format!("auth.external_issuers[{index}].jwks_ttl_seconds"),
                    "must be between 60 and 86400",
                );
            }
            if external.allowed_scopes.is_empty() {
                refuse(
                    &format!("auth.external_issuers[{index}].allowed_scopes"),
                    "must list the scopes this issuer may grant",
                );
            }
            if let Err(error) = AcceptedTokenTypes::new(&external.accepted_token_types) {
                refuse(
                    &format!("auth.external_issuers[{index}].accepted_token_types"),
                    &format!(
                        "{error}: list the `typ` of the provider's access tokens (\"at+jwt\", \
                         \"JWT\", or \"\" for none)"
                    ),
                );
            }
        }
        if !auth.built_in_issuer && auth.external_issuers.is_empty() {
            refuse(
                "auth.built_in_issuer",
                "is off and no auth.external_issuers are configured: no token could ever be valid",
            );
        }
        let pepper = auth.api_key_pepper.expose_secret();
        if !pepper.is_empty() && pepper.len() < MIN_PEPPER_BYTES {
            refuse(
                "auth.api_key_pepper",
                "must be at least 32 bytes (generate one with `openssl rand -base64 48`)",
            );
        }
        let encryption_key = auth.signing_key_encryption_key.expose_secret();
        if !encryption_key.is_empty()
            && security::auth::key_wrapping::KeyEncryptionKey::from_base64(encryption_key).is_err()
        {
            refuse(
                "auth.signing_key_encryption_key",
                "must be 32 random bytes in base64 (generate one with `openssl rand -base64 32`)",
            );
        }
        let outbox_key = auth.outbox_encryption_key.expose_secret();
        if !outbox_key.is_empty() {
            if security::auth::key_wrapping::KeyEncryptionKey::from_base64(outbox_key).is_err() {
                refuse(
                    "auth.outbox_encryption_key",
                    "must be 32 random bytes in base64 (generate one with `openssl rand -base64 32`)",
                );
            } else if outbox_key.trim() == encryption_key.trim() {
                // One key per use: the relay that holds this one must not open signing keys.
                refuse(
                    "auth.outbox_encryption_key",
                    "must differ from auth.signing_key_encryption_key",
                );
            }
        }
        if !(1..=3_600).contains(&auth.signing_key_refresh_seconds) {
            refuse(
                "auth.signing_key_refresh_seconds",
                "must be between 1 and 3600",
            );
        }

        let rate_limit = &self.rate_limit;
        for (name, quota) in rate_limit.quotas() {
            let per_second_at_most_1000 =
                u64::from(quota.requests) <= quota.period_seconds.saturating_mul(1_000);
            if quota.requests == 0
                || !(1..=86_400).contains(&quota.period_seconds)
                || !per_second_at_most_1000
            {
                refuse(
                    &format!("rate_limit.{name}"),
                    "needs period_seconds between 1 and 86400 and requests between 1 and 1000 \
                     a second",
                );
            }
        }
        if rate_limit.max_keys_per_tier < 1_000 {
            refuse(
                "rate_limit.max_keys_per_tier",
                "must be at least 1000, or ordinary traffic ends up in the shared overflow bucket",
            );
        }
        if !(10..=5_000).contains(&rate_limit.redis_timeout_ms) {
            refuse(
                "rate_limit.redis_timeout_ms",
                "must be between 10 and 5000: every request waits at most this long on Redis",
            );
        }
        if rate_limit.store == RateLimitStoreKind::Redis {
            let url = rate_limit.redis_url();
            let tls = url.starts_with("rediss://");
            if !(tls || url.starts_with("redis://") || url.starts_with("redis+unix://")) {
                refuse(
                    "rate_limit.redis_url",
                    "must start with rediss:// (TLS), redis:// or redis+unix://",
                );
            }
            if !rate_limit.redis_ca_cert.as_os_str().is_empty() {
                let certificates = std::fs::read(&rate_limit.redis_ca_cert).unwrap_or_default();
                if !tls || !security::rate_limit::redis_store::is_ca_certificate_pem(&certificates)
                {
                    refuse(
                        "rate_limit.redis_ca_cert",
                        "must name a PEM file of CA certificates, and goes with a rediss:// URL",
                    );
                }
            }
            if rate_limit.redis_key_prefix.is_empty() {
                refuse(
                    "rate_limit.redis_key_prefix",
                    "must not be empty: it keeps this service's keys apart from others'",
                );
            }
        }

        if !IDEMPOTENCY_KEY_TTL_SECONDS.contains(&self.payments.idempotency_key_ttl_seconds) {
            refuse(
                "payments.idempotency_key_ttl_seconds",
                "must be between 60 and 604800: long enough for a client's retries, at most a \
                 week",
            );
        }

        let anomaly = &self.anomaly;
        if !(1..=3_600).contains(&anomaly.window_seconds) {
            refuse("anomaly.window_seconds", "must be between 1 and 3600");
        }
        if anomaly.cooldown_seconds == 0 {
            refuse(
                "anomaly.cooldown_seconds",
                "must be at least 1, or a lasting anomaly alerts on every event",
            );
        }
        if anomaly.max_tracked_keys < 100 {
            refuse("anomaly.max_tracked_keys", "must be at least 100");
        }
        for (name, limit) in [
            ("auth_failures_per_ip", anomaly.auth_failures_per_ip),
            (
                "auth_failures_per_account",
                anomaly.auth_failures_per_account,
            ),
        ] {
            if limit.per_window == 0 || limit.per_hour == 0 {
                refuse(
                    &format!("anomaly.{name}"),
                    "needs per_window and per_hour of at least 1",
                );
            }
        }
        for (name, threshold) in [
            ("auth_failures_global", anomaly.auth_failures_global),
            ("requests_per_principal", anomaly.requests_per_principal),
        ] {
            let multiplier = threshold.baseline_multiplier;
            if threshold.min_count == 0 || !(multiplier.is_finite() && multiplier >= 1.0) {
                refuse(
                    &format!("anomaly.{name}"),
                    "needs min_count of at least 1 and a baseline_multiplier of at least 1",
                );
            }
        }
        for (name, value) in [
            ("usage_history_windows", anomaly.usage_history_windows),
            (
                "unfamiliar_operation_requests",
                anomaly.unfamiliar_operation_requests,
            ),
            ("min_history_requests", anomaly.min_history_requests),
        ] {
            if value == 0 {
                refuse(&format!("anomaly.{name}"), "must be at least 1");
            }
        }
        if !(anomaly.max_travel_speed_kmh.is_finite() && anomaly.max_travel_speed_kmh > 0.0) {
            refuse("anomaly.max_travel_speed_kmh", "must be positive");
        }
        if !(anomaly.min_travel_distance_km.is_finite() && anomaly.min_travel_distance_km >= 0.0) {
            refuse("anomaly.min_travel_distance_km", "must be zero or positive");
        }
        if !anomaly.geoip_database.as_os_str().is_empty() && !anomaly.geoip_database.is_file() {
            refuse(
                "anomaly.geoip_database",
                "names no file; leave it empty to run without the geography detector",
            );
        }

        if let Some(Err(problem)) = self.security_txt.file(&self.server.public_origin) {
            refuse("security_txt", &problem);
        }

        if self.environment == Environment::Production {
            if pepper.is_empty() || is_placeholder(pepper) {
                refuse(
                    "auth.api_key_pepper",
                    "must be set in production (APP_AUTH__API_KEY_PEPPER), to a random secret",
                );
            }
            let encryption_key = auth.signing_key_encryption_key.expose_secret();
            // Not the placeholder test of the pepper: a random base64 key can contain "todo".
            if auth.built_in_issuer
                && auth.signing_keys == SigningKeySource::Database
                && encryption_key.is_empty()
            {
                refuse(
                    "auth.signing_key_encryption_key",
                    "must be set in production when signing keys live in the database \
                     (APP_AUTH__SIGNING_KEY_ENCRYPTION_KEY), to 32 random bytes in base64",
                );
            }
            if auth.outbox_encryption_key.expose_secret().is_empty() {
                refuse(
                    "auth.outbox_encryption_key",
                    "must be set in production (APP_AUTH__OUTBOX_ENCRYPTION_KEY), to 32 random \
                     bytes in base64, the same for the mail relay",
                );
            }
            if auth.built_in_issuer
                && auth.signing_keys == SigningKeySource::File
                && auth.signing_key_path.as_os_str().is_empty()
            {
                refuse(
                    "auth.signing_key_path",
                    "must name the issuer's Ed25519 key (PEM) in production; keys are never \
                     generated there",
                );
            }
            if self.tls.mode == TlsMode::SelfSigned {
                refuse(
                    "tls.mode",
                    "is self_signed in production: clients cannot verify a development CA; use \
                     \"files\" with a real certificate or \"terminated_by_proxy\"",
                );
            }
            if self.server.trust_client_request_id && self.server.trusted_proxies.is_empty() {
                refuse(
                    "server.trust_client_request_id",
                    "lets any client choose its request id; enable it only behind a trusted proxy",
                );
            }
            if self.headers.hsts_max_age_seconds < ONE_YEAR.as_secs() {
                refuse(
                    "headers.hsts_max_age_seconds",
                    "must be at least 31536000 (one year) in production",
                );
            }
            if self.admin.enabled
                && !self.admin.host.is_loopback()
                && !self.admin.allow_non_loopback
            {
                refuse(
                    "admin.host",
                    "is not a loopback address in production: the admin listener speaks plain \
                     HTTP; set admin.allow_non_loopback = true only on a private network",
                );
            }
            if self.audit.sink == AuditSinkKind::Off {
                refuse(
                    "audit.sink",
                    "is off in production: security decisions must leave an audit trail",
                );
            }
            if self.database.url().contains("mode=memory") {
                refuse(
                    "database.url",
                    "is an in-memory database in production: every write is lost on restart",
                );
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// A value copied from an example rather than generated.
fn is_placeholder(secret: &str) -> bool {
    let lowered = secret.to_ascii_lowercase();
    ["change", "example", "placeholder", "secret", "xxxx", "todo"]
        .iter()
        .any(|word| lowered.contains(word))
}

/// Returns the scheme if `origin` is `scheme://host[:port]` with nothing after it.
fn parse_origin(origin: &str) -> Option<&str> {
    security::transport::origin::parse(origin).map(|origin| origin.scheme)
}

/// One rejected setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key (`server.port`) or the environment variable at fault.
    pub key: String,
    pub reason: String,
}

/// Configuration that must not start the service. The message lists every problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    fn single(key: &str, reason: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                key: key.to_owned(),
                reason: reason.into(),
            }],
        }
    }

    /// One problem per figment error, naming the key and where its value came from, without
    /// repeating the value itself (it may be a secret).
    fn from_figment(error: figment::Error) -> Self {
        use figment::error::Kind;
        let problems = error
            .into_iter()
            .map(|error| {
                let mut path = error.path.clone();
                let reason = match &error.kind {
                    Kind::UnknownField(_, _) => "unknown key".to_owned(),
                    Kind::MissingField(field) => {
                        path.push(field.to_string());
                        "missing key".to_owned()
                    }
                    Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
                        format!("invalid value, expected {expected}")
                    }
                    Kind::UnknownVariant(_, expected) => {
                        format!("invalid value, expected one of {}", expected.join(", "))
                    }
                    other => other.to_string(),
                };
                let origin = error
                    .metadata
                    .as_ref()
                    .map(|metadata| match &metadata.source {
                        Some(source) => source.to_string(),
                        // figment names an environment provider "`PREFIX_` environment variable(s)".
                        None => match metadata.name.split('`').nth(1) {
                            Some(prefix) => format!(
                                "environment variable {prefix}{}",
                                path.join("__").to_uppercase()
                            ),
                            None => metadata.name.to_string(),
                        },
                    });
                ConfigProblem {
                    key: path.join("."),
                    reason: match origin {
                        Some(origin) => format!("{reason} (from {origin})"),
                        None => reason,
                    },
                }
            })
            .collect();
        Self { problems }
    }

    /// True if some problem names `key`.
    pub fn names(&self, key: &str) -> bool {
        self.problems.iter().any(|problem| problem.key == key)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration, the service will not start:")?;
        for problem in &self.problems {
            writeln!(f, "  - {}: {}", problem.key, problem.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
        [service]
        name = "svc"
        [server]
        host = "127.0.0.1"
        port = 0
        public_origin = "https://localhost:8443"
        shutdown_grace_seconds = 5
        trust_client_request_id = false
        trusted_proxies = []
        forwarded_header = "x-forwarded-for"
        [tls]
        mode = "self_signed"
        dev_dir = "data/tls"
        cert_path = ""
        key_path = ""
        handshake_timeout_seconds = 10
        reload_interval_seconds = 5
        [http_redirect]
        enabled = true
        port = 8080
        [admin]
        enabled = true
        host = "127.0.0.1"
        port = 9091
        allow_non_loopback = false
        [cors]
        allowed_origins = []
        allow_credentials = true
        max_age_seconds = 600
        [database]
        url = "sqlite::memory:"
        max_connections = 2
        min_connections = 0
        connect_timeout_seconds = 5
        acquire_timeout_seconds = 5
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
        api_key_pepper = ""
        outbox_encryption_key = ""
        password_hash_concurrency = 4
        key_dir = "data/keys"
        signing_key_path = ""
        retired_signing_keys = []
        external_issuers = []
        [rate_limit]
        store = "memory"
        redis_url = "redis://127.0.0.1:6379"
        redis_key_prefix = "test:"
        redis_timeout_ms = 250
        max_keys_per_tier = 100000
        anonymous = { requests = 120, period_seconds = 60 }
        authenticated = { requests = 600, period_seconds = 60 }
        login = { requests = 10, period_seconds = 60 }
        login_account = { requests = 5, period_seconds = 300 }
        password_reset = { requests = 5, period_seconds = 900 }
        password_reset_account = { requests = 3, period_seconds = 3600 }
        password_reset_confirm = { requests = 10, period_seconds = 900 }
        token = { requests = 30, period_seconds = 60 }
        api_key_management = { requests = 10, period_seconds = 3600 }
        payment = { requests = 20, period_seconds = 60 }

        [payments]
        idempotency_key_ttl_seconds = 86400
        [log]
        level = "info"
        format = "json"

        [audit]
        sink = "stdout"
        file_path = "data/audit.log"

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

    /// Loads `default_toml` with `vars` set, inside a jail that restores the environment.
    #[allow(clippy::result_large_err)] // figment's error type is fixed by `Jail`.
    fn load(
        default_toml: &str,
        environment: Environment,
        vars: &[(&str, &str)],
    ) -> Result<Settings, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.create_file("default.toml", default_toml)?;
            for (key, value) in vars {
                jail.set_env(key, value);
            }
            result = Some(Settings::load_from(
                jail.directory(),
                environment,
                Env::prefixed(ENV_PREFIX),
            ));
            Ok(())
        });
        result.expect("the jail ran")
    }

    #[test]
    fn a_valid_file_loads() {
        let settings = load(VALID, Environment::Development, &[]).expect("valid");
        assert_eq!(settings.server.public_origin, "https://localhost:8443");
    }

    #[test]
    fn password_hashing_takes_half_the_cores_unless_configured() {
        let vars = [("APP_AUTH__PASSWORD_HASH_CONCURRENCY", "0")];
        let automatic = load(VALID, Environment::Development, &vars).expect("valid");
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        assert_eq!(
            automatic.auth.password_hashes_at_once(),
            (cores / 2).clamp(1, MAX_AUTOMATIC_HASHES)
        );

        let vars = [("APP_AUTH__PASSWORD_HASH_CONCURRENCY", "3")];
        let configured = load(VALID, Environment::Development, &vars).expect("valid");
        assert_eq!(configured.auth.password_hashes_at_once(), 3);
    }

    #[test]
    fn an_unknown_key_in_a_file_is_refused_by_name() {
        let with_typo = VALID.replace("port = 0", "port = 0\n        prot = 1");
        let error = load(&with_typo, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("server.prot"), "{error}");
        assert!(error.to_string().contains("unknown key"), "{error}");
    }

    #[test]
    fn an_unknown_environment_variable_is_refused_by_name() {
        let error = load(
            VALID,
            Environment::Development,
            &[("APP_SERVER__PROT", "1")],
        )
        .expect_err("refused");
        assert!(error.names("server.prot"), "{error}");
    }

    #[test]
    fn a_malformed_environment_value_is_refused_naming_key_and_variable() {
        let error = load(
            VALID,
            Environment::Development,
            &[("APP_SERVER__PORT", "eighty")],
        )
        .expect_err("refused");
        assert!(error.names("server.port"), "{error}");
        assert!(error.to_string().contains("APP_SERVER__PORT"), "{error}");
    }

    #[test]
    fn environment_variables_override_files() {
        let settings = load(
            VALID,
            Environment::Development,
            &[("APP_SERVER__PORT", "9999")],
        )
        .expect("valid");
        assert_eq!(settings.server.port, 9999);
    }

    #[test]
    fn a_malformed_value_is_refused_by_name() {
        let bad = VALID.replace("port = 0", "port = \"eighty\"");
        let error = load(&bad, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("server.port"), "{error}");
    }

    #[test]
    fn the_forwarding_header_is_one_of_the_two_a_proxy_writes() {
        let forwarded = VALID.replace(
            "forwarded_header = \"x-forwarded-for\"",
            "forwarded_header = \"forwarded\"",
        );
        let settings = load(&forwarded, Environment::Development, &[]).expect("valid");
        assert_eq!(settings.server.forwarded_header, ForwardedHeader::Forwarded);
        for other in ["X-Real-IP", "cf-connecting-ip", "both"] {
            let bad = VALID.replace(
                "forwarded_header = \"x-forwarded-for\"",
                &format!("forwarded_header = \"{other}\""),
            );
            let error = load(&bad, Environment::Development, &[]).expect_err("refused");
            assert!(error.names("server.forwarded_header"), "{other}: {error}");
        }
    }

    /// VALID as production would run it: a real certificate from files.
    fn production() -> String {
        VALID
            .replace("https://localhost:8443", "https://api.example.com")
            .replace("mode = \"self_signed\"", "mode = \"files\"")
            // Before `key_path`, which it contains.
            .replace(
                "signing_key_path = \"\"",
                "signing_key_path = \"/etc/app/keys/signing-key.pem\"",
            )
            .replace(
                "cert_path = \"\"",
                "cert_path = \"/etc/app/tls/fullchain.pem\"",
            )
            .replace("key_path = \"\"", "key_path = \"/etc/app/tls/privkey.pem\"")
            .replace(
                "api_key_pepper = \"\"",
                "api_key_pepper = \"kV3q9ZrT0pX8mW2nB6yL4cH7jD1fG5sA\"",
            )
            .replace(
                "outbox_encryption_key = \"\"",
                "outbox_encryption_key = \"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\"",
            )
    }

    #[test]
    fn production_refuses_a_missing_or_placeholder_pepper_and_a_generated_signing_key() {
        let unpeppered = production().replace(
            "api_key_pepper = \"kV3q9ZrT0pX8mW2nB6yL4cH7jD1fG5sA\"",
            "api_key_pepper = \"\"",
        );
        let error = load(&unpeppered, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("auth.api_key_pepper"), "{error}");
        let placeholder = production().replace(
            "kV3q9ZrT0pX8mW2nB6yL4cH7jD1fG5sA",
            "change-me-change-me-change-me-change-me",
        );
        let error = load(&placeholder, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("auth.api_key_pepper"), "{error}");
        let generated = production().replace(
            "signing_key_path = \"/etc/app/keys/signing-key.pem\"",
            "signing_key_path = \"\"",
        );
        let error = load(&generated, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("auth.signing_key_path"), "{error}");
    }

    #[test]
    fn the_outbox_key_is_required_in_production_well_formed_and_its_own() {
        let configured = "outbox_encryption_key = \"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\"";
        let missing = production().replace(configured, "outbox_encryption_key = \"\"");
        let error = load(&missing, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("auth.outbox_encryption_key"), "{error}");
        load(&missing, Environment::Development, &[]).expect("generated in development");
        let short = production().replace(configured, "outbox_encryption_key = \"c2hvcnQ=\"");
        let error = load(&short, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("auth.outbox_encryption_key"), "{error}");
        let shared = production().replace(
            "signing_key_path = \"/etc/app/keys/signing-key.pem\"",
            "signing_key_path = \"/etc/app/keys/signing-key.pem\"\n\
             signing_key_encryption_key = \"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\"",
        );
        let error = load(&shared, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("auth.outbox_encryption_key"), "{error}");
        assert!(
            !error.to_string().contains("QUFB"),
            "the key is never repeated"
        );
    }

    #[test]
    fn redis_over_tls_may_name_its_own_ca_and_only_then() {
        let redis = VALID.replace("store = \"memory\"", "store = \"redis\"");
        let tls = redis.replace("redis://127.0.0.1:6379", "rediss://redis.internal:6380");
        load(&tls, Environment::Development, &[]).expect("rediss:// is accepted");
        let dir = tempfile::tempdir().expect("dir");
        let ca = security::transport::dev_ca::ensure(dir.path(), &[]).expect("a CA");
        let empty = tempfile::NamedTempFile::new().expect("a file");
        let empty_ca = tls.replace(
            "redis_key_prefix",
            &format!(
                "redis_ca_cert = \"{}\"\nredis_key_prefix",
                empty.path().display()
            ),
        );
        let error = load(&empty_ca, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("rate_limit.redis_ca_cert"), "{error}");
        let with_ca = tls.replace(
            "redis_key_prefix",
            &format!(
                "redis_ca_cert = \"{}\"\nredis_key_prefix",
                ca.ca_cert.display()
            ),
        );
        load(&with_ca, Environment::Development, &[]).expect("valid");
        let plaintext_with_ca = with_ca.replace("rediss://", "redis://");
        let error = load(&plaintext_with_ca, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("rate_limit.redis_ca_cert"), "{error}");
        let missing_ca = tls.replace(
            "redis_key_prefix",
            "redis_ca_cert = \"/nonexistent/ca.pem\"\nredis_key_prefix",
        );
        let error = load(&missing_ca, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("rate_limit.redis_ca_cert"), "{error}");
        let other = redis.replace("redis://127.0.0.1:6379", "http://127.0.0.1:6379");
        let error = load(&other, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("rate_limit.redis_url"), "{error}");
    }

    #[test]
    fn a_security_txt_needs_an_expiry_and_trustworthy_uris() {
        let without_expiry =
            format!("{VALID}[security_txt]\ncontact = [\"mailto:a@example.com\"]\n");
        let error = load(&without_expiry, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("security_txt"), "{error}");
        let plain_policy = format!(
            "{VALID}[security_txt]\ncontact = [\"mailto:a@example.com\"]\n\
             expires = \"2099-01-01T00:00:00Z\"\npolicy = \"http://example.com/policy\"\n"
        );
        let error = load(&plain_policy, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("security_txt"), "{error}");
        let valid = format!(
            "{VALID}[security_txt]\ncontact = [\"mailto:a@example.com\"]\n\
             expires = \"2099-01-01T00:00:00Z\"\n"
        );
        load(&valid, Environment::Development, &[]).expect("valid");
    }

    #[test]
    fn database_signing_keys_need_a_real_encryption_key_in_production() {
        let shared = production().replace(
            "retired_signing_keys = []",
            "retired_signing_keys = []\nsigning_keys = \"database\"",
        );
        let error = load(&shared, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("auth.signing_key_encryption_key"), "{error}");
        let malformed = shared.replace(
            "signing_keys = \"database\"",
            "signing_keys = \"database\"\nsigning_key_encryption_key = \"c2hvcnQ=\"",
        );
        let error = load(&malformed, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("auth.signing_key_encryption_key"), "{error}");
        let keyed = shared
            .replace(
                "signing_keys = \"database\"",
                "signing_keys = \"database\"\n\
                 signing_key_encryption_key = \"q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\"",
            )
            // No key file is needed then.
            .replace(
                "signing_key_path = \"/etc/app/keys/signing-key.pem\"",
                "signing_key_path = \"\"",
            );
        load(&keyed, Environment::Production, &[]).expect("valid");
    }

    #[test]
    fn the_built_in_issuer_can_be_off_only_with_an_external_issuer() {
        let off = VALID.replace("built_in_issuer = true", "built_in_issuer = false");
        let error = load(&off, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("auth.built_in_issuer"), "{error}");
        let external = off.replace(
            "external_issuers = []",
            "external_issuers = [{ issuer = \"https://login.example.com/\", allowed_scopes = [\"notes:read\"] }]",
        );
        load(&external, Environment::Development, &[]).expect("an external issuer suffices");
        // Production then needs no signing key of its own.
        let production_external = production()
            .replace("built_in_issuer = true", "built_in_issuer = false")
            .replace(
                "signing_key_path = \"/etc/app/keys/signing-key.pem\"",
                "signing_key_path = \"\"",
            )
            .replace(
                "external_issuers = []",
                "external_issuers = [{ issuer = \"https://login.example.com/\", allowed_scopes = [\"notes:read\"] }]",
            );
        load(&production_external, Environment::Production, &[]).expect("valid");
        let plaintext = external.replace("https://login.example.com/", "http://login.example.com/");
        let error = load(&plaintext, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("auth.external_issuers[0].issuer"), "{error}");
    }

    #[test]
    fn an_external_issuers_token_types_default_to_at_jwt_and_must_be_media_types() {
        let issuer = |types: &str| {
            VALID.replace(
                "external_issuers = []",
                &format!(
                    "external_issuers = [{{ issuer = \"https://login.example.com/\", \
                     allowed_scopes = [\"notes:read\"]{types} }}]"
                ),
            )
        };
        let default = load(&issuer(""), Environment::Development, &[]).expect("valid");
        assert_eq!(
            default.auth.external_issuers[0].accepted_token_types,
            ["at+jwt"]
        );
        load(
            &issuer(", accepted_token_types = [\"JWT\", \"\"]"),
            Environment::Development,
            &[],
        )
        .expect("JWT or untyped");
        for bad in ["[]", "[\"at jwt\"]", "[\"JWT;q=1\"]"] {
            let error = load(
                &issuer(&format!(", accepted_token_types = {bad}")),
                Environment::Development,
                &[],
            )
            .expect_err("refused");
            assert!(
                error.names("auth.external_issuers[0].accepted_token_types"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn access_tokens_cannot_be_configured_to_live_over_15_minutes() {
        let long = VALID.replace("access_token_seconds = 900", "access_token_seconds = 901");
        let error = load(&long, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("auth.access_token_seconds"), "{error}");
        let short_pepper = VALID.replace("api_key_pepper = \"\"", "api_key_pepper = \"short\"");
        let error = load(&short_pepper, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("auth.api_key_pepper"), "{error}");
    }

    #[test]
    fn an_idempotency_key_ttl_outside_a_minute_to_a_week_is_refused() {
        for ttl in ["59", "604801"] {
            let bad = VALID.replace(
                "idempotency_key_ttl_seconds = 86400",
                &format!("idempotency_key_ttl_seconds = {ttl}"),
            );
            let error = load(&bad, Environment::Development, &[]).expect_err("refused");
            assert!(
                error.names("payments.idempotency_key_ttl_seconds"),
                "{ttl}: {error}"
            );
        }
        let week = VALID.replace(
            "idempotency_key_ttl_seconds = 86400",
            "idempotency_key_ttl_seconds = 604800",
        );
        load(&week, Environment::Development, &[]).expect("a week is the longest allowed");
    }

    #[test]
    fn a_production_configuration_with_a_real_certificate_loads() {
        load(&production(), Environment::Production, &[]).expect("valid");
    }

    #[test]
    fn a_plaintext_public_origin_is_refused_in_every_environment() {
        let plain = VALID.replace("https://localhost:8443", "http://localhost:8080");
        let error = load(&plain, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("server.public_origin"), "{error}");
    }

    #[test]
    fn production_refuses_the_development_certificate() {
        let prod = VALID.replace("https://localhost:8443", "https://api.example.com");
        let error = load(&prod, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("tls.mode"), "{error}");
    }

    #[test]
    fn files_mode_needs_both_paths() {
        let prod =
            production().replace("key_path = \"/etc/app/tls/privkey.pem\"", "key_path = \"\"");
        let error = load(&prod, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("tls.key_path"), "{error}");
    }

    #[test]
    fn plaintext_behind_a_proxy_needs_the_proxy_declared_and_no_redirect_listener() {
        let proxied = production().replace("mode = \"files\"", "mode = \"terminated_by_proxy\"");
        let error = load(&proxied, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("server.trusted_proxies"), "{error}");
        assert!(error.names("http_redirect.enabled"), "{error}");
        let fixed = proxied
            .replace("trusted_proxies = []", "trusted_proxies = [\"10.0.0.0/8\"]")
            .replace("enabled = true", "enabled = false");
        load(&fixed, Environment::Production, &[]).expect("a declared proxy is fine");
    }

    #[test]
    fn a_wildcard_cors_origin_is_refused() {
        for origin in ["*", "null", "https://app.example.com/"] {
            let cors = VALID.replace(
                "allowed_origins = []",
                &format!("allowed_origins = [\"{origin}\"]"),
            );
            let error = load(&cors, Environment::Development, &[]).expect_err("refused");
            assert!(error.names("cors.allowed_origins"), "{origin}: {error}");
        }
    }

    #[test]
    fn the_admin_listener_never_shares_the_public_port() {
        let shared = VALID.replace("port = 9091", "port = 8443").replace(
            "host = \"127.0.0.1\"\n        port = 0",
            "host = \"127.0.0.1\"\n        port = 8443",
        );
        let error = load(&shared, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("admin.port"), "{error}");
        let both_free = VALID.replace("port = 9091", "port = 0");
        load(&both_free, Environment::Development, &[]).expect("port 0 picks two free ports");
        let disabled = shared.replace(
            "[admin]\n        enabled = true",
            "[admin]\n        enabled = false",
        );
        load(&disabled, Environment::Development, &[]).expect("no admin listener, no clash");
    }

    #[test]
    fn production_serves_metrics_beyond_loopback_only_when_allowed_explicitly() {
        let exposed = production().replace(
            "host = \"127.0.0.1\"\n        port = 9091",
            "host = \"0.0.0.0\"\n        port = 9091",
        );
        let error = load(&exposed, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("admin.host"), "{error}");
        load(&exposed, Environment::Development, &[]).expect("only production refuses it");
        let allowed = exposed.replace("allow_non_loopback = false", "allow_non_loopback = true");
        load(&allowed, Environment::Production, &[]).expect("allowed explicitly");
        let ipv6_loopback = production().replace(
            "host = \"127.0.0.1\"\n        port = 9091",
            "host = \"::1\"\n        port = 9091",
        );
        load(&ipv6_loopback, Environment::Production, &[]).expect("::1 is loopback");
    }

    #[test]
    fn anomaly_thresholds_must_be_positive_and_a_geoip_database_must_exist() {
        for (setting, bad, key) in [
            (
                "window_seconds = 60",
                "window_seconds = 0",
                "anomaly.window_seconds",
            ),
            (
                "cooldown_seconds = 900",
                "cooldown_seconds = 0",
                "anomaly.cooldown_seconds",
            ),
            (
                "auth_failures_per_ip = { per_window = 10,",
                "auth_failures_per_ip = { per_window = 0,",
                "anomaly.auth_failures_per_ip",
            ),
            (
                "per_window = 5, per_hour = 20 }",
                "per_window = 5, per_hour = 0 }",
                "anomaly.auth_failures_per_account",
            ),
            (
                "requests_per_principal = { min_count = 60, baseline_multiplier = 10.0 }",
                "requests_per_principal = { min_count = 60, baseline_multiplier = 0.5 }",
                "anomaly.requests_per_principal",
            ),
            (
                "min_history_requests = 100",
                "min_history_requests = 0",
                "anomaly.min_history_requests",
            ),
            (
                "max_travel_speed_kmh = 1000.0",
                "max_travel_speed_kmh = -1.0",
                "anomaly.max_travel_speed_kmh",
            ),
            (
                "geoip_database = \"\"",
                "geoip_database = \"/nonexistent/GeoLite2-City.mmdb\"",
                "anomaly.geoip_database",
            ),
        ] {
            let config = VALID.replace(setting, bad);
            assert_ne!(config, VALID, "{setting} is in VALID");
            let error = load(&config, Environment::Development, &[]).expect_err("refused");
            assert!(error.names(key), "{bad}: {error}");
        }
    }

    #[test]
    fn production_refuses_an_in_memory_database() {
        let prod = production().replace("sqlite::memory:", "sqlite://app.db?mode=memory");
        let error = load(&prod, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("database.url"), "{error}");
    }

    #[test]
    fn production_refuses_an_hsts_lifetime_under_a_year() {
        let prod = production().replace(
            "hsts_max_age_seconds = 31536000",
            "hsts_max_age_seconds = 86400",
        );
        let error = load(&prod, Environment::Production, &[]).expect_err("refused");
        assert!(error.names("headers.hsts_max_age_seconds"), "{error}");
    }

    #[test]
    fn a_json_depth_of_zero_is_refused() {
        let bad = VALID.replace("max_json_depth = 32", "max_json_depth = 0");
        let error = load(&bad, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("limits.max_json_depth"), "{error}");
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let bad = VALID.replace("acquire_timeout_seconds = 5", "acquire_timeout_seconds = 0");
        let error = load(&bad, Environment::Development, &[]).expect_err("refused");
        assert!(error.names("database.acquire_timeout_seconds"), "{error}");
    }

    #[test]
    fn origins_with_paths_or_credentials_are_refused() {
        for (origin, why) in [
            ("https://api.example.com/v1", "a path"),
            ("https://user@api.example.com", "credentials"),
            ("ftp://api.example.com", "a non-HTTP scheme"),
            ("api.example.com", "no scheme"),
        ] {
            assert!(
                parse_origin(origin).is_none(),
                "an origin with {why}: {origin}"
            );
        }
        assert_eq!(parse_origin("https://[::1]:8443"), Some("https"));
        assert_eq!(parse_origin("http://localhost:8080"), Some("http"));
    }

    #[test]
    fn the_database_url_is_never_printed() {
        let settings = load(VALID, Environment::Development, &[]).expect("valid");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("sqlite::memory:"), "{printed}");
    }
}
