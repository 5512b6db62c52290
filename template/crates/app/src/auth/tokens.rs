//! Tokens of the built-in issuer (AUTH-3): 15-minute access tokens and rotating refresh tokens.
//!
//! A login starts a refresh-token family. Each refresh marks the presented token used and
//! issues its successor in the same family, within one transaction; the mark is a conditional
//! update (`used_at IS NULL`), so of two concurrent refreshes of one token exactly one wins.
//! Presenting a token that was already used means it was copied: the whole family is revoked
//! (RFC 9700, section 4.14.2), the thief's and the owner's tokens alike, and the owner logs in
//! again. Tokens are 256-bit opaque values stored only as SHA-256 hashes, with an idle lifetime
//! (per token) and an absolute one (per family, never extended by rotation).
//!
//! A family is a sign-in session: every access token it yields names it in its `sid` claim, and
//! an API key created (or rotated) with such a token records it (`api_keys.created_in_session`,
//! `api_keys.rotated_in_session`). Reuse detection therefore also revokes the keys made in the
//! stolen session (and the keys made with those); a logout does not, as ending a browser session
//! must not end the automation keys made in it. So a family records why it ended
//! ([`FamilyEnd`]), and a used token presented again is reuse even after its family was logged
//! out (a thief who logs out first is still caught). Access tokens already issued are not
//! revoked: they end within their 15 minutes.
//!
//! A family ends at a logout or `POST /oauth/revoke`, when reuse is detected, and, for every
//! family of the account, at a password reset. Browsers keep their refresh token in an
//! `HttpOnly` cookie ([`REFRESH_COOKIE`]), never in storage a page script can read; mobile and
//! server clients keep it as the generated README describes.
//!
//! Defaults: access tokens live `auth.access_token_seconds` (900; start-up refuses more, and the
//! validator refuses a built-in token living longer), refresh tokens 1 day idle
//! (`refresh_token_idle_seconds`) and 30 days in all (`refresh_token_absolute_seconds`). Longer
//! lifetimes keep a stolen token useful for longer; there is no setting to stop rotation or
//! reuse detection.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DbErr, EntityTrait, QueryFilter, QuerySelect, Set,
    TransactionTrait,
};
use security::auth::jwt::{AccessGrant, issue_access_token};
use security::auth::secrets::{OpaqueToken, parse_opaque_token};
use uuid::Uuid;

use super::AuthContext;
use super::api_keys::{self, KeyRevocation};
use super::scopes::scopes_of_role;
use crate::persistence::{refresh_tokens, users};

/// The cookie that carries a browser's refresh token.
///
/// `__Host-`: browsers accept it only from this very host, over HTTPS, with `Path=/` and no
/// `Domain`. A `__Secure-` cookie can be set by any sibling subdomain for the parent domain
/// (cookie tossing), and the service could then read the attacker's token before the user's.
/// `HttpOnly` (no page script reads it), `SameSite=Strict` (no other site's request carries it).
/// `Path=/` sends it with every request to this host, but only `POST /oauth/token` and
/// `POST /oauth/revoke` read it, and only from an allowed `Origin`; a request carrying it twice
/// is refused (`api::oauth`).
pub const REFRESH_COOKIE: &str = "__Host-refresh_token";

/// The attributes every refresh cookie is set with.
const REFRESH_COOKIE_ATTRIBUTES: &str = "Path=/; HttpOnly; Secure; SameSite=Strict";

/// `Set-Cookie` for a refresh token living `max_age` seconds.
pub fn refresh_cookie(token: &str, max_age: u64) -> String {
    format!("{REFRESH_COOKIE}={token}; Max-Age={max_age}; {REFRESH_COOKIE_ATTRIBUTES}")
}

/// `Set-Cookie` removing the refresh cookie.
pub fn cleared_refresh_cookie() -> String {
    format!("{REFRESH_COOKIE}=; Max-Age=0; {REFRESH_COOKIE_ATTRIBUTES}")
}

