//! The built-in issuer's side: [`issue_access_token`] signs an [`AccessGrant`] as an RFC 9068
//! access token (`typ: at+jwt`, the key's `kid` and algorithm, a fresh `jti`), living more than
//! zero and at most [`MAX_OWN_LIFETIME`] (AUTH-3).

use std::time::Duration;

use jsonwebtoken::Header;
use serde::Serialize;

use super::keys::SigningKey;
use super::token_types::ACCESS_TOKEN_TYPE;
use super::{JwtConfigError, MAX_OWN_LIFETIME};

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
    let mut header = Header::new(key.verifying_key().algorithm());
    header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
    header.kid = Some(key.kid().to_owned());
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;

    use super::*;
    use crate::auth::jwt::test_tokens::{AUDIENCE, NOW, OWN};
    use crate::auth::jwt::{AcceptedTokenTypes, AccessTokenValidator, KeySet, TrustedIssuer};

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
}
