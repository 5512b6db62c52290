//! Access tokens on the wire (AUTH-4, AUTH-5): the JWT attack matrix, and the walk over the
//! OpenAPI document proving every operation's scopes are enforced.

use std::collections::BTreeSet;

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::helpers::{TestApp, audit_events_for, published_document, spawn_app};

/// The issuer and audience of the test configuration (`server.public_origin`).
const ORIGIN: &str = "https://localhost";

/// Signs whatever header and claims a test wants, with the service's own key or another.
struct Forger {
    service_key: Ed25519KeyPair,
    service_kid: String,
    attacker_key: Ed25519KeyPair,
}

fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

impl Forger {
    fn new(app: &TestApp) -> Self {
        let pem = std::fs::read(app.data_dir.path().join("keys/signing-key.pem")).expect("key");
        let der = PrivatePkcs8KeyDer::from_pem_slice(&pem).expect("PKCS#8");
        let attacker = Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8())
            .expect("attacker key");
        Self {
            service_key: Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("Ed25519"),
            service_kid: app.auth.keys.current().active().kid().to_owned(),
            attacker_key: Ed25519KeyPair::from_pkcs8(attacker.as_ref()).expect("Ed25519"),
        }
    }

    fn header(&self) -> Value {
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": self.service_kid})
    }

    fn claims(now: u64, scope: &str) -> Value {
        json!({
            "iss": ORIGIN, "aud": ORIGIN, "sub": "00000000-0000-0000-0000-000000000001",
            "iat": now, "exp": now + 600, "jti": "test", "scope": scope,
        })
    }

    fn sign_with(key: &Ed25519KeyPair, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", encode(header), encode(claims));
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        Self::sign_with(&self.service_key, header, claims)
    }

    /// A valid token of the built-in issuer holding `scope`.
    fn token(&self, now: u64, scope: &str) -> String {
        self.sign(&self.header(), &Self::claims(now, scope))
    }

    fn attacker_jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "kid": "attacker",
            "x": URL_SAFE_NO_PAD.encode(self.attacker_key.public_key().as_ref()),
        })
    }

    fn service_public_key(&self) -> Vec<u8> {
        self.service_key.public_key().as_ref().to_vec()
    }
}

fn with(mut value: Value, changes: Value) -> Value {
    for (key, change) in changes.as_object().expect("object") {
        if change.is_null() {
            value.as_object_mut().expect("object").remove(key);
        } else {
            value[key] = change.clone();
        }
    }
    value
}

