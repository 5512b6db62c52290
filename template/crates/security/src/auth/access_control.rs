//! Authentication and scope checks for every operation (AUTH-4, AUTH-5; audit: LOG-1, LOG-2).
//!
//! Threat: an endpoint added without a guard is public; a guard declared in the documentation
//! but not enforced (poem-openapi's `#[oai(scope = ...)]` only documents) grants every
//! authenticated caller everything; a router and a guard that disagree on which operation a
//! request is for let a request skip the guard.
//!
//! Control: the published OpenAPI document is the one declaration. [`AccessPolicy`] reads each
//! operation's `security` requirement (the scopes an operation's `#[oai(scope = ...)]` put
//! there) and refuses to start when an operation declares neither scopes nor membership of the
//! explicit public list: default deny. [`AccessControl`] then, for every request of a protected
//! operation, authenticates the one credential presented (`Authorization: Bearer` or the API-key
//! header; both at once is a 400), answers 401 with `WWW-Authenticate: Bearer` (RFC 6750,
//! `error="invalid_token"` when a credential was refused), checks every required scope (403
//! with `error="insufficient_scope"` and the scopes needed), and records an audit event for the
//! authentication attempt and for the authorization decision. The handler receives the
//! [`Principal`] only through [`authorized_principal`], which also checks that the operation the
//! router chose is the one whose scopes were checked: a disagreement fails closed.
//!
//! It runs as two halves, [`Authenticate`] and [`Authorize`], so the rate limiter can sit between
//! them and charge a verified principal rather than its address; [`Authorize`] alone refuses
//! every protected request (fails closed).
//!
//! Start-up refuses an operation that declares no scopes, declares an anonymous alternative, or
//! declares an empty scope list, unless the service lists it in its public operations
//! (`policy::PUBLIC_OPERATIONS`): a forgotten declaration stops the service instead of publishing
//! an open endpoint (decision 0009). The roles granting the fewest scopes their work needs are
//! the service's (`auth::scopes`); an administrator's key scopes never include acting as another
//! principal (`api::api_keys`).
//!
//! Default: every operation of the document is protected unless listed public; there is no
//! switch. A public list grown for convenience, or a handler reading the principal some other
//! way than [`authorized_principal`], reopens the unguarded endpoint this module exists to
//! prevent.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use poem::http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};
use serde_json::Value;

use crate::json_error::json_error;
use crate::logging::audit::{AuditEvent, Outcome};
use crate::operations::{OperationTable, operation_name, operations, template_of_route_pattern};

/// The `realm` of every `WWW-Authenticate` challenge.
const REALM: &str = "api";

/// A credential as presented, before verification.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    /// An access token from `Authorization: Bearer`.
    Bearer(&'a str),
    /// An API key from the API-key header.
    ApiKey(&'a str),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credential itself.
        match self {
            Self::Bearer(_) => f.write_str("Credential::Bearer(..)"),
            Self::ApiKey(_) => f.write_str("Credential::ApiKey(..)"),
        }
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    AccessToken,
    ApiKey,
}

impl AuthMethod {
    fn event_name(self) -> &'static str {
        match self {
            Self::AccessToken => "authn.access_token",
            Self::ApiKey => "authn.api_key",
        }
    }
}

/// Who is calling, and what they were granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user id (or, for a client without a user, the client id).
    pub subject: String,
    pub scopes: BTreeSet<String>,
    pub method: AuthMethod,
    /// The OAuth client, or the API key's id.
    pub client_id: Option<String>,
    /// The sign-in session a built-in access token descends from (its `sid`), if any.
    pub session_id: Option<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }
}

/// Why a credential was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credential is invalid; the reason code goes to the audit event, never to the client.
    Invalid(&'static str),
    /// The verifier could not decide (database or issuer unreachable): 503, not 401.
    Unavailable,
}

/// Verifies credentials: the service implements it over its token validator and key store.
pub trait CredentialVerifier: Send + Sync + 'static {
    fn verify(
        &self,
        credential: Credential<'_>,
    ) -> impl Future<Output = Result<Principal, AuthFailure>> + Send;
}

/// What an operation requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Reachable without a credential: listed explicitly as public.
    Public,
    /// A valid credential holding every one of these scopes.
    Scopes(Vec<String>),
}

