//! AUTH-5: the supplied valid token, mutated, must be refused (401 or 403) where the token
//! itself is accepted: `alg: none`, HS256 keyed with the issuer's published key (key
//! confusion), signature stripped or altered, claims altered, a key embedded in the header
//! (`jwk`) or fetched from a URL the token names (`jku`). With a signing key the API trusts
//! (`--signing-key`), correctly signed tokens that are expired, not yet valid, or meant for
//! another audience or issuer are tried too; without it only the issuer could sign them.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use crate::openapi::{Document, Operation, request_path};
use crate::target::Target;
use crate::tokens::{Credentials, Jwt, now};
use crate::{Check, Finding, ScanConfig, Status};

macro_rules! check {
    ($name:ident, $id:literal, $title:literal) => {
        pub const $name: Check = Check {
            id: $id,
            control: "AUTH-5",
            title: $title,
        };
    };
}
check!(ALG_NONE, "jwt.alg-none", "A token with alg none is refused");
check!(
    KEY_CONFUSION,
    "jwt.hmac-key-confusion",
    "A token signed HS256 with the published public key is refused"
);
check!(
    SIGNATURE_STRIPPED,
    "jwt.signature-stripped",
    "A token without its signature is refused"
);
check!(
    SIGNATURE_TAMPERED,
    "jwt.signature-tampered",
    "A token with an altered signature is refused"
);
check!(
    CLAIMS_TAMPERED,
    "jwt.claims-tampered",
    "A token whose claims were altered after signing is refused"
);
check!(
    EMBEDDED_JWK,
    "jwt.embedded-jwk",
    "A token signed by a key embedded in its own jwk header is refused"
);
check!(
    JKU,
    "jwt.jku-header",
    "A token naming a key URL of its own (jku) is refused, and the URL is never fetched"
);
check!(
    EXPIRED,
    "jwt.expired",
    "A correctly signed but expired token is refused"
);
check!(
    NOT_YET_VALID,
    "jwt.not-yet-valid",
    "A correctly signed token whose nbf is in the future is refused"
);
check!(
    WRONG_AUDIENCE,
    "jwt.wrong-audience",
    "A correctly signed token for another audience is refused"
);
check!(
    WRONG_ISSUER,
    "jwt.wrong-issuer",
    "A correctly signed token from another issuer is refused"
);

const ALL: [Check; 11] = [
    ALG_NONE,
    KEY_CONFUSION,
    SIGNATURE_STRIPPED,
    SIGNATURE_TAMPERED,
    CLAIMS_TAMPERED,
    EMBEDDED_JWK,
    JKU,
    EXPIRED,
    NOT_YET_VALID,
    WRONG_AUDIENCE,
    WRONG_ISSUER,
];

/// Where the mutations are sent: a protected GET the token is accepted on.
struct Probe {
    url: String,
    label: String,
    jwt: Jwt,
    token: String,
}

async fn find_probe(
    target: &Target,
    document: &Document,
    credentials: &Credentials,
) -> Result<Probe, String> {
    let candidates: Vec<&Operation> = document
        .operations
        .iter()
        .filter(|operation| {
            operation.method == Method::GET && !operation.public && !operation.has_path_parameters()
        })
        .collect();
    for (token, scopes) in credentials.bearer_tokens() {
        let Some(jwt) = Jwt::parse(token) else {
            continue;
        };
        for operation in &candidates {
            // A token whose scopes are unknown is simply tried.
            if let Some(scopes) = scopes
                && !operation.scopes.iter().all(|scope| scopes.contains(scope))
            {
                continue;
            }
            let url = target.url(&request_path(document, operation));
            if let Ok(reply) = target
                .send(target.request(Method::GET, &url).bearer_auth(token))
                .await
                && reply.is_success()
            {
                return Ok(Probe {
                    url,
                    label: operation.label(),
                    jwt,
                    token: token.to_owned(),
                });
            }
        }
    }
    Err(if credentials.bearer_tokens().next().is_none() {
        "no token given (--token)".to_owned()
    } else {
        "no protected GET without parameters accepted a given token".to_owned()
    })
}

