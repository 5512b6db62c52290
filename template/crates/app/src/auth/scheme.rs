//! The credential parameter of protected operations.
//!
//! Every protected operation takes `#[oai(scope = "...")] auth: Authenticated`. In the OpenAPI
//! document it is two alternatives, an OAuth 2.0 bearer token (client credentials flow at
//! `/oauth/token`) or an `X-API-Key`, both with the operation's scopes. At runtime the checks
//! are done before the handler runs, by `security::auth::access_control`; these checkers only
//! hand the handler the principal that was authorized for this very operation.

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};
use security::auth::access_control::{Principal, authorized_principal};

use super::scopes::Scope;

/// An access token from `Authorization: Bearer`.
#[derive(Debug, SecurityScheme)]
#[oai(
    ty = "oauth2",
    rename = "oauth2",
    flows(client_credentials(token_url = "/oauth/token", scopes = "Scope")),
    checker = "token_principal"
)]
pub struct AccessToken(Principal);

/// An API key from `X-API-Key`.
#[derive(Debug, SecurityScheme)]
#[oai(
    ty = "api_key",
    rename = "api_key",
    key_name = "X-API-Key",
    key_in = "header",
    checker = "key_principal"
)]
pub struct ApiKeyCredential(Principal);

/// Either credential.
#[derive(Debug, SecurityScheme)]
pub enum Authenticated {
    AccessToken(AccessToken),
    ApiKey(ApiKeyCredential),
}

impl Authenticated {
    /// Who is calling, with the scopes they hold.
    pub fn principal(&self) -> &Principal {
        match self {
            Self::AccessToken(token) => &token.0,
            Self::ApiKey(key) => &key.0,
        }
    }
}

async fn token_principal(request: &Request, _: Bearer) -> Option<Principal> {
    authorized_principal(request)
}

async fn key_principal(request: &Request, _: ApiKey) -> Option<Principal> {
    authorized_principal(request)
}

/// The caller's user id. Local principals are user ids (a token's `sub`, an API key's owner); an
/// external identity provider's `issuer#sub` is not, and is refused, audited (LOG-2): `policy`
/// says what only local users may do, `refusal` is the client's 403 message.
pub fn local_user_id(
    request: &Request,
    principal: &Principal,
    policy: &'static str,
    refusal: &'static str,
) -> Result<uuid::Uuid, crate::error::ApiError> {
    use security::logging::audit::{AuditEvent, Outcome};
    principal.subject.parse().map_err(|_| {
        AuditEvent::for_request(
            request,
            "authz.principal",
            Outcome::Denied,
            "not_a_local_user",
        )
        .subject(&principal.subject)
        .policy(policy)
        .record();
        crate::error::ApiError::Forbidden(refusal)
    })
}
