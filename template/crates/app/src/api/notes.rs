//! Notes, the demo resource owned by its creator: `POST /v1/notes`, `GET /v1/notes/{id}`,
//! `DELETE /v1/notes/{id}` (AUTH-6, object level).
//!
//! Threat: an API that finds an object by its id alone serves it to whoever guesses or leaks the
//! id (broken object-level authorization, the first of the OWASP API risks).
//!
//! Control: every query is scoped to the caller (`owner_id = caller`): another principal's note
//! is not found, so a guessed or leaked id reveals nothing (404, never 403), and the denial is
//! audited (`authz.object`). The rest of AUTH-6: function-level authorization through admin-only
//! scopes (`auth::scopes`: user management, other principals' keys), and no mass assignment, as
//! every request object is closed (`PATCH /v1/me` changes the name only; a `role` field is
//! refused: `api::users`). There is no switch; a resource added without the owner in its queries
//! has the hole again.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, ModelTrait, QueryFilter, Set};
use security::auth::access_control::Principal;
use security::logging::audit::{AuditEvent, Outcome};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::AuthContext;
use crate::auth::scheme::Authenticated;
use crate::auth::scheme::local_user_id;
use crate::auth::scopes::Scope;
use crate::error::ApiError;
use crate::persistence::notes;

/// The notes API.
#[derive(Debug)]
pub struct NotesApi {
    auth: Arc<AuthContext>,
}

impl NotesApi {
    pub fn new(auth: Arc<AuthContext>) -> Self {
        Self { auth }
    }
}

/// A new note. The owner is the caller: there is no field to set it.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct NewNote {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub title: String,
    #[oai(validator(max_length = 10000))]
    pub body: String,
}

/// A stored note.
#[derive(Debug, Object)]
pub struct Note {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl From<notes::Model> for Note {
    fn from(note: notes::Model) -> Self {
        Self {
            id: note.id,
            owner_id: note.owner_id,
            title: note.title,
            body: note.body,
            created_at: note.created_at,
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum CreatedNote {
    /// The note was created.
    #[oai(status = 201)]
    Created(Json<Note>),
}

#[derive(Debug, ApiResponse)]
pub enum FoundNote {
    /// The note.
    #[oai(status = 200)]
    Ok(Json<Note>),
}

#[derive(Debug, ApiResponse)]
pub enum DeletedNote {
    /// The note is deleted.
    #[oai(status = 204)]
    Deleted,
}

/// The caller's user id; a principal that is no local user (an external identity provider's
/// `issuer#sub`) is refused, audited (LOG-2).
fn caller(request: &Request, principal: &Principal) -> Result<Uuid, ApiError> {
    local_user_id(
        request,
        principal,
        "notes are owned by local users only",
        "This principal cannot own notes",
    )
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Notes")]
impl NotesApi {
    /// Creates a note owned by the caller.
    #[oai(path = "/notes", method = "post")]
    async fn create(
        &self,
        request: &Request,
        #[oai(scope = "Scope::NotesWrite")] auth: Authenticated,
        body: Json<NewNote>,
    ) -> Result<CreatedNote, ApiError> {
        let note = notes::ActiveModel {
            id: Set(Uuid::new_v4()),
            owner_id: Set(caller(request, auth.principal())?),
            title: Set(body.0.title),
            body: Set(body.0.body),
            created_at: Set(Utc::now()),
        }
        .insert(&self.auth.db)
        .await?;
        Ok(CreatedNote::Created(Json(note.into())))
    }

    /// Reads one of the caller's notes.
    #[oai(path = "/notes/:id", method = "get")]
    async fn get(
        &self,
        request: &Request,
        #[oai(scope = "Scope::NotesRead")] auth: Authenticated,
        id: Path<Uuid>,
    ) -> Result<FoundNote, ApiError> {
        let note = self.owned(request, auth.principal(), id.0).await?;
        Ok(FoundNote::Ok(Json(note.into())))
    }

    /// Deletes one of the caller's notes.
    #[oai(path = "/notes/:id", method = "delete")]
    async fn delete(
        &self,
        request: &Request,
        #[oai(scope = "Scope::NotesWrite")] auth: Authenticated,
        id: Path<Uuid>,
    ) -> Result<DeletedNote, ApiError> {
        let note = self.owned(request, auth.principal(), id.0).await?;
        note.delete(&self.auth.db).await?;
        Ok(DeletedNote::Deleted)
    }
}

impl NotesApi {
    /// The note `id` if the caller owns it; the owner is part of the query.
    async fn owned(
        &self,
        request: &Request,
        principal: &Principal,
        id: Uuid,
    ) -> Result<notes::Model, ApiError> {
        let note = notes::Entity::find_by_id(id)
            .filter(notes::Column::OwnerId.eq(caller(request, principal)?))
            .one(&self.auth.db)
            .await?;
        match note {
            Some(note) => Ok(note),
            None => {
                AuditEvent::for_request(
                    request,
                    "authz.object",
                    Outcome::Denied,
                    "not_found_or_not_owner",
                )
                .subject(&principal.subject)
                .policy("notes are visible to their owner only")
                .record();
                Err(ApiError::NotFound)
            }
        }
    }
}
