//! Password login, logout and reset: `POST /v1/auth/login`, `POST /v1/auth/logout`,
//! `POST /v1/auth/password-reset`, `POST /v1/auth/password-reset/confirm` (AUTH-1, AUTH-3).
//!
//! All are public operations: the password, the refresh token or the reset token is the
//! credential. A reset request is answered 202 whether or not the address has an account. A login
//! answers the same 401 for an unknown address and a wrong password, after the same argon2id
//! work (the hasher verifies unknown accounts against a dummy hash), so neither the answer nor
//! its timing tells which addresses have accounts.

use std::sync::Arc;

use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use security::input::strict_json::ValidationFailure;
use security::logging::audit::{AuditEvent, Outcome};

use super::ApiTags;
use crate::auth::AuthContext;
use crate::auth::password_reset::{self, ResetError};
use crate::auth::scopes::scopes_of_role;
use crate::auth::tokens;
use crate::error::ApiError;
use crate::persistence::users;
use crate::policy::AccountTier;
use crate::rate_limits::RateLimits;

/// Login and logout.
#[derive(Debug)]
pub struct AuthApi {
    auth: Arc<AuthContext>,
    rate_limits: Arc<RateLimits>,
}

impl AuthApi {
    pub fn new(auth: Arc<AuthContext>, rate_limits: Arc<RateLimits>) -> Self {
        Self { auth, rate_limits }
    }
}

/// Email and password.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct LoginRequest {
    #[oai(validator(min_length = 3, max_length = 254))]
    pub email: String,
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub password: String,
    /// Browsers: `true` delivers the refresh token in a `__Host-refresh_token` cookie
    /// (`HttpOnly; Secure; SameSite=Strict; Path=/`, read by `/oauth/token` and `/oauth/revoke`
    /// only), out of reach of page scripts, instead of in the body.
    #[oai(default)]
    pub refresh_cookie: bool,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest").finish_non_exhaustive()
    }
}

/// Tokens of the built-in issuer, as the OAuth 2.0 token endpoint returns them (RFC 6749,
/// section 5.1).
#[derive(Debug, Object)]
pub struct TokenResponse {
    /// A JWT access token (RFC 9068), valid for `expires_in` seconds.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    /// The granted scopes, space-separated.
    pub scope: String,
    /// Exchange it at `POST /oauth/token` (`grant_type=refresh_token`); it rotates on every use.
    /// Absent when it was set as a cookie.
    #[oai(skip_serializing_if_is_none)]
    pub refresh_token: Option<String>,
}

/// The refresh token whose family to end.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct LogoutRequest {
    #[oai(validator(max_length = 64))]
    pub refresh_token: String,
}

impl std::fmt::Debug for LogoutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRequest").finish_non_exhaustive()
    }
}

#[derive(Debug, ApiResponse)]
pub enum LoginResponse {
    /// Logged in.
    #[oai(status = 200)]
    Ok(
        Json<TokenResponse>,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "Set-Cookie")] Option<String>,
    ),
}

/// The address to send a reset link to.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordResetRequest {
    #[oai(validator(min_length = 3, max_length = 254))]
    pub email: String,
}

/// The token from the reset link and the new password.
#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct PasswordResetConfirmation {
    #[oai(validator(max_length = 64))]
    pub token: String,
    /// At least 12 characters, not a common password, not the email address.
    #[oai(validator(min_length = 12, max_length = 128))]
    pub new_password: String,
}

impl std::fmt::Debug for PasswordResetConfirmation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordResetConfirmation")
            .finish_non_exhaustive()
    }
}

/// A fixed message.
#[derive(Debug, Object)]
pub struct Message {
    pub message: String,
}

#[derive(Debug, ApiResponse)]
pub enum ResetRequested {
    /// Accepted; a link was mailed if the address has an account.
    #[oai(status = 202)]
    Accepted(Json<Message>),
}

#[derive(Debug, ApiResponse)]
pub enum ResetDone {
    /// The password is changed and every session of the account is revoked.
    #[oai(status = 204)]
    Done,
}

#[derive(Debug, ApiResponse)]
pub enum LogoutResponse {
    /// The refresh token's family is revoked (also answered for an unknown token).
    #[oai(status = 204)]
    Done,
}

/// The one message for every failed login.
const LOGIN_FAILED: &str = "Invalid email or password";

