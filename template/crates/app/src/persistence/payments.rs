//! The `payments` table: the demo charges, each owned by the caller who made it.

use sea_orm::entity::prelude::*;

/// Where a payment stands. Stored as text so the database stays readable and portable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    /// The money was taken (the demo captures at once).
    #[sea_orm(string_value = "captured")]
    Captured,
}

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    pub amount_cents: i64,
    /// ISO 4217, three uppercase letters.
    pub currency: String,
    pub description: Option<String>,
    pub status: Status,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
