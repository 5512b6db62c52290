//! The resource server's side: [`AccessTokenValidator`] runs every check on a bearer token in a
//! fixed order (size and form, forbidden headers, the algorithm, the key by issuer and `kid`, the
//! signature, then the claims against an injected [`Clock`]) and refuses with one [`TokenError`]
//! per reason. A token verified once is remembered by its exact text so that its signature is
//! not checked again; its times are, on every use.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::keys::{KeySet, VerifyingKey};
use super::token_types::{AcceptedTokenTypes, ID_TOKEN_CLAIMS};
use super::{DEFAULT_LEEWAY, JwtConfigError, MAX_LEEWAY, MAX_OWN_LIFETIME};
use crate::input::strict_json::parse_strict;

/// Tokens longer than this are refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Header and payload objects nest no deeper than this.
const MAX_JSON_DEPTH: usize = 8;

/// Header members that point at, or embed, a key chosen by the token's author.
const FORBIDDEN_HEADERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// The current time, in seconds since the Unix epoch. Injected so that tests never sleep.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> u64;
}

/// The system clock. A clock set before 1970 reads 0, which refuses every token.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }
}

impl<F: Fn() -> u64 + Send + Sync + 'static> Clock for F {
    fn now(&self) -> u64 {
        self()
    }
}

/// An issuer whose tokens this API accepts.
#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    /// The exact `iss` value.
    pub issuer: String,
    pub keys: KeySet,
    /// The audience this issuer's tokens must carry, when it names this API differently; `None`
    /// means the validator's audience.
    pub audience: Option<String>,
    /// The `typ` values of its access tokens ([`AcceptedTokenTypes::default`]: `at+jwt`).
    pub accepted_types: AcceptedTokenTypes,
    /// The built-in issuer: its tokens must also live at most 15 minutes.
    pub own: bool,
}

/// What a valid access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub subject: String,
    pub issuer: String,
    /// From `scope` (space-separated) or `scp` (array or space-separated).
    pub scopes: Vec<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
    pub client_id: Option<String>,
    /// `sid`: the sign-in session the token descends from (OIDC's session id claim, allowed in
    /// RFC 9068 tokens); the built-in issuer names the refresh-token family.
    pub session_id: Option<String>,
}

/// Why a token is refused. The text is fixed per reason and never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed signed JWT")]
    Malformed,
    #[error("the token's algorithm is not the one of its key, or not allowed at all")]
    AlgorithmNotAllowed,
    #[error("the token carries a `{0}` header, which is never followed")]
    ForbiddenHeader(&'static str),
    #[error("the token names a key unknown for issuer `{issuer}`")]
    UnknownKey { issuer: String, own: bool },
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is issued in the future")]
    IssuedInFuture,
    #[error("the token's issuer is not trusted")]
    UntrustedIssuer,
    #[error("the token is not meant for this API")]
    WrongAudience,
    #[error("the token is not an access token (its `typ` is not one its issuer's are)")]
    WrongType,
    #[error("the token is an ID token (it carries `{0}`)")]
    IdToken(&'static str),
    #[error("the token lives longer than {} seconds", MAX_OWN_LIFETIME.as_secs())]
    LifetimeTooLong,
    #[error("the token claims issuance by a retired key after its retirement")]
    SignedAfterRetirement,
    #[error("the token lacks `{0}`")]
    MissingClaim(&'static str),
}

impl TokenError {
    /// The reason code of the audit event.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::ForbiddenHeader(_) => "forbidden_header",
            Self::UnknownKey { .. } => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::UntrustedIssuer => "untrusted_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::WrongType => "wrong_type",
            Self::IdToken(_) => "id_token",
            Self::LifetimeTooLong => "lifetime_too_long",
            Self::SignedAfterRetirement => "signed_after_retirement",
            Self::MissingClaim(_) => "missing_claim",
        }
    }

    /// The external issuer whose JWKS may have gained a key since it was last fetched: a token
    /// of a trusted external issuer naming an unknown `kid`. The caller refreshes that JWKS (at
    /// a bounded rate) and validates once more; the built-in issuer's keys are local, so its
    /// unknown keys never trigger a refresh.
    pub fn jwks_refresh_issuer(&self) -> Option<&str> {
        match self {
            Self::UnknownKey { issuer, own: false } => Some(issuer),
            _ => None,
        }
    }

    /// A token of the built-in issuer naming a key not held here: with keys shared between
    /// instances, another instance may have rotated, and the caller re-reads them (at a bounded
    /// rate) and validates once more.
    pub fn is_unknown_own_key(&self) -> bool {
        matches!(self, Self::UnknownKey { own: true, .. })
    }
}

