//! API keys: `POST /v1/api-keys`, `GET /v1/api-keys`, `DELETE /v1/api-keys/{id}`,
//! `POST /v1/api-keys/{id}/rotate` (AUTH-2, AUTH-6).
//!
//! A key's scopes must be a subset of its creator's, and only a credential holding all of a
//! key's scopes may rotate or revoke it; the secret is in the creation (or rotation) response
//! only. A principal manages its own keys; another principal's keys answer
//! 404 (their existence is not disclosed), unless the caller holds `api_keys:admin`. Listing
//! another owner's keys without it is 403.
//!
//! `api_keys:admin` lists and revokes another principal's keys, never obtains a secret acting
//! as them (AUTH-4): only the owner rotates a key (another's key answers 403 to an
//! administrator, 404 to anyone else), and a new key always belongs to its creator (the request
//! has no owner field). Revoking a key revokes the keys derived from it, each audited
//! (`crate::auth::api_keys` describes the cascade).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use security::auth::access_control::Principal;
use security::logging::audit::{AuditEvent, Outcome};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::AuthContext;
use crate::auth::api_keys::{self, IssueError, IssuedKey, Provenance};
use crate::auth::scheme::Authenticated;
use crate::auth::scheme::local_user_id;
use crate::auth::scopes::Scope;
use crate::error::ApiError;
use crate::persistence::api_keys as stored;

/// The API-key API.
#[derive(Debug)]
pub struct ApiKeysApi {
    auth: Arc<AuthContext>,
}

impl ApiKeysApi {
    pub fn new(auth: Arc<AuthContext>) -> Self {
        Self { auth }
    }
}

/// A new key.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewApiKey {
    /// A label for its owner, 1 to 100 characters.
    #[oai(validator(min_length = 1, max_length = 100, pattern = r"^[\w .:-]+$"))]
    pub name: String,
    /// What the key may do: a subset of the caller's own scopes.
    #[oai(validator(min_items = 1, max_items = 20, unique_items))]
    pub scopes: Vec<String>,
    /// When the key stops working; none means until revoked.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A stored key, without its secret.
#[derive(Debug, Object)]
pub struct ApiKey {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub last_used_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// After a rotation: the key stops working at this time.
    #[oai(skip_serializing_if_is_none)]
    pub valid_until: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub replaced_by: Option<Uuid>,
}

impl From<stored::Model> for ApiKey {
    fn from(key: stored::Model) -> Self {
        Self {
            scopes: key.scope_list(),
            id: key.id,
            owner_id: key.owner_id,
            name: key.name,
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
            valid_until: key.valid_until,
            replaced_by: key.replaced_by,
        }
    }
}

/// A key with its secret: shown in this response only.
#[derive(Object)]
pub struct CreatedApiKey {
    #[oai(flatten)]
    pub key: ApiKey,
    /// The secret. Store it now: it cannot be shown again. Use it as `X-API-Key`, or as the
    /// `client_secret` (with the key's `id` as `client_id`) at `POST /oauth/token`.
    pub secret: String,
}

