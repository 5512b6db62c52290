//! The one mapping from errors to client responses (INPUT-2, TLS-5).
//!
//! Every error the service returns, whether raised by a handler ([`ApiError`]) or by poem itself
//! (unknown route, wrong method, unparsable request), leaves through [`JsonErrors`] as
//! `{"error": "...", "request_id": "..."}` with the right status. A 400 adds `details`: form errors
//! and field errors under the names the API documents, from the strict body check
//! ([`ValidationFailure`], every problem at once) or from a parameter poem-openapi refused. What is
//! hidden from the client, and why:
//! - the detail of a server-side failure (SQL, paths, driver messages): it helps an attacker map
//!   the system and helps no client; it is logged server-side with the request id instead;
//! - the internal message of poem's own errors: only a fixed text per status is sent.
//!
//! Every error is JSON, never the rejected value (INPUT-2): unknown routes (404), wrong methods
//! (405 with `Allow`), a database outage (503) alike. A 400's `details` holds every problem at
//! once: `formErrors` about the body as a whole (invalid JSON with its line and column, nesting
//! too deep, a wrong top-level type) and `fieldErrors` under the names the API documents,
//! nested as `parent.child` and `items[0].name`, parameters under their documented name (`id`,
//! never poem-openapi's internal `param0`). Messages say what was expected ("must be at most
//! 254 characters", "is not allowed", "appears more than once"). Each refused input is audited
//! once, here (`input.validation`, LOG-3).
//!
//! poem-openapi's messages are read in one place, `poem_openapi_messages`; the documented names
//! of path parameters come from [`PathParameterNames`].

mod path_parameters;
mod poem_openapi_messages;

pub use path_parameters::PathParameterNames;
use poem_openapi_messages::{RefusedParameter, refused_parameter};

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};
use security::input::strict_json::ValidationFailure;
use security::logging::audit::{AuditContext, Outcome};
use security::logging::request_id::RequestId;
use security::rate_limit::middleware::AdmittedTiers;

/// The body of every error response.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// A short, fixed description of what went wrong.
    pub error: String,
    /// Per-field detail for validation failures.
    #[oai(skip_serializing_if_is_none)]
    pub details: Option<ValidationDetails>,
    /// The id also sent as `X-Request-Id`; quote it when reporting a problem.
    #[oai(skip_serializing_if_is_none)]
    pub request_id: Option<String>,
}

/// Validation failures: errors about the request as a whole, and errors per field.
#[derive(Debug, Clone, Default, Object)]
#[oai(rename_all = "camelCase")]
pub struct ValidationDetails {
    pub form_errors: Vec<String>,
    pub field_errors: std::collections::BTreeMap<String, Vec<String>>,
}

/// The errors a handler can return. Each variant says what the client learns.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The named resource does not exist (or the caller may not know it does).
    #[error("Not found")]
    NotFound,
    /// The request conflicts with existing state, e.g. a duplicate unique value.
    #[error("{0}")]
    Conflict(&'static str),
    /// The credentials presented to a login are wrong (never saying which part).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The principal may not do this (function-level authorization).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The body is well-formed but breaks a rule no schema expresses (a weak password):
    /// reported like a schema failure, per field.
    #[error("Validation failed")]
    Invalid(ValidationFailure),
    /// The request is valid on its own but cannot be processed as sent, e.g. a key meant for one
    /// request reused with a different one.
    #[error("{0}")]
    Unprocessable(&'static str),
    /// A rate limit refused the request (429), or its fail-closed store could not decide (503):
    /// sent with `Retry-After` and the `RateLimit` headers.
    #[error("{}", if .0.status() == StatusCode::TOO_MANY_REQUESTS { "Too many requests" } else { "Service unavailable" })]
    RateLimited(security::rate_limit::Refusal),
    /// Too much work is queued (password hashing): retrying later may succeed.
    #[error("Service busy")]
    Busy,
    /// The database could not be reached in time: retrying later may succeed.
    #[error("Service unavailable")]
    Unavailable(#[source] sea_orm::DbErr),
    /// Anything else. The source is logged, never sent.
    #[error("Internal server error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited(refusal) => refusal.status(),
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        if database_unreachable(&error) {
            Self::Unavailable(error)
        } else {
            Self::Internal(Box::new(error))
        }
    }
}

/// True when the failure is the database being out of reach (a retry may succeed), as opposed
/// to a fault in the query or the data.
fn database_unreachable(error: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    use sea_orm::{DbErr, RuntimeErr};
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Query(RuntimeErr::SqlxError(cause)) | DbErr::Exec(RuntimeErr::SqlxError(cause)) => {
            matches!(
                cause.as_ref(),
                SqlxError::Io(_)
                    | SqlxError::Tls(_)
                    | SqlxError::PoolTimedOut
                    | SqlxError::PoolClosed
                    | SqlxError::WorkerCrashed
            )
        }
        _ => false,
    }
}

