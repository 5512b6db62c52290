//! API keys (AUTH-2): issued with a subset of their creator's scopes, shown once, stored as a
//! keyed hash; rotation issues a successor and keeps the old key valid for the configured
//! overlap, so clients can switch without downtime.
//!
//! Threat: a long-lived secret that cannot be replaced without an outage is never replaced; one
//! that can be copied, broadened or outlive what created it turns one leak into lasting access.
//!
//! Control: the key's format (`rmp_`, 43 random characters, a CRC32 checksum that secret
//! scanners and an offline check read) and its HMAC-SHA256 under the server pepper are
//! `security::auth::secrets`; production refuses a missing or placeholder pepper. The secret is
//! in the creation or rotation response only (`Cache-Control: no-store`). A key's scopes are
//! narrowed to its owner's role at every use, so a demoted owner's keys lose what the role lost
//! ([`crate::auth::verifier`]). A key is presented as `X-API-Key` or as the client secret of
//! `client_credentials`; its last use is recorded (`last_used_at`); it may expire, and a key
//! created with a key expires no later than its parent. Rotating or revoking needs a credential
//! holding all of the key's scopes; of two concurrent rotations one wins. Creation, rotation,
//! revocation and every use are audited.
//!
//! Default: a rotated key stays valid for `auth.api_key_overlap_seconds` (24 hours) beside its
//! successor. A longer overlap keeps a leaked key alive longer after its rotation; none at all
//! breaks every client that has not switched yet.
//!
//! # Provenance and revocation cascades
//! A key records what created it ([`Provenance`]): the sign-in session (refresh-token family,
//! the `sid` of the access token) or the key (as `X-API-Key`, or the `client_id` of its
//! `client_credentials` token). A credential that ends takes what was derived from it along
//! ([`revoke`], [`revoke_made_in_session`], [`revoke_all_of_owner`]):
//! - revoking a key revokes every key created or rotated with it, transitively, and the keys it
//!   replaced in rotations (still in their overlap, they are the same credential);
//! - a rotation's successor is no child: it replaces the old key and keeps its provenance, and
//!   the keys created with the old key follow the successor (revoking the successor, or the old
//!   key itself, revokes them). It also records the credential that rotated it
//!   (`rotated_in_session`, `rotated_by_key`), which read its secret: a stolen session or a
//!   leaked key that rotates the owner's keys takes the successors along when it ends;
//! - a refresh token presented twice (a copied session) revokes the keys made or rotated in
//!   that session; a logout does not (ending a browser session must not stop the automation
//!   keys made in it);
//! - a password reset revokes every key of the account (see [`revoke_all_of_owner`]).
//!
//! Nothing may be derived from a credential that has ended: a key created (or rotated) by a
//! session that was revoked (a logout too), or by a key that is no longer active, is refused,
//! even with an access token still inside its 15 minutes. A rotation is also refused when the
//! session the old key was made in was compromised (reuse, password reset; not a logout) or its
//! parent key ended. The checks run after the commit, so a cascade running at the same time
//! sees the new key or the check sees the cascade; a refused rotation is undone.
//!
//! Access tokens already issued (by a login, or by `client_credentials` with a revoked key) are
//! not looked up per request: they stay valid until they expire, at most 15 minutes (and the
//! validator's clock leeway).
//!
//! Each revoked key yields one `api_key.revoked` audit event whose reason says why
//! ([`RevocationCause`]) and whose policy names the key and what it cascaded from.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use poem::Request;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    Set, TransactionTrait,
};
use security::auth::access_control::{AuthMethod, Principal};
use security::auth::secrets::ApiKeySecret;
use security::logging::audit::{AuditEvent, Outcome};
use uuid::Uuid;

use super::AuthContext;
use super::tokens;
use crate::persistence::api_keys::{self, KeyState};

/// A key as created: the stored row and the secret, which is shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub key: api_keys::Model,
    pub secret: ApiKeySecret,
}

