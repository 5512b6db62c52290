//! Payments, the demo of a payment-like write, and the idempotency keys that make retrying one
//! safe (RATE-6): one record per caller and key, so a repeated request replays the first answer
//! instead of charging twice.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    OwnerId,
    AmountCents,
    Currency,
    Description,
    Status,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    OwnerId,
    Key,
    RequestHash,
    ResponseStatus,
    ResponseBody,
    CreatedAt,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Payments::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Payments::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Payments::OwnerId).uuid().not_null())
                    .col(
                        ColumnDef::new(Payments::AmountCents)
                            .big_integer()
                            .not_null(),
                    )
                    // ISO 4217: three uppercase letters.
                    .col(ColumnDef::new(Payments::Currency).string_len(3).not_null())
                    .col(ColumnDef::new(Payments::Description).string_len(140).null())
                    .col(ColumnDef::new(Payments::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Payments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Payments::Table, Payments::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("payments_owner")
                    .table(Payments::Table)
                    .col(Payments::OwnerId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(IdempotencyKeys::OwnerId).uuid().not_null())
                    // The client's `Idempotency-Key`: 1 to 255 printable ASCII characters.
                    .col(
                        ColumnDef::new(IdempotencyKeys::Key)
                            .string_len(255)
                            .not_null(),
                    )
                    // SHA-256 (hex) of the parsed request: the same key with another request is
                    // refused, not replayed.
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestHash)
                            .string_len(64)
                            .not_null(),
                    )
                    // The stored answer, written in the transaction that reserved the key: never
                    // seen empty by another request.
                    .col(
                        ColumnDef::new(IdempotencyKeys::ResponseStatus)
                            .small_integer()
                            .null(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::ResponseBody).text().null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // A key belongs to its caller: two callers' equal keys never meet, and one
                    // caller's concurrent duplicates meet here, on the unique index.
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKeys::OwnerId)
                            .col(IdempotencyKeys::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdempotencyKeys::Table, IdempotencyKeys::OwnerId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(IdempotencyKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Payments::Table).to_owned())
            .await
    }
}
