//! `[auth]`: the built-in OAuth 2.0 issuer, token lifetimes, API keys and the secrets keying
//! them, and the external OpenID Connect issuers trusted (AUTH-1 to AUTH-5).
//!
//! The defaults are the strict ones: access tokens live 15 minutes and cannot be configured to
//! live longer (AUTH-3), an external issuer must be `https` and is limited to the scopes listed
//! for it, and its ID tokens are refused unless its access tokens' `typ` says otherwise. In
//! development the secrets (API-key pepper, key-encryption keys) are generated in `key_dir`;
//! production refuses to start without real ones (OPS-4), since a generated or copied secret is
//! one an attacker may hold too.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use security::auth::jwt::AcceptedTokenTypes;
use serde::{Deserialize, Serialize};

use super::Environment;
use super::error::Refusals;

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
    #[serde(serialize_with = "super::serialize_redacted")]
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
    #[serde(default = "empty_secret", serialize_with = "super::serialize_redacted")]
    pub signing_key_encryption_key: SecretString,
    /// The key password-reset mails (and any other outbox message) are sealed under in the
    /// database outbox (32 random bytes, base64; `openssl rand -base64 32`), so reading the
    /// table or a backup yields no reset link. Empty in development: generated in `key_dir`.
    /// Set it with `APP_AUTH__OUTBOX_ENCRYPTION_KEY`; never store it in the database; the mail
    /// relay needs the same one.
    #[serde(default = "empty_secret", serialize_with = "super::serialize_redacted")]
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
    /// (README, per provider). Tokens carrying `nonce`, `at_hash` or `c_hash` are refused
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