/// Validates bearer access tokens for one API (one audience).
pub struct AccessTokenValidator {
    audience: String,
    issuers: HashMap<String, TrustedIssuer>,
    leeway: u64,
    clock: Arc<dyn Clock>,
    verified: VerifiedTokens,
}

/// Tokens this validator has verified, by their exact text: a token presented again skips the
/// signature check and the parsing (the costliest part of a request; an Ed25519 verification
/// alone is tens of microseconds), never the time checks (`exp`, `nbf`, `iat`), which run on
/// every use. Only successes are remembered, at most [`VERIFIED_TOKENS_MAX`] (then forgotten
/// all at once). The cache lives and dies with its validator, which the service rebuilds
/// whenever the trusted keys change: a token of a key that was revoked or stopped verifying is
/// never answered from it.
#[derive(Default)]
struct VerifiedTokens {
    tokens: std::sync::Mutex<HashMap<Box<str>, VerifiedToken>>,
    signatures_checked: std::sync::atomic::AtomicU64,
}

/// What a verified token said, with the times checked again on each use.
#[derive(Clone)]
struct VerifiedToken {
    claims: AccessClaims,
    not_before: Option<u64>,
    issued_at: Option<u64>,
}

/// Verified tokens remembered per validator: each its text (a built-in token is under 1 KiB, any
/// token at most 8 KiB) and its claims.
pub const VERIFIED_TOKENS_MAX: usize = 4096;

