//! The `api_keys` table: keys stored as keyed hashes, with expiry, revocation, the overlap
//! window of a rotation and where each key came from (its provenance).

use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    /// HMAC-SHA256 of the secret under the server's pepper, hex.
    #[sea_orm(unique)]
    pub key_hash: String,
    /// Space-separated.
    pub scopes: String,
    pub created_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<Uuid>,
    /// The end of the rotation overlap: refused from then on.
    pub valid_until: Option<DateTimeUtc>,
    /// The sign-in session (refresh-token family) whose access token created the key; kept by
    /// the key's rotation successors.
    pub created_in_session: Option<Uuid>,
    /// The key that created this one (as `X-API-Key` or through its `client_credentials`
    /// token); kept by the key's rotation successors.
    pub created_by_key: Option<Uuid>,
    /// For a rotation's successor: the sign-in session whose access token rotated the old key
    /// (and so read this key's secret).
    pub rotated_in_session: Option<Uuid>,
    /// For a rotation's successor: the key that rotated the old key (as `X-API-Key` or through
    /// its `client_credentials` token).
    pub rotated_by_key: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Why a stored key is not usable at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Revoked,
    Expired,
    /// Rotated, and the overlap has ended.
    Superseded,
}

impl KeyState {
    pub fn reason_code(self) -> &'static str {
        match self {
            Self::Active => "valid",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Superseded => "rotated_out",
        }
    }
}

impl Model {
    /// The key's state at `now`. Each end is exclusive: a key expiring at T is refused at T.
    pub fn state_at(&self, now: DateTime<Utc>) -> KeyState {
        if self.revoked_at.is_some_and(|revoked| revoked <= now) {
            KeyState::Revoked
        } else if self.expires_at.is_some_and(|expires| expires <= now) {
            KeyState::Expired
        } else if self.valid_until.is_some_and(|until| until <= now) {
            KeyState::Superseded
        } else {
            KeyState::Active
        }
    }

    pub fn scope_list(&self) -> Vec<String> {
        self.scopes.split_whitespace().map(str::to_owned).collect()
    }
}
