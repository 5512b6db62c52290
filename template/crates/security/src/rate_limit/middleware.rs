//! The rate-limit middleware: every request is charged to a general tier, and a sensitive
//! operation's request to its own tier too, before the request is authorized or its body read
//! (RATE-1, RATE-2, RATE-3).
//!
//! Threat (RATE-2): a principal spreading its requests over many addresses escapes per-address
//! limits; a principal sharing an address (an office, a NAT) with others spends their budget.
//!
//! Control: it sits between the two halves of access control, `Authenticate` -> `RateLimit` ->
//! `Authorize`, so it sees a verified principal, and only a verified one.
//!
//! Who is charged: the principal when [`crate::auth::access_control::Authenticate`] verified a
//! credential (whatever address it comes from), else the client address from
//! [`crate::transport::client_ip`] (a refused credential counts as anonymous, so guessing tokens
//! spends the address's budget). Which tiers apply comes from one [`RatePlan`]: an operation is
//! limited unless the plan lists it as exempt, explicitly. A sensitive operation's own tier is
//! checked first, so its refusals do not also drain the general budget, and is not charged when
//! the credential lacks the operation's scopes: a leaked read-only key cannot spend its owner's
//! key-rotation budget.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use serde_json::Value;

use super::{Admitted, LimitKey, RateLimiter, Tier, add_rate_limit_headers};
use crate::auth::access_control::authenticated_caller;
use crate::operations::{OperationTable, operations_and_routes};
use crate::transport::client_ip::client_ip_of;

/// The tiers that admitted a request whose handler answered with an error: whoever turns the
/// error into a response adds their headers ([`AdmittedTiers::add_headers`]).
#[derive(Debug, Clone)]
pub struct AdmittedTiers(Vec<Admitted>);

impl AdmittedTiers {
    pub fn add_headers(&self, headers: &mut poem::http::HeaderMap) {
        add_rate_limit_headers(headers, &self.0);
    }
}

/// What an operation is charged to, besides nothing ([`Rule::Exempt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The general tier only: per principal, or per client address when anonymous.
    General,
    /// The general tier and this stricter one, keyed the same way.
    Sensitive(Tier),
    /// No limit. Only for operations listed as exempt.
    Exempt,
}

/// A plan naming an operation that does not exist, or one operation twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the rate-limit plan names {0}, which is not an operation of the service")]
    UnknownOperation(String),
    #[error("the rate-limit plan names {0} twice")]
    Duplicate(String),
}

/// The tiers of every operation.
#[derive(Debug)]
pub struct RatePlan {
    operations: OperationTable<Rule>,
    anonymous: Tier,
    authenticated: Tier,
}

impl RatePlan {
    /// Every operation of `document`, and the plain `routes` served beside it (as
    /// `POST /oauth/token`), is charged to `anonymous` (per client address) or `authenticated`
    /// (per principal); the `sensitive` ones to their own tier as well; the `exempt` ones to
    /// nothing.
    pub fn new(
        document: &Value,
        routes: &[&str],
        anonymous: Tier,
        authenticated: Tier,
        sensitive: &[(&str, Tier)],
        exempt: &[&str],
    ) -> Result<Self, PlanError> {
        let mut named = BTreeSet::new();
        for name in sensitive
            .iter()
            .map(|(name, _)| *name)
            .chain(exempt.iter().copied())
        {
            if !named.insert(name) {
                return Err(PlanError::Duplicate(name.to_owned()));
            }
        }
        let rule_of = |name: &str| {
            if exempt.contains(&name) {
                Rule::Exempt
            } else if let Some((_, tier)) = sensitive.iter().find(|(listed, _)| *listed == name) {
                Rule::Sensitive(tier.clone())
            } else {
                Rule::General
            }
        };
        let mut table = OperationTable::default();
        let mut known = BTreeSet::new();
        for (method, template) in operations_and_routes(document, routes) {
            let name = format!("{method} {template}");
            if table.insert(&method, &template, rule_of(&name)).is_ok() {
                known.insert(name);
            }
        }
        if let Some(unknown) = named.iter().find(|name| !known.contains(**name)) {
            return Err(PlanError::UnknownOperation((*unknown).to_owned()));
        }
        Ok(Self {
            operations: table,
            anonymous,
            authenticated,
        })
    }

    /// The rule for a request; a path that is no operation (a 404) is charged like any other.
    /// `HEAD` follows the rule of `GET` (poem answers it with the `GET` handler).
    pub fn rule(&self, request: &Request) -> &Rule {
        let path = request.uri().path();
        self.operations
            .find(request.method(), path)
            .or_else(|| {
                (request.method() == poem::http::Method::HEAD)
                    .then(|| self.operations.find(&poem::http::Method::GET, path))
                    .flatten()
            })
            .map_or(&Rule::General, |matched| matched.value)
    }