pub async fn run(
    target: &Target,
    document: Option<&Document>,
    credentials: &Credentials,
    config: &ScanConfig,
) -> Vec<Finding> {
    let probe = match document {
        None => Err("no OpenAPI document".to_owned()),
        Some(document) => find_probe(target, document, credentials).await,
    };
    let probe = match probe {
        Ok(probe) => probe,
        Err(reason) => {
            return ALL
                .iter()
                .map(|check| Finding::new(check, Status::NotApplicable, reason.clone()))
                .collect();
        }
    };
    let jwt = &probe.jwt;
    let own_key = Ed25519KeyPair::generate().ok();
    let mut findings = Vec::new();

    let mut none = jwt.clone();
    none.header["alg"] = "none".into();
    findings.push(refused(target, &probe, &ALG_NONE, vec![none.with_signature(&[])]).await);

    let issuer = jwt.claims["iss"].as_str();
    findings.push(match published_keys(target, config, issuer).await {
        Ok(keys) if !keys.is_empty() => {
            let mut tokens = Vec::new();
            for secret in keys {
                tokens.push(jwt.signed_hs256(&secret));
            }
            refused(target, &probe, &KEY_CONFUSION, tokens).await
        }
        Ok(_) => Finding::new(
            &KEY_CONFUSION,
            Status::NotApplicable,
            "the JWKS holds no key",
        ),
        Err(reason) => Finding::new(&KEY_CONFUSION, Status::NotApplicable, reason),
    });

    let (input, _) = probe.token.rsplit_once('.').unwrap_or((&probe.token, ""));
    findings.push(
        refused(
            target,
            &probe,
            &SIGNATURE_STRIPPED,
            vec![format!("{input}."), input.to_owned()],
        )
        .await,
    );

    let mut flipped = jwt.signature.clone();
    if let Some(first) = flipped.first_mut() {
        *first ^= 0x01;
    }
    findings.push(
        refused(
            target,
            &probe,
            &SIGNATURE_TAMPERED,
            vec![jwt.with_signature(&flipped)],
        )
        .await,
    );

    let mut altered = jwt.clone();
    altered.claims["sub"] = json!("scanner-someone-else");
    altered.claims["exp"] = json!(now() + 86_400 * 365);
    findings.push(
        refused(
            target,
            &probe,
            &CLAIMS_TAMPERED,
            vec![altered.with_signature(&jwt.signature)],
        )
        .await,
    );

    match &own_key {
        Some(key) => {
            let public = URL_SAFE_NO_PAD.encode(key.public_key().as_ref());
            let mut embedded = jwt.clone();
            embedded.header = json!({
                "alg": "EdDSA",
                "jwk": {"kty": "OKP", "crv": "Ed25519", "x": public},
            });
            copy_typ(&jwt.header, &mut embedded.header);
            findings.push(
                refused(
                    target,
                    &probe,
                    &EMBEDDED_JWK,
                    vec![embedded.signed_eddsa(key)],
                )
                .await,
            );
            findings.push(jku_check(target, &probe, key, &public).await);
        }
        None => {
            findings.push(Finding::new(
                &EMBEDDED_JWK,
                Status::NotApplicable,
                "cannot generate a key",
            ));
            findings.push(Finding::new(
                &JKU,
                Status::NotApplicable,
                "cannot generate a key",
            ));
        }
    }

    findings.extend(signed_claim_checks(target, &probe, config).await);
    findings
}

/// A token naming, in `jku`, a key set the scanner serves itself (on loopback, beside an API on
/// the same host) and signed by that set's key. It fails when the token is accepted, and when
/// the API fetched the URL at all: following a URL a token names is itself the flaw (and a way
/// to make the server send requests). Only applicable when the API runs on this host, since a
/// remote API could not reach the key set, and a refusal would prove nothing.
async fn jku_check(target: &Target, probe: &Probe, key: &Ed25519KeyPair, public: &str) -> Finding {
    if !is_loopback(target.host()) {
        return Finding::new(
            &JKU,
            Status::NotApplicable,
            "the key set the token names is served on this host, which a remote API cannot \
             reach: run the scanner beside the API (in its network namespace)",
        );
    }
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(listener) => listener,
        Err(error) => return Finding::new(&JKU, Status::NotApplicable, error.to_string()),
    };
    let port = listener.local_addr().map_or(0, |address| address.port());
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": public, "kid": "scanner-key", "alg": "EdDSA"}]}).to_string();
    let fetched = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&fetched);
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut request = [0_u8; 4096];
            let _ = stream.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    let mut token = probe.jwt.clone();
    token.header = json!({
        "alg": "EdDSA",
        "kid": "scanner-key",
        "jku": format!("http://127.0.0.1:{port}/jwks.json"),
    });
    copy_typ(&probe.jwt.header, &mut token.header);
    let mut finding = refused(target, probe, &JKU, vec![token.signed_eddsa(key)]).await;
    // A fetch made after the answer counts too.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    server.abort();
    let fetches = fetched.load(std::sync::atomic::Ordering::SeqCst);
    if fetches > 0 {
        finding.status = Status::Fail;
        finding.detail = format!(
            "the API fetched the key URL the token named ({fetches} request(s)); {}",
            finding.detail
        );
    } else if finding.status == Status::Pass {
        finding.detail = format!("{}; the key URL was never fetched", finding.detail);
    }
    finding
}

