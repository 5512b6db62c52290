//! The credentials the scan was given, the scopes each holds, and JWTs taken apart and put back
//! together (compact serialization, RFC 7515), signed where a mutation needs a signature.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::RequestBuilder;
use serde_json::Value;

use crate::ScanConfig;
use crate::openapi::Operation;

/// A credential the scan can present.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A bearer token and the scopes its claims grant; `None` when they cannot be read (an
    /// opaque token, or claims naming scopes some other way): such a token is never used to
    /// show that a missing scope is refused.
    Bearer {
        token: String,
        scopes: Option<Vec<String>>,
    },
    /// An API key, whose scopes the scan cannot see.
    ApiKey { header: String, key: String },
}

impl Credential {
    pub fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Credential::Bearer { token, .. } => request.bearer_auth(token),
            Credential::ApiKey { header, key } => request.header(header.as_str(), key.as_str()),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Credential::Bearer {
                scopes: Some(scopes),
                ..
            } => format!("a token with scopes [{}]", scopes.join(" ")),
            Credential::Bearer { scopes: None, .. } => {
                "a token whose scopes are unknown".to_owned()
            }
            Credential::ApiKey { header, .. } => format!("the API key in {header}"),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub all: Vec<Credential>,
}

impl Credentials {
    pub fn new(config: &ScanConfig) -> Self {
        let mut all: Vec<Credential> = config
            .tokens
            .iter()
            .map(|token| Credential::Bearer {
                scopes: Jwt::parse(token)
                    .map(|jwt| jwt.scopes())
                    .unwrap_or_default(),
                token: token.clone(),
            })
            .collect();
        if let Some(key) = &config.api_key {
            all.push(Credential::ApiKey {
                header: config.api_key_header.clone(),
                key: key.clone(),
            });
        }
        Self { all }
    }

    /// A token holding every scope the operation names (the widest first), else a credential
    /// whose scopes are unknown (a token, then the API key).
    pub fn for_operation(&self, operation: &Operation) -> Option<&Credential> {
        let holds_all = |scopes: &Vec<String>| operation.scopes.iter().all(|s| scopes.contains(s));
        self.all
            .iter()
            .filter(|credential| {
                matches!(credential, Credential::Bearer { scopes: Some(scopes), .. } if holds_all(scopes))
            })
            .max_by_key(|credential| match credential {
                Credential::Bearer {
                    scopes: Some(scopes),
                    ..
                } => scopes.len(),
                _ => 0,
            })
            .or_else(|| {
                self.all
                    .iter()
                    .find(|credential| matches!(credential, Credential::Bearer { scopes: None, .. }))
            })
            .or_else(|| {
                self.all
                    .iter()
                    .find(|credential| matches!(credential, Credential::ApiKey { .. }))
            })
    }

    /// A token known to lack at least one scope the operation names, and the scopes it lacks.
    pub fn lacking_scopes(&self, operation: &Operation) -> Option<(&str, Vec<String>)> {
        self.all.iter().find_map(|credential| match credential {
            Credential::Bearer {
                token,
                scopes: Some(scopes),
            } => {
                let missing: Vec<String> = operation
                    .scopes
                    .iter()
                    .filter(|scope| !scopes.contains(scope))
                    .cloned()
                    .collect();
                (!missing.is_empty()).then_some((token.as_str(), missing))
            }
            _ => None,
        })
    }

    /// Every bearer token and the scopes it holds, when they can be read.
    pub fn bearer_tokens(&self) -> impl Iterator<Item = (&str, Option<&[String]>)> {
        self.all.iter().filter_map(|credential| match credential {
            Credential::Bearer { token, scopes } => Some((token.as_str(), scopes.as_deref())),
            Credential::ApiKey { .. } => None,
        })
    }
}

/// A JWT in compact serialization, decoded but not verified.
#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: Value,
    pub claims: Value,
    pub signature: Vec<u8>,
}

impl Jwt {
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            header: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?,
            claims: serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?,
            signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
        })
    }

    /// The scopes of an OAuth access token: `scope` (RFC 9068, space-separated) or `scp` (a list,
    /// or space-separated as some issuers write it); `None` when neither is there.
    pub fn scopes(&self) -> Option<Vec<String>> {
        let words = |text: &str| text.split_whitespace().map(str::to_owned).collect();
        match (&self.claims["scope"], &self.claims["scp"]) {
            (Value::String(scope), _) => Some(words(scope)),
            (_, Value::String(scp)) => Some(words(scp)),
            (_, Value::Array(scopes)) => Some(
                scopes
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// `header.claims`, the input of the signature.
    pub fn signing_input(&self) -> String {
        format!(
            "{}.{}",
            encode_json(&self.header),
            encode_json(&self.claims)
        )
    }

    /// The token with its own signature bytes, which may no longer match.
    pub fn with_signature(&self, signature: &[u8]) -> String {
        format!(
            "{}.{}",
            self.signing_input(),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// The token signed with HMAC-SHA256 under `secret` (`alg` set to HS256).
    pub fn signed_hs256(&self, secret: &[u8]) -> String {
        let mut jwt = self.clone();
        jwt.header["alg"] = "HS256".into();
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        let tag = aws_lc_rs::hmac::sign(&key, jwt.signing_input().as_bytes());
        jwt.with_signature(tag.as_ref())
    }

    /// The token signed with an Ed25519 key (`alg` set to EdDSA).
    pub fn signed_eddsa(&self, key: &aws_lc_rs::signature::Ed25519KeyPair) -> String {
        let mut jwt = self.clone();
        jwt.header["alg"] = "EdDSA".into();
        let signature = key.sign(jwt.signing_input().as_bytes());
        jwt.with_signature(signature.as_ref())
    }
}

pub fn encode_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_token_round_trips_and_names_its_scopes() {
        let jwt = Jwt {
            header: json!({"alg": "EdDSA", "kid": "k"}),
            claims: json!({"sub": "u", "scope": "a b"}),
            signature: vec![1, 2, 3],
        };
        let token = jwt.with_signature(&jwt.signature);
        let parsed = Jwt::parse(&token).expect("parses");
        assert_eq!(parsed.claims, jwt.claims);
        assert_eq!(parsed.signature, [1, 2, 3]);
        assert_eq!(parsed.scopes(), Some(vec!["a".to_owned(), "b".to_owned()]));
        let scp = Jwt {
            claims: json!({"scp": ["x"]}),
            ..jwt
        };
        assert_eq!(scp.scopes(), Some(vec!["x".to_owned()]));
        let unknown = Jwt {
            claims: json!({"permissions": ["x"]}),
            ..scp
        };
        assert_eq!(
            unknown.scopes(),
            None,
            "unreadable scopes are unknown, not empty"
        );
        assert!(Jwt::parse("a.b").is_none());
    }

    #[test]
    fn hs256_matches_rfc_7515_appendix_a_1() {
        // RFC 7515 A.1: the example HMAC key and signing input give this signature.
        let key = URL_SAFE_NO_PAD
            .decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
            .expect("key");
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key),
            input.as_bytes(),
        );
        assert_eq!(
            URL_SAFE_NO_PAD.encode(tag.as_ref()),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }
}