/// Every attack, with the reason code its audit event must carry.
fn attacks(forger: &Forger, now: u64) -> Vec<(&'static str, String, &'static str)> {
    let header = forger.header();
    let claims = Forger::claims(now, "profile");
    let valid = forger.sign(&header, &claims);
    let (valid_header, valid_payload, _) = {
        let mut parts = valid.split('.');
        (
            parts.next().expect("header").to_owned(),
            parts.next().expect("payload").to_owned(),
            parts.next().expect("signature").to_owned(),
        )
    };
    let hs256_header = with(header.clone(), json!({"alg": "HS256"}));
    let hs256_input = format!("{}.{}", encode(&hs256_header), encode(&claims));
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &forger.service_public_key());
    let hs256 = format!(
        "{hs256_input}.{}",
        URL_SAFE_NO_PAD.encode(hmac::sign(&hmac_key, hs256_input.as_bytes()).as_ref())
    );
    let tampered_payload = encode(&with(
        claims.clone(),
        json!({"scope": "profile users:write"}),
    ));
    let es256_header = with(header.clone(), json!({"alg": "ES256"}));
    let attacker_header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "attacker"});
    vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                encode(&with(header.clone(), json!({"alg": "none"}))),
                encode(&claims)
            ),
            "algorithm_not_allowed",
        ),
        (
            "HS256 keyed with the public key",
            hs256,
            "algorithm_not_allowed",
        ),
        (
            "signature stripped",
            format!("{valid_header}.{valid_payload}."),
            "bad_signature",
        ),
        (
            "payload tampered",
            valid.replacen(&valid_payload, &tampered_payload, 1),
            "bad_signature",
        ),
        (
            "unknown kid",
            forger.sign(
                &with(header.clone(), json!({"kid": "no-such-key"})),
                &claims,
            ),
            "unknown_key",
        ),
        (
            "a kid only another issuer publishes",
            Forger::sign_with(&forger.attacker_key, &attacker_header, &claims),
            "unknown_key",
        ),
        (
            "expired",
            forger.sign(
                &header,
                &with(claims.clone(), json!({"iat": now - 1200, "exp": now - 600})),
            ),
            "expired",
        ),
        (
            "nbf in the future",
            forger.sign(&header, &with(claims.clone(), json!({"nbf": now + 300}))),
            "not_yet_valid",
        ),
        (
            "iat in the future",
            forger.sign(
                &header,
                &with(claims.clone(), json!({"iat": now + 300, "exp": now + 800})),
            ),
            "issued_in_future",
        ),
        (
            "wrong iss",
            forger.sign(
                &header,
                &with(claims.clone(), json!({"iss": "https://evil.example"})),
            ),
            "untrusted_issuer",
        ),
        (
            "wrong aud",
            forger.sign(
                &header,
                &with(claims.clone(), json!({"aud": "https://other-api.example"})),
            ),
            "wrong_audience",
        ),
        (
            "missing exp",
            forger.sign(&header, &with(claims.clone(), json!({"exp": null}))),
            "missing_claim",
        ),
        (
            "lifetime above 15 minutes",
            forger.sign(&header, &with(claims.clone(), json!({"exp": now + 3600}))),
            "lifetime_too_long",
        ),
        (
            "typ not at+jwt",
            forger.sign(&with(header.clone(), json!({"typ": "JWT"})), &claims),
            "wrong_type",
        ),
        (
            "an ID token's nonce in an at+jwt token",
            forger.sign(&header, &with(claims.clone(), json!({"nonce": "n-0S6"}))),
            "id_token",
        ),
        (
            "jku pointing at the attacker",
            Forger::sign_with(
                &forger.attacker_key,
                &with(
                    attacker_header.clone(),
                    json!({"jku": "https://evil.example/jwks.json"}),
                ),
                &claims,
            ),
            "forbidden_header",
        ),
        (
            "x5u pointing at the attacker",
            Forger::sign_with(
                &forger.attacker_key,
                &with(
                    attacker_header.clone(),
                    json!({"x5u": "https://evil.example/cert.pem"}),
                ),
                &claims,
            ),
            "forbidden_header",
        ),
        (
            "embedded jwk of the attacker",
            Forger::sign_with(
                &forger.attacker_key,
                &with(
                    attacker_header.clone(),
                    json!({"jwk": forger.attacker_jwk()}),
                ),
                &claims,
            ),
            "forbidden_header",
        ),
        (
            "ES256 with an all-zero signature",
            format!(
                "{}.{}.{}",
                encode(&es256_header),
                encode(&claims),
                URL_SAFE_NO_PAD.encode([0u8; 64])
            ),
            "algorithm_not_allowed",
        ),
        (
            "a well-formed token from an untrusted issuer",
            Forger::sign_with(
                &forger.attacker_key,
                &attacker_header,
                &with(claims.clone(), json!({"iss": "https://untrusted.example"})),
            ),
            "untrusted_issuer",
        ),
    ]
}

