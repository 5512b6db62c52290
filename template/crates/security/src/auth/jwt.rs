//! Bearer access tokens: validation by the resource server, issuance by the built-in issuer
//! (AUTH-5, with the 15-minute lifetime of AUTH-3).
//!
//! Threat: a JWT validator that trusts the token to describe itself can be talked into
//! anything. `alg: none` or an HMAC algorithm keyed with the (public) verification key turns a
//! signature check into a formality; a `jku`, `x5u` or embedded `jwk` header makes the attacker's
//! key the trusted one; a token of another issuer, or meant for another API, or long expired,
//! is replayed here; an ID token or a refresh token is presented as an access token (an
//! OpenID provider signs its ID tokens with the same keys as its access tokens, and an ID
//! token's `aud` may well be this API).
//!
//! Control: the token chooses nothing. The key is found by (issuer, `kid`): the unverified
//! `iss` picks one of the configured trusted issuers, and only that issuer's keys are searched,
//! so a key of one trusted issuer never vouches for another's tokens. Each key carries its own
//! algorithm from an allowlist (EdDSA, ES256, RS256; never `none`, never HMAC), and a token
//! whose header names another algorithm is refused before any cryptography. `jku`, `x5u`,
//! `jwk` and `x5c` headers are refused outright, never followed. The signature is verified by
//! `jsonwebtoken` (aws-lc-rs), then: `exp` is required and `nbf` and `iat` must not be in the
//! future, each with a small leeway, against an injected clock; `aud` must contain this API;
//! `typ` must be one its issuer is configured to use for access tokens ([`AcceptedTokenTypes`]:
//! `at+jwt`, RFC 9068, unless an external issuer's settings say otherwise), and a token
//! carrying a claim only ID tokens have (`nonce`, `at_hash`, `c_hash`) is refused whatever its
//! `typ`; the built-in issuer's tokens must also live at most 15 minutes. Header and payload are parsed strictly: a repeated member (two `alg`s, two `iss`es)
//! makes the token malformed instead of letting two parsers read it differently.
//!
//! Every refusal is one [`TokenError`] with a fixed reason code for the audit event; its text
//! never contains the token or any value taken from it.
//!
//! The signing side ([`SigningKey`], [`issue_access_token`], [`jwks_json`]) is what the
//! built-in issuer needs: Ed25519 keys, `at+jwt` tokens with `kid`, and the JWKS that publishes
//! the public halves.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::input::strict_json::parse_strict;

/// The signature algorithms a key may carry.
pub const ALLOWED_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// The longest lifetime (`exp - iat`) of a token of the built-in issuer (AUTH-3).
pub const MAX_OWN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The clock skew tolerated on `exp`, `nbf` and `iat` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The largest leeway that may be configured.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

/// The `typ` header of an access token (RFC 9068, section 2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Claims of OpenID Connect ID tokens that no access token needs: a token carrying one is an ID
/// token, whatever its `typ` says.
pub const ID_TOKEN_CLAIMS: [&str; 3] = ["nonce", "at_hash", "c_hash"];

/// The `typ` header values an issuer's access tokens may carry. Compared without regard to case
/// and with or without the `application/` prefix (RFC 7515, section 4.1.9); the empty entry
/// `""` accepts a token without `typ`.
///
/// The default, `at+jwt` only, refuses an issuer's ID tokens (`typ: JWT`) even where their
/// `aud` names this API. Providers whose access tokens say `JWT`, or nothing, can only be
/// trusted by accepting that, and then only [`ID_TOKEN_CLAIMS`] tell their ID tokens apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedTokenTypes(Vec<String>);

impl Default for AcceptedTokenTypes {
    fn default() -> Self {
        Self(vec![ACCESS_TOKEN_TYPE.to_owned()])
    }
}