/// What created a key. Both empty for a key the operator's command line made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The sign-in session (refresh-token family) of the creating access token.
    pub session: Option<Uuid>,
    /// The key that created it, directly or through its `client_credentials` token.
    pub parent_key: Option<Uuid>,
}

impl Provenance {
    /// The provenance of a key `principal` creates now.
    pub fn of(principal: &Principal) -> Self {
        let parse = |value: Option<&str>| value.and_then(|value| value.parse::<Uuid>().ok());
        Self {
            // Only built-in tokens carry a `sid` or a `client_id` (the verifier drops an external
            // issuer's: they name the provider's sessions and clients, not ours).
            session: match principal.method {
                AuthMethod::AccessToken => parse(principal.session_id.as_deref()),
                AuthMethod::ApiKey => None,
            },
            parent_key: parse(principal.client_id.as_deref()),
        }
    }

    fn of_key(key: &api_keys::Model) -> Self {
        Self {
            session: key.created_in_session,
            parent_key: key.created_by_key,
        }
    }
}

/// A key was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The session or key it would derive from has ended (revoked, expired or rotated out).
    #[error("the credential the key would derive from has ended")]
    ProvenanceEnded,
    #[error(transparent)]
    Database(#[from] DbErr),
}

/// Creates a key for `owner_id`, derived from `provenance`. The caller has checked that
/// `scopes` are the creator's.
pub async fn issue(
    auth: &AuthContext,
    db: &impl ConnectionTrait,
    owner_id: Uuid,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
    provenance: Provenance,
) -> Result<IssuedKey, IssueError> {
    let issued = issue_as(
        auth,
        db,
        Uuid::new_v4(),
        owner_id,
        name,
        scopes,
        expires_at,
        provenance,
        Provenance::default(),
    )
    .await?;
    refuse_if_provenance_ended(auth, &issued.key, provenance).await?;
    Ok(issued)
}

#[expect(clippy::too_many_arguments, reason = "one row's columns")]
async fn issue_as(
    auth: &AuthContext,
    db: &impl ConnectionTrait,
    id: Uuid,
    owner_id: Uuid,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
    provenance: Provenance,
    rotated_by: Provenance,
) -> Result<IssuedKey, DbErr> {
    let secret = ApiKeySecret::generate(&auth.key_prefix);
    let key = api_keys::ActiveModel {
        id: Set(id),
        owner_id: Set(owner_id),
        name: Set(name.to_owned()),
        key_hash: Set(auth.key_hasher.hash(secret.expose()).to_hex()),
        scopes: Set(scopes.join(" ")),
        created_at: Set(auth.now()),
        expires_at: Set(expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
        replaced_by: Set(None),
        valid_until: Set(None),
        created_in_session: Set(provenance.session),
        created_by_key: Set(provenance.parent_key),
        rotated_in_session: Set(rotated_by.session),
        rotated_by_key: Set(rotated_by.parent_key),
    }
    .insert(db)
    .await?;
    Ok(IssuedKey { key, secret })
}

/// Revokes the just-inserted `key` and refuses it when `provenance` has ended. Checked after the
/// insert on purpose: a cascade that revoked the session or parent before this check finds the
/// key it must revoke too, or this check sees the revocation; checking first would let a key
/// slip in between the two.
async fn refuse_if_provenance_ended(
    auth: &AuthContext,
    key: &api_keys::Model,
    provenance: Provenance,
) -> Result<(), IssueError> {
    if !has_ended(auth, provenance, SessionEnds::Any).await? {
        return Ok(());
    }
    revoke_row(auth, key.id).await?;
    Err(IssueError::ProvenanceEnded)
}

/// Which ends of a session [`has_ended`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnds {
    /// Any, a logout too: for the credential deriving a key now (a signed-out session's access
    /// token, still inside its 15 minutes, makes nothing new).
    Any,
    /// Only a compromise (reuse, password reset): for the session an existing key was made in,
    /// which a logout leaves working, rotations included.
    Compromise,
}