/// The original token's `typ`, when it has one: a missing `typ` must not become `null`, or a
/// refusal could be for the `typ` rather than for what the check changed.
fn copy_typ(from: &Value, to: &mut Value) {
    if let Some(typ) = from.get("typ") {
        to["typ"] = typ.clone();
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Sends each token; the check passes when every one is refused with 401 or 403. A 429 says
/// nothing about the token: such a variant is not counted.
async fn refused(target: &Target, probe: &Probe, check: &Check, tokens: Vec<String>) -> Finding {
    let (mut accepted, mut statuses, mut limited) = (Vec::new(), Vec::new(), 0);
    for token in &tokens {
        match target
            .send(target.request(Method::GET, &probe.url).bearer_auth(token))
            .await
        {
            Ok(reply) if matches!(reply.status, 401 | 403) => statuses.push(reply.status),
            Ok(reply) if reply.status == 429 => limited += 1,
            Ok(reply) => accepted.push(format!("{} answered {}", probe.label, reply.status)),
            Err(error) => accepted.push(format!("{error:#}")),
        }
    }
    if !accepted.is_empty() {
        Finding::new(check, Status::Fail, accepted.join("; "))
    } else if statuses.is_empty() {
        Finding::new(
            check,
            Status::NotApplicable,
            format!(
                "all {limited} variant(s) were answered 429 on {}",
                probe.label
            ),
        )
    } else {
        Finding::new(
            check,
            Status::Pass,
            format!(
                "{} variant(s) refused on {} ({statuses:?}), where the token itself is accepted",
                statuses.len(),
                probe.label
            ),
        )
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Encodings of the issuer's public keys an implementation might mistake for an HMAC secret:
/// the raw key bytes and their base64url text, an Ed25519 key's SubjectPublicKeyInfo as DER and
/// PEM, the JWK and the whole JWKS as text. (RSA keys' PEM is not built here.)
async fn published_keys(
    target: &Target,
    config: &ScanConfig,
    issuer: Option<&str>,
) -> Result<Vec<Vec<u8>>, String> {
    let jwks_url = match &config.jwks_url {
        Some(url) => url.clone(),
        None => discover_jwks(target, issuer).await?,
    };
    let reply = target
        .send(target.request(Method::GET, &jwks_url))
        .await
        .map_err(|error| format!("{error:#}"))?;
    if !reply.is_success() {
        return Err(format!("{jwks_url} answered {}", reply.status));
    }
    let jwks: Value =
        serde_json::from_str(&reply.body).map_err(|_| format!("{jwks_url} is not JSON"))?;
    if jwks["keys"].as_array().is_none_or(Vec::is_empty) {
        return Ok(Vec::new());
    }
    let mut secrets = vec![reply.body.clone().into_bytes()];
    for key in jwks["keys"].as_array().into_iter().flatten() {
        secrets.push(key.to_string().into_bytes());
        // The classic confusion: the public key's SubjectPublicKeyInfo, as DER and as PEM.
        if key["crv"] == "Ed25519"
            && let Some(raw) = key["x"]
                .as_str()
                .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
        {
            let mut der = ED25519_SPKI_PREFIX.to_vec();
            der.extend_from_slice(&raw);
            let pem = format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(&der)
            );
            secrets.push(pem.trim_end().as_bytes().to_vec());
            secrets.push(pem.into_bytes());
            secrets.push(der);
        }
        for member in ["x", "n"] {
            if let Some(text) = key[member].as_str() {
                secrets.push(text.as_bytes().to_vec());
                if let Ok(raw) = URL_SAFE_NO_PAD.decode(text) {
                    secrets.push(raw);
                }
            }
        }
    }
    Ok(secrets)
}

/// The JWKS URL from the token issuer's metadata (OpenID Connect discovery, RFC 8414 at the
/// issuer's origin), else from metadata under the API's own base URL.
async fn discover_jwks(target: &Target, issuer: Option<&str>) -> Result<String, String> {
    let mut candidates = Vec::new();
    if let Some(issuer) = issuer.and_then(|issuer| url::Url::parse(issuer).ok()) {
        let issuer_text = issuer.as_str().trim_end_matches('/').to_owned();
        candidates.push(format!("{issuer_text}/.well-known/openid-configuration"));
        let path = issuer.path().trim_end_matches('/');
        candidates.push(format!(
            "{}/.well-known/oauth-authorization-server{path}",
            issuer.origin().ascii_serialization()
        ));
    }
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        candidates.push(target.url(path));
    }
    for url in candidates {
        if let Ok(reply) = target.send(target.request(Method::GET, &url)).await
            && reply.is_success()
            && let Ok(metadata) = serde_json::from_str::<Value>(&reply.body)
            && let Some(url) = metadata["jwks_uri"].as_str()
        {
            return Ok(url.to_owned());
        }
    }
    Err(
        "no JWKS URL given (--jwks-url) and no OpenID Connect or RFC 8414 metadata of the \
         token's issuer or of the API names one"
            .to_owned(),
    )
}

/// Tokens signed by a key the API trusts with one claim changed. A fresh copy signed the same
/// way must be accepted first, or the key is not trusted and the checks cannot run.
async fn signed_claim_checks(target: &Target, probe: &Probe, config: &ScanConfig) -> Vec<Finding> {
    let signed = [EXPIRED, NOT_YET_VALID, WRONG_AUDIENCE, WRONG_ISSUER];
    let not_applicable = |reason: String| {
        signed
            .iter()
            .map(|check| Finding::new(check, Status::NotApplicable, reason.clone()))
            .collect::<Vec<_>>()
    };
    let Some(path) = &config.signing_key else {
        return not_applicable(
            "only a key the API trusts can sign such a token (--signing-key); the altered-claims and signature checks show unsigned changes are refused".to_owned(),
        );
    };
    let key = match PrivatePkcs8KeyDer::from_pem_file(path)
        .map_err(|error| error.to_string())
        .and_then(|der| {
            Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|error| error.to_string())
        }) {
        Ok(key) => key,
        Err(error) => {
            return not_applicable(format!(
                "{}: not a PKCS#8 Ed25519 key: {error}",
                path.display()
            ));
        }
    };
    let now = now();
    let mut fresh = probe.jwt.clone();
    fresh.claims["iat"] = json!(now - 5);
    fresh.claims["exp"] = json!(now + 300);
    if fresh.claims.get("nbf").is_some() {
        fresh.claims["nbf"] = json!(now - 5);
    }
    let baseline = target
        .send(
            target
                .request(Method::GET, &probe.url)
                .bearer_auth(fresh.signed_eddsa(&key)),
        )
        .await;
    if !baseline.as_ref().is_ok_and(|reply| reply.is_success()) {
        return not_applicable(format!(
            "a token signed with {} is not accepted unchanged ({}), so the key is not trusted",
            path.display(),
            baseline.map_or_else(
                |error| format!("{error:#}"),
                |reply| reply.status.to_string()
            )
        ));
    }
    let mut findings = Vec::new();
    for (check, claim, value) in [
        (EXPIRED, "exp", json!(now - 600)),
        (NOT_YET_VALID, "nbf", json!(now + 3_600)),
        (
            WRONG_AUDIENCE,
            "aud",
            json!("https://scanner-other-audience.invalid"),
        ),
        (
            WRONG_ISSUER,
            "iss",
            json!("https://scanner-other-issuer.invalid"),
        ),
    ] {
        let mut mutated = fresh.clone();
        mutated.claims[claim] = value;
        if claim == "exp" {
            mutated.claims["iat"] = json!(now - 1_200);
        }
        findings.push(refused(target, probe, &check, vec![mutated.signed_eddsa(&key)]).await);
    }
    findings
}