    /// Every operation and its rule, for documentation and tests.
    pub fn iter(&self) -> impl Iterator<Item = (String, &Rule)> {
        self.operations.iter()
    }

    /// Documents the limits in the published document: every limited operation may answer 429
    /// (with `Retry-After`, `RateLimit` and `RateLimit-Policy`), and a sensitive one 503 when
    /// its store is down; `error_schema` is the error body's schema.
    pub fn document(&self, document: &mut Value, error_schema: &Value) {
        let Some(paths) = document["paths"].as_object_mut() else {
            return;
        };
        for (template, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                let Ok(method) =
                    poem::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                else {
                    continue;
                };
                let rule = self
                    .operations
                    .find(&method, template)
                    .map_or(&Rule::General, |matched| matched.value);
                let statuses: &[(&str, &str)] = match rule {
                    Rule::Exempt => &[],
                    Rule::General => &[(
                        "429",
                        "Too many requests: retry after `Retry-After` seconds",
                    )],
                    Rule::Sensitive(_) => &[
                        (
                            "429",
                            "Too many requests: retry after `Retry-After` seconds",
                        ),
                        (
                            "503",
                            "Service unavailable: retry after `Retry-After` seconds",
                        ),
                    ],
                };
                let Some(responses) = operation["responses"].as_object_mut() else {
                    continue;
                };
                for (status, description) in statuses {
                    let response = responses.entry(*status).or_insert_with(|| {
                        serde_json::json!({
                            "description": description,
                            "content": { "application/json": { "schema": error_schema } }
                        })
                    });
                    // Declared by the operation already (as an error it returns) or not, the
                    // response carries the rate-limit headers.
                    response["headers"]["Retry-After"] =
                        serde_json::json!({ "schema": { "type": "integer" } });
                    response["headers"]["RateLimit"] =
                        serde_json::json!({ "schema": { "type": "string" } });
                    response["headers"]["RateLimit-Policy"] =
                        serde_json::json!({ "schema": { "type": "string" } });
                }
            }
        }
    }
}

/// Charges requests per [`RatePlan`]; answers 429 (or 503 when a fail-closed tier's store is
/// down) and adds the `RateLimit` headers to what it lets through.
#[derive(Debug, Clone)]
pub struct RateLimit {
    plan: Arc<RatePlan>,
    limiter: Arc<RateLimiter>,
}

impl RateLimit {
    pub fn new(plan: RatePlan, limiter: Arc<RateLimiter>) -> Self {
        Self {
            plan: Arc::new(plan),
            limiter,
        }
    }
}

impl<E: Endpoint> Middleware<E> for RateLimit {
    type Output = RateLimitEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        RateLimitEndpoint {
            next,
            limit: self.clone(),
        }
    }
}

/// The endpoint produced by [`RateLimit`].
#[derive(Debug)]
pub struct RateLimitEndpoint<E> {
    next: E,
    limit: RateLimit,
}

