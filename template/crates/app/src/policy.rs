//! The service's policy tables: which operations are public, which are charged to a stricter
//! rate-limit tier, which are exempt from rate limiting, and the tiers themselves.
//!
//! Plain data, importing nothing from the rest of the service, so every module that reads a
//! table (`api`, `rate_limits`, `startup`) depends on this one and this one on none of them.
//! Each list is an explicit, reviewable opt-out or opt-in: start-up refuses a name that is not
//! an operation of the published document.

/// The operations anyone may call without a credential (AUTH-4, default deny). Adding one here
/// is the explicit, reviewable opt-out of authentication.
pub const PUBLIC_OPERATIONS: &[&str] = &[
    "GET /health/live",
    "GET /health/ready",
    // The credential is in the body: a password, the refresh token to revoke, a reset token.
    "POST /v1/auth/login",
    "POST /v1/auth/logout",
    // Answers the same for every address; the link goes to the account's mailbox only.
    "POST /v1/auth/password-reset",
    "POST /v1/auth/password-reset/confirm",
];

/// The stricter tiers of sensitive operations, each with its own quota in `[rate_limit]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveTier {
    Login,
    PasswordReset,
    PasswordResetConfirm,
    Token,
    ApiKeyManagement,
    Payment,
}

/// Operations charged to a stricter tier of their own (RATE-3) on top of the general per-address
/// or per-principal one; quotas in `[rate_limit]`. Login and password reset are also limited per
/// account in their handlers ([`AccountTier`]). `POST /oauth/token` is a plain route beside the
/// document.
pub const SENSITIVE_OPERATIONS: &[(&str, SensitiveTier)] = &[
    ("POST /v1/auth/login", SensitiveTier::Login),
    ("POST /v1/auth/password-reset", SensitiveTier::PasswordReset),
    (
        "POST /v1/auth/password-reset/confirm",
        SensitiveTier::PasswordResetConfirm,
    ),
    ("POST /oauth/token", SensitiveTier::Token),
    ("POST /v1/api-keys", SensitiveTier::ApiKeyManagement),
    (
        "POST /v1/api-keys/{id}/rotate",
        SensitiveTier::ApiKeyManagement,
    ),
    ("POST /v1/payments", SensitiveTier::Payment),
];

/// The per-account tiers, checked by the handlers that read the account from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountTier {
    Login,
    PasswordReset,
}

/// The operations no rate limit applies to. Adding one here is the explicit, reviewable opt-out;
/// the service refuses to start if a name is not an operation.
pub const RATE_LIMIT_EXEMPT: &[&str] = &[
    // Probes of orchestrators and load balancers, every few seconds per instance from a few
    // addresses; limiting them would take healthy instances out of rotation. Liveness is a
    // constant answer and readiness asks the database at most once a second (`health.rs`), so
    // there is nothing to exhaust.
    "GET /health/live",
    "GET /health/ready",
];