/// Why a sign-in session (refresh-token family) ended, stored as
/// `refresh_tokens.revocation_reason`; ordered from the mildest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FamilyEnd {
    /// The user signed out (`/v1/auth/logout`, `/oauth/revoke`): the keys made in the session
    /// keep working, and may still be rotated.
    Logout,
    /// A used refresh token came back: the session was copied.
    Reuse,
    /// The account's password was reset: any of its sessions may have been an attacker's.
    PasswordReset,
}

impl FamilyEnd {
    pub fn code(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Reuse => "reuse",
            Self::PasswordReset => "password_reset",
        }
    }

    /// A stored reason; a row revoked without one counts as the mildest end.
    fn from_code(code: Option<&str>) -> Self {
        match code {
            Some("reuse") => Self::Reuse,
            Some("password_reset") => Self::PasswordReset,
            _ => Self::Logout,
        }
    }

    /// Whether the session may have been an attacker's, so what was derived from it ends too.
    pub fn is_compromise(self) -> bool {
        self != Self::Logout
    }
}

/// An access token as the token endpoint returns it.
#[derive(Debug)]
pub struct IssuedAccessToken {
    pub token: String,
    pub expires_in: u64,
    pub scopes: Vec<String>,
}

/// Why a refresh token was refused; the code goes to the audit event, the client learns only
/// `invalid_grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Malformed,
    Unknown,
    Expired,
    Revoked,
}

impl RefreshRefusal {
    pub fn reason_code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown_token",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// A refresh failed: refused, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("refresh token refused: {}", .0.reason_code())]
    Refused(RefreshRefusal),
    /// Already exchanged: the family (the session) is now revoked, with the API keys made in
    /// it, listed for the audit trail.
    #[error("refresh token refused: reused")]
    Reused(Vec<KeyRevocation>),
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("the access token could not be signed")]
    Signing,
}

/// A successful refresh.
#[derive(Debug)]
pub struct Refreshed {
    pub user_id: Uuid,
    pub access: IssuedAccessToken,
    pub refresh_token: OpaqueToken,
}

/// Signs an access token for `subject` with `scopes`: for a client (`client_id`, an API key's
/// id), or in a sign-in session (`session_id`, the refresh-token family, as `sid`).
pub fn issue_access(
    auth: &AuthContext,
    subject: &str,
    scopes: Vec<String>,
    client_id: Option<String>,
    session_id: Option<Uuid>,
) -> Result<IssuedAccessToken, RefreshError> {
    let lifetime = auth.settings.access_token_lifetime();
    let grant = AccessGrant {
        issuer: auth.issuer.clone(),
        subject: subject.to_owned(),
        audience: auth.audience.clone(),
        scopes: scopes.clone(),
        client_id,
        session_id: session_id.map(|id| id.to_string()),
        issued_at: auth.clock.now(),
        lifetime,
    };
    let token = issue_access_token(auth.keys.current().active(), &grant)
        .map_err(|_| RefreshError::Signing)?;
    Ok(IssuedAccessToken {
        token,
        expires_in: lifetime.as_secs(),
        scopes,
    })
}

fn seconds(value: u64) -> ChronoDuration {
    ChronoDuration::seconds(i64::try_from(value).unwrap_or(i64::MAX))
}

/// A sign-in session just started: its family id and first refresh token.
#[derive(Debug)]
pub struct NewSession {
    pub family_id: Uuid,
    pub refresh_token: OpaqueToken,
}

/// Starts a family for `user` (a login) and returns it with its first refresh token.
pub async fn start_family(
    auth: &AuthContext,
    user: &users::Model,
    scopes: &[String],
) -> Result<NewSession, DbErr> {
    let now = auth.now();
    let family_expires_at = now + seconds(auth.settings.refresh_token_absolute_seconds);
    let session = NewSession {
        family_id: Uuid::new_v4(),
        refresh_token: OpaqueToken::generate(),
    };
    insert_token(
        auth,
        &auth.db,
        &session.refresh_token,
        session.family_id,
        user.id,
        scopes,
        now,
        family_expires_at,
    )
    .await?;
    Ok(session)
}