impl AcceptedTokenTypes {
    /// `types` as configured: at least one, each `""` or a media type (`at+jwt`, `JWT`,
    /// `application/at+jwt`).
    pub fn new<S: AsRef<str>>(types: &[S]) -> Result<Self, JwtConfigError> {
        if types.is_empty() {
            return Err(JwtConfigError::NoTokenType);
        }
        let media_type = |typ: &str| {
            typ.bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"+-./_".contains(&byte))
        };
        types
            .iter()
            .map(|typ| {
                let typ = typ.as_ref();
                media_type(typ)
                    .then(|| normalized_type(typ))
                    .ok_or_else(|| JwtConfigError::InvalidTokenType(typ.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether a token whose header says `typ` (`None`: no `typ`) is of an accepted type.
    pub fn accepts(&self, typ: Option<&str>) -> bool {
        let typ = normalized_type(typ.unwrap_or_default());
        self.0.contains(&typ)
    }
}

/// `typ` lowercased, without the optional `application/` prefix.
fn normalized_type(typ: &str) -> String {
    let typ = typ.to_ascii_lowercase();
    match typ.strip_prefix("application/") {
        Some(short) => short.to_owned(),
        None => typ,
    }
}

/// Tokens longer than this are refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Header and payload objects nest no deeper than this.
const MAX_JSON_DEPTH: usize = 8;

/// Header members that point at, or embed, a key chosen by the token's author.
const FORBIDDEN_HEADERS: [&str; 4] = ["jku", "x5u", "jwk", "x5c"];

/// RSA keys shorter than this are refused.
const MIN_RSA_BITS: usize = 2048;

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

/// Why a key, key set or validator configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    #[error("key `{kid}`: algorithm {algorithm} is not allowed (allowed: EdDSA, ES256, RS256)")]
    AlgorithmNotAllowed { kid: String, algorithm: String },
    #[error("key `{kid}` is not a valid {algorithm} public key")]
    InvalidKey { kid: String, algorithm: String },
    #[error("a key needs a non-empty `kid`")]
    MissingKid,
    #[error("key id `{0}` appears twice in one key set")]
    DuplicateKid(String),
    #[error("issuer `{0}` is configured twice")]
    DuplicateIssuer(String),
    #[error("an issuer and an audience must be non-empty")]
    Empty,
    #[error("at most one issuer may be the built-in one")]
    SeveralOwnIssuers,
    #[error("the leeway may be at most {} seconds", MAX_LEEWAY.as_secs())]
    LeewayTooLarge,
    #[error("an access token lives more than 0 and at most {} seconds", MAX_OWN_LIFETIME.as_secs())]
    LifetimeOutOfRange,
    #[error("a JWKS is an object with a `keys` array")]
    NotAJwks,
    #[error("the signing key could not be created or used")]
    Signing,
    #[error("an issuer needs at least one accepted token type")]
    NoTokenType,
    #[error("token type `{0}` is neither empty nor a media type")]
    InvalidTokenType(String),
}

/// A public key trusted to verify tokens, with the one algorithm it verifies.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    kid: String,
    algorithm: Algorithm,
    key: DecodingKey,
    jwk: Jwk,
    /// A retired signing key: tokens it claims to have issued after this time (`iat`, seconds
    /// since the Unix epoch) are refused.
    signed_until: Option<u64>,
}

impl VerifyingKey {
    /// Checks that `algorithm` is allowed and that `key` is a well-formed public key for it
    /// (Ed25519 for EdDSA, P-256 for ES256, RSA of at least 2048 bits for RS256).
    pub fn new(
        kid: impl Into<String>,
        key: DecodingKey,
        algorithm: Algorithm,
    ) -> Result<Self, JwtConfigError> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(JwtConfigError::MissingKid);
        }
        if !ALLOWED_ALGORITHMS.contains(&algorithm) {
            return Err(JwtConfigError::AlgorithmNotAllowed {
                kid,
                algorithm: format!("{algorithm:?}"),
            });
        }
        let invalid = || JwtConfigError::InvalidKey {
            kid: kid.clone(),
            algorithm: format!("{algorithm:?}"),
        };
        if key.family() != algorithm.family() {
            return Err(invalid());
        }
        let mut jwk = Jwk::from_decoding_key(&key, Some(algorithm)).map_err(|_| invalid())?;
        let well_formed = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
                okp.curve == EllipticCurve::Ed25519
            }
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
                ec.curve == EllipticCurve::P256
            }
            (AlgorithmParameters::RSA(rsa), Algorithm::RS256) => URL_SAFE_NO_PAD
                .decode(&rsa.n)
                .is_ok_and(|n| significant_bits(&n) >= MIN_RSA_BITS),
            _ => false,
        };
        if !well_formed {
            return Err(invalid());
        }
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self {
            kid,
            algorithm,
            key,
            jwk,
            signed_until: None,
        })
    }

    /// A key from a published JWK (RFC 7517). The algorithm follows from the key type alone
    /// (OKP/Ed25519: EdDSA, EC/P-256: ES256, RSA: RS256); a JWK whose `alg` says otherwise,
    /// or whose `use` is not `sig`, is refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JwtConfigError> {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or(JwtConfigError::MissingKid)?;
        let algorithm = match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            _ => {
                return Err(JwtConfigError::AlgorithmNotAllowed {
                    kid,
                    algorithm: "of this key type".to_owned(),
                });
            }
        };
        let declared = jwk
            .common
            .key_algorithm
            .map(|declared| Algorithm::try_from(declared).ok());
        let usable = jwk
            .common
            .public_key_use
            .as_ref()
            .is_none_or(|key_use| *key_use == PublicKeyUse::Signature);
        if declared.is_some_and(|declared| declared != Some(algorithm)) || !usable {
            return Err(JwtConfigError::AlgorithmNotAllowed {
                kid,
                algorithm: "declared by the JWK".to_owned(),
            });
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| JwtConfigError::InvalidKey {
            kid: kid.clone(),
            algorithm: format!("{algorithm:?}"),
        })?;
        Self::new(kid, key, algorithm)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as retired at `retired_at`: it verifies only tokens issued until then.
    pub fn retired_at(mut self, retired_at: u64) -> Self {
        self.signed_until = Some(retired_at);
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The public JWK, with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }
}

