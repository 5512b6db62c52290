//! User accounts: `POST /v1/users`, `GET /v1/users` (paged), `GET /v1/users/{id}`.

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, Set, SqlErr};
use uuid::Uuid;

use super::ApiTags;
use crate::error::ApiError;
use crate::persistence::users::{self, Role as StoredRole};

/// The user API.
#[derive(Debug)]
pub struct UsersApi {
    db: DatabaseConnection,
}

impl UsersApi {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// A new user. Unknown fields are rejected.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewUser {
    /// An e-mail address, at most 254 characters.
    #[oai(validator(max_length = 254, pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"))]
    pub email: String,
    /// 1 to 100 letters, spaces, apostrophes or hyphens.
    #[oai(validator(min_length = 1, max_length = 100, pattern = r"^[a-zA-Z\s'-]+$"))]
    pub name: String,
    pub role: Role,
}

/// A stored user.
#[derive(Debug, Object)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<users::Model> for User {
    fn from(model: users::Model) -> Self {
        Self {
            id: model.id,
            email: model.email,
            name: model.name,
            role: match model.role {
                StoredRole::User => Role::User,
                StoredRole::Admin => Role::Admin,
            },
            created_at: model.created_at,
        }
    }
}

/// The largest page `GET /v1/users` serves (INPUT-4): a client cannot make one request read the
/// whole table.
pub const MAX_PAGE_SIZE: u64 = 100;
/// The page size when the client does not choose one.
pub const DEFAULT_PAGE_SIZE: u64 = 20;

fn default_page_size() -> u64 {
    DEFAULT_PAGE_SIZE
}

/// One page of users, in id order.
#[derive(Debug, Object)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<Uuid>,
}

#[derive(Debug, ApiResponse)]
pub enum UserList {
    /// A page of users.
    #[oai(status = 200)]
    Ok(Json<UserPage>),
}

#[derive(Debug, ApiResponse)]
pub enum CreatedUser {
    /// The user was created.
    #[oai(status = 201)]
    Created(Json<User>),
}

#[derive(Debug, ApiResponse)]
pub enum FoundUser {
    /// The user.
    #[oai(status = 200)]
    Ok(Json<User>),
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Users")]
impl UsersApi {
    /// Creates a user.
    #[oai(path = "/users", method = "post")]
    async fn create(&self, body: Json<NewUser>) -> Result<CreatedUser, ApiError> {
        let new_user = body.0;
        let model = users::ActiveModel {
            id: Set(Uuid::new_v4()),
            // Addresses are compared case-insensitively, so they are stored in one case.
            email: Set(new_user.email.to_lowercase()),
            name: Set(new_user.name),
            role: Set(match new_user.role {
                Role::User => StoredRole::User,
                Role::Admin => StoredRole::Admin,
            }),
            created_at: Set(Utc::now()),
        };
        match model.insert(&self.db).await {
            Ok(created) => Ok(CreatedUser::Created(Json(created.into()))),
            Err(error) if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                Err(ApiError::Conflict("A user with this email already exists"))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Lists users, `limit` (1 to 100, default 20) at a time, in id order. `after` is the `next`
    /// value of the previous page.
    #[oai(path = "/users", method = "get")]
    async fn list(
        &self,
        // The cap is declared, so the document shows it and poem-openapi answers 400 above it.
        #[oai(
            default = "default_page_size",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u64>,
        after: Query<Option<Uuid>>,
    ) -> Result<UserList, ApiError> {
        let page = users::page(&self.db, after.0, limit.0.min(MAX_PAGE_SIZE)).await?;
        Ok(UserList::Ok(Json(UserPage {
            items: page.items.into_iter().map(User::from).collect(),
            next: page.next,
        })))
    }

    /// Reads one user.
    #[oai(path = "/users/:id", method = "get")]
    async fn get(&self, id: Path<Uuid>) -> Result<FoundUser, ApiError> {
        users::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .map(|model| FoundUser::Ok(Json(model.into())))
            .ok_or(ApiError::NotFound)
    }
}
