//! The outbox keeps message bodies sealed (AES-256-GCM under `auth.outbox_encryption_key`, which
//! the database never holds) instead of in plain text, and each message says until when it is
//! worth delivering, so delivered and expired messages can be purged.
//!
//! The table is recreated rather than altered: the rows it held are password-reset links in
//! plain text, each usable for 15 minutes after it was written, and a migration has no key to
//! seal them with. They are deleted (an account whose link is lost asks for another) rather than
//! kept readable in the database and in every backup taken after the upgrade.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OutboxMessages {
    Table,
    Id,
    Recipient,
    Subject,
    Body,
    SealedBody,
    CreatedAt,
    ExpiresAt,
    SentAt,
}

/// The columns every shape of the table has, before and after this migration.
fn common_columns(table: &mut TableCreateStatement) -> &mut TableCreateStatement {
    table
        .table(OutboxMessages::Table)
        .col(
            ColumnDef::new(OutboxMessages::Id)
                .uuid()
                .not_null()
                .primary_key(),
        )
        .col(
            ColumnDef::new(OutboxMessages::Recipient)
                .string_len(254)
                .not_null(),
        )
        .col(
            ColumnDef::new(OutboxMessages::Subject)
                .string_len(200)
                .not_null(),
        )
        .col(
            ColumnDef::new(OutboxMessages::CreatedAt)
                .timestamp_with_time_zone()
                .not_null(),
        )
        // Set by whatever relays the outbox to a mail server.
        .col(
            ColumnDef::new(OutboxMessages::SentAt)
                .timestamp_with_time_zone()
                .null(),
        )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OutboxMessages::Table).to_owned())
            .await?;
        manager
            .create_table(
                common_columns(&mut Table::create())
                    // nonce || ciphertext || tag, bound to the row's id and recipient.
                    .col(
                        ColumnDef::new(OutboxMessages::SealedBody)
                            .binary()
                            .not_null(),
                    )
                    // Past this, the message is not sent (a reset link no longer works) and is
                    // purged.
                    .col(
                        ColumnDef::new(OutboxMessages::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Sealed bodies cannot be turned back into plain text here: the messages go.
        manager
            .drop_table(Table::drop().table(OutboxMessages::Table).to_owned())
            .await?;
        manager
            .create_table(
                common_columns(&mut Table::create())
                    .col(ColumnDef::new(OutboxMessages::Body).text().not_null())
                    .to_owned(),
            )
            .await
    }
}