#[tokio::test]
async fn every_jwt_attack_is_refused_with_401_invalid_token_and_audited() {
    let app = spawn_app().await;
    let forger = Forger::new(&app);
    let now = app.clock.now();

    let control = app
        .client
        .get(app.url("/v1/me"))
        .bearer_auth(forger.token(now, "profile"))
        .send()
        .await
        .expect("request");
    // Accepted: the subject has no account, so the profile is not found (not 401).
    assert_eq!(control.status(), 404, "the unmodified token is accepted");

    for (attack, token, reason) in attacks(&forger, now) {
        let response = app
            .client
            .get(app.url("/v1/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 401, "{attack}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"api\", error=\"invalid_token\"",
            "{attack}"
        );
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_owned();
        let events = audit_events_for(&request_id);
        let refusal = events
            .iter()
            .find(|event| event["event"] == "authn.access_token")
            .unwrap_or_else(|| panic!("{attack}: no authentication event in {events:?}"));
        assert_eq!(refusal["outcome"], "denied", "{attack}");
        assert_eq!(refusal["reason"], reason, "{attack}");
        for event in &events {
            assert!(
                !event.values().any(|value| value.contains(&token)),
                "{attack}: the token is logged"
            );
        }
    }
}

/// The path of `template` with every parameter filled.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "00000000-0000-0000-0000-000000000000".to_owned()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>) -> reqwest::Response {
    let method =
        reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn the_document_walk_proves_every_operations_scopes_are_enforced() {
    let app = spawn_app().await;
    let forger = Forger::new(&app);
    let now = app.clock.now();
    let document = published_document(&app).await;
    let mut public = BTreeSet::new();
    let mut checked = 0;
    for (template, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let path = concrete(template);
            let name = format!("{} {template}", method.to_ascii_uppercase());
            let anonymous = call(&app, method, &path, None).await;
            let Some(requirements) = operation["security"].as_array() else {
                assert_ne!(anonymous.status(), 401, "{name} is public");
                public.insert(name);
                continue;
            };
            assert_eq!(anonymous.status(), 401, "{name} without a token");
            let required: BTreeSet<&str> = requirements
                .iter()
                .flat_map(|requirement| requirement.as_object().expect("requirement").values())
                .flat_map(|scopes| scopes.as_array().expect("scopes"))
                .map(|scope| scope.as_str().expect("scope"))
                .collect();
            assert!(!required.is_empty(), "{name} declares scopes");
            let everything: Vec<&str> = document["components"]["securitySchemes"]["oauth2"]
                ["flows"]["clientCredentials"]["scopes"]
                .as_object()
                .expect("the scheme lists every scope")
                .keys()
                .map(String::as_str)
                .collect();
            for missing in &required {
                let held: Vec<&str> = everything
                    .iter()
                    .copied()
                    .filter(|scope| scope != missing)
                    .collect();
                let response = call(
                    &app,
                    method,
                    &path,
                    Some(&forger.token(now, &held.join(" "))),
                )
                .await;
                assert_eq!(response.status(), 403, "{name} without {missing}");
                let challenge = response.headers()["www-authenticate"]
                    .to_str()
                    .expect("ascii");
                assert!(challenge.contains("error=\"insufficient_scope\""), "{name}");
                assert!(challenge.contains(missing), "{name}: {challenge}");
            }
            let all = required.iter().copied().collect::<Vec<_>>().join(" ");
            let allowed = call(&app, method, &path, Some(&forger.token(now, &all))).await;
            assert!(
                ![401, 403].contains(&allowed.status().as_u16()),
                "{name} with exactly its scopes: {}",
                allowed.status()
            );
            checked += 1;
        }
    }
    let expected: BTreeSet<String> = app::api::PUBLIC_OPERATIONS
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    assert_eq!(public, expected, "only the listed operations are public");
    assert!(
        checked >= 10,
        "the walk covered the protected operations ({checked})"
    );
}

/// The client address the audit event of an unauthenticated request carrying `headers` records.
async fn audited_client_ip(app: &TestApp, headers: &[(&str, &str)]) -> String {
    let mut request = app.client.get(app.url("/v1/me"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    assert_eq!(response.status(), 401);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    audit_events_for(&request_id)
        .into_iter()
        .find(|event| event["event"] == "authn.missing")
        .and_then(|event| event.get("client_ip").cloned())
        .expect("an audit event with the client address")
}

#[tokio::test]
async fn a_forged_forwarded_for_is_ignored_and_a_trusted_proxys_is_honoured() {
    let direct = spawn_app().await;
    let forged = [("x-forwarded-for", "203.0.113.9")];
    assert_eq!(audited_client_ip(&direct, &forged).await, "127.0.0.1");
    let proxied =
        crate::helpers::spawn_app_with("[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n").await;
    assert_eq!(
        audited_client_ip(&proxied, &[("x-forwarded-for", "1.1.1.1, 203.0.113.9")]).await,
        "203.0.113.9",
        "the right-most address the trusted proxy appended"
    );
}

#[tokio::test]
async fn the_audited_client_ip_comes_only_from_the_header_the_proxy_is_declared_to_write() {
    let both = [
        ("x-forwarded-for", "203.0.113.9"),
        ("forwarded", "for=198.51.100.66"),
    ];
    for (declared, client, without_it) in [
        (
            "x-forwarded-for",
            "203.0.113.9",
            [("forwarded", "for=198.51.100.66")],
        ),
        (
            "forwarded",
            "198.51.100.66",
            [("x-forwarded-for", "203.0.113.9")],
        ),
    ] {
        let proxied = crate::helpers::spawn_app_with(&format!(
            "[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\nforwarded_header = \"{declared}\"\n"
        ))
        .await;
        assert_eq!(
            audited_client_ip(&proxied, &both).await,
            client,
            "{declared}"
        );
        assert_eq!(
            audited_client_ip(&proxied, &without_it).await,
            "127.0.0.1",
            "{declared}: without it the request is the proxy's own"
        );
    }
}