#[OpenApi(prefix_path = "/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Logs in with email and password; returns an access token and a refresh token.
    #[oai(path = "/login", method = "post")]
    async fn login(
        &self,
        request: &Request,
        body: Json<LoginRequest>,
    ) -> Result<LoginResponse, ApiError> {
        if !self.auth.issues_tokens() {
            return Err(ApiError::Forbidden(
                "Password login is off: sign in with the identity provider",
            ));
        }
        // Per account as well as per address (RATE-3): failed attempts on one account from many
        // addresses run out as fast as from one. The attempt's unit is taken *before* the
        // password check (looking first and charging after a failure would let every attempt
        // that looked before the first charge be checked), and given back only when the password
        // was right: only failures count. While the budget is spent every attempt waits, the
        // right password too (else the limit would still answer guesses).
        let reservation = self
            .rate_limits
            .reserve_account(request, AccountTier::Login, &body.email)
            .await?;
        let email = body.email.to_lowercase();
        let user = users::Entity::find()
            .filter(users::Column::Email.eq(email))
            .one(&self.auth.db)
            .await?;
        let stored = user.as_ref().and_then(|user| user.password_hash.as_deref());
        // Unknown account or no password: the hasher still does the full work (dummy hash).
        let verified = self.auth.passwords.verify(stored, &body.password).await?;
        let user = match (user, verified) {
            (Some(user), true) => user,
            (user, _) => {
                // The account an attempt was for, by id (never the email given): per-account
                // anomaly detection (LOG-4) counts its failures from any address.
                let account = user.as_ref().map(|user| user.id.to_string());
                let reason = match user {
                    None => "unknown_email",
                    Some(user) if user.password_hash.is_none() => "no_password",
                    Some(_) => "wrong_password",
                };
                let mut event =
                    AuditEvent::for_request(request, "authn.password", Outcome::Denied, reason);
                if let Some(account) = &account {
                    event = event.subject(account);
                }
                event.record();
                // The reservation is kept: this failure counts.
                drop(reservation);
                return Err(ApiError::Unauthorized(LOGIN_FAILED));
            }
        };
        self.rate_limits.refund_account(reservation).await;
        let subject = user.id.to_string();
        AuditEvent::for_request(request, "authn.password", Outcome::Allowed, "valid")
            .subject(&subject)
            .record();
        let scopes: Vec<String> = scopes_of_role(user.role)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let session = tokens::start_family(&self.auth, &user, &scopes).await?;
        let refresh_token = session.refresh_token;
        let (refresh_token, cookie) = if body.refresh_cookie {
            let cookie = tokens::refresh_cookie(
                refresh_token.expose(),
                self.auth.settings.refresh_token_absolute_seconds,
            );
            (None, Some(cookie))
        } else {
            (Some(refresh_token.expose().to_owned()), None)
        };
        let access =
            tokens::issue_access(&self.auth, &subject, scopes, None, Some(session.family_id))
                .map_err(|error| ApiError::Internal(Box::new(error)))?;
        AuditEvent::for_request(request, "token.issued", Outcome::Allowed, "password")
            .subject(&subject)
            .record();
        Ok(LoginResponse::Ok(
            Json(TokenResponse {
                access_token: access.token,
                token_type: "Bearer".to_owned(),
                expires_in: access.expires_in,
                scope: access.scopes.join(" "),
                refresh_token,
            }),
            "no-store".to_owned(),
            cookie,
        ))
    }

    /// Logs out: revokes the refresh token and every token rotated from the same login.
    #[oai(path = "/logout", method = "post")]
    async fn logout(
        &self,
        request: &Request,
        body: Json<LogoutRequest>,
    ) -> Result<LogoutResponse, ApiError> {
        let revoked = tokens::revoke_family_of(&self.auth, &body.refresh_token).await?;
        let reason = if revoked {
            "family_revoked"
        } else {
            "unknown_token"
        };
        AuditEvent::for_request(request, "token.logout", Outcome::Allowed, reason).record();
        Ok(LogoutResponse::Done)
    }

    /// Mails a single-use reset link (valid 15 minutes) if the address has an account. The
    /// answer is the same either way.
    #[oai(path = "/password-reset", method = "post")]
    async fn request_password_reset(
        &self,
        request: &Request,
        body: Json<PasswordResetRequest>,
    ) -> Result<ResetRequested, ApiError> {
        // Per account (RATE-3): keyed on the address as sent, whether or not it has an account,
        // so a 429 tells nothing about accounts either.
        self.rate_limits
            .check_account(request, AccountTier::PasswordReset, &body.email)
            .await?;
        // The answer leaves before any lookup: neither its content nor its timing depends on
        // whether the address has an account. The work continues in the background.
        AuditEvent::for_request(
            request,
            "password_reset.requested",
            Outcome::Allowed,
            "accepted",
        )
        .record();
        let auth = Arc::clone(&self.auth);
        let email = body.0.email;
        tokio::spawn(async move {
            if let Err(error) = password_reset::request(&auth, &email).await {
                tracing::error!(error = %error, "a password-reset request could not be processed");
            }
        });
        Ok(ResetRequested::Accepted(Json(Message {
            message: "If this address has an account, a reset link is on its way".to_owned(),
        })))
    }

    /// Sets a new password with the token of a reset link; the token works once.
    #[oai(path = "/password-reset/confirm", method = "post")]
    async fn confirm_password_reset(
        &self,
        request: &Request,
        body: Json<PasswordResetConfirmation>,
    ) -> Result<ResetDone, ApiError> {
        let invalid = |field: &str, messages: Vec<String>| {
            let mut failure = ValidationFailure::default();
            failure.field_errors.insert(field.to_owned(), messages);
            ApiError::Invalid(failure)
        };
        let email = password_reset::account_email(&self.auth, &body.token).await?;
        if let Err(violations) = self
            .auth
            .password_policy
            .check(&body.new_password, email.as_deref())
        {
            return Err(invalid(
                "newPassword",
                violations.iter().map(ToString::to_string).collect(),
            ));
        }
        let hash = self.auth.passwords.hash(&body.new_password).await?;
        match password_reset::confirm(&self.auth, &body.token, hash).await {
            Ok(reset) => {
                let subject = reset.user_id.to_string();
                AuditEvent::for_request(
                    request,
                    "password_reset.completed",
                    Outcome::Allowed,
                    "valid",
                )
                .subject(&subject)
                .record();
                for revocation in &reset.revoked_keys {
                    revocation.record(request);
                }
                Ok(ResetDone::Done)
            }
            Err(ResetError::Refused(refusal)) => {
                AuditEvent::for_request(
                    request,
                    "password_reset.completed",
                    Outcome::Denied,
                    refusal.reason_code(),
                )
                .record();
                Err(invalid(
                    "token",
                    vec!["is invalid, used or expired".to_owned()],
                ))
            }
            Err(ResetError::Database(error)) => Err(error.into()),
        }
    }
}