/// Whether the session or the key of `provenance` no longer yields anything.
async fn has_ended(
    auth: &AuthContext,
    provenance: Provenance,
    session_ends: SessionEnds,
) -> Result<bool, DbErr> {
    if let Some(session) = provenance.session
        && let Some(end) = tokens::family_end(&auth.db, session).await?
        && (session_ends == SessionEnds::Any || end.is_compromise())
    {
        return Ok(true);
    }
    let Some(mut line) = provenance.parent_key else {
        return Ok(false);
    };
    // A parent rotated out lives on in its successor: its children follow the line.
    for _ in 0..MAX_ROTATIONS_FOLLOWED {
        let Some(key) = api_keys::Entity::find_by_id(line).one(&auth.db).await? else {
            return Ok(true);
        };
        match (key.state_at(auth.now()), key.replaced_by) {
            (KeyState::Active, _) => return Ok(false),
            (KeyState::Superseded, Some(successor)) => line = successor,
            _ => return Ok(true),
        }
    }
    Ok(true)
}

/// How many rotations of a parent key [`has_ended`] follows before calling the line ended.
const MAX_ROTATIONS_FOLLOWED: usize = 64;

/// Issues the successor of `old` (same owner, name, scopes, expiry and provenance: it replaces
/// `old`, it is not derived from it; and `rotator`, the credential that reads its secret) and
/// ends `old` after the overlap, in one transaction. `Ok(None)` when `old` was rotated or
/// revoked meanwhile: the conditional update lets one of two concurrent rotations win. Refused
/// when `rotator` has ended, or `old`'s session was compromised or its parent key ended.
pub async fn rotate(
    auth: &AuthContext,
    old: api_keys::Model,
    rotator: Provenance,
) -> Result<Option<IssuedKey>, IssueError> {
    let inherited = Provenance::of_key(&old);
    if rotation_refused(auth, rotator, inherited).await? {
        return Err(IssueError::ProvenanceEnded);
    }
    let overlap = chrono::Duration::seconds(
        i64::try_from(auth.settings.api_key_overlap_seconds).unwrap_or(i64::MAX),
    );
    let successor_id = Uuid::new_v4();
    let transaction = auth.db.begin().await?;
    let claimed = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::ReplacedBy, Expr::value(successor_id))
        .col_expr(
            api_keys::Column::ValidUntil,
            Expr::value(auth.now() + overlap),
        )
        .filter(api_keys::Column::Id.eq(old.id))
        .filter(api_keys::Column::ReplacedBy.is_null())
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(&transaction)
        .await?;
    if claimed.rows_affected != 1 {
        transaction.rollback().await?;
        return Ok(None);
    }
    // A key rotating itself hands its place on, it does not become the successor's rotator:
    // revoking it afterwards (ending the overlap early) must leave the successor working.
    let recorded_rotator = Provenance {
        parent_key: rotator.parent_key.filter(|key| *key != old.id),
        ..rotator
    };
    let successor = issue_as(
        auth,
        &transaction,
        successor_id,
        old.owner_id,
        &old.name,
        &old.scope_list(),
        old.expires_at,
        inherited,
        recorded_rotator,
    )
    .await?;
    transaction.commit().await?;
    // Again after the commit, as for a new key: a cascade through the rotator or `old`'s origin
    // that ran meanwhile must not miss the successor. Refused, the rotation is undone: the
    // successor is revoked and `old` keeps working past the overlap (unless that cascade
    // revoked it), so a retry can rotate it.
    if rotation_refused(auth, rotator, inherited).await? {
        revoke_row(auth, successor_id).await?;
        api_keys::Entity::update_many()
            .col_expr(
                api_keys::Column::ReplacedBy,
                Expr::value(Option::<Uuid>::None),
            )
            .col_expr(
                api_keys::Column::ValidUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .filter(api_keys::Column::Id.eq(old.id))
            .filter(api_keys::Column::ReplacedBy.eq(successor_id))
            .exec(&auth.db)
            .await?;
        return Err(IssueError::ProvenanceEnded);
    }
    Ok(Some(successor))
}

