//! Outgoing mail, through an outbox (AUTH-1: password-reset links; LOG-5: never logged).
//!
//! The service hands mail to a [`Mailer`]. The shipped [`DatabaseOutbox`] stores each message in
//! `outbox_messages`, where a relay (a cron job, a worker, your mail provider's importer) picks
//! it up and sets `sent_at`: the message is written in the database the service already trusts,
//! so no SMTP credential is needed to run it, and a mail server being down loses nothing. Message
//! bodies can hold secrets; nothing here logs them.

use std::future::Future;
use std::pin::Pin;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbErr, Set};
use uuid::Uuid;

use crate::persistence::outbox;

/// One message. `Debug` shows the recipient and subject, never the body.
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Sends mail. Implement it to deliver another way (an HTTP mail API, SMTP).
pub trait Mailer: Send + Sync + 'static {
    fn send(
        &self,
        mail: OutgoingMail,
    ) -> Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + '_>>;
}

/// Stores messages in `outbox_messages`.
#[derive(Debug, Clone)]
pub struct DatabaseOutbox {
    db: DatabaseConnection,
}

impl DatabaseOutbox {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

impl Mailer for DatabaseOutbox {
    fn send(
        &self,
        mail: OutgoingMail,
    ) -> Pin<Box<dyn Future<Output = Result<(), DbErr>> + Send + '_>> {
        Box::pin(async move {
            outbox::ActiveModel {
                id: Set(Uuid::new_v4()),
                recipient: Set(mail.to),
                subject: Set(mail.subject),
                body: Set(mail.body),
                created_at: Set(Utc::now()),
                sent_at: Set(None),
            }
            .insert(&self.db)
            .await
            .map(drop)
        })
    }
}
