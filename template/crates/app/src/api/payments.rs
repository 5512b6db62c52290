//! Payments, the demo of a payment-like write: `POST /v1/payments` with a required
//! `Idempotency-Key` header (RATE-6, draft-ietf-httpapi-idempotency-key-header).
//!
//! A client that cannot tell whether its payment went through (a timeout, a dropped connection)
//! sends the same request again with the same key. Each caller's keys are remembered with a
//! hash of the request and the answer it got, for `payments.idempotency_key_ttl_seconds`:
//! - a new key charges, and the answer is stored with the key, in one transaction: there is
//!   never a payment without its key's answer, nor a key without its payment;
//! - the same key with the same request replays the stored answer, marked
//!   `Idempotent-Replayed: true`, and charges nothing;
//! - the same key with a different request is refused (422): a key names one request;
//! - concurrent duplicates meet on the key's unique index: one charges, the others wait for it
//!   to commit and replay its answer;
//! - once expired, the key is forgotten and makes a new payment; expired keys are deleted
//!   hourly, so callers who never return leave nothing behind;
//! - a missing or malformed key is a 400 and charges nothing.
//!
//! Without the key, a retry after a lost answer charges twice: the header is required, not
//! optional, for every payment-like write.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::Header;
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, Set, SqlErr, TransactionTrait,
    TryInsertResult,
};
use security::auth::access_control::Principal;
use security::auth::secrets::OpaqueToken;
use security::logging::audit::{AuditEvent, Outcome};
use uuid::Uuid;

use super::ApiTags;
use crate::auth::AuthContext;
use crate::auth::scheme::Authenticated;
use crate::auth::scheme::local_user_id;
use crate::auth::scopes::Scope;
use crate::config::PaymentSettings;
use crate::error::ApiError;
use crate::persistence::{idempotency_keys, payments};

/// The status of a newly captured payment, as stored with its key.
const CREATED: i16 = 201;

/// The answer to a duplicate whose original has not finished (its transaction hides it until
/// then, so in practice only after a race lost twice).
const IN_PROGRESS: &str = "A request with this Idempotency-Key is in progress; retry it";

/// The payments API.
#[derive(Debug)]
pub struct PaymentsApi {
    auth: Arc<AuthContext>,
    /// How long an idempotency key is remembered.
    key_ttl: chrono::Duration,
}

impl PaymentsApi {
    pub fn new(auth: Arc<AuthContext>, settings: &PaymentSettings) -> Self {
        Self {
            auth,
            // At most a week: validated with the configuration.
            key_ttl: chrono::Duration::from_std(settings.idempotency_key_ttl())
                .unwrap_or(chrono::Duration::MAX),
        }
    }
}

/// A charge to make. The payer is the caller: there is no field to set it. The request's
/// fingerprint is this struct serialised, so whitespace and key order do not matter.
#[derive(Debug, Object, serde::Serialize)]
#[oai(deny_unknown_fields)]
pub struct NewPayment {
    /// In the currency's smallest unit, 1 to 100000000.
    #[oai(validator(minimum(value = "1"), maximum(value = "100000000")))]
    pub amount_cents: i64,
    /// ISO 4217, three uppercase letters (`EUR`).
    #[oai(validator(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
    /// Shown on the statement, at most 140 characters.
    #[oai(validator(max_length = 140))]
    pub description: Option<String>,
}

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// The money was taken (the demo captures at once).
    Captured,
}

/// A payment.
#[derive(Debug, Object)]
pub struct Payment {
    pub id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    pub status: PaymentStatus,
    pub created_at: DateTime<Utc>,
}

impl From<payments::Model> for Payment {
    fn from(payment: payments::Model) -> Self {
        Self {
            id: payment.id,
            amount_cents: payment.amount_cents,
            currency: payment.currency,
            description: payment.description,
            status: match payment.status {
                payments::Status::Captured => PaymentStatus::Captured,
            },
            created_at: payment.created_at,
        }
    }
}

#[derive(Debug, ApiResponse)]
pub enum CreatedPayment {
    /// The payment was captured; or, with `Idempotent-Replayed: true`, the stored answer to an
    /// earlier request with the same key and body, and nothing was charged again.
    #[oai(status = 201)]
    Created(
        Json<Payment>,
        /// `true` when the answer is the replay of an earlier one.
        #[oai(header = "Idempotent-Replayed")]
        Option<bool>,
    ),
}

