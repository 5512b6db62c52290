//! External OpenID Connect issuers: discovery and JWKS over HTTPS, cached (AUTH-1, AUTH-5).
//!
//! Threat: keys fetched from the wrong place, or over plaintext, let an attacker mint tokens; a
//! cache refreshed on every unknown `kid` lets anyone make the service hammer the provider (and
//! wait on it); a cache kept forever keeps trusting a key the provider withdrew.
//!
//! Control: the discovery document is read from `{issuer}/.well-known/openid-configuration`
//! over HTTPS and must name exactly the configured issuer; its `jwks_uri` must be HTTPS too.
//! Keys are kept for a bounded TTL. A token naming an unknown `kid` may trigger one refresh,
//! at most once per [`MIN_REFRESH_INTERVAL`] per issuer; other requests fail closed meanwhile.
//! When the provider is down, the cached keys keep working until their TTL ends, then the
//! issuer has no keys and its tokens are refused.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use super::jwt::{Clock, KeySet};

/// The shortest time between two JWKS fetches for one issuer triggered by unknown keys.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// The longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest discovery or JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Why an issuer could not be set up or fetched. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the issuer must be an https URL: {0}")]
    NotHttps(String),
    #[error("cannot read the CA certificate {0}")]
    CaCertificate(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the discovery document names issuer {found:?}, not {expected:?}")]
    IssuerMismatch { expected: String, found: String },
    #[error("the discovery document has no https jwks_uri")]
    NoJwksUri,
    #[error("the JWKS is not usable")]
    BadJwks,
}

/// One external issuer.
#[derive(Debug, Clone)]
pub struct ExternalIssuerConfig {
    /// Exactly the `iss` of its tokens, `https://...`.
    pub issuer: String,
    /// How long fetched keys are trusted without a successful refresh.
    pub jwks_ttl: Duration,
    /// Trust only this CA for the provider (a private CA); `None` trusts the system's roots.
    pub ca_cert: Option<std::path::PathBuf>,
}

#[derive(Debug, Default)]
struct Cache {
    keys: KeySet,
    /// When `keys` were fetched (clock seconds); `None` before the first success.
    fetched_at: Option<u64>,
    /// When a fetch was last attempted, successful or not.
    attempted_at: Option<u64>,
}

/// An external issuer's keys, fetched on demand and cached.
pub struct ExternalIssuer {
    config: ExternalIssuerConfig,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    cache: std::sync::Mutex<Cache>,
    /// Held while a fetch runs: one at a time, and nobody waits for it.
    fetching: Mutex<()>,
    /// Changes whenever the usable key set changes, so callers can rebuild what they derived.
    generation: AtomicU64,
    /// JWKS fetches made, for tests and metrics.
    fetches: AtomicU64,
}

impl std::fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl ExternalIssuer {
    pub fn new(config: ExternalIssuerConfig, clock: Arc<dyn Clock>) -> Result<Self, OidcError> {
        if !config.issuer.starts_with("https://") {
            return Err(OidcError::NotHttps(config.issuer));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // The configured issuer is reached directly, never through an environment proxy.
            .no_proxy()
            .https_only(true);
        if let Some(ca_cert) = &config.ca_cert {
            builder = builder.tls_certs_only([read_certificate(ca_cert)?]);
        }
        let client = builder
            .build()
            .map_err(|error| OidcError::Client(error.to_string()))?;
        Ok(Self {
            config,
            client,
            clock,
            cache: std::sync::Mutex::new(Cache::default()),
            fetching: Mutex::new(()),
            generation: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Bumps on every change of the usable keys.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// JWKS fetches attempted so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Makes the cached keys current: expired keys are refreshed first (at most once per
    /// [`MIN_REFRESH_INTERVAL`]); if that fails they are dropped: no key outlives its TTL. A
    /// refresh already running elsewhere is not waited for. Cheap when the keys are fresh.
    pub async fn ensure_current(&self) {
        let now = self.clock.now();
        if self.is_fresh(now) {
            return;
        }
        self.refresh(now).await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cache
            .fetched_at
            .is_some_and(|fetched| now < fetched.saturating_add(self.config.jwks_ttl.as_secs()));
        if !fresh && !cache.keys.is_empty() {
            cache.keys = KeySet::default();
            self.generation.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(issuer = %self.config.issuer, "keys expired and could not be refreshed; the issuer's tokens are refused");
        }
    }

    /// The cached keys (see [`ExternalIssuer::ensure_current`]).
    pub fn keys(&self) -> KeySet {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .clone()
    }

    /// A token named a `kid` this issuer's keys lack: refetches once, unless a fetch was
    /// attempted within [`MIN_REFRESH_INTERVAL`] or is running. Returns whether the keys changed.
    pub async fn refresh_for_unknown_key(&self) -> bool {
        let before = self.generation();
        self.refresh(self.clock.now()).await;
        self.generation() != before
    }

    fn is_fresh(&self, now: u64) -> bool {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fetched_at
            .is_some_and(|fetched| now < fetched.saturating_add(self.config.jwks_ttl.as_secs()))
    }

    /// One fetch at a time, at most once per [`MIN_REFRESH_INTERVAL`]; the cache is never
    /// locked across the network.
    async fn refresh(&self, now: u64) {
        let Ok(_single_flight) = self.fetching.try_lock() else {
            return;
        };
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let recently = cache.attempted_at.is_some_and(|attempted| {
                now < attempted.saturating_add(MIN_REFRESH_INTERVAL.as_secs())
            });
            if recently {
                return;
            }
            cache.attempted_at = Some(now);
        }
        self.fetches.fetch_add(1, Ordering::SeqCst);
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                cache.keys = keys;
                cache.fetched_at = Some(now);
                self.generation.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                tracing::warn!(issuer = %self.config.issuer, error = %error, "JWKS refresh failed; cached keys stay until their TTL");
            }
        }
    }

    /// Discovery, then the JWKS it names.
    async fn fetch(&self) -> Result<KeySet, OidcError> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let discovery = self
            .get_json(&format!("{issuer}/.well-known/openid-configuration"))
            .await?;
        let named = discovery["issuer"].as_str().unwrap_or_default();
        if named != self.config.issuer {
            return Err(OidcError::IssuerMismatch {
                expected: self.config.issuer.clone(),
                found: named.to_owned(),
            });
        }
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .filter(|uri| uri.starts_with("https://"))
            .ok_or(OidcError::NoJwksUri)?;
        let jwks = self.get_json(jwks_uri).await?;
        KeySet::from_jwks(&jwks).map_err(|_| OidcError::BadJwks)
    }

    async fn get_json(&self, url: &str) -> Result<Value, OidcError> {
        let failed = |reason: String| OidcError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|error| failed(error.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("status {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| failed(error.to_string()))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(failed("the document is too large".to_owned()));
        }
        serde_json::from_slice(&body).map_err(|_| failed("not JSON".to_owned()))
    }
}

fn read_certificate(path: &Path) -> Result<reqwest::Certificate, OidcError> {
    let pem =
        std::fs::read(path).map_err(|_| OidcError::CaCertificate(path.display().to_string()))?;
    reqwest::Certificate::from_pem(&pem)
        .map_err(|_| OidcError::CaCertificate(path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plaintext_issuer_is_refused() {
        let config = ExternalIssuerConfig {
            issuer: "http://login.example.com".to_owned(),
            jwks_ttl: Duration::from_secs(3600),
            ca_cert: None,
        };
        let clock: Arc<dyn Clock> = Arc::new(|| 0);
        assert!(matches!(
            ExternalIssuer::new(config, clock),
            Err(OidcError::NotHttps(_))
        ));
    }
}