impl From<security::auth::password::PasswordError> for ApiError {
    fn from(error: security::auth::password::PasswordError) -> Self {
        match error {
            security::auth::password::PasswordError::Busy => Self::Busy,
            security::auth::password::PasswordError::Hashing => Self::Internal(Box::new(error)),
        }
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }
}

/// Documents the error statuses in the OpenAPI document, with [`ErrorBody`] as their schema.
#[derive(ApiResponse)]
#[allow(dead_code)] // Only its metadata is used.
enum DocumentedErrors {
    /// The request does not match the operation's schema.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No credential, or an invalid or expired one (`WWW-Authenticate: Bearer`).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The credential lacks a required scope (`error="insufficient_scope"`), or the principal
    /// may not perform this operation.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// No such resource.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with existing state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is larger than the operation accepts (`limits.max_body_bytes`).
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The request cannot be processed as sent, e.g. a key meant for one request reused with a
    /// different one.
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// A rate limit was reached: wait `Retry-After` seconds (`RateLimit` and `RateLimit-Policy`
    /// describe the tier).
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>),
    /// An unexpected failure; the detail is in the server log under the request id.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (the database) is unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        DocumentedErrors::meta()
    }

    fn register(registry: &mut Registry) {
        DocumentedErrors::register(registry);
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status(), public_message(&self), None, None);
        if let Self::RateLimited(refusal) = &self {
            refusal.add_headers(response.headers_mut());
        }
        response
    }
}

fn public_message(error: &ApiError) -> String {
    error.to_string()
}

/// An error and its sources, by their messages: `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// The reason code of an `input.validation` audit event (LOG-3), when the error refused the
/// request's input: its body, its parameters, its size or its media type.
fn validation_failure_reason(error: &poem::Error, status: StatusCode) -> Option<&'static str> {
    if let Some(api_error) = error.downcast_ref::<ApiError>() {
        return matches!(api_error, ApiError::Invalid(_)).then_some("business_rule");
    }
    if error.downcast_ref::<ValidationFailure>().is_some() {
        return Some("body_schema");
    }
    match status {
        StatusCode::BAD_REQUEST => Some("request_malformed"),
        StatusCode::PAYLOAD_TOO_LARGE => Some("body_too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Some("unsupported_media_type"),
        _ => None,
    }
}

/// The fixed text sent for a status when poem itself rejected the request.
fn generic_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "Validation failed",
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed",
        StatusCode::NOT_ACCEPTABLE => "Not acceptable",
        StatusCode::REQUEST_TIMEOUT => "Request timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "Payload too large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "Unsupported media type",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        StatusCode::SERVICE_UNAVAILABLE => "Service unavailable",
        status if status.is_client_error() => "Bad request",
        _ => "Internal server error",
    }
}

fn error_response(
    status: StatusCode,
    error: String,
    details: Option<ValidationDetails>,
    request_id: Option<String>,
) -> Response {
    let body = ErrorBody {
        error,
        details,
        request_id,
    };
    let mut response = Json(body).into_response();
    response.set_status(status);
    response
}