/// The client address; a request without a TCP peer (an in-process test client) shares one
/// bucket.
fn client_address(request: &Request) -> IpAddr {
    client_ip_of(request).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

impl<E: Endpoint> Endpoint for RateLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> Result<Self::Output> {
        let plan = &self.limit.plan;
        let limiter = &self.limit.limiter;
        let rule = plan.rule(&request);
        if *rule == Rule::Exempt {
            return self
                .next
                .call(request)
                .await
                .map(IntoResponse::into_response);
        }
        let caller = authenticated_caller(&request);
        let (general, key): (&Tier, LimitKey) = match caller {
            Some(caller) => (
                &plan.authenticated,
                limiter.keys().principal(caller.subject),
            ),
            None => (
                &plan.anonymous,
                limiter.keys().client_ip(client_address(&request)),
            ),
        };
        let mut admitted: Vec<Admitted> = Vec::with_capacity(2);
        // The stricter tier first: what it refuses does not also drain the general budget. A
        // credential lacking the operation's scopes (403 next) does not spend its owner's
        // sensitive budget: a leaked read-only key cannot block its owner's key rotation.
        let sensitive = match rule {
            Rule::Sensitive(tier) if caller.is_none_or(|caller| caller.holds_required_scopes) => {
                Some(tier)
            }
            _ => None,
        };
        let tiers = sensitive.into_iter().chain(std::iter::once(general));
        for tier in tiers {
            match limiter.check(&request, tier, key).await {
                Ok(Some(state)) => admitted.push(state),
                Ok(None) => {}
                Err(refusal) => return Ok(refusal.to_response(&request)),
            }
        }
        match self.next.call(request).await {
            Ok(response) => {
                let mut response = response.into_response();
                add_rate_limit_headers(response.headers_mut(), &admitted);
                Ok(response)
            }
            // An error becomes its response further out (the service's uniform JSON errors):
            // the admitted tiers travel with it, for that response's headers.
            Err(mut error) => {
                error.set_data(AdmittedTiers(admitted));
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use poem::http::StatusCode;
    use poem::test::TestClient;
    use poem::{EndpointExt, Route, handler};
    use serde_json::json;

    use super::*;
    use crate::auth::access_control::{
        AccessControl, AccessPolicy, AuthFailure, AuthMethod, Credential, CredentialVerifier,
        Principal,
    };
    use crate::auth::secrets::KeyHasher;
    use crate::rate_limit::memory::{LimiterClock, MemoryStore};
    use crate::rate_limit::redis_store::RedisStore;
    use crate::rate_limit::{KeyDeriver, Quota, RATELIMIT, RATELIMIT_POLICY, Store};

    fn document() -> Value {
        json!({ "paths": {
            "/health": { "get": {} },
            "/login": { "post": {} },
            "/notes": { "get": { "security": [ { "oauth2": ["notes:read"] } ] } },
            "/payments": { "post": { "security": [ { "oauth2": ["notes:read"] } ] } }
        }})
    }

    /// Accepts the tokens `alice` and `bob`.
    #[derive(Debug)]
    struct Names;

    impl CredentialVerifier for Names {
        async fn verify(&self, credential: Credential<'_>) -> Result<Principal, AuthFailure> {
            match credential {
                Credential::Bearer(name @ ("alice" | "bob")) => Ok(Principal {
                    subject: name.to_owned(),
                    scopes: ["notes:read".to_owned()].into(),
                    method: AuthMethod::AccessToken,
                    client_id: None,
                    session_id: None,
                }),
                _ => Err(AuthFailure::Invalid("unknown")),
            }
        }
    }

    fn quota(requests: u32) -> Quota {
        Quota::new(requests, Duration::from_secs(60)).expect("valid")
    }

    fn limiter(store: Store) -> Arc<RateLimiter> {
        RateLimiter::new(
            store,
            KeyDeriver::new(KeyHasher::new(&[9u8; 32]).expect("32 bytes")),
        )
    }

    fn memory() -> Store {
        Store::Memory(Arc::new(MemoryStore::new(1_000, LimiterClock::monotonic())))
    }

    /// A service whose client address is the `x-test-ip` header: anonymous 3, authenticated 5,
    /// login 2, payments 1; `/health` exempt.
    fn client(store: Store) -> TestClient<impl Endpoint> {
        #[handler]
        fn ok() -> &'static str {
            "ok"
        }
        let document = document();
        let plan = RatePlan::new(
            &document,
            &["POST /oauth/token"],
            Tier::general("anonymous", quota(3)),
            Tier::general("authenticated", quota(5)),
            &[
                ("POST /login", Tier::sensitive("login", quota(2))),
                ("POST /payments", Tier::sensitive("payment", quota(1))),
            ],
            &["GET /health"],
        )
        .expect("plan");
        let control = AccessControl::new(
            AccessPolicy::from_openapi(&document, &["GET /health", "POST /login"]).expect("policy"),
            Arc::new(Names),
            poem::http::HeaderName::from_static("x-api-key"),
        );
        let app = Route::new()
            .at("/health", poem::get(ok))
            .at("/login", poem::post(ok))
            .at("/notes", poem::get(ok))
            .at("/payments", poem::post(ok))
            .with(control.authorize())
            .with(RateLimit::new(plan, limiter(store)))
            .with(control.authenticate())
            .around(|next, mut request| async move {
                let ip = request
                    .headers()
                    .get("x-test-ip")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse().ok());
                if let Some(ip) = ip {
                    request
                        .extensions_mut()
                        .insert(crate::transport::client_ip::ClientIp(ip));
                }
                next.call(request).await
            });
        TestClient::new(app)
    }

    async fn statuses(
        client: &TestClient<impl Endpoint>,
        method: &str,
        path: &str,
        ip: &str,
        token: Option<&str>,
        count: usize,
    ) -> Vec<u16> {
        let mut statuses = Vec::new();
        for _ in 0..count {
            let request = match method {
                "POST" => client.post(path),
                _ => client.get(path),
            }
            .header("x-test-ip", ip);
            let request = match token {
                Some(token) => request.header("authorization", format!("Bearer {token}")),
                None => request,
            };
            statuses.push(request.send().await.0.status().as_u16());
        }
        statuses
    }

    #[tokio::test]
    async fn anonymous_requests_are_limited_per_client_address() {
        let client = client(memory());
        // A 401 spends the address's budget like any anonymous request.
        assert_eq!(
            statuses(&client, "GET", "/notes", "192.0.2.1", None, 4).await,
            [401, 401, 401, 429]
        );
        assert_eq!(
            statuses(&client, "GET", "/notes", "192.0.2.1", Some("forged"), 1).await,
            [429]
        );
        assert_eq!(
            statuses(&client, "GET", "/nowhere", "192.0.2.2", None, 4).await,
            [404, 404, 404, 429]
        );
    }

    #[tokio::test]
    async fn authenticated_requests_are_limited_per_principal_from_any_address() {
        let client = client(memory());
        let mut seen = Vec::new();
        for n in 0..6 {
            let ip = format!("192.0.2.{}", n + 10);
            seen.extend(statuses(&client, "GET", "/notes", &ip, Some("alice"), 1).await);
        }
        assert_eq!(seen, [200, 200, 200, 200, 200, 429]);
        // Bob has his own budget; the address Alice used last is not spent either.
        assert_eq!(
            statuses(&client, "GET", "/notes", "192.0.2.15", Some("bob"), 1).await,
            [200]
        );
        assert_eq!(
            statuses(&client, "GET", "/notes", "192.0.2.15", None, 1).await,
            [401]
        );
    }

    #[tokio::test]
    async fn a_sensitive_operation_has_its_own_stricter_tier() {
        let client = client(memory());
        assert_eq!(
            statuses(&client, "POST", "/login", "192.0.2.1", None, 3).await,
            [200, 200, 429]
        );
        // The refused login did not spend the address's general budget.
        assert_eq!(
            statuses(&client, "GET", "/notes", "192.0.2.1", None, 1).await,
            [401]
        );
        assert_eq!(
            statuses(&client, "POST", "/payments", "192.0.2.1", Some("alice"), 2).await,
            [200, 429]
        );
    }

    #[tokio::test]
    async fn an_exempt_operation_is_never_limited() {
        let client = client(memory());
        assert!(
            statuses(&client, "GET", "/health", "192.0.2.1", None, 20)
                .await
                .iter()
                .all(|status| *status == 200)
        );
        for _ in 0..5 {
            let response = client
                .head("/health")
                .header("x-test-ip", "192.0.2.1")
                .send()
                .await;
            response.assert_status_is_ok();
        }
    }

    #[tokio::test]
    async fn responses_carry_the_ratelimit_headers_and_a_429_its_retry_after() {
        let client = client(memory());
        let response = client
            .post("/login")
            .header("x-test-ip", "192.0.2.1")
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_header(
            RATELIMIT_POLICY,
            "\"login\";q=2;w=60, \"anonymous\";q=3;w=60",
        );
        response.assert_header(RATELIMIT, "\"login\";r=1;t=30, \"anonymous\";r=2;t=20");
        client
            .post("/login")
            .header("x-test-ip", "192.0.2.1")
            .send()
            .await
            .assert_status_is_ok();
        let limited = client
            .post("/login")
            .header("x-test-ip", "192.0.2.1")
            .send()
            .await;
        limited.assert_status(StatusCode::TOO_MANY_REQUESTS);
        limited.assert_header("retry-after", "30");
        limited.assert_header(RATELIMIT_POLICY, "\"login\";q=2;w=60");
        limited.assert_header(RATELIMIT, "\"login\";r=0;t=60");
        limited
            .assert_json(json!({ "error": "Too many requests" }))
            .await;
    }

    #[tokio::test]
    async fn with_the_store_down_general_tiers_fail_open_and_sensitive_ones_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let store = RedisStore::new(
            &format!("redis://127.0.0.1:{port}"),
            "test:",
            Duration::from_millis(200),
            None,
        )
        .expect("store");
        let client = client(Store::Redis(Box::new(store)));
        assert_eq!(
            statuses(&client, "GET", "/notes", "192.0.2.1", Some("alice"), 10).await,
            [200; 10]
        );
        let refused = client
            .post("/login")
            .header("x-test-ip", "192.0.2.1")
            .send()
            .await;
        refused.assert_status(StatusCode::SERVICE_UNAVAILABLE);
        refused.assert_header("retry-after", "5");
    }

    #[test]
    fn a_plan_naming_an_unknown_operation_or_one_twice_is_refused() {
        let tier = Tier::general("t", quota(1));
        let plan = |sensitive: &[(&str, Tier)], exempt: &[&str]| {
            RatePlan::new(
                &document(),
                &[],
                tier.clone(),
                tier.clone(),
                sensitive,
                exempt,
            )
        };
        assert_eq!(
            plan(&[("POST /logn", tier.clone())], &[]).expect_err("refused"),
            PlanError::UnknownOperation("POST /logn".to_owned())
        );
        assert_eq!(
            plan(&[("POST /login", tier.clone())], &["POST /login"]).expect_err("refused"),
            PlanError::Duplicate("POST /login".to_owned())
        );
        assert!(plan(&[], &["GET /health"]).is_ok());
    }
}