/// An operation whose policy is missing or contradictory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{0} declares no security requirement and is not listed as public: add a security \
         scheme parameter with its scopes, or list it in the public operations"
    )]
    Undeclared(String),
    #[error("{0} is listed as public but declares a security requirement")]
    PublicWithSecurity(String),
    #[error("{0} is listed as public but is not an operation of the document")]
    UnknownPublic(String),
    #[error("{0} declares a security requirement without scopes: name at least one scope")]
    NoScopes(String),
    #[error("{0} declares different scopes for different security schemes")]
    InconsistentScopes(String),
    #[error("{0} has an invalid method")]
    Method(String),
}

/// The policy of every operation of the document.
#[derive(Debug)]
pub struct AccessPolicy {
    operations: OperationTable<Policy>,
    /// Scopes not checked: only ever set by [`AccessPolicy::insecure_without_scope_checks`].
    scopes_ignored: bool,
}

impl AccessPolicy {
    /// Reads each operation's policy. `public` lists the operations reachable without a
    /// credential, as `GET /health/live`; every other operation must declare its scopes.
    pub fn from_openapi(document: &Value, public: &[&str]) -> Result<Self, PolicyError> {
        let mut table = OperationTable::default();
        let mut public_seen = BTreeSet::new();
        for (template, method, operation) in operations(document) {
            let name = format!("{} {template}", method.to_ascii_uppercase());
            let requirements = operation["security"].as_array();
            let is_public = public.contains(&name.as_str());
            let policy = match (requirements, is_public) {
                (Some(requirements), true) if !requirements.is_empty() => {
                    return Err(PolicyError::PublicWithSecurity(name));
                }
                (_, true) => {
                    public_seen.insert(name.clone());
                    Policy::Public
                }
                (Some(requirements), false) if !requirements.is_empty() => {
                    Policy::Scopes(declared_scopes(&name, requirements)?)
                }
                (_, false) => return Err(PolicyError::Undeclared(name)),
            };
            table
                .insert(method, template, policy)
                .map_err(|_| PolicyError::Method(name))?;
        }
        if let Some(unknown) = public.iter().find(|name| !public_seen.contains(**name)) {
            return Err(PolicyError::UnknownPublic((*unknown).to_owned()));
        }
        Ok(Self {
            operations: table,
            scopes_ignored: false,
        })
    }

    /// The same policy without its scope check: any valid credential passes. Only for proving
    /// that the checklist scanner notices (Rampart's weakened-builds harness); no setting leads
    /// here, and the service's start-up refuses it in production.
    pub fn insecure_without_scope_checks(mut self) -> Self {
        self.scopes_ignored = true;
        self
    }

    /// Every operation and its policy, for tests and documentation.
    pub fn iter(&self) -> impl Iterator<Item = (String, &Policy)> {
        self.operations.iter()
    }
}

/// The scopes of an operation's requirements, which must all name the same set (one per
/// credential type: a token and an API key need the same scopes).
fn declared_scopes(name: &str, requirements: &[Value]) -> Result<Vec<String>, PolicyError> {
    let mut declared: Option<BTreeSet<String>> = None;
    for requirement in requirements {
        let Some(schemes) = requirement.as_object() else {
            return Err(PolicyError::Undeclared(name.to_owned()));
        };
        if schemes.is_empty() {
            // `{}` in a list of requirements makes the operation anonymous-optional.
            return Err(PolicyError::Undeclared(name.to_owned()));
        }
        for scopes in schemes.values() {
            let scopes: BTreeSet<String> = scopes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
            match &declared {
                None => declared = Some(scopes),
                Some(previous) if *previous != scopes => {
                    return Err(PolicyError::InconsistentScopes(name.to_owned()));
                }
                Some(_) => {}
            }
        }
    }
    let scopes = declared.unwrap_or_default();
    if scopes.is_empty() {
        return Err(PolicyError::NoScopes(name.to_owned()));
    }
    Ok(scopes.into_iter().collect())
}

/// Set on the request once its operation's policy was satisfied; read by
/// [`authorized_principal`].
#[derive(Debug, Clone)]
struct Authorized {
    method: Method,
    template: String,
    principal: Principal,
}

