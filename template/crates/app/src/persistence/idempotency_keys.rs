//! The `idempotency_keys` table (RATE-6): the `Idempotency-Key` each caller sent with a
//! payment-like write, a hash of that request and the answer it got, kept until `expires_at`.

use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// The caller: keys are scoped to the principal that sent them.
    #[sea_orm(primary_key, auto_increment = false)]
    pub owner_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// SHA-256 (hex) of the canonical JSON of the parsed request.
    pub request_hash: String,
    /// The stored answer; set in the transaction that reserved the key, so never seen empty by
    /// another request.
    pub response_status: Option<i16>,
    /// The JSON body of the stored answer.
    pub response_body: Option<String>,
    pub created_at: DateTimeUtc,
    /// From then on the key is forgotten: the same key makes a new request.
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Deletes every key that expired by `now` (the housekeeping task runs it hourly, so keys of
/// callers who never return do not pile up).
pub async fn delete_expired(db: &impl ConnectionTrait, now: DateTimeUtc) -> Result<u64, DbErr> {
    Entity::delete_many()
        .filter(Column::ExpiresAt.lte(now))
        .exec(db)
        .await
        .map(|deleted| deleted.rows_affected)
}