fn significant_bits(big_endian: &[u8]) -> usize {
    match big_endian.iter().position(|byte| *byte != 0) {
        Some(first) => (big_endian.len() - first) * 8 - big_endian[first].leading_zeros() as usize,
        None => 0,
    }
}

/// The keys of one issuer, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Self, JwtConfigError> {
        let mut set = HashMap::new();
        for key in keys {
            match set.entry(key.kid.clone()) {
                Entry::Occupied(_) => return Err(JwtConfigError::DuplicateKid(key.kid)),
                Entry::Vacant(slot) => {
                    slot.insert(key);
                }
            }
        }
        Ok(Self { keys: set })
    }

    /// The usable keys of a JWKS document (`{"keys": [...]}`). Keys this validator cannot use
    /// (encryption keys, other algorithms, no `kid`) are left out: a token naming one of them
    /// is refused as signed by an unknown key.
    pub fn from_jwks(jwks: &Value) -> Result<Self, JwtConfigError> {
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwtConfigError::NotAJwks)?;
        let usable = keys
            .iter()
            .filter_map(|jwk| serde_json::from_value::<Jwk>(jwk.clone()).ok())
            .filter_map(|jwk| VerifyingKey::from_jwk(&jwk).ok());
        Self::new(usable)
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
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

/// The built-in issuer's Ed25519 signing key.
#[derive(Debug)]
pub struct SigningKey {
    key: EncodingKey,
    verifying: VerifyingKey,
}