/// The principal a protected operation was authorized for, as the operation's security scheme
/// checker should obtain it. `None` (the scheme then refuses the request) when the middleware
/// did not authorize this request, or authorized it for another operation than the one the
/// router picked.
pub fn authorized_principal(request: &Request) -> Option<Principal> {
    let authorized = request.extensions().get::<Authorized>()?;
    let routed = request.data::<poem::PathPattern>()?;
    let same_operation = authorized.method == request.method()
        && shape(&authorized.template) == shape(&template_of_route_pattern(&routed.0));
    if !same_operation {
        tracing::error!(
            authorized = %operation_name(&authorized.method, &authorized.template),
            routed = %routed.0,
            "the router and the access policy disagree on the operation; refused"
        );
        return None;
    }
    Some(authorized.principal.clone())
}

/// A template's literal segments, with every parameter as `None` (poem-openapi routes
/// `/users/{id}` as `/users/:param0`: names differ, positions do not).
fn shape(template: &str) -> Vec<Option<&str>> {
    template
        .split('/')
        .filter(|segment| !segment.is_empty())
        .map(|segment| (!segment.starts_with('{')).then_some(segment))
        .collect()
}

/// Authentication and scope checks per [`AccessPolicy`], as two middlewares so that other
/// controls can sit between them: [`Authenticate`] (outer) verifies the credential and records
/// who is calling; [`Authorize`] (inner) answers 401, 400, 503 or 403, or lets the request
/// through. The service puts the rate limiter between the two, so it can count authenticated
/// requests per principal and everything else per client address. Used as one middleware,
/// `AccessControl` applies both.
#[derive(Debug)]
pub struct AccessControl<V> {
    policy: Arc<AccessPolicy>,
    verifier: Arc<V>,
    api_key_header: HeaderName,
}

impl<V> Clone for AccessControl<V> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            verifier: Arc::clone(&self.verifier),
            api_key_header: self.api_key_header.clone(),
        }
    }
}

impl<V: CredentialVerifier> AccessControl<V> {
    pub fn new(policy: AccessPolicy, verifier: Arc<V>, api_key_header: HeaderName) -> Self {
        Self {
            policy: Arc::new(policy),
            verifier,
            api_key_header,
        }
    }

    /// The outer half: verifies the one credential of a protected operation's request.
    pub fn authenticate(&self) -> Authenticate<V> {
        Authenticate(self.clone())
    }

    /// The inner half: refuses what authentication or the scopes do not allow.
    pub fn authorize(&self) -> Authorize {
        Authorize {
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<E: Endpoint, V: CredentialVerifier> Middleware<E> for AccessControl<V> {
    type Output = AuthenticateEndpoint<AuthorizeEndpoint<E>, V>;

    fn transform(&self, next: E) -> Self::Output {
        self.authenticate()
            .transform(self.authorize().transform(next))
    }
}

/// What [`Authenticate`] found for a request of a protected operation.
#[derive(Debug, Clone)]
enum Authentication {
    Missing,
    Several,
    Invalid,
    Unavailable,
    Valid(Principal),
}

/// Set by [`Authenticate`] on every request of a protected operation; read by [`Authorize`].
#[derive(Debug, Clone)]
struct Authenticated {
    method: Method,
    template: String,
    /// The scopes the operation requires.
    required: Vec<String>,
    outcome: Authentication,
}

/// A verified caller, as a middleware between the two halves sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    pub subject: &'a str,
    /// Whether the credential holds every scope the operation requires (if not, [`Authorize`]
    /// will answer 403).
    pub holds_required_scopes: bool,
}

/// The request's verified caller, once [`Authenticate`] has run: the rate limiter's
/// per-principal key. `None` for anonymous requests and refused credentials.
pub fn authenticated_caller(request: &Request) -> Option<Caller<'_>> {
    let authenticated = request.extensions().get::<Authenticated>()?;
    match &authenticated.outcome {
        Authentication::Valid(principal) => Some(Caller {
            subject: &principal.subject,
            holds_required_scopes: authenticated
                .required
                .iter()
                .all(|scope| principal.has_scope(scope)),
        }),
        _ => None,
    }
}

/// The subject of the request's verified credential (see [`authenticated_caller`]).
pub fn authenticated_subject(request: &Request) -> Option<&str> {
    authenticated_caller(request).map(|caller| caller.subject)
}

/// The outer half of [`AccessControl`].
#[derive(Debug)]
pub struct Authenticate<V>(AccessControl<V>);

impl<E: Endpoint, V: CredentialVerifier> Middleware<E> for Authenticate<V> {
    type Output = AuthenticateEndpoint<E, V>;