#[expect(clippy::too_many_arguments, reason = "one row's columns")]
async fn insert_token(
    auth: &AuthContext,
    db: &impl sea_orm::ConnectionTrait,
    token: &OpaqueToken,
    family_id: Uuid,
    user_id: Uuid,
    scopes: &[String],
    now: DateTime<Utc>,
    family_expires_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let idle_end = now + seconds(auth.settings.refresh_token_idle_seconds);
    refresh_tokens::ActiveModel {
        id: Set(Uuid::new_v4()),
        family_id: Set(family_id),
        token_hash: Set(OpaqueToken::hash(token.expose()).to_hex()),
        user_id: Set(user_id),
        client_id: Set(None),
        scopes: Set(scopes.join(" ")),
        created_at: Set(now),
        family_expires_at: Set(family_expires_at),
        expires_at: Set(idle_end.min(family_expires_at)),
        used_at: Set(None),
        revoked_at: Set(None),
        revocation_reason: Set(None),
    }
    .insert(db)
    .await
    .map(drop)
}

/// Exchanges a refresh token for an access token and the token's successor.
pub async fn refresh(auth: &AuthContext, presented: &str) -> Result<Refreshed, RefreshError> {
    let presented = parse_opaque_token(presented)
        .map_err(|_| RefreshError::Refused(RefreshRefusal::Malformed))?;
    let hash = OpaqueToken::hash(presented).to_hex();
    let now = auth.now();
    let transaction = auth.db.begin().await?;
    // Claim the token first: only one transaction can move `used_at` from NULL, and on SQLite
    // writing first takes the write lock at once instead of upgrading a read lock later.
    let claimed = refresh_tokens::Entity::update_many()
        .col_expr(refresh_tokens::Column::UsedAt, Expr::value(now))
        .filter(refresh_tokens::Column::TokenHash.eq(hash.clone()))
        .filter(refresh_tokens::Column::UsedAt.is_null())
        .filter(refresh_tokens::Column::RevokedAt.is_null())
        .exec(&transaction)
        .await?;
    let stored = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash))
        .one(&transaction)
        .await?;
    let Some(stored) = stored else {
        return Err(RefreshError::Refused(RefreshRefusal::Unknown));
    };
    if claimed.rows_affected != 1 {
        transaction.rollback().await?;
        // Not claimed and never used: revoked, the current token of an ended session.
        if stored.used_at.is_none() {
            return Err(RefreshError::Refused(RefreshRefusal::Revoked));
        }
        // Used already, so copied: reuse even if the family was logged out meanwhile (a thief
        // who logs out first must not turn the owner's replay into a plain "revoked").
        revoke_family(auth, stored.family_id, FamilyEnd::Reuse).await?;
        // The session was copied: the keys made in it may be the thief's.
        let revoked_keys = api_keys::revoke_made_in_session(auth, stored.family_id).await?;
        return Err(RefreshError::Reused(revoked_keys));
    }
    // A revocation of the family may have started before this token was claimed: any revoked
    // member revokes the whole family for good, for the same reason.
    if let Some(end) = family_end(&transaction, stored.family_id).await? {
        transaction.rollback().await?;
        revoke_family(auth, stored.family_id, end).await?;
        return Err(RefreshError::Refused(RefreshRefusal::Revoked));
    }
    if now >= stored.expires_at || now >= stored.family_expires_at {
        // Not claimed: an expired token sent twice (two tabs) is no theft, and must not be
        // taken for reuse and revoke the session's keys.
        transaction.rollback().await?;
        return Err(RefreshError::Refused(RefreshRefusal::Expired));
    }
    let Some(user) = users::Entity::find_by_id(stored.user_id)
        .one(&transaction)
        .await?
    else {
        return Err(RefreshError::Refused(RefreshRefusal::Unknown));
    };
    // A role may have lost scopes since the login: the successor carries only what it still
    // allows.
    let allowed = scopes_of_role(user.role);
    let scopes: Vec<String> = stored
        .scopes
        .split_whitespace()
        .filter(|scope| allowed.contains(scope))
        .map(str::to_owned)
        .collect();
    let successor = OpaqueToken::generate();
    insert_token(
        auth,
        &transaction,
        &successor,
        stored.family_id,
        stored.user_id,
        &scopes,
        now,
        stored.family_expires_at,
    )
    .await?;
    transaction.commit().await?;
    let access = issue_access(
        auth,
        &user.id.to_string(),
        scopes,
        None,
        Some(stored.family_id),
    )?;
    Ok(Refreshed {
        user_id: user.id,
        access,
        refresh_token: successor,
    })
}

