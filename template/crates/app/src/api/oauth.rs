//! The built-in authorization server's endpoints (AUTH-1, AUTH-2, AUTH-3), outside the API's
//! OpenAPI document because OAuth 2.0 defines their shape:
//! - `POST /oauth/token` (RFC 6749): `client_credentials`, the client authenticated by an API
//!   key (`client_secret_basic` or `client_secret_post`, the key's id as `client_id`), granted
//!   the requested scopes narrowed to the key's; and `refresh_token`, rotated on every use.
//!   Form-encoded, `Cache-Control: no-store`, OAuth error bodies (`{"error": "invalid_grant"}`).
//!   A browser that logged in with `refresh_cookie` refreshes with the cookie instead of the
//!   parameter; the request must then come from an allowed origin (`Origin` checked), so
//!   another site cannot make the browser spend it, and carry the cookie once (a second one was
//!   planted: 400, audited `input.validation` / `duplicate_refresh_cookie`).
//! - `POST /oauth/revoke` (RFC 7009): revokes the refresh token's family (logout); with the
//!   cookie, also clears it.
//! - `GET /.well-known/jwks.json`: the public keys tokens are verified with (RFC 7517).
//! - `GET /.well-known/oauth-authorization-server`: the metadata (RFC 8414).
//!
//! Threat (AUTH-1): a home-made authentication scheme or home-made crypto fails in ways no
//! reviewer or client library anticipates; a token endpoint that reads a parameter twice, or
//! answers cacheably, lets two components disagree on a grant or leaves tokens in caches.
//!
//! Control: standards only. The endpoints follow their RFCs; parameters come form-encoded in the
//! body, each at most once (a repeated one is `invalid_request`); access tokens are RFC 9068 JWTs
//! presented as RFC 6750 bearer tokens. Passwords are hashed with argon2id (`argon2`), keys and
//! signatures are Ed25519 and HMAC through aws-lc-rs, JWTs go through `jsonwebtoken`: nothing is
//! hand-rolled. The rest of AUTH-1 lives beside this module:
//! - external OpenID Connect issuers (`auth.external_issuers`): `security::auth::oidc`;
//! - the issuer's signing keys, from files or shared sealed through the database:
//!   `crate::auth::signing_keys`;
//! - password reset, mailed through the sealed outbox: `crate::auth::password_reset`,
//!   `crate::mail`.
//!
//! Default: the built-in issuer is on. `auth.built_in_issuer = false` trusts only the external
//! issuers (start-up refuses it with none configured): this issuer's tokens are then refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use poem::http::StatusCode;
use poem::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderValue, PRAGMA, WWW_AUTHENTICATE,
};
use poem::{Body, Endpoint, Request, Response, Result};
use security::auth::access_control::AuthFailure;
use security::auth::issuer_keys;
use security::logging::audit::{AuditEvent, Outcome};
use serde_json::{Value, json};

use crate::auth::AuthContext;
use crate::auth::scopes::{all_scope_names, narrow};
use crate::auth::tokens::{self, RefreshError};
use crate::auth::verifier::verify_api_key;

/// An OAuth error response (RFC 6749, section 5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth\""),
        );
    }
    response
}

/// The one answer to a refused refresh token, whatever the reason (the audit event says it).
fn invalid_grant() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    )
}

/// `response`, a refusal of the request's input, after its `input.validation` audit event
/// (LOG-3): these endpoints answer outside the API's JSON error mapping, which records the
/// event for every other route. `reason` is a fixed code, never the refused value.
fn refused_input(request: &Request, reason: &'static str, response: Response) -> Response {
    AuditEvent::for_request(request, "input.validation", Outcome::Denied, reason).record();
    response
}

/// A JSON response that no cache may keep (RFC 6749, section 5.1).
fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .header(CACHE_CONTROL, "no-store")
        .header(PRAGMA, "no-cache")
        .body(body.to_string())
}

/// `POST /oauth/token`.
#[derive(Debug, Clone)]
pub struct TokenEndpoint {
    auth: Arc<AuthContext>,
}

impl TokenEndpoint {
    pub fn new(auth: Arc<AuthContext>) -> Self {
        Self { auth }
    }
}

