//! The `users` table.

use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect};

/// A user's role. Stored as text so the database stays readable and portable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Role {
    #[sea_orm(string_value = "user")]
    User,
    #[sea_orm(string_value = "admin")]
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTimeUtc,
    /// argon2id PHC string; `None` for an account without a password. Never serialised.
    pub password_hash: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// One page of users in id order: keyset pagination, so a page costs the same however deep it
/// is and rows added meanwhile neither repeat nor vanish between pages.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Model>,
    /// The id to continue after; `None` on the last page.
    pub next: Option<Uuid>,
}

/// At most `limit` users with an id greater than `after` (from the start when `None`).
pub async fn page(db: &DatabaseConnection, after: Option<Uuid>, limit: u64) -> Result<Page, DbErr> {
    let mut query = Entity::find()
        .order_by_asc(Column::Id)
        // One more row than asked says whether another page follows.
        .limit(limit.saturating_add(1));
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after));
    }
    let mut items = query.all(db).await?;
    let next = if items.len() as u64 > limit {
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        items.last().map(|user| user.id)
    } else {
        None
    };
    Ok(Page { items, next })
}