/// Whether and why the session `family_id` has ended: the gravest reason any of its tokens was
/// revoked for (a compromise found after a logout outweighs it).
pub async fn family_end(
    db: &impl sea_orm::ConnectionTrait,
    family_id: Uuid,
) -> Result<Option<FamilyEnd>, DbErr> {
    let reasons: Vec<Option<String>> = refresh_tokens::Entity::find()
        .select_only()
        .column(refresh_tokens::Column::RevocationReason)
        .distinct()
        .filter(refresh_tokens::Column::FamilyId.eq(family_id))
        .filter(refresh_tokens::Column::RevokedAt.is_not_null())
        .into_tuple()
        .all(db)
        .await?;
    Ok(reasons
        .iter()
        .map(|reason| FamilyEnd::from_code(reason.as_deref()))
        .max())
}

/// Revokes every token of a family, for `end`.
pub async fn revoke_family(
    auth: &AuthContext,
    family_id: Uuid,
    end: FamilyEnd,
) -> Result<(), DbErr> {
    revoke_where(auth, refresh_tokens::Column::FamilyId.eq(family_id), end).await
}

/// Revokes every token of `user_id`'s families (a password reset).
pub async fn revoke_all_of_user(auth: &AuthContext, user_id: Uuid) -> Result<(), DbErr> {
    revoke_where(
        auth,
        refresh_tokens::Column::UserId.eq(user_id),
        FamilyEnd::PasswordReset,
    )
    .await
}

/// Revokes the unrevoked tokens matching `condition` for `end`, repeating until none is left:
/// under PostgreSQL's READ COMMITTED an UPDATE does not see a successor that a concurrent
/// refresh inserts while the UPDATE waits on its lock; the next statement does, and a refresh
/// that starts afterwards finds its family revoked (see [`refresh`]). A compromise also
/// overwrites an earlier logout's reason: a session logged out, then found copied, was copied.
async fn revoke_where(
    auth: &AuthContext,
    condition: sea_orm::sea_query::SimpleExpr,
    end: FamilyEnd,
) -> Result<(), DbErr> {
    const MAX_PASSES: usize = 16;
    if end.is_compromise() {
        refresh_tokens::Entity::update_many()
            .col_expr(
                refresh_tokens::Column::RevocationReason,
                Expr::value(end.code()),
            )
            .filter(condition.clone())
            .filter(refresh_tokens::Column::RevokedAt.is_not_null())
            .filter(
                Condition::any()
                    .add(refresh_tokens::Column::RevocationReason.is_null())
                    .add(refresh_tokens::Column::RevocationReason.eq(FamilyEnd::Logout.code())),
            )
            .exec(&auth.db)
            .await?;
    }
    for _ in 0..MAX_PASSES {
        let revoked = refresh_tokens::Entity::update_many()
            .col_expr(refresh_tokens::Column::RevokedAt, Expr::value(auth.now()))
            .col_expr(
                refresh_tokens::Column::RevocationReason,
                Expr::value(end.code()),
            )
            .filter(condition.clone())
            .filter(refresh_tokens::Column::RevokedAt.is_null())
            .exec(&auth.db)
            .await?;
        if revoked.rows_affected == 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Logout: revokes the family of `presented`, if it names one. Says nothing either way.
pub async fn revoke_family_of(auth: &AuthContext, presented: &str) -> Result<bool, DbErr> {
    let Ok(presented) = parse_opaque_token(presented) else {
        return Ok(false);
    };
    let hash = OpaqueToken::hash(presented).to_hex();
    let Some(stored) = refresh_tokens::Entity::find()
        .filter(refresh_tokens::Column::TokenHash.eq(hash))
        .one(&auth.db)
        .await?
    else {
        return Ok(false);
    };
    revoke_family(auth, stored.family_id, FamilyEnd::Logout).await?;
    Ok(true)
}
