//! Tokens of an external OpenID Connect issuer (AUTH-1, AUTH-5), against a mock provider the
//! test serves over HTTPS: discovery, JWKS, a key rotation at the provider, the provider going
//! down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, Request, Response, Route};
use security::transport::server::{BoundListener, ListenerLimits};
use security::transport::{dev_ca, tls};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

/// The API's audience in the test configuration.
const AUDIENCE: &str = "https://localhost";

struct ProviderKey {
    kid: String,
    pair: Ed25519KeyPair,
}

impl ProviderKey {
    fn new(kid: &str) -> Self {
        let pkcs8 = Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8())
            .expect("key");
        Self {
            kid: kid.to_owned(),
            pair: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key"),
        }
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.pair.public_key().as_ref()),
        })
    }
}

/// A provider on a local HTTPS listener with its own development CA.
struct MockProvider {
    issuer: String,
    ca_cert: std::path::PathBuf,
    published: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    jwks_requests: Arc<AtomicU64>,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl MockProvider {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let certificates = dev_ca::ensure(dir.path(), &[]).expect("provider certificate");
        let certificate = tls::ReloadingCertificate::load(certificates.server).expect("load");
        let config = tls::server_config(certificate).expect("TLS config");
        let listener = BoundListener::bind("127.0.0.1:0".parse().expect("address"), Some(config))
            .await
            .expect("bind");
        let issuer = format!("https://localhost:{}", listener.local_addr().port());
        let published = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let jwks_requests = Arc::new(AtomicU64::new(0));
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "token_endpoint": format!("{issuer}/token"),
        })
        .to_string();
        let jwks = {
            let (published, requests) = (Arc::clone(&published), Arc::clone(&jwks_requests));
            poem::endpoint::make_sync(move |_| {
                requests.fetch_add(1, Ordering::SeqCst);
                let keys = published.lock().expect("keys").clone();
                Response::builder()
                    .content_type("application/json")
                    .body(json!({ "keys": keys }).to_string())
            })
        };
        let gate = Arc::clone(&down);
        let app = Route::new()
            .at(
                "/.well-known/openid-configuration",
                poem::endpoint::make_sync(move |_| {
                    Response::builder()
                        .content_type("application/json")
                        .body(discovery.clone())
                }),
            )
            .at("/jwks", jwks)
            .around(move |next, request: Request| {
                let down = gate.load(Ordering::SeqCst);
                async move {
                    if down {
                        return Ok(Response::builder()
                            .status(StatusCode::SERVICE_UNAVAILABLE)
                            .finish());
                    }
                    next.call(request).await
                }
            })
            .boxed();
        let server = tokio::spawn(listener.serve(
            app,
            ListenerLimits::default(),
            std::future::pending(),
            std::time::Duration::from_secs(1),
        ));
        Self {
            issuer,
            ca_cert: certificates.ca_cert,
            published,
            down,
            jwks_requests,
            _dir: dir,
            _server: server,
        }
    }

    fn publish(&self, keys: &[&ProviderKey]) {
        *self.published.lock().expect("keys") = keys.iter().map(|key| key.jwk()).collect();
    }

    fn token(&self, key: &ProviderKey, now: u64, scope: &str) -> String {
        self.token_of(&self.issuer, key, now, scope)
    }

    fn token_of(&self, issuer: &str, key: &ProviderKey, now: u64, scope: &str) -> String {
        self.token_for(issuer, AUDIENCE, key, now, scope)
    }

    fn token_for(
        &self,
        issuer: &str,
        audience: &str,
        key: &ProviderKey,
        now: u64,
        scope: &str,
    ) -> String {
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid});
        let claims = json!({
            "iss": issuer, "aud": audience, "sub": "partner-service",
            "iat": now, "exp": now + 7200, "scope": scope,
        });
        Self::sign(key, &header, &claims)
    }

    /// A token for this API with `users:read`, its header's `typ` replaced (`None`: removed)
    /// and `extra_claims` added: an ID token, or an access token of another type.
    fn token_typed(
        &self,
        key: &ProviderKey,
        now: u64,
        typ: Option<&str>,
        extra_claims: Value,
    ) -> String {
        let mut header = json!({"alg": "EdDSA", "kid": key.kid});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        let mut claims = json!({
            "iss": self.issuer, "aud": AUDIENCE, "sub": "partner-user",
            "iat": now, "exp": now + 3600, "scope": "users:read",
        });
        for (name, value) in extra_claims.as_object().expect("claims") {
            claims[name] = value.clone();
        }
        Self::sign(key, &header, &claims)
    }

    fn sign(key: &ProviderKey, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = key.pair.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

async fn list_users(app: &TestApp, token: &str) -> u16 {
    app.client
        .get(app.url("/v1/users"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_external_issuers_tokens_are_accepted_through_rotation_and_outage_until_the_ttl() {
    let provider = MockProvider::start().await;
    let first = ProviderKey::new("first");
    provider.publish(&[&first]);
    let app = spawn_app_with(&format!(
        "[auth]\nexternal_issuers = [{{ issuer = \"{}\", jwks_ttl_seconds = 600, ca_cert = \"{}\", \
         allowed_scopes = [\"users:read\", \"api_keys:write\"] }}]\n",
        provider.issuer,
        provider.ca_cert.display()
    ))
    .await;
    let now = app.clock.now();

    // Discovery and JWKS fetched on first use.
    assert_eq!(
        list_users(&app, &provider.token(&first, now, "users:read")).await,
        200
    );
    assert_eq!(provider.jwks_requests.load(Ordering::SeqCst), 1);

    // Scopes beyond the issuer's allowance are not granted.
    let create = app
        .client
        .post(app.url("/v1/users"))
        .bearer_auth(provider.token(&first, now, "users:read users:write"))
        .json(&json!({"email": "x@example.com", "name": "X", "role": "user", "password": "plover-quartz-lantern-9"}))
        .send()
        .await
        .expect("request");
    assert_eq!(create.status(), 403);

    // Its subjects are not local accounts: nothing can be owned by one (403, never a 500).
    let key = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(provider.token(&first, now, "api_keys:write"))
        .json(&json!({"name": "t", "scopes": ["api_keys:write"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(key.status(), 403);
    let refusal = key.text().await.expect("body");
    assert!(refusal.contains("cannot own API keys"), "{refusal}");

    // The provider rotates its key. An unknown kid right after the last fetch fails closed
    // without fetching (rate limit)...
    let second = ProviderKey::new("second");
    provider.publish(&[&second]);
    assert_eq!(
        list_users(&app, &provider.token(&second, now, "users:read")).await,
        401
    );
    assert_eq!(
        provider.jwks_requests.load(Ordering::SeqCst),
        1,
        "rate-limited"
    );
    // ...and once the interval has passed, one refresh picks the new key up.
    app.clock.advance(31);
    let now = app.clock.now();
    assert_eq!(
        list_users(&app, &provider.token(&second, now, "users:read")).await,
        200
    );
    assert_eq!(provider.jwks_requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        list_users(&app, &provider.token(&first, now, "users:read")).await,
        401,
        "the withdrawn key is no longer trusted"
    );

    // The provider goes down: cached keys keep working until their TTL...
    provider.down.store(true, Ordering::SeqCst);
    app.clock.advance(500);
    let now = app.clock.now();
    assert_eq!(
        list_users(&app, &provider.token(&second, now, "users:read")).await,
        200
    );
    // ...and not after it.
    app.clock.advance(100);
    let now = app.clock.now();
    assert_eq!(
        list_users(&app, &provider.token(&second, now, "users:read")).await,
        401
    );
}

#[tokio::test]
async fn a_discovery_document_naming_another_issuer_is_not_trusted() {
    let provider = MockProvider::start().await;
    let key = ProviderKey::new("k");
    provider.publish(&[&key]);
    // Configured with a trailing slash: the discovery document's issuer differs by one byte.
    let configured = format!("{}/", provider.issuer);
    let app = spawn_app_with(&format!(
        "[auth]\nexternal_issuers = [{{ issuer = \"{configured}\", ca_cert = \"{}\", \
         allowed_scopes = [\"users:read\"] }}]\n",
        provider.ca_cert.display()
    ))
    .await;
    let now = app.clock.now();
    // The token names the configured issuer, so only the discovery check can refuse it.
    let token = provider.token_of(&configured, &key, now, "users:read");
    assert_eq!(list_users(&app, &token).await, 401);
    assert_eq!(
        provider.jwks_requests.load(Ordering::SeqCst),
        0,
        "the JWKS of a mismatching discovery document is never fetched"
    );
}

#[tokio::test]
async fn with_the_built_in_issuer_off_only_the_external_issuers_tokens_count() {
    let provider = MockProvider::start().await;
    let key = ProviderKey::new("k");
    provider.publish(&[&key]);
    let app = spawn_app_with(&format!(
        "[auth]\nbuilt_in_issuer = false\nexternal_issuers = [{{ issuer = \"{}\", ca_cert = \"{}\", \
         allowed_scopes = [\"users:read\"] }}]\n",
        provider.issuer,
        provider.ca_cert.display()
    ))
    .await;
    let now = app.clock.now();
    assert_eq!(
        list_users(&app, &provider.token(&key, now, "users:read")).await,
        200
    );
    assert_eq!(
        list_users(&app, &app.admin_token).await,
        401,
        "a token in the built-in issuer's name is not trusted"
    );
    let login = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": app.credentials.admin.email, "password": app.credentials.admin.password}))
        .send()
        .await
        .expect("request");
    assert_eq!(login.status(), 403);
    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"], json!([]));
}

#[tokio::test]
async fn an_external_issuer_can_name_this_api_its_own_way() {
    let provider = MockProvider::start().await;
    let key = ProviderKey::new("k");
    provider.publish(&[&key]);
    let app = spawn_app_with(&format!(
        "[auth]\nexternal_issuers = [{{ issuer = \"{}\", audience = \"api://rampart-test\", \
         ca_cert = \"{}\", allowed_scopes = [\"users:read\"] }}]\n",
        provider.issuer,
        provider.ca_cert.display()
    ))
    .await;
    let now = app.clock.now();
    let issuer = provider.issuer.clone();
    let named = provider.token_for(&issuer, "api://rampart-test", &key, now, "users:read");
    assert_eq!(list_users(&app, &named).await, 200);
    let default_audience = provider.token_for(&issuer, AUDIENCE, &key, now, "users:read");
    assert_eq!(
        list_users(&app, &default_audience).await,
        401,
        "its tokens must carry its audience"
    );
}

/// An app trusting `provider` for `users:read`, with `settings` added to its issuer entry.
async fn app_trusting(provider: &MockProvider, settings: &str) -> TestApp {
    spawn_app_with(&format!(
        "[auth]\nexternal_issuers = [{{ issuer = \"{}\", ca_cert = \"{}\", \
         allowed_scopes = [\"users:read\"]{settings} }}]\n",
        provider.issuer,
        provider.ca_cert.display()
    ))
    .await
}

#[tokio::test]
async fn an_external_issuers_id_token_is_refused_even_where_its_aud_names_this_api() {
    let provider = MockProvider::start().await;
    let key = ProviderKey::new("k");
    provider.publish(&[&key]);
    let app = app_trusting(&provider, "").await;
    let now = app.clock.now();
    let access_token = provider.token_typed(&key, now, Some("at+jwt"), json!({}));
    assert_eq!(list_users(&app, &access_token).await, 200);
    // What an OpenID provider signs for a client after a login: same keys, `aud` may be this
    // API's, `typ: JWT`. By default an external issuer's tokens must be `at+jwt`.
    let id_token = provider.token_typed(&key, now, Some("JWT"), json!({"nonce": "n-0S6"}));
    assert_eq!(list_users(&app, &id_token).await, 401);
    let untyped = provider.token_typed(&key, now, None, json!({}));
    assert_eq!(
        list_users(&app, &untyped).await,
        401,
        "no typ is not at+jwt"
    );
}

#[tokio::test]
async fn a_provider_whose_access_tokens_say_jwt_never_gets_an_id_token_through() {
    let provider = MockProvider::start().await;
    let key = ProviderKey::new("k");
    provider.publish(&[&key]);
    let app = app_trusting(&provider, ", accepted_token_types = [\"JWT\"]").await;
    let now = app.clock.now();
    let access_token = provider.token_typed(&key, now, Some("JWT"), json!({}));
    assert_eq!(list_users(&app, &access_token).await, 200);
    for claim in ["nonce", "at_hash", "c_hash"] {
        let id_token = provider.token_typed(&key, now, Some("JWT"), json!({ claim: "x" }));
        assert_eq!(list_users(&app, &id_token).await, 401, "{claim}");
    }
    let other_type = provider.token_typed(&key, now, Some("at+jwt"), json!({}));
    assert_eq!(
        list_users(&app, &other_type).await,
        401,
        "only the configured types"
    );

    // A provider writing no `typ` at all is configured with the empty entry.
    let untyped_provider = app_trusting(&provider, ", accepted_token_types = [\"\"]").await;
    let untyped = provider.token_typed(&key, now, None, json!({}));
    assert_eq!(list_users(&untyped_provider, &untyped).await, 200);
    let untyped_id_token = provider.token_typed(&key, now, None, json!({"at_hash": "x"}));
    assert_eq!(list_users(&untyped_provider, &untyped_id_token).await, 401);
}
