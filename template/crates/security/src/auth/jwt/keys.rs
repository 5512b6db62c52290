//! The keys: [`VerifyingKey`] (a trusted public key with the one algorithm it verifies, from an
//! allowlist: EdDSA, ES256, RS256 of at least 2048 bits; never `none`, never HMAC), [`KeySet`] (one
//! issuer's keys by `kid`, or those of its JWKS this validator can use), the built-in issuer's
//! Ed25519 [`SigningKey`], and [`jwks_json`], the JWKS that publishes the public halves.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::Value;

use super::JwtConfigError;

/// The signature algorithms a key may carry.
pub const ALLOWED_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// RSA keys shorter than this are refused.
const MIN_RSA_BITS: usize = 2048;

/// A public key trusted to verify tokens, with the one algorithm it verifies.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    kid: String,
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
    jwk: Jwk,
    /// A retired signing key: tokens it claims to have issued after this time (`iat`, seconds
    /// since the Unix epoch) are refused.
    pub(super) signed_until: Option<u64>,
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

/// The built-in issuer's Ed25519 signing key.
#[derive(Debug)]
pub struct SigningKey {
    pub(super) key: EncodingKey,
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
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::auth::jwt::test_tokens::{AUDIENCE, NOW, OWN, PARTNER, b64, claims, ed25519, p256};
    use crate::auth::jwt::{
        AcceptedTokenTypes, AccessGrant, AccessTokenValidator, TrustedIssuer, issue_access_token,
    };

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
}
