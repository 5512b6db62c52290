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
//! `typ`; the built-in issuer's tokens must also live at most 15 minutes. Header and payload are
//! parsed strictly: a repeated member (two `alg`s, two `iss`es) makes the token malformed instead
//! of letting two parsers read it differently.
//!
//! Every refusal is one [`TokenError`] with a fixed reason code for the audit event; its text
//! never contains the token or any value taken from it.
//!
//! A refusal answers 401 with `WWW-Authenticate: Bearer error="invalid_token"` and an audit
//! event carrying the reason code (`access_control`). An external issuer's token naming an
//! unknown `kid` makes at most one rate-limited JWKS refresh, then fails closed (`oidc`). A token
//! verified once is remembered by its exact text ([`VERIFIED_TOKENS_MAX`], forgotten whenever the
//! trusted keys change), so its signature is not verified again; `exp`, `nbf` and `iat` are
//! checked on every use.
//!
//! The signing side ([`SigningKey`], [`issue_access_token`], [`jwks_json`]) is what the
//! built-in issuer needs: Ed25519 keys, `at+jwt` tokens with `kid`, and the JWKS that publishes
//! the public halves.
//!
//! Default: on for every protected request, with the limits below; no setting turns a check off.
//! A configuration can only widen two things, within bounds: the leeway (at most
//! [`MAX_LEEWAY`]) and an external issuer's accepted `typ` values ([`AcceptedTokenTypes`]), which
//! let that issuer's ID tokens through unless they carry an ID-token claim.
//!
//! The files: `keys` (trusted public keys by issuer and `kid`, the built-in issuer's signing key,
//! the JWKS), `token_types` (which `typ` is an access token), `validation` (the checks, in the
//! order they run, and the reasons a token is refused) and `issuing` (the built-in issuer's
//! tokens). The limits both sides share, and the configuration error, are here.

mod issuing;
mod keys;
#[cfg(test)]
mod test_tokens;
mod token_types;
mod validation;

use std::time::Duration;

pub use issuing::{AccessGrant, issue_access_token};
pub use keys::{ALLOWED_ALGORITHMS, KeySet, SigningKey, VerifyingKey, jwks_json};
pub use token_types::{ACCESS_TOKEN_TYPE, AcceptedTokenTypes, ID_TOKEN_CLAIMS};
pub use validation::{
    AccessClaims, AccessTokenValidator, Clock, SystemClock, TokenError, TrustedIssuer,
    VERIFIED_TOKENS_MAX,
};

/// The longest lifetime (`exp - iat`) of a token of the built-in issuer (AUTH-3).
pub const MAX_OWN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// The clock skew tolerated on `exp`, `nbf` and `iat` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The largest leeway that may be configured.
pub const MAX_LEEWAY: Duration = Duration::from_secs(5 * 60);

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