/// What one transaction found for the caller's key.
enum Attempt {
    /// The key was new: this request charged, and this answer is stored with the key.
    Charged(Payment),
    /// The key is taken, by the stored request.
    Taken(idempotency_keys::Model),
    /// The key was taken by a concurrent request whose record was gone when read.
    Vanished,
    /// The caller's user id names no account (a valid token whose user was deleted since).
    UnknownUser,
}

/// The caller's user id; a principal that is no local user (an external identity provider's
/// `issuer#sub`) is refused, audited (LOG-2).
fn caller(request: &Request, principal: &Principal) -> Result<Uuid, ApiError> {
    local_user_id(
        request,
        principal,
        "payments are made by local users only",
        "This principal cannot make payments",
    )
}

/// SHA-256 (hex) of the request's canonical JSON: a retry matches however it is formatted.
fn request_hash(new: &NewPayment) -> Result<String, ApiError> {
    let canonical = serde_json::to_string(new).map_err(|error| ApiError::Internal(error.into()))?;
    // The same unkeyed SHA-256 as opaque tokens; the request is not secret, only compared.
    Ok(OpaqueToken::hash(&canonical).to_hex())
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Payments")]
impl PaymentsApi {
    /// Charges the caller (a demo: the payment is recorded, no money moves). Retrying with the
    /// same `Idempotency-Key` and body returns the first answer and charges once.
    #[oai(path = "/payments", method = "post")]
    async fn create(
        &self,
        request: &Request,
        #[oai(scope = "Scope::PaymentsWrite")] auth: Authenticated,
        /// A value unique to this payment, chosen by the client (a UUID will do): 1 to 255
        /// printable ASCII characters. Send the same one with every retry.
        #[oai(
            name = "Idempotency-Key",
            validator(max_length = 255, pattern = r"^[\x20-\x7E]+$")
        )]
        idempotency_key: Header<String>,
        body: Json<NewPayment>,
    ) -> Result<CreatedPayment, ApiError> {
        let principal = auth.principal();
        let owner = caller(request, principal)?;
        let key = idempotency_key.0;
        let new = body.0;
        let request_hash = request_hash(&new)?;
        match self.charge(owner, &key, &request_hash, &new).await? {
            Attempt::Charged(payment) => {
                AuditEvent::for_request(request, "payment.created", Outcome::Allowed, "captured")
                    .subject(&principal.subject)
                    .record();
                Ok(CreatedPayment::Created(Json(payment), None))
            }
            Attempt::Taken(stored) if stored.request_hash != request_hash => {
                AuditEvent::for_request(
                    request,
                    "payment.idempotency_conflict",
                    Outcome::Denied,
                    "different_request",
                )
                .subject(&principal.subject)
                .policy("an Idempotency-Key names one request")
                .record();
                Err(ApiError::Unprocessable(
                    "This Idempotency-Key was used with a different request",
                ))
            }
            Attempt::Taken(stored) => {
                let payment = stored_answer(&stored)?;
                AuditEvent::for_request(
                    request,
                    "payment.replayed",
                    Outcome::Allowed,
                    "same_request",
                )
                .subject(&principal.subject)
                .record();
                Ok(CreatedPayment::Created(Json(payment), Some(true)))
            }
            Attempt::Vanished => Err(ApiError::Conflict(IN_PROGRESS)),
            Attempt::UnknownUser => {
                AuditEvent::for_request(
                    request,
                    "authz.principal",
                    Outcome::Denied,
                    "unknown_user",
                )
                .subject(&principal.subject)
                .policy("payments are made by existing users only")
                .record();
                Err(ApiError::Forbidden("This principal cannot make payments"))
            }
        }
    }
}

