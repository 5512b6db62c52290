//! Test keys and tokens for the JWT tests: an Ed25519 built-in issuer and a P-256 external one
//! trusted by one validator at a fixed time, and tokens signed over exactly the bytes a test
//! chooses (an attack's header and claims included).

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};

use super::{AcceptedTokenTypes, AccessTokenValidator, KeySet, TrustedIssuer, VerifyingKey};

pub(super) const NOW: u64 = 1_800_000_000;
pub(super) const OWN: &str = "https://api.example.com";
pub(super) const PARTNER: &str = "https://login.partner.example";
pub(super) const AUDIENCE: &str = "https://api.example.com/v1";

/// A private key the tests can sign anything with, and its public half.
pub(super) struct TestKey {
    pub(super) kid: String,
    pub(super) algorithm: Algorithm,
    pub(super) encoding: EncodingKey,
    pub(super) verifying: VerifyingKey,
    pub(super) public: Vec<u8>,
}

pub(super) fn ed25519(kid: &str) -> TestKey {
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

pub(super) fn p256(kid: &str) -> TestKey {
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

pub(super) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `header.payload.signature`, signed over exactly these bytes with `algorithm`.
pub(super) fn sign_raw(
    header: &Value,
    claims: &Value,
    key: &EncodingKey,
    algorithm: Algorithm,
) -> String {
    let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), key, algorithm).expect("signature");
    format!("{message}.{signature}")
}

pub(super) fn header(key: &TestKey) -> Value {
    json!({ "alg": format!("{:?}", key.algorithm), "typ": "at+jwt", "kid": key.kid })
}

pub(super) fn claims(issuer: &str) -> Value {
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

pub(super) fn sign(key: &TestKey, header: &Value, claims: &Value) -> String {
    sign_raw(header, claims, &key.encoding, key.algorithm)
}

pub(super) struct World {
    pub(super) own: TestKey,
    pub(super) partner: TestKey,
    pub(super) validator: AccessTokenValidator,
}

pub(super) fn world() -> World {
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
    pub(super) fn own_token(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut header, mut claims) = (header(&self.own), claims(OWN));
        edit(&mut header, &mut claims);
        sign(&self.own, &header, &claims)
    }

    pub(super) fn refused(&self, token: &str) -> &'static str {
        let error = self
            .validator
            .validate(token)
            .expect_err("the token must be refused");
        assert!(token.is_empty() || !error.to_string().contains(token));
        error.reason_code()
    }
}
