//! The `refresh_tokens` table: one row per issued refresh token, stored as a SHA-256 hash, in
//! families that descend from one login or grant.

use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub family_id: Uuid,
    #[sea_orm(unique)]
    pub token_hash: String,
    pub user_id: Uuid,
    pub client_id: Option<String>,
    /// Space-separated.
    pub scopes: String,
    pub created_at: DateTimeUtc,
    pub family_expires_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    /// Set when the token was exchanged: presenting it again is reuse.
    pub used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// Why the family ended (`crate::auth::tokens::FamilyEnd`): `logout`, `reuse` or
    /// `password_reset`.
    pub revocation_reason: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