impl std::fmt::Debug for CreatedApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiKey")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl From<IssuedKey> for CreatedApiKey {
    fn from(issued: IssuedKey) -> Self {
        Self {
            secret: issued.secret.expose().to_owned(),
            key: issued.key.into(),
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum Created {
    /// The key, with its secret.
    #[oai(status = 201)]
    Created(Json<CreatedApiKey>, #[oai(header = "Cache-Control")] String),
}

#[derive(Debug, ApiResponse)]
pub enum KeyList {
    /// The keys.
    #[oai(status = 200)]
    Ok(Json<Vec<ApiKey>>),
}

#[derive(Debug, ApiResponse)]
pub enum Revoked {
    /// The key is revoked.
    #[oai(status = 204)]
    Revoked,
}

fn parse_owner(request: &Request, principal: &Principal) -> Result<Uuid, ApiError> {
    local_user_id(
        request,
        principal,
        "API keys are owned by local users only",
        "This principal cannot own API keys",
    )
}

/// Whether the caller may manage every principal's keys.
fn is_key_admin(principal: &Principal) -> bool {
    principal.has_scope("api_keys:admin")
}

/// 403, audited under `policy`, unless `principal` holds every one of `scopes`.
fn require_scopes_held(
    request: &Request,
    principal: &Principal,
    scopes: &[String],
    policy: &str,
    message: &'static str,
) -> Result<(), ApiError> {
    if scopes.iter().all(|scope| principal.has_scope(scope)) {
        return Ok(());
    }
    AuditEvent::for_request(
        request,
        "authz.api_key_scopes",
        Outcome::Denied,
        "scope_not_held",
    )
    .subject(&principal.subject)
    .policy(policy)
    .record();
    Err(ApiError::Forbidden(message))
}

fn created(issued: IssuedKey) -> Created {
    Created::Created(Json(issued.into()), "no-store".to_owned())
}

/// A key that was not issued: 401 when the caller's session or key has ended (its access token
/// is still inside its 15 minutes, but nothing may be derived from it any more), audited under
/// `event`.
fn not_issued(
    request: &Request,
    principal: &Principal,
    event: &'static str,
    error: IssueError,
) -> ApiError {
    match error {
        IssueError::ProvenanceEnded => {
            AuditEvent::for_request(request, event, Outcome::Denied, "provenance_ended")
                .subject(&principal.subject)
                .policy("nothing is derived from a revoked session or an ended key")
                .record();
            ApiError::Unauthorized("The session or key of this credential has ended")
        }
        IssueError::Database(error) => error.into(),
    }
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::ApiKeys")]
impl ApiKeysApi {
    /// Creates an API key with a subset of the caller's scopes. The secret is shown once.
    #[oai(path = "/api-keys", method = "post")]
    async fn create(
        &self,
        request: &Request,
        #[oai(scope = "Scope::ApiKeysWrite")] auth: Authenticated,
        body: Json<NewApiKey>,
    ) -> Result<Created, ApiError> {
        let principal = auth.principal();
        let owner = parse_owner(request, principal)?;
        let body = body.0;
        require_scopes_held(
            request,
            principal,
            &body.scopes,
            "a key's scopes must be a subset of its creator's",
            "A key cannot hold scopes its creator does not hold",
        )?;
        if body
            .expires_at
            .is_some_and(|expires| expires <= self.auth.now())
        {
            return Err(ApiError::Conflict("expires_at must be in the future"));
        }
        let expires_at = self
            .capped_by_parent_key(principal, body.expires_at)
            .await?;
        let issued = api_keys::issue(
            &self.auth,
            &self.auth.db,
            owner,
            &body.name,
            &body.scopes,
            expires_at,
            Provenance::of(principal),
        )
        .await
        .map_err(|error| not_issued(request, principal, "api_key.created", error))?;
        let key_id = issued.key.id.to_string();
        AuditEvent::for_request(request, "api_key.created", Outcome::Allowed, "created")
            .subject(&principal.subject)
            .policy(&key_id)
            .record();
        Ok(created(issued))
    }

    /// Lists the caller's keys; with `api_keys:admin`, `owner` lists another principal's.
    #[oai(path = "/api-keys", method = "get")]
    async fn list(
        &self,
        request: &Request,
        #[oai(scope = "Scope::ApiKeysRead")] auth: Authenticated,
        owner: Query<Option<Uuid>>,
    ) -> Result<KeyList, ApiError> {
        let principal = auth.principal();
        let own = parse_owner(request, principal)?;
        let owner = owner.0.unwrap_or(own);
        if owner != own && !is_key_admin(principal) {
            AuditEvent::for_request(
                request,
                "authz.api_keys_of_other",
                Outcome::Denied,
                "not_admin",
            )
            .subject(&principal.subject)
            .policy("other principals' keys require api_keys:admin")
            .record();
            return Err(ApiError::Forbidden(
                "Listing another principal's keys requires api_keys:admin",
            ));
        }
        let keys = stored::Entity::find()
            .filter(stored::Column::OwnerId.eq(owner))
            .order_by_asc(stored::Column::CreatedAt)
            .all(&self.auth.db)
            .await?;
        Ok(KeyList::Ok(Json(
            keys.into_iter().map(ApiKey::from).collect(),
        )))
    }

    /// Revokes a key at once.
    #[oai(path = "/api-keys/:id", method = "delete")]
    async fn revoke(
        &self,
        request: &Request,
        #[oai(scope = "Scope::ApiKeysWrite")] auth: Authenticated,
        id: Path<Uuid>,
    ) -> Result<Revoked, ApiError> {
        let principal = auth.principal();
        let key = self.find_manageable(request, principal, id.0).await?;
        for revocation in api_keys::revoke(&self.auth, &key).await? {
            revocation.record_by(request, Some(&principal.subject));
        }
        Ok(Revoked::Revoked)
    }

    /// Issues a successor with the same scopes. The old key keeps working for the configured
    /// overlap (`auth.api_key_overlap_seconds`, default 24 hours), then is refused. Only the
    /// key's owner rotates it, with a credential holding all its scopes.
    #[oai(path = "/api-keys/:id/rotate", method = "post")]
    async fn rotate(
        &self,
        request: &Request,
        #[oai(scope = "Scope::ApiKeysWrite")] auth: Authenticated,
        id: Path<Uuid>,
    ) -> Result<Created, ApiError> {
        let principal = auth.principal();
        let key = self.find_rotatable(request, principal, id.0).await?;
        if key.state_at(self.auth.now()) != stored::KeyState::Active || key.replaced_by.is_some() {
            return Err(ApiError::Conflict(
                "Only an active key that was not rotated yet can be rotated",
            ));
        }
        let old_id = key.id.to_string();
        let Some(successor) = api_keys::rotate(&self.auth, key, Provenance::of(principal))
            .await
            .map_err(|error| not_issued(request, principal, "api_key.rotated", error))?
        else {
            return Err(ApiError::Conflict(
                "Only an active key that was not rotated yet can be rotated",
            ));
        };
        AuditEvent::for_request(request, "api_key.rotated", Outcome::Allowed, "rotated")
            .subject(&principal.subject)
            .policy(&old_id)
            .record();
        Ok(created(successor))
    }
}

impl ApiKeysApi {
    /// A key created with another key (directly or through its token) ends no later than that
    /// key: its expiry or the end of its rotation overlap.
    async fn capped_by_parent_key(
        &self,
        principal: &Principal,
        requested: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(parent) = principal
            .client_id
            .as_deref()
            .and_then(|id| id.parse::<Uuid>().ok())
        else {
            return Ok(requested);
        };
        let Some(parent) = stored::Entity::find_by_id(parent)
            .one(&self.auth.db)
            .await?
        else {
            return Ok(requested);
        };
        let parent_end = match (parent.expires_at, parent.valid_until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(match (requested, parent_end) {
            (Some(requested), Some(end)) => Some(requested.min(end)),
            (requested, end) => requested.or(end),
        })
    }

    /// A key the caller may manage: its own, or any with `api_keys:admin`. Others' keys are
    /// reported missing (object-level authorization: no existence oracle).
    async fn find_manageable(
        &self,
        request: &Request,
        principal: &Principal,
        id: Uuid,
    ) -> Result<stored::Model, ApiError> {
        let own = parse_owner(request, principal)?;
        let key = stored::Entity::find_by_id(id)
            .one(&self.auth.db)
            .await?
            .ok_or(ApiError::NotFound)?;
        if key.owner_id != own && !is_key_admin(principal) {
            AuditEvent::for_request(request, "authz.object", Outcome::Denied, "not_owner")
                .subject(&principal.subject)
                .policy("API keys are managed by their owner or api_keys:admin")
                .record();
            return Err(ApiError::NotFound);
        }
        // A weaker credential of the same owner (a key with only `api_keys:write`) must not
        // revoke a stronger key; an administrator may (revoking yields no secret).
        if !is_key_admin(principal) {
            require_every_scope_of(request, principal, &key)?;
        }
        Ok(key)
    }

    /// A key the caller may rotate: its own only, and only with every scope the key holds,
    /// administrator or not. A rotation hands out the successor's secret: in another's hands it
    /// would act as the owner (read and change what is theirs), which no role grants; and a
    /// narrow key of the same owner (`api_keys:admin api_keys:write`) must not rotate a
    /// stronger key into a secret it can read. An administrator revokes another's key instead.
    async fn find_rotatable(
        &self,
        request: &Request,
        principal: &Principal,
        id: Uuid,
    ) -> Result<stored::Model, ApiError> {
        let own = parse_owner(request, principal)?;
        let key = self.find_manageable(request, principal, id).await?;
        if key.owner_id != own {
            // Only an administrator gets this far with another's key: it may see the key
            // (listing), so 403 discloses nothing.
            AuditEvent::for_request(request, "authz.object", Outcome::Denied, "not_owner")
                .subject(&principal.subject)
                .policy("only a key's owner rotates it; an administrator may revoke it")
                .record();
            return Err(ApiError::Forbidden(
                "Only the key's owner can rotate it; an administrator can revoke it",
            ));
        }
        require_every_scope_of(request, principal, &key)?;
        Ok(key)
    }
}

/// A key is managed only by a credential holding every scope the key holds: a narrower
/// credential must not revoke or rotate a stronger key.
fn require_every_scope_of(
    request: &Request,
    principal: &Principal,
    key: &stored::Model,
) -> Result<(), ApiError> {
    require_scopes_held(
        request,
        principal,
        &key.scope_list(),
        "a key is managed only by a credential holding all its scopes",
        "Managing this key needs every scope it holds",
    )
}