/// The form's parameters; a parameter sent twice is refused (RFC 6749, section 3.2).
fn parse_form(bytes: &[u8]) -> Option<BTreeMap<String, String>> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(bytes).ok()?;
    let mut form = BTreeMap::new();
    for (name, value) in pairs {
        if form.insert(name, value).is_some() {
            return None;
        }
    }
    Some(form)
}

/// The client's id and secret, from HTTP Basic (RFC 6749, section 2.3.1: each part
/// form-url-encoded) or from the form; never both.
fn client_credentials(
    request: &Request,
    form: &BTreeMap<String, String>,
) -> Result<(String, String), &'static str> {
    let basic = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, encoded) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then_some(encoded.trim())
        });
    let posted = (form.get("client_id"), form.get("client_secret"));
    match (basic, posted) {
        (Some(_), (Some(_), _) | (_, Some(_))) => Err("several client authentication methods"),
        (Some(encoded), _) => {
            let decoded = STANDARD
                .decode(encoded)
                .map_err(|_| "malformed basic credentials")?;
            let decoded = String::from_utf8(decoded).map_err(|_| "malformed basic credentials")?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or("malformed basic credentials")?;
            let unescape = |part: &str| -> Result<String, &'static str> {
                let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={part}"))
                    .map_err(|_| "malformed basic credentials")?;
                pairs
                    .into_iter()
                    .next()
                    .map(|(_, value)| value)
                    .ok_or("malformed basic credentials")
            };
            Ok((unescape(id)?, unescape(secret)?))
        }
        (None, (Some(id), Some(secret))) => Ok((id.clone(), secret.clone())),
        (None, _) => Err("no client authentication"),
    }
}

impl TokenEndpoint {
    async fn client_credentials_grant(
        &self,
        request: &Request,
        form: &BTreeMap<String, String>,
    ) -> Response {
        let (client_id, secret) = match client_credentials(request, form) {
            Ok(credentials) => credentials,
            Err(description) => {
                AuditEvent::for_request(request, "authn.client", Outcome::Denied, "no_client_auth")
                    .record();
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
            }
        };
        let key = match verify_api_key(&self.auth, &secret).await {
            Ok(key) if key.id.to_string() == client_id => key,
            Ok(_) | Err(AuthFailure::Invalid(_)) => {
                AuditEvent::for_request(request, "authn.client", Outcome::Denied, "invalid_client")
                    .record();
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "client authentication failed",
                );
            }
            Err(AuthFailure::Unavailable) => {
                AuditEvent::for_request(
                    request,
                    "authn.client",
                    Outcome::Denied,
                    "verifier_unavailable",
                )
                .record();
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "retry later",
                );
            }
        };
        let subject = key.owner.id.to_string();
        AuditEvent::for_request(request, "authn.client", Outcome::Allowed, "api_key")
            .subject(&subject)
            .record();
        let requested: Vec<&str> = form
            .get("scope")
            .map(|scope| scope.split_whitespace().collect())
            .unwrap_or_default();
        let granted = narrow(&requested, &key.scopes);
        if granted.is_empty() {
            AuditEvent::for_request(request, "token.issued", Outcome::Denied, "invalid_scope")
                .subject(&subject)
                .record();
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "none of the requested scopes is granted to this client",
            );
        }
        match tokens::issue_access(
            &self.auth,
            &subject,
            granted,
            Some(key.id.to_string()),
            None,
        ) {
            Ok(access) => {
                AuditEvent::for_request(
                    request,
                    "token.issued",
                    Outcome::Allowed,
                    "client_credentials",
                )
                .subject(&subject)
                .record();
                json_response(
                    StatusCode::OK,
                    &json!({
                        "access_token": access.token,
                        "token_type": "Bearer",
                        "expires_in": access.expires_in,
                        "scope": access.scopes.join(" "),
                    }),
                )
            }
            Err(error) => {
                tracing::error!(error = %error, "issuing an access token failed");
                oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "retry later",
                )
            }
        }
    }

    async fn refresh_token_grant(
        &self,
        request: &Request,
        form: &BTreeMap<String, String>,
    ) -> Response {
        let presented = match presented_refresh_token(&self.auth, request, form) {
            Ok(presented) => presented,
            Err(response) => return *response,
        };
        let from_cookie = presented.from_cookie;
        match tokens::refresh(&self.auth, &presented.token).await {
            Ok(refreshed) => {
                let subject = refreshed.user_id.to_string();
                AuditEvent::for_request(request, "token.issued", Outcome::Allowed, "refresh_token")
                    .subject(&subject)
                    .record();
                let mut body = json!({
                    "access_token": refreshed.access.token,
                    "token_type": "Bearer",
                    "expires_in": refreshed.access.expires_in,
                    "scope": refreshed.access.scopes.join(" "),
                });
                if !from_cookie {
                    body["refresh_token"] = Value::from(refreshed.refresh_token.expose());
                }
                let mut response = json_response(StatusCode::OK, &body);
                if from_cookie {
                    set_cookie(
                        &mut response,
                        &tokens::refresh_cookie(
                            refreshed.refresh_token.expose(),
                            self.auth.settings.refresh_token_absolute_seconds,
                        ),
                    );
                }
                response
            }
            Err(RefreshError::Refused(refusal)) => {
                AuditEvent::for_request(
                    request,
                    "token.refresh",
                    Outcome::Denied,
                    refusal.reason_code(),
                )
                .record();
                invalid_grant()
            }
            Err(RefreshError::Reused(revoked_keys)) => {
                AuditEvent::for_request(request, "token.refresh_reuse", Outcome::Denied, "reused")
                    .record();
                for revocation in &revoked_keys {
                    revocation.record(request);
                }
                invalid_grant()
            }
            Err(error) => {
                tracing::error!(error = %error, "refreshing a token failed");
                oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "retry later",
                )
            }
        }
    }
}