    fn transform(&self, next: E) -> Self::Output {
        AuthenticateEndpoint {
            next,
            control: self.0.clone(),
        }
    }
}

/// The endpoint produced by [`Authenticate`].
#[derive(Debug)]
pub struct AuthenticateEndpoint<E, V> {
    next: E,
    control: AccessControl<V>,
}

/// What the request carried.
enum Presented<'a> {
    Nothing,
    One(Credential<'a>),
    Several,
}

fn presented<'a>(request: &'a Request, api_key_header: &HeaderName) -> Presented<'a> {
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim())
                .filter(|token| !token.is_empty())
        });
    let api_keys = request.headers().get_all(api_key_header);
    let several_keys = api_keys.iter().count() > 1;
    let api_key = api_keys.iter().next().and_then(|value| value.to_str().ok());
    let several_authorizations = request.headers().get_all(AUTHORIZATION).iter().count() > 1;
    match (bearer, api_key) {
        _ if several_keys || several_authorizations => Presented::Several,
        (Some(_), Some(_)) => Presented::Several,
        (Some(token), None) => Presented::One(Credential::Bearer(token)),
        (None, Some(key)) => Presented::One(Credential::ApiKey(key)),
        (None, None) => Presented::Nothing,
    }
}

/// `401` with a Bearer challenge (RFC 6750, section 3).
fn unauthorized(request: &Request, error: Option<&str>) -> Response {
    let challenge = match error {
        Some(error) => format!("Bearer realm=\"{REALM}\", error=\"{error}\""),
        None => format!("Bearer realm=\"{REALM}\""),
    };
    let message = match error {
        Some(_) => "The credential is invalid or expired",
        None => "Authentication required",
    };
    with_challenge(
        json_error(StatusCode::UNAUTHORIZED, message, request),
        &challenge,
    )
}

/// `403` naming the scopes the operation needs.
fn insufficient_scope(request: &Request, required: &[String]) -> Response {
    let scopes = required.join(" ");
    let challenge =
        format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scopes}\"");
    with_challenge(
        json_error(
            StatusCode::FORBIDDEN,
            &format!("This operation requires the scopes: {scopes}"),
            request,
        ),
        &challenge,
    )
}

fn with_challenge(mut response: Response, challenge: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    response
}

impl<E: Endpoint, V: CredentialVerifier> Endpoint for AuthenticateEndpoint<E, V> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        let protected = self
            .control
            .policy
            .operations
            .find(request.method(), request.uri().path())
            .and_then(|matched| match matched.value {
                Policy::Public => None,
                Policy::Scopes(required) => Some((
                    matched.name,
                    matched.method.clone(),
                    matched.template.to_owned(),
                    required.clone(),
                )),
            });
        // Not an operation (the router answers 404 or 405), or a public one: nothing to verify.
        if let Some((operation, method, template, required)) = protected {
            let outcome = self.verify(&request, &operation).await;
            request.extensions_mut().insert(Authenticated {
                method,
                template,
                required,
                outcome,
            });
        }
        self.next
            .call(request)
            .await
            .map(IntoResponse::into_response)
    }
}

impl<E, V: CredentialVerifier> AuthenticateEndpoint<E, V> {
    /// Verifies the one credential presented and records the attempt.
    async fn verify(&self, request: &Request, operation: &str) -> Authentication {
        let credential = match presented(request, &self.control.api_key_header) {
            Presented::Nothing => {
                AuditEvent::for_request(request, "authn.missing", Outcome::Denied, "no_credential")
                    .policy(operation)
                    .record();
                return Authentication::Missing;
            }
            Presented::Several => {
                AuditEvent::for_request(
                    request,
                    "authn.ambiguous",
                    Outcome::Denied,
                    "several_credentials",
                )
                .record();
                return Authentication::Several;
            }
            Presented::One(credential) => credential,
        };
        let method = match credential {
            Credential::Bearer(_) => AuthMethod::AccessToken,
            Credential::ApiKey(_) => AuthMethod::ApiKey,
        };
        match self.control.verifier.verify(credential).await {
            Ok(principal) => {
                AuditEvent::for_request(request, method.event_name(), Outcome::Allowed, "valid")
                    .subject(&principal.subject)
                    .record();
                Authentication::Valid(principal)
            }
            Err(AuthFailure::Invalid(reason)) => {
                AuditEvent::for_request(request, method.event_name(), Outcome::Denied, reason)
                    .record();
                Authentication::Invalid
            }
            Err(AuthFailure::Unavailable) => {
                AuditEvent::for_request(
                    request,
                    method.event_name(),
                    Outcome::Denied,
                    "verifier_unavailable",
                )
                .record();
                Authentication::Unavailable
            }
        }
    }
}