impl fmt::Debug for AccessTokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokenValidator")
            .field("audience", &self.audience)
            .field("issuers", &self.issuers)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl AccessTokenValidator {
    /// A validator accepting tokens for `audience` from `issuers`, with [`DEFAULT_LEEWAY`].
    pub fn new(
        audience: impl Into<String>,
        issuers: impl IntoIterator<Item = TrustedIssuer>,
        clock: impl Clock,
    ) -> Result<Self, JwtConfigError> {
        let audience = audience.into();
        if audience.is_empty() {
            return Err(JwtConfigError::Empty);
        }
        let mut by_name = HashMap::new();
        for issuer in issuers {
            if issuer.issuer.is_empty() {
                return Err(JwtConfigError::Empty);
            }
            match by_name.entry(issuer.issuer.clone()) {
                Entry::Occupied(_) => return Err(JwtConfigError::DuplicateIssuer(issuer.issuer)),
                Entry::Vacant(slot) => {
                    slot.insert(issuer);
                }
            }
        }
        if by_name.values().filter(|issuer| issuer.own).count() > 1 {
            return Err(JwtConfigError::SeveralOwnIssuers);
        }
        Ok(Self {
            audience,
            issuers: by_name,
            leeway: DEFAULT_LEEWAY.as_secs(),
            clock: Arc::new(clock),
            verified: VerifiedTokens::default(),
        })
    }

    /// How many signatures this validator has verified (tokens answered from the cache of
    /// verified tokens are not counted): lets tests see the cache work without timing it.
    pub fn signatures_checked(&self) -> u64 {
        self.verified
            .signatures_checked
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tolerates `leeway` of clock skew on `exp`, `nbf` and `iat` (at most [`MAX_LEEWAY`]).
    pub fn with_leeway(mut self, leeway: Duration) -> Result<Self, JwtConfigError> {
        if leeway > MAX_LEEWAY {
            return Err(JwtConfigError::LeewayTooLarge);
        }
        self.leeway = leeway.as_secs();
        Ok(self)
    }

    /// Validates `token` (the credential of `Authorization: Bearer`, without the scheme).
    pub fn validate(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let remembered = self
            .verified
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(token)
            .cloned();
        if let Some(verified) = remembered {
            self.check_times(
                verified.claims.expires_at,
                verified.not_before,
                verified.issued_at,
            )?;
            return Ok(verified.claims);
        }
        let verified = self.verify(token)?;
        let claims = verified.claims.clone();
        let mut tokens = self
            .verified
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if tokens.len() >= VERIFIED_TOKENS_MAX {
            tokens.clear();
        }
        tokens.insert(token.into(), verified);
        Ok(claims)
    }

    /// `exp`, `nbf` and `iat` against now, with the leeway.
    fn check_times(
        &self,
        expires_at: u64,
        not_before: Option<u64>,
        issued_at: Option<u64>,
    ) -> Result<(), TokenError> {
        let now = self.clock.now();
        if now >= expires_at.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if not_before.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(TokenError::NotYetValid);
        }
        if issued_at.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }

    /// Every check of a token not seen before: its form, header, key, signature and claims.
    fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let header = decode_segment(header)?;
        let claims = decode_segment(payload)?;

        // The header, before any key is touched.
        if let Some(forbidden) = FORBIDDEN_HEADERS
            .into_iter()
            .find(|name| header.contains_key(*name))
        {
            return Err(TokenError::ForbiddenHeader(forbidden));
        }
        let algorithm = match optional_str(&header, "alg")? {
            Some("EdDSA") => Algorithm::EdDSA,
            Some("ES256") => Algorithm::ES256,
            Some("RS256") => Algorithm::RS256,
            Some(_) => return Err(TokenError::AlgorithmNotAllowed),
            None => return Err(TokenError::Malformed),
        };
        let kid = optional_str(&header, "kid")?.ok_or(TokenError::MissingClaim("kid"))?;
        let typ = optional_str(&header, "typ")?;

        // The key, by (issuer, kid), and the algorithm it carries.
        let issuer_name = optional_str(&claims, "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
        let issuer = self
            .issuers
            .get(issuer_name)
            .ok_or(TokenError::UntrustedIssuer)?;
        let key = issuer.keys.get(kid).ok_or_else(|| TokenError::UnknownKey {
            issuer: issuer.issuer.clone(),
            own: issuer.own,
        })?;
        if key.algorithm != algorithm {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        self.verified
            .signatures_checked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        verify_signature(token, key)?;

        // The claims, now that they are known to come from the issuer.
        let expires_at = optional_time(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
        let not_before = optional_time(&claims, "nbf")?;
        let issued_at = optional_time(&claims, "iat")?;
        self.check_times(expires_at, not_before, issued_at)?;
        let audience = issuer.audience.as_deref().unwrap_or(&self.audience);
        if !audience_matches(audience, &claims)? {
            return Err(TokenError::WrongAudience);
        }
        if !issuer.accepted_types.accepts(typ) {
            return Err(TokenError::WrongType);
        }
        // An ID token says who logged in to a client; it was never meant to be a credential for
        // an API, however its `typ` is spelt and whatever its `aud`.
        if let Some(claim) = ID_TOKEN_CLAIMS
            .into_iter()
            .find(|claim| claims.contains_key(*claim))
        {
            return Err(TokenError::IdToken(claim));
        }
        if issuer.own {
            let issued_at = issued_at.ok_or(TokenError::MissingClaim("iat"))?;
            if expires_at <= issued_at {
                return Err(TokenError::Malformed);
            }
            if expires_at - issued_at > MAX_OWN_LIFETIME.as_secs() {
                return Err(TokenError::LifetimeTooLong);
            }
        }
        if let Some(signed_until) = key.signed_until {
            // `iat` is required for a retired key: without it nothing says when it signed.
            let issued_at = issued_at.ok_or(TokenError::MissingClaim("iat"))?;
            if issued_at > signed_until {
                return Err(TokenError::SignedAfterRetirement);
            }
        }
        let subject = optional_str(&claims, "sub")?.ok_or(TokenError::MissingClaim("sub"))?;
        Ok(VerifiedToken {
            claims: AccessClaims {
                subject: subject.to_owned(),
                issuer: issuer.issuer.clone(),
                scopes: scopes(&claims)?,
                expires_at,
                client_id: optional_str(&claims, "client_id")?.map(str::to_owned),
                session_id: optional_str(&claims, "sid")?.map(str::to_owned),
            },
            not_before,
            issued_at,
        })
    }
}

/// Whether `aud` (a string or an array) contains `expected`.
fn audience_matches(expected: &str, claims: &Map<String, Value>) -> Result<bool, TokenError> {
    match claims.get("aud") {
        None => Err(TokenError::MissingClaim("aud")),
        Some(Value::String(audience)) => Ok(audience == expected),
        Some(Value::Array(audiences)) => {
            let mut matches = false;
            for audience in audiences {
                let audience = audience.as_str().ok_or(TokenError::Malformed)?;
                matches |= audience == expected;
            }
            Ok(matches)
        }
        Some(_) => Err(TokenError::Malformed),
    }
}

/// A base64url JSON object, parsed strictly: a repeated member makes the token malformed.
fn decode_segment(segment: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)?;
    let parsed = parse_strict(&bytes, MAX_JSON_DEPTH).map_err(|_| TokenError::Malformed)?;
    match parsed.value {
        Value::Object(object) if parsed.duplicate_keys.is_empty() => Ok(object),
        _ => Err(TokenError::Malformed),
    }
}

fn optional_str<'a>(
    object: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, TokenError> {
    match object.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// A NumericDate; only whole seconds are accepted.
fn optional_time(object: &Map<String, Value>, name: &str) -> Result<Option<u64>, TokenError> {
    match object.get(name) {
        None => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or(TokenError::Malformed),
    }
}

fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, TokenError> {
    let split = |scopes: &str| scopes.split_whitespace().map(str::to_owned).collect();
    match (claims.get("scope"), claims.get("scp")) {
        (None, None) => Ok(Vec::new()),
        (Some(Value::String(scope)), None) | (None, Some(Value::String(scope))) => Ok(split(scope)),
        (None, Some(Value::Array(scopes))) => scopes
            .iter()
            .map(|scope| scope.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(TokenError::Malformed),
        // Both, or of the wrong type: ambiguous grants are not guessed at.
        _ => Err(TokenError::Malformed),
    }
}

/// Verifies the signature with the key's own algorithm, through `jsonwebtoken`. Claims are
/// checked by the caller, against its clock.
fn verify_signature(token: &str, key: &VerifyingKey) -> Result<(), TokenError> {
    let mut validation = Validation::new(key.algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    jsonwebtoken::decode::<serde::de::IgnoredAny>(token, &key.key, &validation)
        .map(drop)
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::MissingAlgorithm
            | ErrorKind::UnsupportedAlgorithm => TokenError::AlgorithmNotAllowed,
            _ => TokenError::Malformed,
        })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::EncodingKey;
    use serde_json::json;

    use super::*;
    use crate::auth::jwt::test_tokens::{
        AUDIENCE, NOW, OWN, PARTNER, b64, claims, ed25519, header, p256, sign, sign_raw, world,
    };

    #[test]
    fn a_valid_token_of_the_built_in_issuer_passes() {
        let world = world();
        let claims = world
            .validator
            .validate(&world.own_token(|_, _| {}))
            .expect("valid token");
        assert_eq!(
            claims,
            AccessClaims {
                subject: "user-42".to_owned(),
                issuer: OWN.to_owned(),
                scopes: vec!["users:read".to_owned(), "users:write".to_owned()],
                expires_at: NOW + 540,
                client_id: Some("web".to_owned()),
                session_id: None,
            }
        );
    }

    #[test]
    fn a_valid_es256_token_of_an_external_issuer_passes_with_scp_as_an_array() {
        let world = world();
        let mut claims = claims(PARTNER);
        let claims_map = claims.as_object_mut().expect("object");
        claims_map.remove("scope");
        claims_map.insert("scp".to_owned(), json!(["users:read", "audit:read"]));
        claims_map.insert("aud".to_owned(), json!(["https://other.example", AUDIENCE]));
        // External issuers need no 15-minute lifetime; this one's access tokens say `JWT`.
        claims_map.insert("exp".to_owned(), json!(NOW + 3600));
        let header = json!({ "alg": "ES256", "typ": "JWT", "kid": "partner-1" });
        let valid = world
            .validator
            .validate(&sign(&world.partner, &header, &claims))
            .expect("valid token");
        assert_eq!(valid.scopes, ["users:read", "audit:read"]);
        assert_eq!(valid.issuer, PARTNER);
    }

    #[test]
    fn scp_as_a_string_is_split_and_scope_with_scp_is_refused() {
        let world = world();
        let token = world.own_token(|_, claims| {
            let claims = claims.as_object_mut().expect("object");
            claims.remove("scope");
            claims.insert("scp".to_owned(), json!("a b"));
        });
        let valid = world.validator.validate(&token).expect("valid token");
        assert_eq!(valid.scopes, ["a", "b"]);
        let both = world.own_token(|_, claims| claims["scp"] = json!(["admin"]));
        assert_eq!(world.refused(&both), "malformed");
    }

    #[test]
    fn alg_none_is_refused() {
        let world = world();
        let header = json!({ "alg": "none", "typ": "at+jwt", "kid": "own-1" });
        let token = format!(
            "{}.{}.",
            b64(header.to_string()),
            b64(claims(OWN).to_string())
        );
        assert_eq!(world.refused(&token), "algorithm_not_allowed");
    }

    #[test]
    fn hs256_keyed_with_the_public_key_is_refused() {
        let world = world();
        let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": "own-1" });
        let secret = EncodingKey::from_secret(&world.own.public).expect("HMAC key");
        let token = sign_raw(&header, &claims(OWN), &secret, Algorithm::HS256);
        assert_eq!(world.refused(&token), "algorithm_not_allowed");
    }

    #[test]
    fn an_allowed_algorithm_other_than_the_keys_is_refused() {
        let world = world();
        // The partner's P-256 key signs, but the header names the built-in key (EdDSA).
        let mut header = header(&world.partner);
        header["kid"] = json!("own-1");
        let token = sign(&world.partner, &header, &claims(OWN));
        assert_eq!(world.refused(&token), "algorithm_not_allowed");
    }

    #[test]
    fn a_stripped_signature_is_refused() {
        let world = world();
        let token = world.own_token(|_, _| {});
        let (unsigned, _) = token.rsplit_once('.').expect("three segments");
        assert_eq!(world.refused(&format!("{unsigned}.")), "bad_signature");
        assert_eq!(world.refused(unsigned), "malformed");
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let world = world();
        let token = world.own_token(|_, _| {});
        let segments: Vec<&str> = token.split('.').collect();
        let mut claims = claims(OWN);
        claims["sub"] = json!("admin");
        let forged = format!(
            "{}.{}.{}",
            segments[0],
            b64(claims.to_string()),
            segments[2]
        );
        assert_eq!(world.refused(&forged), "bad_signature");
    }

    #[test]
    fn an_unknown_kid_is_refused_and_hints_a_refresh_only_for_external_issuers() {
        let world = world();
        let own = world
            .validator
            .validate(&world.own_token(|header, _| header["kid"] = json!("own-2")))
            .expect_err("unknown key");
        assert_eq!(own.reason_code(), "unknown_key");
        assert_eq!(own.jwks_refresh_issuer(), None);

        let rotated = p256("partner-2");
        let header = json!({ "alg": "ES256", "kid": "partner-2" });
        let partner = world
            .validator
            .validate(&sign(&rotated, &header, &claims(PARTNER)))
            .expect_err("unknown key");
        assert_eq!(partner.reason_code(), "unknown_key");
        assert_eq!(partner.jwks_refresh_issuer(), Some(PARTNER));
    }

    #[test]
    fn a_kid_of_another_trusted_issuer_is_refused() {
        let world = world();
        // Signed by the partner's real key, claiming to come from the built-in issuer.
        let token = sign(&world.partner, &header(&world.partner), &claims(OWN));
        assert_eq!(world.refused(&token), "unknown_key");
    }

    #[test]
    fn a_missing_kid_is_refused() {
        let world = world();
        let token = world.own_token(|header, _| {
            header.as_object_mut().expect("object").remove("kid");
        });
        assert_eq!(world.refused(&token), "missing_claim");
    }

    #[test]
    fn time_claims_are_checked_against_the_clock_with_leeway() {
        let world = world();
        let expired = world.own_token(|_, claims| {
            claims["iat"] = json!(NOW - 900);
            claims["exp"] = json!(NOW - 31);
        });
        assert_eq!(world.refused(&expired), "expired");
        let within_leeway = world.own_token(|_, claims| {
            claims["iat"] = json!(NOW - 900);
            claims["exp"] = json!(NOW - 29);
        });
        assert!(world.validator.validate(&within_leeway).is_ok());

        let not_yet = world.own_token(|_, claims| claims["nbf"] = json!(NOW + 31));
        assert_eq!(world.refused(&not_yet), "not_yet_valid");

        let future = world.own_token(|_, claims| {
            claims["iat"] = json!(NOW + 60);
            claims["exp"] = json!(NOW + 600);
        });
        assert_eq!(world.refused(&future), "issued_in_future");
    }

    #[test]
    fn a_token_presented_again_skips_the_signature_never_the_time_checks() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let now = Arc::new(AtomicU64::new(NOW));
        let clock = Arc::clone(&now);
        let own = ed25519("own-1");
        let validator = AccessTokenValidator::new(
            AUDIENCE,
            [TrustedIssuer {
                issuer: OWN.to_owned(),
                keys: KeySet::new([own.verifying.clone()]).expect("own keys"),
                audience: None,
                accepted_types: AcceptedTokenTypes::default(),
                own: true,
            }],
            move || clock.load(Ordering::Relaxed),
        )
        .expect("validator");
        let token = sign(&own, &header(&own), &claims(OWN));

        let first = validator.validate(&token).expect("valid token");
        assert_eq!(validator.validate(&token), Ok(first));
        assert_eq!(
            validator.signatures_checked(),
            1,
            "verified once, then remembered"
        );

        // Another text is another token: one changed signature character is verified, refused.
        let mut tampered = token.clone();
        let last = if tampered.ends_with('A') { "B" } else { "A" };
        tampered.replace_range(tampered.len() - 1.., last);
        assert!(validator.validate(&tampered).is_err());
        assert_eq!(validator.signatures_checked(), 2);

        // Remembered, but expired all the same once the clock passes `exp` and the leeway.
        now.store(NOW + 540 + DEFAULT_LEEWAY.as_secs(), Ordering::Relaxed);
        assert_eq!(validator.validate(&token), Err(TokenError::Expired));
        // And a token issued in the future is refused from the cache too.
        now.store(NOW - 60 - DEFAULT_LEEWAY.as_secs() - 1, Ordering::Relaxed);
        assert_eq!(validator.validate(&token), Err(TokenError::IssuedInFuture));
        assert_eq!(validator.signatures_checked(), 2);
    }

    #[test]
    fn a_missing_or_non_numeric_exp_is_refused() {
        let world = world();
        let missing = world.own_token(|_, claims| {
            claims.as_object_mut().expect("object").remove("exp");
        });
        assert_eq!(world.refused(&missing), "missing_claim");
        let text = world.own_token(|_, claims| claims["exp"] = json!("tomorrow"));
        assert_eq!(world.refused(&text), "malformed");
    }

    #[test]
    fn a_wrong_or_missing_issuer_is_refused() {
        let world = world();
        let wrong = world.own_token(|_, claims| claims["iss"] = json!("https://evil.example"));
        assert_eq!(world.refused(&wrong), "untrusted_issuer");
        let near_miss = world.own_token(|_, claims| claims["iss"] = json!(format!("{OWN}/")));
        assert_eq!(world.refused(&near_miss), "untrusted_issuer");
        let missing = world.own_token(|_, claims| {
            claims.as_object_mut().expect("object").remove("iss");
        });
        assert_eq!(world.refused(&missing), "missing_claim");
    }

    #[test]
    fn a_wrong_audience_is_refused() {
        let world = world();
        let other = world.own_token(|_, claims| claims["aud"] = json!("https://other.example"));
        assert_eq!(world.refused(&other), "wrong_audience");
        let none_of_them = world.own_token(|_, claims| claims["aud"] = json!(["a", "b"]));
        assert_eq!(world.refused(&none_of_them), "wrong_audience");
        let missing = world.own_token(|_, claims| {
            claims.as_object_mut().expect("object").remove("aud");
        });
        assert_eq!(world.refused(&missing), "missing_claim");
    }

    #[test]
    fn a_built_in_token_living_over_15_minutes_is_refused() {
        let world = world();
        let token = world.own_token(|_, claims| {
            claims["iat"] = json!(NOW);
            claims["exp"] = json!(NOW + 901);
        });
        assert_eq!(world.refused(&token), "lifetime_too_long");
        let exactly = world.own_token(|_, claims| {
            claims["iat"] = json!(NOW);
            claims["exp"] = json!(NOW + 900);
        });
        assert!(world.validator.validate(&exactly).is_ok());
    }

    #[test]
    fn a_built_in_token_that_is_not_at_jwt_is_refused() {
        let world = world();
        let id_token = world.own_token(|header, _| header["typ"] = json!("JWT"));
        assert_eq!(world.refused(&id_token), "wrong_type");
        let untyped = world.own_token(|header, _| {
            header.as_object_mut().expect("object").remove("typ");
        });
        assert_eq!(world.refused(&untyped), "wrong_type");
        let media_type = world.own_token(|header, _| header["typ"] = json!("application/AT+JWT"));
        assert!(world.validator.validate(&media_type).is_ok());
    }

    #[test]
    fn an_external_issuers_token_must_be_of_a_type_configured_for_it() {
        let world = world();
        let partner_token = |typ: Option<&str>| {
            let mut header = header(&world.partner);
            match typ {
                Some(typ) => header["typ"] = json!(typ),
                None => {
                    header.as_object_mut().expect("object").remove("typ");
                }
            }
            sign(&world.partner, &header, &claims(PARTNER))
        };
        assert!(
            world
                .validator
                .validate(&partner_token(Some("JWT")))
                .is_ok()
        );
        assert!(
            world
                .validator
                .validate(&partner_token(Some("application/jwt")))
                .is_ok()
        );
        // Configured for `JWT` only: its `at+jwt`, or untyped, tokens are not of its kind.
        assert_eq!(world.refused(&partner_token(Some("at+jwt"))), "wrong_type");
        assert_eq!(world.refused(&partner_token(None)), "wrong_type");

        // By default an external issuer is held to `at+jwt`, so its ID tokens (`JWT`) fail.
        let partner = p256("partner-1");
        let strict = AccessTokenValidator::new(
            AUDIENCE,
            [TrustedIssuer {
                issuer: PARTNER.to_owned(),
                keys: KeySet::new([partner.verifying.clone()]).expect("keys"),
                audience: None,
                accepted_types: AcceptedTokenTypes::default(),
                own: false,
            }],
            || NOW,
        )
        .expect("validator");
        let mut typed = header(&partner);
        let access_token = sign(&partner, &typed, &claims(PARTNER));
        assert!(strict.validate(&access_token).is_ok());
        typed["typ"] = json!("JWT");
        let id_token = sign(&partner, &typed, &claims(PARTNER));
        assert_eq!(strict.validate(&id_token), Err(TokenError::WrongType));
    }

    #[test]
    fn a_token_carrying_an_id_token_claim_is_refused_whatever_its_type() {
        let world = world();
        for claim in ID_TOKEN_CLAIMS {
            let own = world.own_token(|_, claims| claims[claim] = json!("x"));
            assert_eq!(world.refused(&own), "id_token", "{claim} at+jwt");
            let mut partner_claims = claims(PARTNER);
            partner_claims[claim] = json!("x");
            let mut jwt_header = header(&world.partner);
            jwt_header["typ"] = json!("JWT");
            let partner_jwt = sign(&world.partner, &jwt_header, &partner_claims);
            assert_eq!(world.refused(&partner_jwt), "id_token", "{claim} JWT");
        }
    }

    #[test]
    fn key_bearing_headers_are_refused_unfollowed() {
        let world = world();
        let attacker = ed25519("own-1");
        let jwk = attacker.verifying.jwk().clone();
        for (name, value) in [
            ("jku", json!("https://evil.example/jwks.json")),
            ("x5u", json!("https://evil.example/cert.pem")),
            ("jwk", serde_json::to_value(&jwk).expect("JWK")),
            ("x5c", json!(["MIIB"])),
        ] {
            // Signed by the trusted key, so the header is the only fault.
            let token = world.own_token(|header, _| header[name] = value);
            assert_eq!(world.refused(&token), "forbidden_header", "{name}");
            let error = world.validator.validate(&token).expect_err("refused");
            assert_eq!(error, TokenError::ForbiddenHeader(name));
        }
    }

    #[test]
    fn an_all_zero_es256_signature_is_refused() {
        let world = world();
        let header = json!({ "alg": "ES256", "kid": "partner-1" });
        let token = format!(
            "{}.{}.{}",
            b64(header.to_string()),
            b64(claims(PARTNER).to_string()),
            b64([0_u8; 64])
        );
        assert_eq!(world.refused(&token), "bad_signature");
    }

    #[test]
    fn a_token_signed_by_an_untrusted_key_is_refused() {
        let world = world();
        let attacker = ed25519("own-1");
        // Claiming the built-in issuer and its kid: the signature gives it away.
        let impostor = sign(&attacker, &header(&attacker), &claims(OWN));
        assert_eq!(world.refused(&impostor), "bad_signature");
        // Honest about its own issuer: not one of ours.
        let foreign = sign(
            &attacker,
            &header(&attacker),
            &claims("https://idp.attacker.example"),
        );
        assert_eq!(world.refused(&foreign), "untrusted_issuer");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let world = world();
        let valid = world.own_token(|_, _| {});
        let repeated_alg = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"EdDSA","kid":"own-1","alg":"HS256"}"#),
            b64(claims(OWN).to_string())
        );
        let unknown_critical = world.own_token(|header, _| header["crit"] = json!(["urn:x"]));
        for token in [
            "",
            "not-a-jwt",
            "a.b.c.d",
            &format!("{valid}.extra"),
            &format!("{valid}{}", "A".repeat(MAX_TOKEN_BYTES)),
            &repeated_alg,
            &unknown_critical,
            &format!("{}.{}.", b64("[]"), b64("{}")),
        ] {
            assert_eq!(world.refused(token), "malformed", "{token:.40}");
        }
    }

    #[test]
    fn error_text_never_contains_the_token() {
        let world = world();
        let tokens = [
            world.own_token(|_, claims| claims["exp"] = json!(NOW - 3600)),
            world.own_token(|header, _| header["kid"] = json!("own-2")),
            world.own_token(|header, _| header["jku"] = json!("https://evil.example")),
        ];
        for token in tokens {
            let error = world.validator.validate(&token).expect_err("refused");
            let (header, rest) = token.split_once('.').expect("segments");
            let (payload, signature) = rest.split_once('.').expect("segments");
            for text in [error.to_string(), format!("{error:?}")] {
                for part in [&token, header, payload, signature] {
                    assert!(!text.contains(part), "{text}");
                }
            }
        }
    }

    #[test]
    fn every_reason_code_is_distinct() {
        let errors = [
            TokenError::Malformed,
            TokenError::AlgorithmNotAllowed,
            TokenError::ForbiddenHeader("jku"),
            TokenError::UnknownKey {
                issuer: OWN.to_owned(),
                own: true,
            },
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::IssuedInFuture,
            TokenError::UntrustedIssuer,
            TokenError::WrongAudience,
            TokenError::WrongType,
            TokenError::IdToken("nonce"),
            TokenError::LifetimeTooLong,
            TokenError::MissingClaim("exp"),
        ];
        let codes: std::collections::HashSet<_> =
            errors.iter().map(TokenError::reason_code).collect();
        assert_eq!(codes.len(), errors.len());
    }

    #[test]
    fn validator_configuration_is_checked() {
        let own = ed25519("k");
        let issuer = TrustedIssuer {
            issuer: OWN.to_owned(),
            keys: KeySet::new([own.verifying]).expect("keys"),
            audience: None,
            accepted_types: AcceptedTokenTypes::default(),
            own: true,
        };
        assert_eq!(
            AccessTokenValidator::new(AUDIENCE, [issuer.clone(), issuer.clone()], SystemClock)
                .expect_err("duplicate"),
            JwtConfigError::DuplicateIssuer(OWN.to_owned())
        );
        assert_eq!(
            AccessTokenValidator::new("", [issuer.clone()], SystemClock).expect_err("no audience"),
            JwtConfigError::Empty
        );
        let validator =
            AccessTokenValidator::new(AUDIENCE, [issuer], SystemClock).expect("validator");
        assert_eq!(
            validator
                .with_leeway(MAX_LEEWAY + Duration::from_secs(1))
                .expect_err("leeway"),
            JwtConfigError::LeewayTooLarge
        );
    }
}