impl AuthSettings {
    pub(super) fn validate(&self, environment: Environment, refusals: &mut Refusals) {
        if !(60..=security::auth::jwt::MAX_OWN_LIFETIME.as_secs())
            .contains(&self.access_token_seconds)
        {
            refusals.refuse(
                "auth.access_token_seconds",
                "must be between 60 and 900: access tokens live at most 15 minutes",
            );
        }
        if self.refresh_token_idle_seconds == 0
            || self.refresh_token_idle_seconds > self.refresh_token_absolute_seconds
        {
            refusals.refuse(
                "auth.refresh_token_idle_seconds",
                "must be positive and at most auth.refresh_token_absolute_seconds",
            );
        }
        if security::auth::secrets::KeyPrefix::new(&self.api_key_prefix).is_err() {
            refusals.refuse(
                "auth.api_key_prefix",
                "must be 2 to 10 lowercase letters or digits, starting with a letter",
            );
        }
        for (index, external) in self.external_issuers.iter().enumerate() {
            if !external.issuer.starts_with("https://") {
                refusals.refuse(
                    &format!("auth.external_issuers[{index}].issuer"),
                    "must be an https URL",
                );
            }
            if !(60..=86_400).contains(&external.jwks_ttl_seconds) {
                refusals.refuse(
                    &format!("auth.external_issuers[{index}].jwks_ttl_seconds"),
                    "must be between 60 and 86400",
                );
            }
            if external.allowed_scopes.is_empty() {
                refusals.refuse(
                    &format!("auth.external_issuers[{index}].allowed_scopes"),
                    "must list the scopes this issuer may grant",
                );
            }
            if let Err(error) = AcceptedTokenTypes::new(&external.accepted_token_types) {
                refusals.refuse(
                    &format!("auth.external_issuers[{index}].accepted_token_types"),
                    &format!(
                        "{error}: list the `typ` of the provider's access tokens (\"at+jwt\", \
                         \"JWT\", or \"\" for none)"
                    ),
                );
            }
        }
        if !self.built_in_issuer && self.external_issuers.is_empty() {
            refusals.refuse(
                "auth.built_in_issuer",
                "is off and no auth.external_issuers are configured: no token could ever be valid",
            );
        }
        let pepper = self.api_key_pepper.expose_secret();
        if !pepper.is_empty() && pepper.len() < MIN_PEPPER_BYTES {
            refusals.refuse(
                "auth.api_key_pepper",
                "must be at least 32 bytes (generate one with `openssl rand -base64 48`)",
            );
        }
        let encryption_key = self.signing_key_encryption_key.expose_secret();
        if !encryption_key.is_empty()
            && security::auth::key_wrapping::KeyEncryptionKey::from_base64(encryption_key).is_err()
        {
            refusals.refuse(
                "auth.signing_key_encryption_key",
                "must be 32 random bytes in base64 (generate one with `openssl rand -base64 32`)",
            );
        }
        let outbox_key = self.outbox_encryption_key.expose_secret();
        if !outbox_key.is_empty() {
            if security::auth::key_wrapping::KeyEncryptionKey::from_base64(outbox_key).is_err() {
                refusals.refuse(
                    "auth.outbox_encryption_key",
                    "must be 32 random bytes in base64 (generate one with `openssl rand -base64 32`)",
                );
            } else if outbox_key.trim() == encryption_key.trim() {
                // One key per use: the relay that holds this one must not open signing keys.
                refusals.refuse(
                    "auth.outbox_encryption_key",
                    "must differ from auth.signing_key_encryption_key",
                );
            }
        }
        if !(1..=3_600).contains(&self.signing_key_refresh_seconds) {
            refusals.refuse(
                "auth.signing_key_refresh_seconds",
                "must be between 1 and 3600",
            );
        }
        if environment == Environment::Production {
            if pepper.is_empty() || is_placeholder(pepper) {
                refusals.refuse(
                    "auth.api_key_pepper",
                    "must be set in production (APP_AUTH__API_KEY_PEPPER), to a random secret",
                );
            }
            // Not the placeholder test of the pepper: a random base64 key can contain "todo".
            if self.built_in_issuer
                && self.signing_keys == SigningKeySource::Database
                && encryption_key.is_empty()
            {
                refusals.refuse(
                    "auth.signing_key_encryption_key",
                    "must be set in production when signing keys live in the database \
                 (APP_AUTH__SIGNING_KEY_ENCRYPTION_KEY), to 32 random bytes in base64",
                );
            }
            if self.outbox_encryption_key.expose_secret().is_empty() {
                refusals.refuse(
                    "auth.outbox_encryption_key",
                    "must be set in production (APP_AUTH__OUTBOX_ENCRYPTION_KEY), to 32 random \
                 bytes in base64, the same for the mail relay",
                );
            }
            if self.built_in_issuer
                && self.signing_keys == SigningKeySource::File
                && self.signing_key_path.as_os_str().is_empty()
            {
                refusals.refuse(
                    "auth.signing_key_path",
                    "must name the issuer's Ed25519 key (PEM) in production; keys are never \
                 generated there",
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{load, production, refused};

    /// An external issuer as the examples of `config/default.toml` configure one.
    const EXTERNAL_ISSUER: &str = "external_issuers = [{ issuer = \"https://login.example.com/\", \
                                   allowed_scopes = [\"profile\"] }]";

    #[test]
    fn password_hashing_takes_half_the_cores_unless_configured() {
        let vars = [("APP_AUTH__PASSWORD_HASH_CONCURRENCY", "0")];
        let automatic = load("", Environment::Development, &vars).expect("valid");
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        assert_eq!(
            automatic.auth.password_hashes_at_once(),
            (cores / 2).clamp(1, MAX_AUTOMATIC_HASHES)
        );

        let vars = [("APP_AUTH__PASSWORD_HASH_CONCURRENCY", "3")];
        let configured = load("", Environment::Development, &vars).expect("valid");
        assert_eq!(configured.auth.password_hashes_at_once(), 3);
    }

    #[test]
    fn production_refuses_a_missing_or_placeholder_pepper_and_a_generated_signing_key() {
        let unpeppered = production("[auth]\napi_key_pepper = \"\"");
        let error = refused(&unpeppered, Environment::Production);
        assert!(error.names("auth.api_key_pepper"), "{error}");
        let placeholder =
            production("[auth]\napi_key_pepper = \"change-me-change-me-change-me-change-me\"");
        let error = refused(&placeholder, Environment::Production);
        assert!(error.names("auth.api_key_pepper"), "{error}");
        let generated = production("[auth]\nsigning_key_path = \"\"");
        let error = refused(&generated, Environment::Production);
        assert!(error.names("auth.signing_key_path"), "{error}");
    }

    #[test]
    fn the_outbox_key_is_required_in_production_well_formed_and_its_own() {
        let missing = production("[auth]\noutbox_encryption_key = \"\"");
        let error = refused(&missing, Environment::Production);
        assert!(error.names("auth.outbox_encryption_key"), "{error}");
        load(&missing, Environment::Development, &[]).expect("generated in development");
        let short = production("[auth]\noutbox_encryption_key = \"c2hvcnQ=\"");
        let error = refused(&short, Environment::Production);
        assert!(error.names("auth.outbox_encryption_key"), "{error}");
        let shared = production(
            "[auth]\nsigning_key_encryption_key = \"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\"",
        );
        let error = refused(&shared, Environment::Production);
        assert!(error.names("auth.outbox_encryption_key"), "{error}");
        assert!(
            !error.to_string().contains("QUFB"),
            "the key is never repeated"
        );
    }

    #[test]
    fn database_signing_keys_need_a_real_encryption_key_in_production() {
        let shared = "[auth]\nsigning_keys = \"database\"";
        let error = refused(&production(shared), Environment::Production);
        assert!(error.names("auth.signing_key_encryption_key"), "{error}");
        let malformed = production(&format!(
            "{shared}\nsigning_key_encryption_key = \"c2hvcnQ=\""
        ));
        let error = refused(&malformed, Environment::Development);
        assert!(error.names("auth.signing_key_encryption_key"), "{error}");
        let keyed = production(&format!(
            "{shared}\n\
             signing_key_encryption_key = \"q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=\"\n\
             signing_key_path = \"\"" // No key file is needed then.
        ));
        load(&keyed, Environment::Production, &[]).expect("valid");
    }

    #[test]
    fn the_built_in_issuer_can_be_off_only_with_an_external_issuer() {
        let off = "[auth]\nbuilt_in_issuer = false";
        let error = refused(off, Environment::Development);
        assert!(error.names("auth.built_in_issuer"), "{error}");
        let external = format!("{off}\n{EXTERNAL_ISSUER}");
        load(&external, Environment::Development, &[]).expect("an external issuer suffices");
        // Production then needs no signing key of its own.
        let production_external = production(&format!("{external}\nsigning_key_path = \"\""));
        load(&production_external, Environment::Production, &[]).expect("valid");
        let plaintext = external.replace("https://login.example.com/", "http://login.example.com/");
        let error = refused(&plaintext, Environment::Development);
        assert!(error.names("auth.external_issuers[0].issuer"), "{error}");
    }

    #[test]
    fn an_external_issuers_token_types_default_to_at_jwt_and_must_be_media_types() {
        let issuer = |types: &str| {
            format!(
                "[auth]\nexternal_issuers = [{{ issuer = \"https://login.example.com/\", \
                 allowed_scopes = [\"profile\"]{types} }}]"
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
        let long = "[auth]\naccess_token_seconds = 901";
        let error = refused(long, Environment::Development);
        assert!(error.names("auth.access_token_seconds"), "{error}");
        let short_pepper = "[auth]\napi_key_pepper = \"short\"";
        let error = refused(short_pepper, Environment::Development);
        assert!(error.names("auth.api_key_pepper"), "{error}");
    }
}
