//! Password reset (AUTH-1, AUTH-3): a single-use token, valid 15 minutes, mailed through the
//! outbox (sealed there, purged once delivered or expired: `crate::mail`); the request is
//! answered the same whether or not the account exists.
//!
//! The token is 256 random bits, stored only as its SHA-256 hash, and travels in the link's
//! fragment (`#token=`), which browsers never send to a server or put in a `Referer`. Using it
//! sets the new password and revokes every refresh-token family of the account, so a session
//! an attacker held before the reset ends with it, and every API key of the account, which such
//! a session could have made (`auth::api_keys::revoke_all_of_owner` says why all of them).
//! Access tokens already issued are not revoked: they end within their 15 minutes, and none of
//! them can make a key any more (their session is revoked).

use chrono::Duration;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, Set,
    TransactionTrait,
};
use security::auth::secrets::{OpaqueToken, parse_opaque_token};
use uuid::Uuid;

use super::AuthContext;
use super::api_keys::{self, KeyRevocation};
use super::tokens;
use crate::mail::{MailError, OutgoingMail};
use crate::persistence::{password_resets, users};

/// How long a reset link works.
pub const RESET_TOKEN_LIFETIME: Duration = Duration::minutes(15);

/// Creates a token for the account of `email`, if there is one, and mails the link. Runs after
/// the client has its answer, which is the same either way. Returns whether a message was sent.
pub async fn request(auth: &AuthContext, email: &str) -> Result<bool, MailError> {
    let Some(user) = users::Entity::find()
        .filter(users::Column::Email.eq(email.to_lowercase()))
        .one(&auth.db)
        .await?
    else {
        return Ok(false);
    };
    let token = OpaqueToken::generate();
    let now = auth.now();
    let expires_at = now + RESET_TOKEN_LIFETIME;
    password_resets::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user.id),
        token_hash: Set(OpaqueToken::hash(token.expose()).to_hex()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
    }
    .insert(&auth.db)
    .await?;
    let link = format!(
        "{}/reset-password#token={}",
        auth.issuer.trim_end_matches('/'),
        token.expose()
    );
    auth.mailer
        .send(OutgoingMail {
            to: user.email,
            subject: "Reset your password".to_owned(),
            body: format!(
                "Someone asked to reset the password of this account. If it was you, open this \
                 link within 15 minutes:\n\n{link}\n\nIf it was not, ignore this message."
            ),
            // The link is dead after this: the message is not worth sending, and is purged.
            expires_at,
        })
        .await?;
    Ok(true)
}

/// The address of the account a reset token belongs to, if the token is known (for the
/// password policy's "not the email address" rule; the token is checked again when used).
pub async fn account_email(auth: &AuthContext, presented: &str) -> Result<Option<String>, DbErr> {
    let Ok(presented) = parse_opaque_token(presented) else {
        return Ok(None);
    };
    let Some(stored) = password_resets::Entity::find()
        .filter(password_resets::Column::TokenHash.eq(OpaqueToken::hash(presented).to_hex()))
        .one(&auth.db)
        .await?
    else {
        return Ok(None);
    };
    Ok(users::Entity::find_by_id(stored.user_id)
        .one(&auth.db)
        .await?
        .map(|user| user.email))
}

/// Why a reset was refused (the client learns only that the token is invalid or expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetRefusal {
    Malformed,
    Unknown,
    Used,
    Expired,
}

impl ResetRefusal {
    pub fn reason_code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown_token",
            Self::Used => "used",
            Self::Expired => "expired",
        }
    }
}

/// A reset that failed.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("reset token refused: {}", .0.reason_code())]
    Refused(ResetRefusal),
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// A completed reset: the account and the API keys it revoked.
#[derive(Debug)]
pub struct Reset {
    pub user_id: Uuid,
    pub revoked_keys: Vec<KeyRevocation>,
}

/// Uses `presented` to set `password_hash` (already checked and hashed) on its account, once.
pub async fn confirm(
    auth: &AuthContext,
    presented: &str,
    password_hash: String,
) -> Result<Reset, ResetError> {
    let presented =
        parse_opaque_token(presented).map_err(|_| ResetError::Refused(ResetRefusal::Malformed))?;
    let hash = OpaqueToken::hash(presented).to_hex();
    let now = auth.now();
    let transaction = auth.db.begin().await?;
    // Claim first: of two uses of one token, one moves `used_at` from NULL.
    let claimed = password_resets::Entity::update_many()
        .col_expr(password_resets::Column::UsedAt, Expr::value(now))
        .filter(password_resets::Column::TokenHash.eq(hash.clone()))
        .filter(password_resets::Column::UsedAt.is_null())
        .exec(&transaction)
        .await?;
    let stored = password_resets::Entity::find()
        .filter(password_resets::Column::TokenHash.eq(hash))
        .one(&transaction)
        .await?
        .ok_or(ResetError::Refused(ResetRefusal::Unknown))?;
    if claimed.rows_affected != 1 {
        return Err(ResetError::Refused(ResetRefusal::Used));
    }
    if now >= stored.expires_at {
        // The claim is kept: an expired token stays unusable.
        transaction.commit().await?;
        return Err(ResetError::Refused(ResetRefusal::Expired));
    }
    let user = users::Entity::find_by_id(stored.user_id)
        .one(&transaction)
        .await?
        .ok_or(ResetError::Refused(ResetRefusal::Unknown))?;
    let mut user = user.into_active_model();
    user.password_hash = Set(Some(password_hash));
    user.update(&transaction).await?;
    transaction.commit().await?;
    // After the password changed: every session of the account ends, including one a
    // concurrent refresh is extending.
    tokens::revoke_all_of_user(auth, stored.user_id).await?;
    // Then the keys: a key a session creates meanwhile is either found here or refused, as its
    // session is revoked already.
    let revoked_keys = api_keys::revoke_all_of_owner(auth, stored.user_id).await?;
    Ok(Reset {
        user_id: stored.user_id,
        revoked_keys,
    })
}
