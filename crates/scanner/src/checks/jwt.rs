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
    "A token naming a key URL of its own (jku) is refused"
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
            if !operation.scopes.iter().all(|scope| scopes.contains(scope)) {
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

    findings.push(match published_keys(target, config).await {
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
                "typ": jwt.header["typ"],
                "jwk": {"kty": "OKP", "crv": "Ed25519", "x": public},
            });
            findings.push(
                refused(
                    target,
                    &probe,
                    &EMBEDDED_JWK,
                    vec![embedded.signed_eddsa(key)],
                )
                .await,
            );
            let mut jku = jwt.clone();
            jku.header = json!({
                "alg": "EdDSA",
                "typ": jwt.header["typ"],
                "kid": "scanner-key",
                "jku": "https://scanner-attacker.invalid/jwks.json",
            });
            findings.push(refused(target, &probe, &JKU, vec![jku.signed_eddsa(key)]).await);
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

/// Sends each token; the check passes when every one is refused with 401 or 403.
async fn refused(target: &Target, probe: &Probe, check: &Check, tokens: Vec<String>) -> Finding {
    let mut accepted = Vec::new();
    let mut statuses = Vec::new();
    for token in &tokens {
        match target
            .send(target.request(Method::GET, &probe.url).bearer_auth(token))
            .await
        {
            Ok(reply) if matches!(reply.status, 401 | 403) => statuses.push(reply.status),
            Ok(reply) => accepted.push(format!("GET {} answered {}", probe.label, reply.status)),
            Err(error) => accepted.push(format!("{error:#}")),
        }
    }
    if accepted.is_empty() {
        Finding::new(
            check,
            Status::Pass,
            format!(
                "{} variant(s) refused on GET {} ({statuses:?}); the token itself is accepted there",
                tokens.len(),
                probe.label
            ),
        )
    } else {
        Finding::new(check, Status::Fail, accepted.join("; "))
    }
}

/// Every encoding of the issuer's public keys an implementation might mistake for an HMAC
/// secret: the raw key bytes, their base64url text, the JWK and the whole JWKS as text.
async fn published_keys(target: &Target, config: &ScanConfig) -> Result<Vec<Vec<u8>>, String> {
    let jwks_url = match &config.jwks_url {
        Some(url) => url.clone(),
        None => discover_jwks(target).await?,
    };
    let reply = target
        .send(target.request(Method::GET, &jwks_url))
        .await
        .map_err(|error| format!("{error:#}"))?;
    let jwks: Value =
        serde_json::from_str(&reply.body).map_err(|_| format!("{jwks_url} is not JSON"))?;
    let mut secrets = vec![reply.body.clone().into_bytes()];
    for key in jwks["keys"].as_array().into_iter().flatten() {
        secrets.push(key.to_string().into_bytes());
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

/// The JWKS URL from RFC 8414 authorization-server metadata or OpenID Connect discovery.
async fn discover_jwks(target: &Target) -> Result<String, String> {
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        if let Ok(reply) = target
            .send(target.request(Method::GET, &target.url(path)))
            .await
            && reply.is_success()
            && let Ok(metadata) = serde_json::from_str::<Value>(&reply.body)
            && let Some(url) = metadata["jwks_uri"].as_str()
        {
            return Ok(url.to_owned());
        }
    }
    Err(
        "no JWKS URL given (--jwks-url) and no RFC 8414 or OpenID Connect metadata names one"
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