/// A refresh token and where it came from.
struct PresentedRefreshToken {
    token: String,
    from_cookie: bool,
}

/// The refresh token of the form, or else of the cookie, whose request must then come from an
/// allowed origin (a cookie travels with any request the browser makes; the `Origin` header
/// tells which page made it).
fn presented_refresh_token(
    auth: &AuthContext,
    request: &Request,
    form: &BTreeMap<String, String>,
) -> std::result::Result<PresentedRefreshToken, Box<Response>> {
    let mut cookies = cookie_values(request, tokens::REFRESH_COOKIE);
    // Two refresh cookies mean one was planted (a cookie set by a sibling subdomain or a
    // script with looser attributes, sent alongside the user's): which one is the user's
    // cannot be told, so neither is used, whatever else the request carries.
    if cookies.len() > 1 {
        return Err(Box::new(refused_input(
            request,
            "duplicate_refresh_cookie",
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request carries more than one refresh cookie",
            ),
        )));
    }
    if let Some(token) = form.get("refresh_token").or_else(|| form.get("token")) {
        return Ok(PresentedRefreshToken {
            token: token.clone(),
            from_cookie: false,
        });
    }
    let Some(cookie) = cookies.pop() else {
        return Err(Box::new(refused_input(
            request,
            "missing_refresh_token",
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "refresh_token is required",
            ),
        )));
    };
    let origin = request
        .headers()
        .get(poem::http::header::ORIGIN)
        .and_then(|value| value.to_str().ok());
    if !origin.is_some_and(|origin| auth.browser_origins.iter().any(|allowed| allowed == origin)) {
        AuditEvent::for_request(request, "token.refresh", Outcome::Denied, "cookie_origin")
            .record();
        return Err(Box::new(oauth_error(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "the refresh cookie is accepted from the service's own origins only",
        )));
    }
    Ok(PresentedRefreshToken {
        token: cookie,
        from_cookie: true,
    })
}

/// Every value of the cookie `name`, across all `Cookie` headers (RFC 6265: `a=1; b=2`).
fn cookie_values(request: &Request, name: &str) -> Vec<String> {
    request
        .headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .collect()
}

fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response
            .headers_mut()
            .append(poem::http::header::SET_COOKIE, value);
    }
}

