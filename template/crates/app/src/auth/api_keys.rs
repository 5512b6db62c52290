//! API keys (AUTH-2): issued with a subset of their creator's scopes, shown once, stored as a
//! keyed hash; rotation issues a successor and keeps the old key valid for the configured
//! overlap, so clients can switch without downtime.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbErr, IntoActiveModel, Set, TransactionTrait};
use security::auth::secrets::ApiKeySecret;
use uuid::Uuid;

use super::AuthContext;
use crate::persistence::api_keys;

/// A key as created: the stored row and the secret, which is shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: api_keys::Model,
    pub secret: ApiKeySecret,
}

/// Creates a key for `owner_id`. The caller has checked that `scopes` are the creator's.
pub async fn issue(
    auth: &AuthContext,
    db: &impl ConnectionTrait,
    owner_id: Uuid,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> Result<IssuedKey, DbErr> {
    let secret = ApiKeySecret::generate(&auth.key_prefix);
    let key = api_keys::ActiveModel {
        id: Set(Uuid::new_v4()),
        owner_id: Set(owner_id),
        name: Set(name.to_owned()),
        key_hash: Set(auth.key_hasher.hash(secret.expose()).to_hex()),
        scopes: Set(scopes.join(" ")),
        created_at: Set(auth.now()),
        expires_at: Set(expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
        replaced_by: Set(None),
        valid_until: Set(None),
    }
    .insert(db)
    .await?;
    Ok(IssuedKey { key, secret })
}

/// Issues the successor of `old` (same owner, name, scopes and expiry) and ends `old` after
/// the overlap, in one transaction.
pub async fn rotate(auth: &AuthContext, old: api_keys::Model) -> Result<IssuedKey, DbErr> {
    let overlap = chrono::Duration::seconds(
        i64::try_from(auth.settings.api_key_overlap_seconds).unwrap_or(i64::MAX),
    );
    let transaction = auth.db.begin().await?;
    let successor = issue(
        auth,
        &transaction,
        old.owner_id,
        &old.name,
        &old.scope_list(),
        old.expires_at,
    )
    .await?;
    let overlap_end = auth.now() + overlap;
    let mut ended = old.into_active_model();
    ended.replaced_by = Set(Some(successor.key.id));
    ended.valid_until = Set(Some(overlap_end));
    ended.update(&transaction).await?;
    transaction.commit().await?;
    Ok(successor)
}

/// Revokes `key` now.
pub async fn revoke(auth: &AuthContext, key: api_keys::Model) -> Result<(), DbErr> {
    let mut revoked = key.into_active_model();
    revoked.revoked_at = Set(Some(auth.now()));
    revoked.update(&auth.db).await.map(drop)
}