/// The inner half of [`AccessControl`].
#[derive(Debug, Clone)]
pub struct Authorize {
    policy: Arc<AccessPolicy>,
}

impl<E: Endpoint> Middleware<E> for Authorize {
    type Output = AuthorizeEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        AuthorizeEndpoint {
            next,
            policy: Arc::clone(&self.policy),
        }
    }
}

/// The endpoint produced by [`Authorize`].
#[derive(Debug)]
pub struct AuthorizeEndpoint<E> {
    next: E,
    policy: Arc<AccessPolicy>,
}

impl<E: Endpoint> Endpoint for AuthorizeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        let Some(matched) = self
            .policy
            .operations
            .find(request.method(), request.uri().path())
        else {
            // Not an operation: the router answers 404 or 405. A handler reached anyway finds
            // no authorization and refuses (see `authorized_principal`).
            return self
                .next
                .call(request)
                .await
                .map(IntoResponse::into_response);
        };
        let required = match matched.value {
            Policy::Public => {
                return self
                    .next
                    .call(request)
                    .await
                    .map(IntoResponse::into_response);
            }
            Policy::Scopes(required) => required.clone(),
        };
        let required = if self.policy.scopes_ignored {
            Vec::new()
        } else {
            required
        };
        let operation = matched.name;
        let (operation_method, template) = (matched.method.clone(), matched.template.to_owned());

        // Authentication ran for this very operation, or the request is refused as if it had
        // presented nothing (a stack without `Authenticate` fails closed).
        let outcome = request
            .extensions_mut()
            .remove::<Authenticated>()
            .filter(|found| found.method == operation_method && found.template == template)
            .map_or(Authentication::Missing, |found| found.outcome);
        let principal = match outcome {
            Authentication::Valid(principal) => principal,
            Authentication::Missing => return Ok(unauthorized(&request, None)),
            Authentication::Invalid => return Ok(unauthorized(&request, Some("invalid_token"))),
            Authentication::Several => {
                let response = json_error(
                    StatusCode::BAD_REQUEST,
                    "Present exactly one credential",
                    &request,
                );
                return Ok(with_challenge(
                    response,
                    &format!("Bearer realm=\"{REALM}\", error=\"invalid_request\""),
                ));
            }
            Authentication::Unavailable => {
                return Ok(json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable",
                    &request,
                ));
            }
        };

        let policy = format!("{operation} requires {}", required.join(" "));
        if let Some(_missing) = required.iter().find(|scope| !principal.has_scope(scope)) {
            AuditEvent::for_request(&request, "authz.scope", Outcome::Denied, "missing_scope")
                .subject(&principal.subject)
                .policy(&policy)
                .record();
            return Ok(insufficient_scope(&request, &required));
        }
        AuditEvent::for_request(&request, "authz.scope", Outcome::Allowed, "scopes_held")
            .subject(&principal.subject)
            .policy(&policy)
            .record();

        request.extensions_mut().insert(Authorized {
            method: operation_method,
            template,
            principal,
        });
        self.next
            .call(request)
            .await
            .map(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use poem::test::TestClient;
    use poem::{EndpointExt, Route, handler};
    use serde_json::json;

    use super::*;

    fn document() -> Value {
        json!({
            "paths": {
                "/health": { "get": {} },
                "/notes/{id}": {
                    "get": { "security": [ { "oauth2": ["notes:read"] }, { "api_key": ["notes:read"] } ] },
                    "delete": { "security": [ { "oauth2": ["notes:read", "notes:write"] } ] }
                }
            }
        })
    }

    /// Accepts `good` (scope notes:read) and `writer` (both scopes).
    #[derive(Debug)]
    struct Fixed;

    impl CredentialVerifier for Fixed {
        async fn verify(&self, credential: Credential<'_>) -> Result<Principal, AuthFailure> {
            let (token, method) = match credential {
                Credential::Bearer(token) => (token, AuthMethod::AccessToken),
                Credential::ApiKey(key) => (key, AuthMethod::ApiKey),
            };
            let scopes: &[&str] = match token {
                "good" => &["notes:read"],
                "writer" => &["notes:read", "notes:write"],
                "down" => return Err(AuthFailure::Unavailable),
                _ => return Err(AuthFailure::Invalid("bad_signature")),
            };
            Ok(Principal {
                subject: "user-1".to_owned(),
                scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
                method,
                client_id: None,
                session_id: None,
            })
        }
    }

    #[handler]
    fn whoami(request: &Request) -> String {
        authorized_principal(request)
            .map(|principal| principal.subject)
            .unwrap_or_else(|| "nobody".to_owned())
    }

    fn client() -> TestClient<impl Endpoint> {
        let policy = AccessPolicy::from_openapi(&document(), &["GET /health"]).expect("policy");
        let app = Route::new()
            .at("/health", poem::get(whoami))
            // Named as poem-openapi names it: parameters match by position, not name.
            .at("/notes/:param0", poem::get(whoami).delete(whoami))
            // A route the document does not know: the middleware lets the router answer.
            .at("/undocumented", poem::get(whoami))
            // The router prefers this literal route; the table matches `/notes/{id}` for it.
            .at("/notes/special", poem::get(whoami))
            .with(AccessControl::new(
                policy,
                Arc::new(Fixed),
                HeaderName::from_static("x-api-key"),
            ));
        TestClient::new(app)
    }

    #[tokio::test]
    async fn a_public_operation_needs_no_credential() {
        let response = client().get("/health").send().await;
        response.assert_status_is_ok();
        response.assert_text("nobody").await;
    }

    #[tokio::test]
    async fn no_credential_is_401_with_a_bare_bearer_challenge() {
        let response = client().get("/notes/1").send().await;
        response.assert_status(StatusCode::UNAUTHORIZED);
        response.assert_header(WWW_AUTHENTICATE, "Bearer realm=\"api\"");
    }

    #[tokio::test]
    async fn another_scheme_is_no_bearer_credential() {
        let response = client()
            .get("/notes/1")
            .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
            .send()
            .await;
        response.assert_status(StatusCode::UNAUTHORIZED);
        response.assert_header(WWW_AUTHENTICATE, "Bearer realm=\"api\"");
    }

    #[tokio::test]
    async fn an_invalid_credential_is_401_invalid_token() {
        let response = client()
            .get("/notes/1")
            .header(AUTHORIZATION, "Bearer forged")
            .send()
            .await;
        response.assert_status(StatusCode::UNAUTHORIZED);
        response.assert_header(
            WWW_AUTHENTICATE,
            "Bearer realm=\"api\", error=\"invalid_token\"",
        );
    }

    #[tokio::test]
    async fn a_valid_token_reaches_the_handler_with_its_principal() {
        let response = client()
            .get("/notes/1")
            .header(AUTHORIZATION, "Bearer good")
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_text("user-1").await;
    }

    #[tokio::test]
    async fn an_api_key_is_a_credential_too() {
        let response = client()
            .get("/notes/1")
            .header("x-api-key", "good")
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_text("user-1").await;
    }

    #[tokio::test]
    async fn a_missing_scope_is_403_insufficient_scope_naming_the_scopes() {
        let response = client()
            .delete("/notes/1")
            .header(AUTHORIZATION, "Bearer good")
            .send()
            .await;
        response.assert_status(StatusCode::FORBIDDEN);
        response.assert_header(
            WWW_AUTHENTICATE,
            "Bearer realm=\"api\", error=\"insufficient_scope\", scope=\"notes:read notes:write\"",
        );
        let writer = client()
            .delete("/notes/1")
            .header(AUTHORIZATION, "Bearer writer")
            .send()
            .await;
        writer.assert_status_is_ok();
    }

    #[tokio::test]
    async fn two_credentials_are_400() {
        let response = client()
            .get("/notes/1")
            .header(AUTHORIZATION, "Bearer good")
            .header("x-api-key", "good")
            .send()
            .await;
        response.assert_status(StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn authorization_without_authentication_fails_closed() {
        let policy = AccessPolicy::from_openapi(&document(), &["GET /health"]).expect("policy");
        let control = AccessControl::new(
            policy,
            Arc::new(Fixed),
            HeaderName::from_static("x-api-key"),
        );
        // Only the inner half: nothing verified the token, so nothing is authorized.
        let app = Route::new()
            .at("/notes/:param0", poem::get(whoami))
            .with(control.authorize());
        let response = TestClient::new(app)
            .get("/notes/1")
            .header(AUTHORIZATION, "Bearer good")
            .send()
            .await;
        response.assert_status(StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn between_the_halves_only_a_verified_subject_is_visible() {
        #[handler]
        fn subject(request: &Request) -> String {
            authenticated_subject(request)
                .unwrap_or("anonymous")
                .to_owned()
        }
        let policy = AccessPolicy::from_openapi(&document(), &["GET /health"]).expect("policy");
        let control = AccessControl::new(
            policy,
            Arc::new(Fixed),
            HeaderName::from_static("x-api-key"),
        );
        // What a middleware between the halves (the rate limiter) sees.
        let app = Route::new()
            .at("/notes/:param0", poem::get(subject))
            .at("/health", poem::get(subject))
            .with(control.authenticate());
        let client = TestClient::new(app);
        let seen = |path: &'static str, token: &'static str| {
            let request = client
                .get(path)
                .header(AUTHORIZATION, format!("Bearer {token}"));
            async move {
                request
                    .send()
                    .await
                    .0
                    .into_body()
                    .into_string()
                    .await
                    .expect("body")
            }
        };
        assert_eq!(seen("/notes/1", "good").await, "user-1");
        assert_eq!(seen("/notes/1", "forged").await, "anonymous");
        // A public operation's credential is not verified at all.
        assert_eq!(seen("/health", "good").await, "anonymous");
    }

    #[tokio::test]
    async fn an_unavailable_verifier_is_503_not_401() {
        let response = client()
            .get("/notes/1")
            .header(AUTHORIZATION, "Bearer down")
            .send()
            .await;
        response.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_handler_the_policy_did_not_authorize_gets_no_principal() {
        let response = client()
            .get("/undocumented")
            .header(AUTHORIZATION, "Bearer good")
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_text("nobody").await;
    }

    #[tokio::test]
    async fn a_route_the_router_picks_but_the_policy_did_not_check_gets_no_principal() {
        let response = client()
            .get("/notes/special")
            .header(AUTHORIZATION, "Bearer good")
            .send()
            .await;
        response.assert_status_is_ok();
        response.assert_text("nobody").await;
    }

    #[test]
    fn an_operation_without_a_policy_refuses_to_start() {
        let undeclared = AccessPolicy::from_openapi(&document(), &[]).expect_err("undeclared");
        assert_eq!(
            undeclared,
            PolicyError::Undeclared("GET /health".to_owned())
        );
        let unknown = AccessPolicy::from_openapi(&document(), &["GET /health", "GET /gone"])
            .expect_err("unknown public");
        assert_eq!(unknown, PolicyError::UnknownPublic("GET /gone".to_owned()));
        let public_but_secured =
            AccessPolicy::from_openapi(&document(), &["GET /health", "GET /notes/{id}"])
                .expect_err("contradiction");
        assert_eq!(
            public_but_secured,
            PolicyError::PublicWithSecurity("GET /notes/{id}".to_owned())
        );
    }

    #[test]
    fn a_requirement_without_scopes_or_with_an_anonymous_alternative_is_refused() {
        let no_scopes = json!({"paths": {"/x": {"get": {"security": [{"oauth2": []}]}}}});
        assert_eq!(
            AccessPolicy::from_openapi(&no_scopes, &[]).expect_err("no scopes"),
            PolicyError::NoScopes("GET /x".to_owned())
        );
        let optional = json!({"paths": {"/x": {"get": {"security": [{"oauth2": ["a"]}, {}]}}}});
        assert_eq!(
            AccessPolicy::from_openapi(&optional, &[]).expect_err("optional"),
            PolicyError::Undeclared("GET /x".to_owned())
        );
        let differing =
            json!({"paths": {"/x": {"get": {"security": [{"oauth2": ["a"]}, {"key": ["b"]}]}}}});
        assert_eq!(
            AccessPolicy::from_openapi(&differing, &[]).expect_err("differing"),
            PolicyError::InconsistentScopes("GET /x".to_owned())
        );
    }
}