/// Reads the form of a token or revocation request: POST, form-encoded, no repeated parameter.
async fn read_form(
    request: &mut Request,
) -> Result<std::result::Result<BTreeMap<String, String>, Response>> {
    if request.method() != poem::http::Method::POST {
        let mut response = oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "use POST",
        );
        response
            .headers_mut()
            .insert(poem::http::header::ALLOW, HeaderValue::from_static("POST"));
        return Ok(Err(response));
    }
    let form_encoded = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_encoded {
        return Ok(Err(refused_input(
            request,
            "unsupported_media_type",
            oauth_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            ),
        )));
    }
    // Already bounded in size and time by `BodyLimit` (an error here is mapped, and audited,
    // by the service's JSON error mapping).
    let bytes = request.take_body().into_bytes().await?;
    request.set_body(Body::empty());
    Ok(parse_form(&bytes).ok_or_else(|| {
        refused_input(
            request,
            "request_malformed",
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the form is malformed or repeats a parameter",
            ),
        )
    }))
}

/// `POST /oauth/revoke` (RFC 7009): ends the family of a refresh token; always 200.
#[derive(Debug, Clone)]
pub struct RevocationEndpoint {
    auth: Arc<AuthContext>,
}

impl RevocationEndpoint {
    pub fn new(auth: Arc<AuthContext>) -> Self {
        Self { auth }
    }
}

impl Endpoint for RevocationEndpoint {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Response> {
        let form = match read_form(&mut request).await? {
            Ok(form) => form,
            Err(response) => return Ok(response),
        };
        let presented = match presented_refresh_token(&self.auth, &request, &form) {
            Ok(presented) => presented,
            Err(response) => return Ok(*response),
        };
        let revoked = match tokens::revoke_family_of(&self.auth, &presented.token).await {
            Ok(revoked) => revoked,
            Err(error) => {
                tracing::error!(error = %error, "revoking a token failed");
                return Ok(oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "retry later",
                ));
            }
        };
        let reason = if revoked {
            "family_revoked"
        } else {
            "unknown_token"
        };
        AuditEvent::for_request(&request, "token.revoked", Outcome::Allowed, reason).record();
        let mut response = json_response(StatusCode::OK, &json!({}));
        if presented.from_cookie {
            set_cookie(&mut response, &tokens::cleared_refresh_cookie());
        }
        Ok(response)
    }
}

impl Endpoint for TokenEndpoint {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Response> {
        let form = match read_form(&mut request).await? {
            Ok(form) => form,
            Err(response) => return Ok(response),
        };
        if !self.auth.issues_tokens() {
            return Ok(refused_input(
                &request,
                "unsupported_grant_type",
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "this service issues no tokens; use its identity provider",
                ),
            ));
        }
        let response = match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => self.client_credentials_grant(&request, &form).await,
            Some("refresh_token") => self.refresh_token_grant(&request, &form).await,
            Some(_) => refused_input(
                &request,
                "unsupported_grant_type",
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "supported: client_credentials, refresh_token",
                ),
            ),
            None => refused_input(
                &request,
                "missing_grant_type",
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "grant_type is required",
                ),
            ),
        };
        Ok(response)
    }
}

/// `GET /.well-known/jwks.json`.
pub fn jwks(auth: Arc<AuthContext>) -> impl Endpoint<Output = Response> {
    poem::endpoint::make_sync(move |_| {
        let jwks = if auth.issues_tokens() {
            auth.keys.current().jwks_at(auth.clock.now())
        } else {
            json!({ "keys": [] })
        };
        Response::builder()
            .content_type("application/json")
            // Short: a rotation must reach verifiers well within a token's lifetime.
            .header(CACHE_CONTROL, "public, max-age=300")
            .body(jwks.to_string())
    })
}

/// `GET /.well-known/oauth-authorization-server`.
pub fn metadata(auth: &AuthContext) -> impl Endpoint<Output = Response> + use<> {
    let document = issuer_keys::metadata(&auth.issuer, &all_scope_names()).to_string();
    poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .header(CACHE_CONTROL, "public, max-age=3600")
            .body(document.clone())
    })
}
