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
    /// The request is valid on its own but cannot be processed as sent, e.g. an
    /// `Idempotency-Key` reused with a different request.
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
    /// The request cannot be processed as sent, e.g. an `Idempotency-Key` reused with a
    /// different request.
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

/// What a 400 from poem-openapi's own parsing tells the client. Its messages can quote the
/// rejected value ("found ..."), which may be a password, so only two things are taken from
/// them: the parameter's name, translated to the name the API documents, and the expected
/// type's name.
fn validation_details(
    error: &poem::Error,
    request_path: &str,
    path_parameters: &PathParameterNames,
) -> ValidationDetails {
    use poem_openapi::error::{ParseParamError, ParsePathError};
    let parameter = error
        .downcast_ref::<ParseParamError>()
        .map(|e| (e.name, e.reason.as_str()))
        .or_else(|| {
            error
                .downcast_ref::<ParsePathError>()
                .map(|e| (e.name, e.reason.as_str()))
        });
    match parameter {
        Some((name, reason)) => {
            let name = path_parameters
                .documented_name(request_path, name)
                .unwrap_or(name);
            let message = verification_message(reason)
                .or_else(|| missing_message(reason))
                .unwrap_or_else(|| expected_type_message(reason));
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

/// The documented names of path parameters. poem-openapi renames them internally to `param0`,
/// `param1`... in path order; errors must use the names clients see in the OpenAPI document.
#[derive(Debug, Clone, Default)]
pub struct PathParameterNames {
    templates: Vec<Vec<TemplateSegment>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TemplateSegment {
    Literal(String),
    Parameter(String),
}

impl PathParameterNames {
    /// Reads every path template (`/v1/users/{id}`) of an OpenAPI document.
    pub fn from_openapi(document: &serde_json::Value) -> Self {
        let templates = document["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .keys()
                    .map(|template| {
                        template
                            .split('/')
                            .filter(|segment| !segment.is_empty())
                            .map(|segment| {
                                match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                                    Some(name) => TemplateSegment::Parameter(name.to_owned()),
                                    None => TemplateSegment::Literal(segment.to_owned()),
                                }
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { templates }
    }

    /// The documented name of poem-openapi's `paramN` for a request to `path`.
    fn documented_name(&self, path: &str, internal: &str) -> Option<&str> {
        let index: usize = internal.strip_prefix("param")?.parse().ok()?;
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.templates
            .iter()
            .filter(|template| {
                template.len() == segments.len()
                    && template
                        .iter()
                        .zip(&segments)
                        .all(|(part, segment)| match part {
                            TemplateSegment::Literal(literal) => literal == segment,
                            TemplateSegment::Parameter(_) => true,
                        })
            })
            // The most specific template wins (`/users/me` over `/users/{id}`).
            .max_by_key(|template| {
                template
                    .iter()
                    .filter(|part| matches!(part, TemplateSegment::Literal(_)))
                    .count()
            })?
            .iter()
            .filter_map(|part| match part {
                TemplateSegment::Parameter(name) => Some(name.as_str()),
                TemplateSegment::Literal(_) => None,
            })
            .nth(index)
    }
}

/// `verification failed. maximum(100, exclusive: false)` becomes `must be at most 100`. The rule
/// poem-openapi names is the declared schema, never the rejected value.
fn verification_message(reason: &str) -> Option<String> {
    let rule = reason.strip_prefix("verification failed. ")?;
    let (name, arguments) = rule.strip_suffix(')')?.split_once('(')?;
    let number = |text: &str| text.parse::<f64>().is_ok().then(|| text.to_owned());
    Some(match name {
        "maximum" | "minimum" => {
            let (limit, exclusive) = arguments.split_once(", exclusive: ")?;
            let limit = number(limit)?;
            match (name, exclusive) {
                ("maximum", "true") => format!("must be less than {limit}"),
                ("maximum", _) => format!("must be at most {limit}"),
                ("minimum", "true") => format!("must be greater than {limit}"),
                _ => format!("must be at least {limit}"),
            }
        }
        "maxLength" => format!("must be at most {} characters", number(arguments)?),
        "minLength" => format!("must be at least {} characters", number(arguments)?),
        "maxItems" => format!("must have at most {} items", number(arguments)?),
        "minItems" => format!("must have at least {} items", number(arguments)?),
        "multipleOf" => format!("must be a multiple of {}", number(arguments)?),
        "pattern" => format!(
            "must match the pattern {}",
            arguments.strip_prefix('"')?.strip_suffix('"')?
        ),
        "uniqueItems" => "must not contain duplicate items".to_owned(),
        _ => return None,
    })
}

/// `Type "string" expects an input value.`, poem-openapi's text for a required parameter that
/// was not sent (a header such as `Idempotency-Key`), becomes `is required`.
fn missing_message(reason: &str) -> Option<String> {
    reason
        .ends_with("expects an input value.")
        .then(|| "is required".to_owned())
}

/// `failed to parse "uuid": ...` becomes `expected uuid`; anything else a fixed text.
fn expected_type_message(reason: &str) -> String {
    reason
        .strip_prefix("failed to parse \"")
        .and_then(|rest| rest.split_once('"'))
        .map(|(type_name, _)| type_name)
        .filter(|type_name| {
            type_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "()_-<>, ".contains(c))
        })
        .map_or_else(
            || "invalid value".to_owned(),
            |type_name| format!("expected {type_name}"),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_path_parameter_names_map_to_documented_ones() {
        let names = PathParameterNames::from_openapi(&serde_json::json!({
            "paths": {
                "/v1/users/{id}": {},
                "/v1/users/me": {},
                "/v1/orgs/{org}/members/{member}": {}
            }
        }));
        assert_eq!(names.documented_name("/v1/users/abc", "param0"), Some("id"));
        assert_eq!(
            names.documented_name("/v1/orgs/a/members/b", "param1"),
            Some("member")
        );
        assert_eq!(
            names.documented_name("/v1/users/me", "param0"),
            None,
            "no parameter there"
        );
        assert_eq!(names.documented_name("/v1/other/x", "param0"), None);
        assert_eq!(
            names.documented_name("/v1/users/abc", "limit"),
            None,
            "not internal"
        );
    }

    #[test]
    fn a_parameter_outside_its_declared_range_is_told_the_range() {
        assert_eq!(
            verification_message("verification failed. maximum(100, exclusive: false)").as_deref(),
            Some("must be at most 100")
        );
        assert_eq!(
            verification_message("verification failed. minimum(1, exclusive: false)").as_deref(),
            Some("must be at least 1")
        );
        assert_eq!(
            verification_message("verification failed. maxLength(8)").as_deref(),
            Some("must be at most 8 characters")
        );
        assert_eq!(verification_message("failed to parse \"x\": secret"), None);
    }

    #[test]
    fn the_expected_type_is_named_without_the_rejected_value() {
        assert_eq!(
            expected_type_message(r#"failed to parse "string_uuid": invalid character: found `x`"#),
            "expected string_uuid"
        );
        assert_eq!(
            expected_type_message("anything else: secret"),
            "invalid value"
        );
        assert_eq!(
            missing_message(r#"Type "string" expects an input value."#).as_deref(),
            Some("is required")
        );
        assert_eq!(missing_message("failed to parse \"x\": secret"), None);
    }
}
