//! Bearer tokens and API keys verified for `security::auth::access_control` (AUTH-2, AUTH-5).
//!
//! A token is checked by the validator against the trusted issuers. An API key is checked
//! offline first (prefix and checksum), then looked up by its keyed hash; it must be neither
//! revoked, expired nor past its rotation overlap, and it grants only the scopes it was given
//! that its owner's role still allows.

use std::sync::Arc;

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use security::auth::access_control::{
    AuthFailure, AuthMethod, Credential, CredentialVerifier, Principal,
};
use security::auth::secrets::parse_api_key;

use super::AuthContext;
use super::scopes::scopes_of_role;
use crate::persistence::api_keys::{self, KeyState};
use crate::persistence::users;

/// The service's [`CredentialVerifier`].
#[derive(Debug, Clone)]
pub struct ServiceVerifier {
    auth: Arc<AuthContext>,
}

impl ServiceVerifier {
    pub fn new(auth: Arc<AuthContext>) -> Self {
        Self { auth }
    }
}

impl CredentialVerifier for ServiceVerifier {
    async fn verify(&self, credential: Credential<'_>) -> Result<Principal, AuthFailure> {
        match credential {
            Credential::Bearer(token) => {
                let claims = self
                    .auth
                    .validate_access_token(token)
                    .await
                    .map_err(|error| AuthFailure::Invalid(error.reason_code()))?;
                // An external issuer grants only the scopes it is allowed here, and its subjects
                // live in its own namespace: `<issuer>#<sub>` is never a local user id, so an
                // external token can never act as (or collide with) a local account.
                // Its `sid` and `client_id` name a session and a client of the external provider,
                // not a session or an API key of ours: dropped (a key records both as its
                // provenance).
                let (subject, scopes, session_id, client_id) =
                    match self.auth.external_issuer(&claims.issuer) {
                        Some(external) => (
                            format!("{}#{}", claims.issuer, claims.subject),
                            claims
                                .scopes
                                .into_iter()
                                .filter(|scope| external.allowed_scopes.contains(scope))
                                .collect(),
                            None,
                            None,
                        ),
                        None => (
                            claims.subject,
                            claims.scopes.into_iter().collect(),
                            claims.session_id,
                            claims.client_id,
                        ),
                    };
                Ok(Principal {
                    subject,
                    scopes,
                    method: AuthMethod::AccessToken,
                    client_id,
                    session_id,
                })
            }
            Credential::ApiKey(presented) => {
                let key = verify_api_key(&self.auth, presented).await?;
                Ok(Principal {
                    subject: key.owner.id.to_string(),
                    scopes: key.scopes.into_iter().collect(),
                    method: AuthMethod::ApiKey,
                    client_id: Some(key.id.to_string()),
                    session_id: None,
                })
            }
        }
    }
}

/// `last_used_at` is kept to this many seconds.
const LAST_USE_RESOLUTION_SECONDS: i64 = 60;

/// A usable API key, with the scopes it grants now.
#[derive(Debug)]
pub struct VerifiedKey {
    pub id: uuid::Uuid,
    pub owner: users::Model,
    pub scopes: Vec<String>,
}

/// Checks an API key and records its use. The reason code of a refusal goes to the audit log.
pub async fn verify_api_key(
    auth: &AuthContext,
    presented: &str,
) -> Result<VerifiedKey, AuthFailure> {
    let presented = parse_api_key(&auth.key_prefix, presented)
        .map_err(|error| AuthFailure::Invalid(error.reason_code()))?;
    let hash = auth.key_hasher.hash(presented).to_hex();
    let key = api_keys::Entity::find()
        .filter(api_keys::Column::KeyHash.eq(hash))
        .one(&auth.db)
        .await
        .map_err(|_| AuthFailure::Unavailable)?
        .ok_or(AuthFailure::Invalid("unknown_key"))?;
    let owner = users::Entity::find_by_id(key.owner_id)
        .one(&auth.db)
        .await
        .map_err(|_| AuthFailure::Unavailable)?
        .ok_or(AuthFailure::Invalid("unknown_owner"))?;
    let now = auth.now();
    match key.state_at(now) {
        KeyState::Active => {}
        refused => return Err(AuthFailure::Invalid(refused.reason_code())),
    }
    let allowed = scopes_of_role(owner.role);
    let scopes = key
        .scope_list()
        .into_iter()
        .filter(|scope| allowed.contains(&scope.as_str()))
        .collect();
    let id = key.id;
    // At most one write a minute per key: its last use, not a write on every request.
    let stale = key
        .last_used_at
        .is_none_or(|last| now - last >= chrono::Duration::seconds(LAST_USE_RESOLUTION_SECONDS));
    if stale {
        let mut touched = key.into_active_model();
        touched.last_used_at = Set(Some(now));
        if let Err(error) = touched.update(&auth.db).await {
            // The key is valid; failing to record its use must not refuse the request.
            tracing::warn!(error = %error, "could not record an API key's last use");
        }
    }
    Ok(VerifiedKey { id, owner, scopes })
}
