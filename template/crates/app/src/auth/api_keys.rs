//! API keys (AUTH-2): issued with a subset of their creator's scopes, shown once, stored as a
//! keyed hash; rotation issues a successor and keeps the old key valid for the configured
//! overlap, so clients can switch without downtime.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, Set, TransactionTrait,
};
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
    issue_as(auth, db, Uuid::new_v4(), owner_id, name, scopes, expires_at).await
}

async fn issue_as(
    auth: &AuthContext,
    db: &impl ConnectionTrait,
    id: Uuid,
    owner_id: Uuid,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
) -> Result<IssuedKey, DbErr> {
    let secret = ApiKeySecret::generate(&auth.key_prefix);
    let key = api_keys::ActiveModel {
        id: Set(id),
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
/// the overlap, in one transaction. `None` when `old` was rotated or revoked meanwhile: the
/// conditional update lets one of two concurrent rotations win.
pub async fn rotate(auth: &AuthContext, old: api_keys::Model) -> Result<Option<IssuedKey>, DbErr> {
    let overlap = chrono::Duration::seconds(
        i64::try_from(auth.settings.api_key_overlap_seconds).unwrap_or(i64::MAX),
    );
    let successor_id = Uuid::new_v4();
    let transaction = auth.db.begin().await?;
    let claimed = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::ReplacedBy, Expr::value(successor_id))
        .col_expr(
            api_keys::Column::ValidUntil,
            Expr::value(auth.now() + overlap),
        )
        .filter(api_keys::Column::Id.eq(old.id))
        .filter(api_keys::Column::ReplacedBy.is_null())
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(&transaction)
        .await?;
    if claimed.rows_affected != 1 {
        transaction.rollback().await?;
        return Ok(None);
    }
    let successor = issue_as(
        auth,
        &transaction,
        successor_id,
        old.owner_id,
        &old.name,
        &old.scope_list(),
        old.expires_at,
    )
    .await?;
    transaction.commit().await?;
    Ok(Some(successor))
}

/// Revokes `key` now.
pub async fn revoke(auth: &AuthContext, key: api_keys::Model) -> Result<(), DbErr> {
    let mut revoked = key.into_active_model();
    revoked.revoked_at = Set(Some(auth.now()));
    revoked.update(&auth.db).await.map(drop)
}
