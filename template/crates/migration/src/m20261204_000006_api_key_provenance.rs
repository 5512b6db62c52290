//! Where each API key came from (AUTH-2): the sign-in session (refresh-token family) whose
//! access token created it, or the key that created it (directly as `X-API-Key`, or through a
//! `client_credentials` token). Revoking a key revokes the keys created with it, and a password
//! reset or a stolen session's end reaches the keys made in it. Both columns are null for a key
//! made by the operator's command line, or before this migration.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ApiKeys {
    Table,
    CreatedInSession,
    CreatedByKey,
}

/// Each column with its own statement and index: SQLite alters one column at a time.
const COLUMNS: [(ApiKeys, &str); 2] = [
    (ApiKeys::CreatedInSession, "api_keys_created_in_session"),
    (ApiKeys::CreatedByKey, "api_keys_created_by_key"),
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
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
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
