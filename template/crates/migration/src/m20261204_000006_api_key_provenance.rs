//! Where each API key came from (AUTH-2): the sign-in session (refresh-token family) whose
//! access token created it, or the key that created it (directly as `X-API-Key`, or through a
//! `client_credentials` token), and for a rotation's successor the session or key that rotated
//! it (and so read its secret). Revoking a key revokes the keys created or rotated with it, and
//! a password reset or a stolen session's end reaches the keys made or rotated in it. The
//! columns are null for a key made by the operator's command line, or before this migration.
//!
//! Why a session ended (`refresh_tokens.revocation_reason`: `logout`, `reuse` or
//! `password_reset`): a logout leaves the keys made in the session working, a compromise does
//! not, so a rotation asks which it was.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiKeys {
    Table,
    CreatedInSession,
    CreatedByKey,
    RotatedInSession,
    RotatedByKey,
}

#[derive(DeriveIden, Clone, Copy)]
enum RefreshTokens {
    Table,
    RevocationReason,
}

/// Each column with its own statement and index: SQLite alters one column at a time.
const COLUMNS: [(ApiKeys, &str); 4] = [
    (ApiKeys::CreatedInSession, "api_keys_created_in_session"),
    (ApiKeys::CreatedByKey, "api_keys_created_by_key"),
    (ApiKeys::RotatedInSession, "api_keys_rotated_in_session"),
    (ApiKeys::RotatedByKey, "api_keys_rotated_by_key"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (column, index) in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .add_column(ColumnDef::new(column).uuid().null())
                        .to_owned(),
                )
                .await?;
            // Revocation cascades look keys up by their session and their parent.
            manager
                .create_index(
                    Index::create()
                        .name(index)
                        .table(ApiKeys::Table)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .add_column(
                        ColumnDef::new(RefreshTokens::RevocationReason)
                            .string_len(16)
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RefreshTokens::Table)
                    .drop_column(RefreshTokens::RevocationReason)
                    .to_owned(),
            )
            .await?;
        for (column, index) in COLUMNS {
            manager
                .drop_index(Index::drop().name(index).table(ApiKeys::Table).to_owned())
                .await?;
            manager
                .alter_table(
                    Table::alter()
                        .table(ApiKeys::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