/// What a 400 from poem-openapi's own parsing tells the client: the refused parameter under the
/// name the API documents, with the message [`poem_openapi_messages`] words for it (never
/// poem-openapi's own text, which can quote the rejected value), or else one form error.
fn validation_details(
    error: &poem::Error,
    request_path: &str,
    path_parameters: &PathParameterNames,
) -> ValidationDetails {
    match refused_parameter(error) {
        Some(RefusedParameter { name, message }) => {
            let name = path_parameters
                .documented_name(request_path, name)
                .unwrap_or(name);
            ValidationDetails {
                form_errors: Vec::new(),
                field_errors: [(name.to_owned(), vec![message])].into(),
            }
        }
        None => ValidationDetails {
            form_errors: vec!["The request does not match the operation's schema".to_owned()],
            field_errors: Default::default(),
        },
    }
}

/// Middleware turning every error into the uniform JSON body, with the request id.
#[derive(Debug, Clone, Default)]
pub struct JsonErrors {
    path_parameters: std::sync::Arc<PathParameterNames>,
}

impl JsonErrors {
    /// Names path-parameter errors as `document` (the service's OpenAPI document) does.
    pub fn for_openapi(document: &serde_json::Value) -> Self {
        Self {
            path_parameters: std::sync::Arc::new(PathParameterNames::from_openapi(document)),
        }
    }
}

impl<E: Endpoint> Middleware<E> for JsonErrors {
    type Output = JsonErrorsEndpoint<E>;

    fn transform(&self, next: E) -> Self::Output {
        JsonErrorsEndpoint {
            next,
            path_parameters: self.path_parameters.clone(),
        }
    }
}

/// The endpoint produced by [`JsonErrors`].
#[derive(Debug)]
pub struct JsonErrorsEndpoint<E> {
    next: E,
    path_parameters: std::sync::Arc<PathParameterNames>,
}

impl<E: Endpoint> Endpoint for JsonErrorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let request_id = req.extensions().get::<RequestId>().map(ToString::to_string);
        let path = req.uri().path().to_owned();
        let audit = AuditContext::of(&req);
        let error = match self.next.call(req).await {
            Ok(output) => return Ok(output.into_response()),
            Err(error) => error,
        };
        // The tiers that admitted the request, unless a tier refused it in the handler (then
        // the refusal's headers describe the limit that applies).
        let admitted = error
            .data::<AdmittedTiers>()
            .filter(|_| {
                !matches!(
                    error.downcast_ref::<ApiError>(),
                    Some(ApiError::RateLimited(_))
                )
            })
            .cloned();
        let response = if let Some(api_error) = error.downcast_ref::<ApiError>() {
            let status = api_error.status();
            if status.is_server_error() {
                // The source's message chain (`Display`), never its `Debug`: a database error's
                // debug form carries the server's DETAIL, which can quote row values.
                tracing::error!(status = status.as_u16(), error = %error_chain(api_error), "request failed");
            }
            let details = match api_error {
                ApiError::Invalid(failure) => Some(ValidationDetails {
                    form_errors: failure.form_errors.clone(),
                    field_errors: failure.field_errors.clone(),
                }),
                _ => None,
            };
            let mut response =
                error_response(status, public_message(api_error), details, request_id);
            if let ApiError::RateLimited(refusal) = api_error {
                refusal.add_headers(response.headers_mut());
            }
            response
        } else {
            let status = error.status();
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), error = %error, "request failed");
            }
            let details = if let Some(failure) = error.downcast_ref::<ValidationFailure>() {
                // The strict body check: every problem at once, already free of client values.
                Some(ValidationDetails {
                    form_errors: failure.form_errors.clone(),
                    field_errors: failure.field_errors.clone(),
                })
            } else {
                (status == StatusCode::BAD_REQUEST)
                    .then(|| validation_details(&error, &path, &self.path_parameters))
            };
            error_response(
                status,
                generic_message(status).to_owned(),
                details,
                request_id,
            )
        };
        let mut response = response;
        if let Some(admitted) = admitted {
            admitted.add_headers(response.headers_mut());
        }
        if let Some(reason) = validation_failure_reason(&error, response.status()) {
            audit
                .event("input.validation", Outcome::Denied, reason)
                .record();
        }
        Ok(response)
    }
}