impl SigningKey {
    /// A new random key.
    pub fn generate_ed25519(kid: impl Into<String>) -> Result<Self, JwtConfigError> {
        let pkcs8 = Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8())
            .map_err(|_| JwtConfigError::Signing)?;
        Self::from_ed25519_pkcs8(kid, pkcs8.as_ref())
    }

    /// A stored key, as PKCS#8 DER.
    pub fn from_ed25519_pkcs8(kid: impl Into<String>, der: &[u8]) -> Result<Self, JwtConfigError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| JwtConfigError::Signing)?;
        let public = DecodingKey::from_ed_der(pair.public_key().as_ref());
        Ok(Self {
            key: EncodingKey::from_ed_der(der),
            verifying: VerifyingKey::new(kid, public, Algorithm::EdDSA)?,
        })
    }

    /// A stored key whose `kid` is its RFC 7638 thumbprint: the same key always has the same
    /// id, and two keys never share one.
    pub fn from_ed25519_pkcs8_thumbprint(der: &[u8]) -> Result<Self, JwtConfigError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|_| JwtConfigError::Signing)?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        // The required members in lexicographic order, no whitespace (RFC 7638, section 3).
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        Self::from_ed25519_pkcs8(URL_SAFE_NO_PAD.encode(digest.as_ref()), der)
    }

    /// A new random key as PKCS#8 DER, for storing.
    pub fn generate_ed25519_pkcs8() -> Result<Vec<u8>, JwtConfigError> {
        Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8())
            .map(|document| document.as_ref().to_vec())
            .map_err(|_| JwtConfigError::Signing)
    }

    pub fn kid(&self) -> &str {
        &self.verifying.kid
    }

    /// The public half, for the built-in issuer's [`KeySet`] and JWKS.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }
}

/// What the built-in issuer grants in one access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    pub issuer: String,
    pub subject: String,
    pub audience: String,
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
    /// `sid`: the sign-in session (a login's refresh-token family), none for a client's token.
    pub session_id: Option<String>,
    /// `iat`, in seconds since the Unix epoch.
    pub issued_at: u64,
    /// At most [`MAX_OWN_LIFETIME`].
    pub lifetime: Duration,
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

/// Signs an access token (RFC 9068: `typ: at+jwt`, with `kid` and `alg` of `key`).
pub fn issue_access_token(key: &SigningKey, grant: &AccessGrant) -> Result<String, JwtConfigError> {
    if grant.lifetime.is_zero() || grant.lifetime > MAX_OWN_LIFETIME {
        return Err(JwtConfigError::LifetimeOutOfRange);
    }
    let mut header = Header::new(key.verifying.algorithm);
    header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
    header.kid = Some(key.verifying.kid.clone());
    let claims = IssuedClaims {
        iss: &grant.issuer,
        sub: &grant.subject,
        aud: &grant.audience,
        iat: grant.issued_at,
        exp: grant.issued_at.saturating_add(grant.lifetime.as_secs()),
        jti: uuid::Uuid::new_v4().to_string(),
        scope: grant.scopes.join(" "),
        client_id: grant.client_id.as_deref(),
        sid: grant.session_id.as_deref(),
    };
    jsonwebtoken::encode(&header, &claims, &key.key).map_err(|_| JwtConfigError::Signing)
}

