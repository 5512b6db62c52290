//! The built-in issuer's signing keys and what it publishes about them (AUTH-1, AUTH-5).
//!
//! Threat: one signing key forever means a leaked key forges tokens forever; rotating it
//! abruptly logs everyone out, or leaves clients holding tokens no published key verifies.
//!
//! Control: one active Ed25519 key signs; its `kid` is its RFC 7638 thumbprint. Retired keys
//! keep verifying, and stay in the JWKS, until the last token they can have signed has expired
//! (retirement time + the 15-minute maximum lifetime + the maximum clock leeway); then they
//! leave the JWKS. In development the key is generated on first run (`0600`); in production it
//! is read from a PEM file (PKCS#8), mounted from a secret store. The metadata document
//! (RFC 8414) tells clients where the token endpoint and the JWKS are.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::jwt::{JwtConfigError, KeySet, MAX_LEEWAY, MAX_OWN_LIFETIME, SigningKey, VerifyingKey};

/// The file name of the development signing key.
pub const DEV_KEY_FILE: &str = "signing-key.pem";

/// Why the issuer's keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IssuerKeyError {
    #[error("cannot read the signing key {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the development signing key {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a PEM PKCS#8 Ed25519 private key")]
    NotAKey { path: PathBuf },
    #[error("two issuer keys have the id {0}")]
    DuplicateKid(String),
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
}

/// A key that no longer signs, and when it stopped.
#[derive(Debug, Clone)]
pub struct RetiredKey {
    pub key: VerifyingKey,
    /// Seconds since the Unix epoch.
    pub retired_at: u64,
}

/// The active signing key and the retired keys still verifying.
#[derive(Debug)]
pub struct IssuerKeys {
    active: SigningKey,
    retired: Vec<RetiredKey>,
}

impl IssuerKeys {
    pub fn new(active: SigningKey, retired: Vec<RetiredKey>) -> Result<Self, IssuerKeyError> {
        let mut kids = BTreeSet::from([active.kid().to_owned()]);
        for key in &retired {
            if !kids.insert(key.key.kid().to_owned()) {
                return Err(IssuerKeyError::DuplicateKid(key.key.kid().to_owned()));
            }
        }
        Ok(Self { active, retired })
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// The keys a token of this issuer can be verified with at `now`: the active key and every
    /// retired key that may still have signed an unexpired token.
    pub fn verifying_at(&self, now: u64) -> Vec<VerifyingKey> {
        std::iter::once(self.active.verifying_key().clone())
            .chain(
                self.retired_in_use(now)
                    .map(|retired| retired.key.clone().retired_at(retired.retired_at)),
            )
            .collect()
    }

    /// The ids of the retired keys, newest first as given.
    pub fn retired_kids(&self) -> Vec<&str> {
        self.retired
            .iter()
            .map(|retired| retired.key.kid())
            .collect()
    }

    /// How many keys [`IssuerKeys::verifying_at`] returns, without copying them.
    pub fn verifying_count_at(&self, now: u64) -> usize {
        1 + self.retired_in_use(now).count()
    }

    fn retired_in_use(&self, now: u64) -> impl Iterator<Item = &RetiredKey> {
        let last_use = MAX_OWN_LIFETIME.as_secs() + MAX_LEEWAY.as_secs();
        self.retired
            .iter()
            .filter(move |retired| now <= retired.retired_at.saturating_add(last_use))
    }

    /// The key set for the validator at `now`.
    pub fn key_set_at(&self, now: u64) -> Result<KeySet, IssuerKeyError> {
        Ok(KeySet::new(self.verifying_at(now))?)
    }

    /// The JWKS document published at `now`.
    pub fn jwks_at(&self, now: u64) -> Value {
        super::jwt::jwks_json(&self.verifying_at(now))
    }
}

/// Reads a PEM PKCS#8 Ed25519 private key.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, IssuerKeyError> {
    let pem = fs::read(path).map_err(|source| IssuerKeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).map_err(|_| IssuerKeyError::NotAKey {
        path: path.to_owned(),
    })?;
    SigningKey::from_ed25519_pkcs8_thumbprint(der.secret_pkcs8_der()).map_err(|_| {
        IssuerKeyError::NotAKey {
            path: path.to_owned(),
        }
    })
}

