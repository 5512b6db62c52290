//! Authentication and authorization in the service (AUTH-1 to AUTH-4, AUTH-6).
//!
//! The controls live in `security::auth` (token validation, the access policy, password
//! hashing, credential formats); this module binds them to the service's database and
//! settings:
//! - [`scopes`]: the API's scopes and what each role may hold;
//! - [`scheme`]: the credential parameter protected operations declare their scopes on;
//! - [`verifier`]: bearer tokens and API keys checked for `security::auth::access_control`;
//! - [`tokens`]: access tokens from the built-in issuer, refresh-token rotation and reuse;
//! - [`signing_keys`]: the issuer's keys, from files or shared (sealed) through the database;
//! - [`password_reset`]: single-use reset links through the mail outbox;
//! - [`bootstrap`]: the first administrator.

pub mod api_keys;
pub mod bootstrap;
pub mod password_reset;
pub mod scheme;
pub mod scopes;
pub mod signing_keys;
pub mod tokens;
pub mod verifier;

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use secrecy::ExposeSecret;
use security::auth::issuer_keys::{self, IssuerKeyError, IssuerKeys, RetiredKey};
use security::auth::jwt::{
    AcceptedTokenTypes, AccessClaims, AccessTokenValidator, Clock, JwtConfigError, KeySet,
    SigningKey, TokenError, TrustedIssuer,
};
use security::auth::key_wrapping::KeyEncryptionKey;
use security::auth::oidc::{ExternalIssuer, ExternalIssuerConfig, OidcError};
use security::auth::password::{PasswordHasher, PasswordPolicy};
use security::auth::secrets::{KeyHasher, KeyPrefix, OpaqueToken};

use crate::config::{AuthSettings, Settings, SigningKeySource};
use crate::mail::{DatabaseOutbox, Mailer, OutboxKey};
use signing_keys::{DatabaseKeys, IssuerKeyRing, SigningKeyStoreError};