/// The JWKS (RFC 7517) publishing `keys`: each with `kty`, its public parameters (`crv` and `x`
/// for Ed25519, `crv`, `x` and `y` for P-256, `n` and `e` for RSA), `kid`, `alg` and `use: sig`.
pub fn jwks_json(keys: &[VerifyingKey]) -> Value {
    let set = JwkSet {
        keys: keys.iter().map(|key| key.jwk.clone()).collect(),
    };
    serde_json::to_value(set).unwrap_or_else(|_| serde_json::json!({ "keys": [] }))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    use serde_json::json;

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const OWN: &str = "https://api.example.com";
    const PARTNER: &str = "https://login.partner.example";
    const AUDIENCE: &str = "https://api.example.com/v1";

    /// A private key the tests can sign anything with, and its public half.
    struct TestKey {
        kid: String,
        algorithm: Algorithm,
        encoding: EncodingKey,
        verifying: VerifyingKey,
        public: Vec<u8>,
    }

    fn ed25519(kid: &str) -> TestKey {
        let pkcs8 = Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8())
            .expect("Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("Ed25519 PKCS#8");
        let public = pair.public_key().as_ref().to_vec();
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            verifying: VerifyingKey::new(kid, DecodingKey::from_ed_der(&public), Algorithm::EdDSA)
                .expect("Ed25519 verifying key"),
            public,
        }
    }

    fn p256(kid: &str) -> TestKey {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256 key");
        let pkcs8 = pair.to_pkcs8v1().expect("P-256 PKCS#8");
        let public = pair.public_key().as_ref().to_vec();
        TestKey {
            kid: kid.to_owned(),
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            verifying: VerifyingKey::new(kid, DecodingKey::from_ec_der(&public), Algorithm::ES256)
                .expect("P-256 verifying key"),
            public,
        }
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `header.payload.signature`, signed over exactly these bytes with `algorithm`.
    fn sign_raw(header: &Value, claims: &Value, key: &EncodingKey, algorithm: Algorithm) -> String {
        let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), key, algorithm).expect("signature");
        format!("{message}.{signature}")
    }

    fn header(key: &TestKey) -> Value {
        json!({ "alg": format!("{:?}", key.algorithm), "typ": "at+jwt", "kid": key.kid })
    }

    fn claims(issuer: &str) -> Value {
        json!({
            "iss": issuer,
            "sub": "user-42",
            "aud": AUDIENCE,
            "iat": NOW - 60,
            "exp": NOW + 540,
            "scope": "users:read users:write",
            "client_id": "web",
        })
    }

    fn sign(key: &TestKey, header: &Value, claims: &Value) -> String {
        sign_raw(header, claims, &key.encoding, key.algorithm)
    }

    struct World {
        own: TestKey,
        partner: TestKey,
        validator: AccessTokenValidator,
    }

    fn world() -> World {
        let own = ed25519("own-1");
        let partner = p256("partner-1");
        let issuers = [
            TrustedIssuer {
                issuer: OWN.to_owned(),
                keys: KeySet::new([own.verifying.clone()]).expect("own keys"),
                audience: None,
                accepted_types: AcceptedTokenTypes::default(),
                own: true,
            },
            TrustedIssuer {
                issuer: PARTNER.to_owned(),
                keys: KeySet::new([partner.verifying.clone()]).expect("partner keys"),
                audience: None,
                // A provider whose access tokens say `typ: JWT` (Keycloak, Entra ID).
                accepted_types: AcceptedTokenTypes::new(&["JWT"]).expect("types"),
                own: false,
            },
        ];
        let validator = AccessTokenValidator::new(AUDIENCE, issuers, || NOW).expect("validator");
        World {
            own,
            partner,
            validator,
        }
    }

    impl World {
        fn own_token(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
            let (mut header, mut claims) = (header(&self.own), claims(OWN));
            edit(&mut header, &mut claims);
            sign(&self.own, &header, &claims)
        }

        fn refused(&self, token: &str) -> &'static str {
            let error = self
                .validator
                .validate(token)
                .expect_err("the token must be refused");
            assert!(token.is_empty() || !error.to_string().contains(token));
            error.reason_code()
        }
    }

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
    fn accepted_types_ignore_case_and_the_media_type_prefix_and_empty_means_untyped() {
        let types = AcceptedTokenTypes::new(&["JWT", ""]).expect("types");
        for typ in [
            Some("JWT"),
            Some("jwt"),
            Some("application/JWT"),
            None,
            Some(""),
        ] {
            assert!(types.accepts(typ), "{typ:?}");
        }
        assert!(!types.accepts(Some("at+jwt")));
        let default = AcceptedTokenTypes::default();
        assert!(default.accepts(Some("application/at+jwt")));
        assert!(!default.accepts(None));
        assert_eq!(
            AcceptedTokenTypes::new::<&str>(&[]),
            Err(JwtConfigError::NoTokenType)
        );
        assert_eq!(
            AcceptedTokenTypes::new(&["at jwt"]),
            Err(JwtConfigError::InvalidTokenType("at jwt".to_owned()))
        );
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
    fn keys_carry_only_allowed_algorithms_of_their_own_family() {
        let own = ed25519("k");
        let hmac = DecodingKey::from_secret(b"secret").expect("HMAC key");
        assert!(matches!(
            VerifyingKey::new("k", hmac, Algorithm::HS256),
            Err(JwtConfigError::AlgorithmNotAllowed { .. })
        ));
        let ed = DecodingKey::from_ed_der(&own.public);
        assert!(matches!(
            VerifyingKey::new("k", ed.clone(), Algorithm::ES256),
            Err(JwtConfigError::InvalidKey { .. })
        ));
        assert!(matches!(
            VerifyingKey::new("k", DecodingKey::from_ed_der(&[0; 31]), Algorithm::EdDSA),
            Err(JwtConfigError::InvalidKey { .. })
        ));
        assert_eq!(
            VerifyingKey::new("", ed, Algorithm::EdDSA).expect_err("no kid"),
            JwtConfigError::MissingKid
        );
        assert_eq!(
            KeySet::new([own.verifying.clone(), own.verifying]).expect_err("duplicate"),
            JwtConfigError::DuplicateKid("k".to_owned())
        );
    }

    #[test]
    fn rs256_needs_a_key_of_at_least_2048_bits() {
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
        use aws_lc_rs::signature::RSA_PKCS1_SHA256;

        let short = DecodingKey::from_rsa_raw_components(&[0xff; 128], &[1, 0, 1]);
        assert!(matches!(
            VerifyingKey::new("rsa-1024", short, Algorithm::RS256),
            Err(JwtConfigError::InvalidKey { .. })
        ));

        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        let public = DecodingKey::from_rsa_der(pair.public_key().as_ref());
        let key = VerifyingKey::new("rsa-1", public, Algorithm::RS256).expect("RSA key");
        let validator = AccessTokenValidator::new(
            AUDIENCE,
            [TrustedIssuer {
                issuer: PARTNER.to_owned(),
                keys: KeySet::new([key]).expect("keys"),
                audience: None,
                accepted_types: AcceptedTokenTypes::default(),
                own: false,
            }],
            || NOW,
        )
        .expect("validator");
        let header = json!({ "alg": "RS256", "typ": "at+jwt", "kid": "rsa-1" });
        let message = format!(
            "{}.{}",
            b64(header.to_string()),
            b64(claims(PARTNER).to_string())
        );
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        )
        .expect("RSA signature");
        let token = format!("{message}.{}", b64(signature));
        assert_eq!(
            validator.validate(&token).expect("valid token").issuer,
            PARTNER
        );
    }

    #[test]
    fn issued_tokens_validate_and_respect_the_lifetime_cap() {
        let key = SigningKey::generate_ed25519("own-2026-11").expect("signing key");
        let validator = AccessTokenValidator::new(
            AUDIENCE,
            [TrustedIssuer {
                issuer: OWN.to_owned(),
                keys: KeySet::new([key.verifying_key().clone()]).expect("keys"),
                audience: None,
                accepted_types: AcceptedTokenTypes::default(),
                own: true,
            }],
            || NOW,
        )
        .expect("validator");
        let grant = AccessGrant {
            issuer: OWN.to_owned(),
            subject: "user-7".to_owned(),
            audience: AUDIENCE.to_owned(),
            scopes: vec!["users:read".to_owned()],
            client_id: Some("cli".to_owned()),
            session_id: Some("family-3".to_owned()),
            issued_at: NOW,
            lifetime: MAX_OWN_LIFETIME,
        };
        let token = issue_access_token(&key, &grant).expect("token");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some("own-2026-11"));
        assert_eq!(header.alg, Algorithm::EdDSA);
        let claims = validator.validate(&token).expect("valid token");
        assert_eq!(claims.subject, "user-7");
        assert_eq!(claims.scopes, ["users:read"]);
        assert_eq!(claims.expires_at, NOW + 900);
        assert_eq!(claims.client_id.as_deref(), Some("cli"));
        assert_eq!(claims.session_id.as_deref(), Some("family-3"));

        for lifetime in [Duration::ZERO, MAX_OWN_LIFETIME + Duration::from_secs(1)] {
            let too_long = AccessGrant {
                lifetime,
                ..grant.clone()
            };
            assert_eq!(
                issue_access_token(&key, &too_long),
                Err(JwtConfigError::LifetimeOutOfRange)
            );
        }
    }

    #[test]
    fn the_jwks_publishes_public_keys_that_verify_issued_tokens() {
        let signing = SigningKey::generate_ed25519("ed-1").expect("signing key");
        let ec = p256("ec-1");
        let jwks = jwks_json(&[signing.verifying_key().clone(), ec.verifying.clone()]);

        let ed = &jwks["keys"][0];
        assert_eq!(ed["kty"], "OKP");
        assert_eq!(ed["crv"], "Ed25519");
        assert_eq!(ed["kid"], "ed-1");
        assert_eq!(ed["alg"], "EdDSA");
        assert_eq!(ed["use"], "sig");
        let x = URL_SAFE_NO_PAD
            .decode(ed["x"].as_str().expect("x"))
            .expect("base64url x");
        assert_eq!(x.len(), 32);
        assert!(ed.get("d").is_none(), "never the private key");

        let p = &jwks["keys"][1];
        assert_eq!(p["kty"], "EC");
        assert_eq!(p["crv"], "P-256");
        assert_eq!(p["kid"], "ec-1");
        assert_eq!(p["alg"], "ES256");
        assert_eq!(p["use"], "sig");
        let mut point = vec![4_u8];
        for coordinate in ["x", "y"] {
            point.extend(
                URL_SAFE_NO_PAD
                    .decode(p[coordinate].as_str().expect("coordinate"))
                    .expect("base64url coordinate"),
            );
        }
        assert_eq!(point, ec.public);

        // The published set, read back as an external issuer's keys, verifies issued tokens.
        let keys = KeySet::from_jwks(&jwks).expect("JWKS");
        assert_eq!(keys.len(), 2);
        let validator = AccessTokenValidator::new(
            AUDIENCE,
            [TrustedIssuer {
                issuer: OWN.to_owned(),
                keys,
                audience: None,
                accepted_types: AcceptedTokenTypes::default(),
                own: true,
            }],
            || NOW,
        )
        .expect("validator");
        let grant = AccessGrant {
            issuer: OWN.to_owned(),
            subject: "user-1".to_owned(),
            audience: AUDIENCE.to_owned(),
            scopes: Vec::new(),
            client_id: None,
            session_id: None,
            issued_at: NOW,
            lifetime: Duration::from_secs(300),
        };
        let token = issue_access_token(&signing, &grant).expect("token");
        assert_eq!(
            validator.validate(&token).expect("valid").scopes,
            Vec::<String>::new()
        );
    }

    #[test]
    fn jwks_keys_are_typed_by_their_key_not_by_their_claims() {
        let ec = p256("ec-1");
        let mut jwk = serde_json::to_value(ec.verifying.jwk()).expect("JWK");
        jwk["alg"] = json!("HS256");
        let mut encryption = serde_json::to_value(ec.verifying.jwk()).expect("JWK");
        encryption["use"] = json!("enc");
        encryption["kid"] = json!("ec-enc");
        let secret = json!({ "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" });
        let keys = KeySet::from_jwks(&json!({ "keys": [jwk, encryption, secret] })).expect("JWKS");
        assert!(keys.is_empty());
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