/// The development signing key in `dir`, created (readable by the owner only) on first run.
pub fn ensure_dev_signing_key(dir: &Path) -> Result<SigningKey, IssuerKeyError> {
    let path = dir.join(DEV_KEY_FILE);
    if path.exists() {
        return load_signing_key(&path);
    }
    let write_error = |source| IssuerKeyError::Write {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(write_error)?;
    let der = SigningKey::generate_ed25519_pkcs8()?;
    write_private_pem(&path, &der).map_err(write_error)?;
    load_signing_key(&path)
}

/// Writes `der` as a `PRIVATE KEY` PEM file that only the owner can read.
fn write_private_pem(path: &Path, der: &[u8]) -> std::io::Result<()> {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()
}

/// The authorization server metadata (RFC 8414) of the built-in issuer.
pub fn metadata(issuer: &str, scopes: &[&str]) -> Value {
    let base = issuer.trim_end_matches('/');
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{base}/oauth/token"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "scopes_supported": scopes,
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA"],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let der = SigningKey::generate_ed25519_pkcs8().expect("key");
        SigningKey::from_ed25519_pkcs8_thumbprint(&der).expect("key")
    }

    #[test]
    fn a_retired_key_is_published_until_its_last_token_expired() {
        let old = key();
        let retired_at = 1_800_000_000;
        let keys = IssuerKeys::new(
            key(),
            vec![RetiredKey {
                key: old.verifying_key().clone(),
                retired_at,
            }],
        )
        .expect("keys");
        let last_use = MAX_OWN_LIFETIME.as_secs() + MAX_LEEWAY.as_secs();
        let kids = |now| {
            keys.verifying_at(now)
                .iter()
                .map(|key| key.kid().to_owned())
                .collect::<Vec<_>>()
        };
        assert!(kids(retired_at + last_use).contains(&old.kid().to_owned()));
        assert!(!kids(retired_at + last_use + 1).contains(&old.kid().to_owned()));
        assert_eq!(
            kids(retired_at + last_use + 1),
            vec![keys.active().kid().to_owned()]
        );
        let jwks = keys.jwks_at(retired_at);
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn a_retired_key_verifies_only_what_it_signed_before_retirement() {
        use crate::auth::jwt::{
            AcceptedTokenTypes, AccessGrant, AccessTokenValidator, TokenError, TrustedIssuer,
            issue_access_token,
        };
        let old = key();
        let retired_at = 1_800_000_000;
        let keys = IssuerKeys::new(
            key(),
            vec![RetiredKey {
                key: old.verifying_key().clone(),
                retired_at,
            }],
        )
        .expect("keys");
        let now = retired_at + 60;
        let validator = AccessTokenValidator::new(
            "aud",
            [TrustedIssuer {
                issuer: "iss".to_owned(),
                audience: None,
                keys: keys.key_set_at(now).expect("key set"),
                accepted_types: AcceptedTokenTypes::default(),
                own: true,
            }],
            move || now,
        )
        .expect("validator");
        let signed_at = |issued_at| {
            let grant = AccessGrant {
                issuer: "iss".to_owned(),
                subject: "s".to_owned(),
                audience: "aud".to_owned(),
                scopes: vec![],
                client_id: None,
                session_id: None,
                issued_at,
                lifetime: MAX_OWN_LIFETIME,
            };
            issue_access_token(&old, &grant).expect("signed")
        };
        assert!(validator.validate(&signed_at(retired_at - 30)).is_ok());
        assert_eq!(
            validator.validate(&signed_at(retired_at + 30)),
            Err(TokenError::SignedAfterRetirement)
        );
    }

    #[test]
    fn the_kid_is_the_rfc7638_thumbprint() {
        // RFC 8037, appendix A.3: the thumbprint of its example Ed25519 key.
        let der = STANDARD
            .decode("MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g")
            .expect("base64");
        let key = SigningKey::from_ed25519_pkcs8_thumbprint(&der).expect("key");
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn the_dev_key_is_created_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure_dev_signing_key(dir.path()).expect("created");
        let again = ensure_dev_signing_key(dir.path()).expect("reused");
        assert_eq!(first.kid(), again.kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(DEV_KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.pem");
        fs::write(&path, "not a key").expect("write");
        assert!(matches!(
            load_signing_key(&path),
            Err(IssuerKeyError::NotAKey { .. })
        ));
    }

    #[test]
    fn two_keys_with_one_id_are_refused() {
        let active = key();
        let duplicate = RetiredKey {
            key: active.verifying_key().clone(),
            retired_at: 0,
        };
        assert!(matches!(
            IssuerKeys::new(active, vec![duplicate]),
            Err(IssuerKeyError::DuplicateKid(_))
        ));
    }
}