/// The time source of every credential decision, injectable so tests never sleep.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock.
pub fn system_clock() -> SharedClock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0)
    })
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("issuer keys: {0}")]
    Keys(#[from] IssuerKeyError),
    #[error("token validation: {0}")]
    Jwt(#[from] JwtConfigError),
    #[error("the API-key pepper {0}")]
    Pepper(String),
    #[error("external issuer: {0}")]
    External(#[from] OidcError),
    #[error("shared signing keys: {0}")]
    SharedKeys(#[from] SigningKeyStoreError),
    #[error("auth.signing_key_encryption_key {0}")]
    KeyEncryptionKey(String),
    #[error("auth.outbox_encryption_key {0}")]
    OutboxKey(String),
}

/// An external issuer and the scopes its tokens may grant here.
#[derive(Debug)]
pub struct TrustedExternalIssuer {
    pub issuer: ExternalIssuer,
    /// The audience its tokens carry for this API, if not `auth.audience`.
    pub audience: Option<String>,
    pub allowed_scopes: Vec<String>,
    /// The `typ` values of its access tokens.
    pub accepted_types: AcceptedTokenTypes,
}

/// The validator for the current keys of every issuer, rebuilt when an external issuer's keys
/// change (`generations`).
struct CurrentValidator {
    generations: Vec<u64>,
    validator: Arc<AccessTokenValidator>,
}

/// Everything the auth endpoints and the verifier share.
pub struct AuthContext {
    pub db: DatabaseConnection,
    pub settings: AuthSettings,
    /// The built-in issuer's identifier: the public origin.
    pub issuer: String,
    pub audience: String,
    /// The built-in issuer's keys (`keys.current().active()` signs).
    pub keys: Arc<IssuerKeyRing>,
    /// The built-in issuer, as the validator trusts it; `None` when it is turned off.
    own_issuer: Option<TrustedIssuer>,
    pub external_issuers: Vec<TrustedExternalIssuer>,
    validator: std::sync::RwLock<CurrentValidator>,
    pub clock: SharedClock,
    pub key_prefix: KeyPrefix,
    pub key_hasher: KeyHasher,
    pub passwords: PasswordHasher,
    pub password_policy: PasswordPolicy,
    /// Where password-reset links go (the database outbox by default).
    pub mailer: Arc<dyn Mailer>,
    /// The key the database outbox seals message bodies under; a relay opens them with it.
    pub outbox_key: Arc<OutboxKey>,
    /// Origins whose pages may use the refresh cookie: the public origin and the CORS allowlist.
    pub browser_origins: Vec<String>,
}

impl std::fmt::Debug for AuthContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthContext")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl AuthContext {
    /// Loads (in development creates) the issuer's keys and the pepper, and builds the validator
    /// trusting the built-in issuer.
    pub async fn new(
        settings: &Settings,
        db: DatabaseConnection,
        clock: SharedClock,
    ) -> Result<Self, AuthSetupError> {
        let auth = settings.auth.clone();
        let issuer = settings.server.public_origin.clone();
        let audience = auth.audience_or(&issuer).to_owned();
        let keys = Arc::new(load_issuer_keys(&auth, &db, &clock).await?);
        let own = auth
            .built_in_issuer
            .then(|| {
                Ok::<_, AuthSetupError>(TrustedIssuer {
                    issuer: issuer.clone(),
                    audience: None,
                    keys: keys.current().key_set_at(clock.now())?,
                    accepted_types: AcceptedTokenTypes::default(),
                    own: true,
                })
            })
            .transpose()?;
        let external_issuers = auth
            .external_issuers
            .iter()
            .map(|external| {
                let config = ExternalIssuerConfig {
                    issuer: external.issuer.clone(),
                    jwks_ttl: std::time::Duration::from_secs(external.jwks_ttl_seconds),
                    ca_cert: (!external.ca_cert.as_os_str().is_empty())
                        .then(|| external.ca_cert.clone()),
                };
                Ok(TrustedExternalIssuer {
                    issuer: ExternalIssuer::new(config, Arc::clone(&clock))?,
                    audience: (!external.audience.is_empty()).then(|| external.audience.clone()),
                    allowed_scopes: external.allowed_scopes.clone(),
                    accepted_types: AcceptedTokenTypes::new(&external.accepted_token_types)?,
                })
            })
            .collect::<Result<Vec<_>, AuthSetupError>>()?;
        let validator = build_validator(
            &audience,
            own.as_ref(),
            &external_issuers,
            &clock,
            Vec::new(),
        )?;
        let pepper = load_pepper(&auth)?;
        let key_hasher = KeyHasher::new(&pepper)
            .map_err(|_| AuthSetupError::Pepper("is shorter than 32 bytes".to_owned()))?;
        let key_prefix = KeyPrefix::new(&auth.api_key_prefix)
            .map_err(|_| AuthSetupError::Pepper("prefix is invalid".to_owned()))?;
        let browser_origins = std::iter::once(issuer.clone())
            .chain(settings.cors.allowed_origins.iter().cloned())
            .collect();
        let outbox_key = Arc::new(outbox_key(&auth)?);
        Ok(Self {
            mailer: Arc::new(DatabaseOutbox::new(
                db.clone(),
                Arc::clone(&outbox_key),
                Arc::clone(&clock),
            )),
            outbox_key,
            browser_origins,
            db,
            passwords: PasswordHasher::new(auth.password_hashes_at_once()),
            password_policy: PasswordPolicy::default(),
            settings: auth,
            issuer,
            audience,
            keys,
            own_issuer: own,
            validator: std::sync::RwLock::new(CurrentValidator {
                // Matches no real state: the first request builds the validator it needs.
                generations: Vec::new(),
                validator: Arc::new(validator),
            }),
            external_issuers,
            clock,
            key_prefix,
            key_hasher,
        })
    }

    /// Validates an access token of any trusted issuer. A token of an external issuer naming a
    /// key it has not seen makes that issuer refresh its keys (rate-limited) and is checked
    /// once more.
    pub async fn validate_access_token(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let own_keys_seen = self.keys.generation();
        let error = match self.current_validator().await.validate(token) {
            Ok(claims) => return Ok(claims),
            Err(error) => error,
        };
        let refreshed = match error.jwks_refresh_issuer() {
            Some(issuer) => match self.external_issuer(issuer) {
                Some(external) => external.issuer.refresh_for_unknown_key().await,
                None => false,
            },
            // A key of our own not held yet: another instance may have rotated. Whoever re-read
            // the keys, validating again helps if they changed since this validation began.
            None if error.is_unknown_own_key() => {
                self.keys.reload_for_unknown_key().await;
                self.keys.generation() != own_keys_seen
            }
            None => false,
        };
        if refreshed {
            self.current_validator().await.validate(token)
        } else {
            Err(error)
        }
    }

    /// The external issuer named `issuer`.
    pub fn external_issuer(&self, issuer: &str) -> Option<&TrustedExternalIssuer> {
        self.external_issuers
            .iter()
            .find(|external| external.issuer.issuer() == issuer)
    }

    /// The validator for the keys usable now: an external issuer's expired keys are refreshed or
    /// dropped first, and a retired key of the built-in issuer stops verifying when it leaves
    /// the JWKS.
    async fn current_validator(&self) -> Arc<AccessTokenValidator> {
        for external in &self.external_issuers {
            external.issuer.ensure_current().await;
        }
        let now = self.clock.now();
        // The generation before the keys: a re-read between the two then only makes the next
        // request rebuild, never caches old keys under the new generation.
        let own_generation = self.keys.generation();
        let own_keys = self.keys.current();
        let generations: Vec<u64> = self
            .external_issuers
            .iter()
            .map(|external| external.issuer.generation())
            .chain([own_generation, own_keys.verifying_count_at(now) as u64])
            .collect();
        {
            let current = self.validator.read().unwrap_or_else(|e| e.into_inner());
            if current.generations == generations {
                return Arc::clone(&current.validator);
            }
        }
        // Something changed: only now are the keys copied into a new validator.
        let key_sets = self
            .external_issuers
            .iter()
            .map(|external| external.issuer.keys())
            .collect();
        let own_keys = own_keys.verifying_at(now);
        let own = self.own_issuer.as_ref().map(|own| TrustedIssuer {
            keys: KeySet::new(own_keys).unwrap_or_default(),
            ..own.clone()
        });
        match build_validator(
            &self.audience,
            own.as_ref(),
            &self.external_issuers,
            &self.clock,
            key_sets,
        ) {
            Ok(validator) => {
                let validator = Arc::new(validator);
                *self.validator.write().unwrap_or_else(|e| e.into_inner()) = CurrentValidator {
                    generations,
                    validator: Arc::clone(&validator),
                };
                validator
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot rebuild the token validator; keeping the previous one");
                Arc::clone(
                    &self
                        .validator
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .validator,
                )
            }
        }
    }

    /// Whether the built-in issuer is on (`auth.built_in_issuer`).
    pub fn issues_tokens(&self) -> bool {
        self.own_issuer.is_some()
    }

    /// The current time from the injected clock.
    pub fn now(&self) -> DateTime<Utc> {
        let seconds = i64::try_from(self.clock.now()).unwrap_or(i64::MAX);
        DateTime::from_timestamp(seconds, 0).unwrap_or_default()
    }
}

/// A validator trusting the built-in issuer and each external issuer with `key_sets` (in
/// order; missing sets are empty).
fn build_validator(
    audience: &str,
    own: Option<&TrustedIssuer>,
    external: &[TrustedExternalIssuer],
    clock: &SharedClock,
    key_sets: Vec<KeySet>,
) -> Result<AccessTokenValidator, JwtConfigError> {
    let mut key_sets = key_sets.into_iter();
    let issuers = own
        .cloned()
        .into_iter()
        .chain(external.iter().map(|external| TrustedIssuer {
            issuer: external.issuer.issuer().to_owned(),
            audience: external.audience.clone(),
            keys: key_sets.next().unwrap_or_default(),
            accepted_types: external.accepted_types.clone(),
            own: false,
        }));
    let clock = Arc::clone(clock);
    AccessTokenValidator::new(audience, issuers.collect::<Vec<_>>(), move || clock.now())
}

async fn load_issuer_keys(
    auth: &AuthSettings,
    db: &DatabaseConnection,
    clock: &SharedClock,
) -> Result<IssuerKeyRing, AuthSetupError> {
    if !auth.built_in_issuer {
        // Turned off: a key that exists in memory only, never signs and is never published.
        let unused =
            SigningKey::from_ed25519_pkcs8_thumbprint(&SigningKey::generate_ed25519_pkcs8()?)?;
        return Ok(IssuerKeyRing::fixed(IssuerKeys::new(unused, Vec::new())?));
    }
    if auth.signing_keys == SigningKeySource::Database {
        let store = DatabaseKeys::new(
            db.clone(),
            load_key_encryption_key(auth)?,
            std::time::Duration::from_secs(auth.signing_key_refresh_seconds),
        );
        let now = DateTime::from_timestamp(i64::try_from(clock.now()).unwrap_or(0), 0)
            .unwrap_or_default();
        return Ok(IssuerKeyRing::shared(store, now).await?);
    }
    Ok(IssuerKeyRing::fixed(load_key_files(auth)?))
}

/// The database keys' store, for `app rotate-signing-key`.
pub fn database_keys(
    auth: &AuthSettings,
    db: DatabaseConnection,
) -> Result<DatabaseKeys, AuthSetupError> {
    Ok(DatabaseKeys::new(
        db,
        load_key_encryption_key(auth)?,
        std::time::Duration::from_secs(auth.signing_key_refresh_seconds),
    ))
}

/// The file holding the development key-encryption key.
const DEV_KEY_ENCRYPTION_KEY_FILE: &str = "signing-key-encryption-key";

/// The file holding the development outbox key.
const DEV_OUTBOX_KEY_FILE: &str = "outbox-encryption-key";

/// The configured key-encryption key, or in development one generated once in `key_dir`.
fn load_key_encryption_key(auth: &AuthSettings) -> Result<KeyEncryptionKey, AuthSetupError> {
    sealing_key(
        &auth.signing_key_encryption_key,
        &auth.key_dir.join(DEV_KEY_ENCRYPTION_KEY_FILE),
    )
    .map_err(AuthSetupError::KeyEncryptionKey)
}

/// The key outbox bodies are sealed under (`auth.outbox_encryption_key`), or in development one
/// generated once in `key_dir`; also for a relay that opens them.
pub fn outbox_key(auth: &AuthSettings) -> Result<OutboxKey, AuthSetupError> {
    sealing_key(
        &auth.outbox_encryption_key,
        &auth.key_dir.join(DEV_OUTBOX_KEY_FILE),
    )
    .map(OutboxKey::new)
    .map_err(AuthSetupError::OutboxKey)
}

/// An AES-256-GCM key from its configured base64, or when none is configured (development)
/// from `dev_file`, generated there on first use. The error completes a sentence about the key.
fn sealing_key(
    configured: &secrecy::SecretString,
    dev_file: &Path,
) -> Result<KeyEncryptionKey, String> {
    let configured = configured.expose_secret();
    let encoded = if configured.is_empty() {
        match std::fs::read_to_string(dev_file) {
            Ok(existing) => existing,
            Err(_) => {
                let generated =
                    KeyEncryptionKey::generate_base64().map_err(|error| error.to_string())?;
                write_owner_only(dev_file, generated.as_bytes())
                    .map_err(|error| format!("cannot be written: {error}"))?;
                generated
            }
        }
    } else {
        configured.to_owned()
    };
    KeyEncryptionKey::from_base64(&encoded).map_err(|error| error.to_string())
}

fn load_key_files(auth: &AuthSettings) -> Result<IssuerKeys, AuthSetupError> {
    let active = if auth.signing_key_path.as_os_str().is_empty() {
        issuer_keys::ensure_dev_signing_key(&auth.key_dir)?
    } else {
        issuer_keys::load_signing_key(&auth.signing_key_path)?
    };
    let retired = auth
        .retired_signing_keys
        .iter()
        .map(|retired| {
            Ok(RetiredKey {
                key: issuer_keys::load_signing_key(&retired.path)?
                    .verifying_key()
                    .clone(),
                retired_at: u64::try_from(retired.retired_at.timestamp()).unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, IssuerKeyError>>()?;
    Ok(IssuerKeys::new(active, retired)?)
}

/// The file holding the development pepper.
const DEV_PEPPER_FILE: &str = "api-key-pepper";

/// The configured pepper, or in development one generated once in `key_dir`.
fn load_pepper(auth: &AuthSettings) -> Result<Vec<u8>, AuthSetupError> {
    let configured = auth.api_key_pepper.expose_secret();
    if !configured.is_empty() {
        return Ok(configured.as_bytes().to_vec());
    }
    let path = auth.key_dir.join(DEV_PEPPER_FILE);
    if let Ok(existing) = std::fs::read(&path) {
        return Ok(existing);
    }
    let generated = OpaqueToken::generate();
    write_owner_only(&path, generated.expose().as_bytes())
        .map_err(|error| AuthSetupError::Pepper(format!("cannot be written: {error}")))?;
    Ok(generated.expose().as_bytes().to_vec())
}

/// Creates `path` readable by its owner only (`0600`); fails if it exists.
pub fn write_owner_only(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
