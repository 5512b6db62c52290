//! The `outbox_messages` table: mail waiting to be relayed to a mail server, each body sealed
//! (`crate::mail`).

use sea_orm::Condition;
use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox_messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub recipient: String,
    pub subject: String,
    /// The body (it may hold a secret: a reset link) sealed under `auth.outbox_encryption_key`,
    /// bound to `id` and `recipient`: `nonce || ciphertext || tag`. Opened by
    /// `mail::OutboxKey::open` only when sent.
    pub sealed_body: Vec<u8>,
    pub created_at: DateTimeUtc,
    /// Not worth sending after this (the link in it no longer works).
    pub expires_at: DateTimeUtc,
    /// Set by the relay once the message was handed to a mail server.
    pub sent_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Deletes the messages already delivered and those expired at `now`; returns how many. A
/// delivered message is the mail server's now; an expired one would never be sent.
pub async fn delete_delivered_and_expired(
    db: &impl ConnectionTrait,
    now: DateTimeUtc,
) -> Result<u64, DbErr> {
    Entity::delete_many()
        .filter(
            Condition::any()
                .add(Column::SentAt.is_not_null())
                .add(Column::ExpiresAt.lte(now)),
        )
        .exec(db)
        .await
        .map(|deleted| deleted.rows_affected)
}