/// The payment stored as `record`'s answer. Only captured payments are stored; an answer not
/// yet stored is a request still in progress.
fn stored_answer(record: &idempotency_keys::Model) -> Result<Payment, ApiError> {
    let (Some(status), Some(body)) = (record.response_status, &record.response_body) else {
        return Err(ApiError::Conflict(IN_PROGRESS));
    };
    if status != CREATED {
        return Err(ApiError::Internal(
            format!("an idempotency key stored status {status}").into(),
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|error| ApiError::Internal(error.into()))?;
    Payment::parse_from_json(Some(value))
        .map_err(|error| ApiError::Internal(error.into_message().into()))
}

impl PaymentsApi {
    /// Runs [`Self::try_charge`], and once more if it lost a race to a concurrent duplicate (a
    /// unique violation, or the winner's record gone when read): the second run finds the
    /// winner's record and replays it.
    async fn charge(
        &self,
        owner: Uuid,
        key: &str,
        request_hash: &str,
        new: &NewPayment,
    ) -> Result<Attempt, ApiError> {
        let mut retried = false;
        loop {
            match self.try_charge(owner, key, request_hash, new).await {
                Err(error)
                    if !retried
                        && matches!(
                            error.sql_err(),
                            Some(SqlErr::UniqueConstraintViolation(_))
                        ) =>
                {
                    retried = true;
                }
                Ok(Attempt::Vanished) if !retried => retried = true,
                // A valid token whose subject has no account (deleted since).
                Err(error)
                    if matches!(
                        error.sql_err(),
                        Some(SqlErr::ForeignKeyConstraintViolation(_))
                    ) =>
                {
                    return Ok(Attempt::UnknownUser);
                }
                result => return result.map_err(ApiError::from),
            }
        }
    }

    /// In one transaction: forgets the caller's key if it expired, reserves it, and if it was
    /// free charges and stores the answer with it; if it was taken, reads who took it.
    async fn try_charge(
        &self,
        owner: Uuid,
        key: &str,
        request_hash: &str,
        new: &NewPayment,
    ) -> Result<Attempt, DbErr> {
        let now = self.auth.now();
        let transaction = self.auth.db.begin().await?;
        // A write first: on SQLite it takes the write lock at once, so concurrent duplicates
        // queue here instead of failing to upgrade a read lock later. It forgets every expired
        // key of the caller (this one included), so a caller's keys never outgrow one TTL.
        idempotency_keys::Entity::delete_many()
            .filter(idempotency_keys::Column::OwnerId.eq(owner))
            .filter(idempotency_keys::Column::ExpiresAt.lte(now))
            .exec(&transaction)
            .await?;
        // On PostgreSQL a concurrent duplicate waits here, on the unique index, until the first
        // commits; then it inserts nothing and reads the first one's record.
        let reserved = idempotency_keys::Entity::insert(idempotency_keys::ActiveModel {
            owner_id: Set(owner),
            key: Set(key.to_owned()),
            request_hash: Set(request_hash.to_owned()),
            response_status: Set(None),
            response_body: Set(None),
            created_at: Set(now),
            expires_at: Set(now
                .checked_add_signed(self.key_ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC)),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&transaction)
        .await?;
        if !matches!(reserved, TryInsertResult::Inserted(1)) {
            let taken = idempotency_keys::Entity::find_by_id((owner, key.to_owned()))
                .one(&transaction)
                .await?;
            transaction.rollback().await?;
            return Ok(taken.map_or(Attempt::Vanished, Attempt::Taken));
        }
        let payment: Payment = payments::ActiveModel {
            id: Set(Uuid::new_v4()),
            owner_id: Set(owner),
            amount_cents: Set(new.amount_cents),
            currency: Set(new.currency.clone()),
            description: Set(new.description.clone()),
            status: Set(payments::Status::Captured),
            created_at: Set(now),
        }
        .insert(&transaction)
        .await?
        .into();
        let answer = payment
            .to_json()
            .map(|json| json.to_string())
            .unwrap_or_default();
        idempotency_keys::Entity::update_many()
            .col_expr(
                idempotency_keys::Column::ResponseStatus,
                Expr::value(CREATED),
            )
            .col_expr(idempotency_keys::Column::ResponseBody, Expr::value(answer))
            .filter(idempotency_keys::Column::OwnerId.eq(owner))
            .filter(idempotency_keys::Column::Key.eq(key))
            .exec(&transaction)
            .await?;
        transaction.commit().await?;
        Ok(Attempt::Charged(payment))
    }
}