/// Whether a rotation by `rotator` of a key of provenance `inherited` must be refused.
async fn rotation_refused(
    auth: &AuthContext,
    rotator: Provenance,
    inherited: Provenance,
) -> Result<bool, DbErr> {
    Ok(has_ended(auth, rotator, SessionEnds::Any).await?
        || has_ended(auth, inherited, SessionEnds::Compromise).await?)
}

/// Why a key was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationCause {
    /// Asked for (`DELETE /v1/api-keys/{id}`).
    Requested,
    /// Created with this key, now revoked.
    ParentRevoked(Uuid),
    /// A rotation's successor, issued to this key (which rotated the old one), now revoked.
    RotatorRevoked(Uuid),
    /// Replaced in a rotation by this key, now revoked.
    SuccessorRevoked(Uuid),
    /// Created or rotated in this session, whose refresh token came back after use (copied).
    SessionReused(Uuid),
    /// Its owner's password was reset.
    PasswordReset,
}

impl RevocationCause {
    pub fn reason_code(self) -> &'static str {
        match self {
            Self::Requested => "revoked",
            Self::ParentRevoked(_) => "parent_revoked",
            Self::RotatorRevoked(_) => "rotator_revoked",
            Self::SuccessorRevoked(_) => "successor_revoked",
            Self::SessionReused(_) => "session_reused",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// One key revoked, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRevocation {
    pub key_id: Uuid,
    pub owner_id: Uuid,
    pub cause: RevocationCause,
}

impl KeyRevocation {
    /// Records `api_key.revoked` for `request`: the principal is `actor` (the caller who asked),
    /// or the key's owner when nobody asked (a reset, a reused session); the policy names the
    /// key and, for a cascade, what it followed: `<key> cascade_from <key or session id>`.
    pub fn record_by(&self, request: &Request, actor: Option<&str>) {
        let owner = self.owner_id.to_string();
        let policy = match self.cause {
            RevocationCause::Requested | RevocationCause::PasswordReset => self.key_id.to_string(),
            RevocationCause::ParentRevoked(from)
            | RevocationCause::RotatorRevoked(from)
            | RevocationCause::SuccessorRevoked(from) => {
                format!("{} cascade_from {from}", self.key_id)
            }
            RevocationCause::SessionReused(session) => {
                format!("{} cascade_from session {session}", self.key_id)
            }
        };
        AuditEvent::for_request(
            request,
            "api_key.revoked",
            Outcome::Allowed,
            self.cause.reason_code(),
        )
        .subject(actor.unwrap_or(&owner))
        .policy(&policy)
        .record();
    }

