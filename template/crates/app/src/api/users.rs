//! User accounts: `POST /v1/users`, `GET /v1/users` (paged), `GET /v1/users/{id}` for
//! administrators (function-level authorization, AUTH-6: only the admin role is granted
//! `users:read` and `users:write`); `GET /v1/me` and `PATCH /v1/me` for everyone's own profile,
//! where only `name` can change: `role`, `email` and every other field are refused as unknown
//! (no mass assignment).

use chrono::{DateTime, Utc};
use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set, SqlErr};
use security::input::strict_json::ValidationFailure;
use uuid::Uuid;

use super::ApiTags;
use crate::auth::AuthContext;
use crate::auth::scheme::Authenticated;
use crate::auth::scopes::Scope;
use crate::error::ApiError;
use crate::persistence::users::{self, Role as StoredRole};

/// The user API.
#[derive(Debug)]
pub struct UsersApi {
    auth: Arc<AuthContext>,
}

impl UsersApi {
    pub fn new(auth: Arc<AuthContext>) -> Self {
        Self { auth }
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
    /// At least 12 characters, not a common password, not the email address.
    #[oai(validator(min_length = 12, max_length = 128))]
    pub password: String,
}

/// The fields of your own profile you may change. Anything else (`role`, `email`, `id`) is
/// refused as an unknown field.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct ProfileUpdate {
    /// 1 to 100 letters, spaces, apostrophes or hyphens.
    #[oai(validator(min_length = 1, max_length = 100, pattern = r"^[a-zA-Z\s'-]+$"))]
    pub name: String,
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
    async fn create(
        &self,
        #[oai(scope = "Scope::UsersWrite")] _auth: Authenticated,
        body: Json<NewUser>,
    ) -> Result<CreatedUser, ApiError> {
        let new_user = body.0;
        if let Err(violations) = self
            .auth
            .password_policy
            .check(&new_user.password, Some(&new_user.email))
        {
            let mut failure = ValidationFailure::default();
            failure.field_errors.insert(
                "password".to_owned(),
                violations.iter().map(ToString::to_string).collect(),
            );
            return Err(ApiError::Invalid(failure));
        }
        let password_hash = self.auth.passwords.hash(&new_user.password).await?;
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
            password_hash: Set(Some(password_hash)),
        };
        match model.insert(&self.auth.db).await {
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
        #[oai(scope = "Scope::UsersRead")] _auth: Authenticated,
        // The cap is declared, so the document shows it and poem-openapi answers 400 above it.
        #[oai(
            default = "default_page_size",
            validator(minimum(value = "1"), maximum(value = "100"))
        )]
        limit: Query<u64>,
        after: Query<Option<Uuid>>,
    ) -> Result<UserList, ApiError> {
        let page = users::page(&self.auth.db, after.0, limit.0.min(MAX_PAGE_SIZE)).await?;
        Ok(UserList::Ok(Json(UserPage {
            items: page.items.into_iter().map(User::from).collect(),
            next: page.next,
        })))
    }

    /// Reads one user.
    #[oai(path = "/users/:id", method = "get")]
    async fn get(
        &self,
        #[oai(scope = "Scope::UsersRead")] _auth: Authenticated,
        id: Path<Uuid>,
    ) -> Result<FoundUser, ApiError> {
        users::Entity::find_by_id(id.0)
            .one(&self.auth.db)
            .await?
            .map(|model| FoundUser::Ok(Json(model.into())))
            .ok_or(ApiError::NotFound)
    }

    /// Reads your own profile.
    #[oai(path = "/me", method = "get")]
    async fn me(
        &self,
        #[oai(scope = "Scope::Profile")] auth: Authenticated,
    ) -> Result<FoundUser, ApiError> {
        let user = self.caller(&auth).await?;
        Ok(FoundUser::Ok(Json(user.into())))
    }

    /// Changes your own name. No other field can be set here.
    #[oai(path = "/me", method = "patch")]
    async fn update_me(
        &self,
        #[oai(scope = "Scope::Profile")] auth: Authenticated,
        body: Json<ProfileUpdate>,
    ) -> Result<FoundUser, ApiError> {
        let mut user = self.caller(&auth).await?.into_active_model();
        user.name = Set(body.0.name);
        let updated = user.update(&self.auth.db).await?;
        Ok(FoundUser::Ok(Json(updated.into())))
    }
}

impl UsersApi {
    /// The calling user's account.
    async fn caller(&self, auth: &Authenticated) -> Result<users::Model, ApiError> {
        let id: Uuid = auth
            .principal()
            .subject
            .parse()
            .map_err(|_| ApiError::NotFound)?;
        users::Entity::find_by_id(id)
            .one(&self.auth.db)
            .await?
            .ok_or(ApiError::NotFound)
    }
}
