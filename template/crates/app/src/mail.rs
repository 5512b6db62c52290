//! Outgoing mail, through an outbox whose message bodies are sealed (AUTH-1: password-reset
//! links; LOG-5: never logged).
//!
//! The service hands mail to a [`Mailer`]. The shipped [`DatabaseOutbox`] stores each message in
//! `outbox_messages`, where a relay (a cron job, a worker, your mail provider's importer) picks
//! it up and sets `sent_at`: the message is written in the database the service already trusts,
//! so no SMTP credential is needed to run it, and a mail server being down loses nothing.
//!
//! Threat: a body can hold a secret. A reset link carries its raw token, so whoever reads the
//! table (a read-only database account, a replica, a backup, an SQL injection elsewhere) could
//! take over any account that asked for a reset in the last 15 minutes.
//!
//! Control: every body is sealed with AES-256-GCM under [`OutboxKey`]
//! (`auth.outbox_encryption_key`), a key the database never holds (the environment or a secret
//! store; generated in `auth.key_dir` in development). The associated data is the message's id
//! and recipient, so a sealed body copied to another row, or a row whose recipient was changed,
//! does not open. The relay opens each body with [`OutboxKey::open`] when it sends, so a retry
//! still works. Each message also says until when it is worth sending (`expires_at`: a reset link
//! stops working after 15 minutes), and the service's hourly purge deletes messages once
//! delivered or expired (`persistence::outbox::delete_delivered_and_expired`). There is no
//! switch to store bodies in plain text. Recipient and subject stay readable: the relay and an
//! operator need them, and they grant nothing. Nothing here logs a body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, Set};
use secrecy::{ExposeSecret, SecretString};
use security::auth::jwt::Clock;
use security::auth::key_wrapping::{KeyEncryptionKey, KeyWrappingError};
use uuid::Uuid;

use crate::persistence::outbox;

/// One message. `Debug` shows the recipient and subject, never the body.
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// After this the message is not worth sending (the link in it no longer works): a relay
    /// skips it and the purge deletes it.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a message could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("the message body could not be sealed: {0}")]
    Sealing(#[from] KeyWrappingError),
}

/// Sends mail. Implement it to deliver another way (an HTTP mail API, SMTP).
pub trait Mailer: Send + Sync + 'static {
    fn send(
        &self,
        mail: OutgoingMail,
    ) -> Pin<Box<dyn Future<Output = Result<(), MailError>> + Send + '_>>;
}

/// The key outbox bodies are sealed under (`auth.outbox_encryption_key`). `Debug` never prints
/// it.
#[derive(Debug)]
pub struct OutboxKey(KeyEncryptionKey);

impl OutboxKey {
    pub fn new(key: KeyEncryptionKey) -> Self {
        Self(key)
    }

    /// What a sealed body is bound to: its row and its recipient. The id has a fixed length, so
    /// no two (id, recipient) pairs give the same text.
    fn associated_data(id: Uuid, recipient: &str) -> String {
        format!("outbox-message:{id}:{recipient}")
    }

    /// `body` sealed for the message `id` to `recipient`.
    pub fn seal(&self, id: Uuid, recipient: &str, body: &str) -> Result<Vec<u8>, KeyWrappingError> {
        self.0
            .seal(&Self::associated_data(id, recipient), body.as_bytes())
    }

    /// The body of a stored message, for the relay that delivers it. Fails if the row was
    /// altered, its sealed body belongs to another row or recipient, or it was sealed under
    /// another key.
    pub fn open(&self, message: &outbox::Model) -> Result<SecretString, KeyWrappingError> {
        let opened = self.0.open(
            &Self::associated_data(message.id, &message.recipient),
            &message.sealed_body,
        )?;
        let text =
            std::str::from_utf8(opened.expose_secret()).map_err(|_| KeyWrappingError::Unsealing)?;
        Ok(SecretString::from(text))
    }
}

/// Stores messages in `outbox_messages`, each body sealed.
#[derive(Clone)]
pub struct DatabaseOutbox {
    db: DatabaseConnection,
    key: Arc<OutboxKey>,
    clock: Arc<dyn Clock>,
}

impl DatabaseOutbox {
    pub fn new(db: DatabaseConnection, key: Arc<OutboxKey>, clock: Arc<dyn Clock>) -> Self {
        Self { db, key, clock }
    }
}

impl std::fmt::Debug for DatabaseOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseOutbox").finish_non_exhaustive()
    }
}

impl Mailer for DatabaseOutbox {
    fn send(
        &self,
        mail: OutgoingMail,
    ) -> Pin<Box<dyn Future<Output = Result<(), MailError>> + Send + '_>> {
        Box::pin(async move {
            let id = Uuid::new_v4();
            let sealed_body = self.key.seal(id, &mail.to, &mail.body)?;
            let now =
                DateTime::from_timestamp(i64::try_from(self.clock.now()).unwrap_or(i64::MAX), 0)
                    .unwrap_or_default();
            outbox::ActiveModel {
                id: Set(id),
                recipient: Set(mail.to),
                subject: Set(mail.subject),
                sealed_body: Set(sealed_body),
                created_at: Set(now),
                expires_at: Set(mail.expires_at),
                sent_at: Set(None),
            }
            .insert(&self.db)
            .await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OutboxKey {
        OutboxKey::new(
            KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().expect("random"))
                .expect("a generated key is valid"),
        )
    }

    fn stored(key: &OutboxKey, id: Uuid, recipient: &str, body: &str) -> outbox::Model {
        outbox::Model {
            id,
            recipient: recipient.to_owned(),
            subject: "Reset your password".to_owned(),
            sealed_body: key.seal(id, recipient, body).expect("sealed"),
            created_at: Utc::now(),
            expires_at: Utc::now(),
            sent_at: None,
        }
    }

    #[test]
    fn a_sealed_body_opens_for_its_own_row_only() {
        let key = key();
        let body = "open https://api.example.com/reset-password#token=abc";
        let message = stored(&key, Uuid::new_v4(), "a@example.com", body);
        assert!(
            !message
                .sealed_body
                .windows(b"#token=".len())
                .any(|window| window == b"#token="),
            "the body is not stored in plain text"
        );
        assert_eq!(key.open(&message).expect("opens").expose_secret(), body);

        let moved = outbox::Model {
            id: Uuid::new_v4(),
            ..message.clone()
        };
        assert_eq!(
            key.open(&moved).err(),
            Some(KeyWrappingError::Unsealing),
            "copied to another row"
        );
        let redirected = outbox::Model {
            recipient: "attacker@example.com".to_owned(),
            ..message.clone()
        };
        assert_eq!(
            key.open(&redirected).err(),
            Some(KeyWrappingError::Unsealing),
            "sent to another recipient"
        );
        assert_eq!(
            self::key().open(&message).err(),
            Some(KeyWrappingError::Unsealing),
            "another key"
        );
    }
}