    /// [`Self::record_by`] with the key's owner as the principal.
    pub fn record(&self, request: &Request) {
        self.record_by(request, None);
    }
}

/// Revokes `key` now, with every key derived from it (see the module documentation).
pub async fn revoke(
    auth: &AuthContext,
    key: &api_keys::Model,
) -> Result<Vec<KeyRevocation>, DbErr> {
    revoke_with_descendants(auth, vec![(key.clone(), RevocationCause::Requested)]).await
}

/// Revokes the keys created or rotated in the session `family_id`, and what derives from them
/// (a refresh token of that session was reused, so it was copied).
pub async fn revoke_made_in_session(
    auth: &AuthContext,
    family_id: Uuid,
) -> Result<Vec<KeyRevocation>, DbErr> {
    let roots = api_keys::Entity::find()
        .filter(
            Condition::any()
                .add(api_keys::Column::CreatedInSession.eq(family_id))
                .add(api_keys::Column::RotatedInSession.eq(family_id)),
        )
        .all(&auth.db)
        .await?;
    let cause = RevocationCause::SessionReused(family_id);
    revoke_with_descendants(auth, roots.into_iter().map(|key| (key, cause)).collect()).await
}

/// A password reset: revokes every key of `owner_id`.
///
/// Every key, not only those created in a session: a key is made by a session or by a key, and
/// a key's line goes back to a session (or, in development, to the demo key the command line
/// made); the service cannot tell the owner's sessions from one opened with a stolen password,
/// and keys from before provenance was recorded cannot be told apart at all. So "created in a
/// session, and their descendants" would be every key anyway, save exceptions an attacker could
/// hide in. The owner creates the keys their automation needs again; the listing shows which
/// ended and when, and the audit trail says why (`password_reset`).
///
/// Repeated until a pass finds no active key: a key a rotation (or a key) committed after a
/// pass read the owner's keys is found by the next pass; one committed after the last pass's
/// read was made with a key already revoked, or in a session already revoked, and its own check
/// refuses it.
pub async fn revoke_all_of_owner(
    auth: &AuthContext,
    owner_id: Uuid,
) -> Result<Vec<KeyRevocation>, DbErr> {
    const MAX_PASSES: usize = 16;
    let cause = RevocationCause::PasswordReset;
    let mut revoked = Vec::new();
    for _ in 0..MAX_PASSES {
        let roots = api_keys::Entity::find()
            .filter(api_keys::Column::OwnerId.eq(owner_id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .all(&auth.db)
            .await?;
        if roots.is_empty() {
            break;
        }
        let roots = roots.into_iter().map(|key| (key, cause)).collect();
        revoked.extend(revoke_with_descendants(auth, roots).await?);
    }
    Ok(revoked)
}

/// Revokes `roots` and, generation by generation, the keys created or rotated with any key
/// reached and the keys any key reached replaced in a rotation (not its successors: revoking an old key ends
/// the overlap early and leaves its successor working). Keys revoked already are passed
/// through, not recorded again, so a tree revoked in part before is finished.
async fn revoke_with_descendants(
    auth: &AuthContext,
    roots: Vec<(api_keys::Model, RevocationCause)>,
) -> Result<Vec<KeyRevocation>, DbErr> {
    let mut seen: HashSet<Uuid> = roots.iter().map(|(key, _)| key.id).collect();
    let mut generation = roots;
    let mut revoked = Vec::new();
    while !generation.is_empty() {
        for (key, cause) in &generation {
            if revoke_row(auth, key.id).await? {
                revoked.push(KeyRevocation {
                    key_id: key.id,
                    owner_id: key.owner_id,
                    cause: *cause,
                });
            }
        }
        let ids: Vec<Uuid> = generation.iter().map(|(key, _)| key.id).collect();
        let next = api_keys::Entity::find()
            .filter(
                Condition::any()
                    .add(api_keys::Column::CreatedByKey.is_in(ids.clone()))
                    .add(api_keys::Column::RotatedByKey.is_in(ids.clone()))
                    .add(api_keys::Column::ReplacedBy.is_in(ids.clone())),
            )
            .all(&auth.db)
            .await?;
        generation = next
            .into_iter()
            .filter(|key| seen.insert(key.id))
            .map(|key| {
                let reached = |through: Option<Uuid>| through.filter(|id| ids.contains(id));
                let cause = if let Some(parent) = reached(key.created_by_key) {
                    RevocationCause::ParentRevoked(parent)
                } else if let Some(rotator) = reached(key.rotated_by_key) {
                    RevocationCause::RotatorRevoked(rotator)
                } else {
                    // Found through `replaced_by`, so it is set.
                    RevocationCause::SuccessorRevoked(key.replaced_by.unwrap_or_default())
                };
                (key, cause)
            })
            .collect();
    }
    Ok(revoked)
}

/// Marks one key revoked now, unless it already was. Returns whether it changed.
async fn revoke_row(auth: &AuthContext, id: Uuid) -> Result<bool, DbErr> {
    let updated = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::RevokedAt, Expr::value(auth.now()))
        .filter(api_keys::Column::Id.eq(id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(&auth.db)
        .await?;
    Ok(updated.rows_affected == 1)
}
