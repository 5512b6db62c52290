//! Persistence: the connection pool, migrations and entities (sea-orm).
//!
//! Threat (INPUT-3): SQL assembled from strings lets a request's text become part of the query
//! (SQL injection: reading other users' rows, changing roles, dropping tables).
//!
//! Control: queries go through sea-orm's builders, which bind every value as a parameter: no SQL
//! is ever assembled from strings here. There is no switch; a raw statement built with
//! `format!` would reopen the hole, and `tests/api/users.rs` stores injection payloads to prove
//! they stay data.
//!
//! The pool ([`connect`]) bounds every wait on the database (INPUT-4): connecting, acquiring a
//! connection and each statement have a timeout (`[database]`: 5, 5 and 10 seconds), so a slow
//! or unreachable database fails requests in bounded time instead of holding them open.

pub mod api_keys;
pub mod idempotency_keys;
pub mod notes;
pub mod outbox;
pub mod password_resets;
pub mod payments;
pub mod refresh_tokens;
pub mod signing_keys;
pub mod users;

use std::path::Path;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

use crate::config::DatabaseSettings;

/// Opens the pool with bounded connect, acquire and statement times. For SQLite the folder of
/// the database file is created on first run.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    if let Some(folder) = sqlite_file_folder(settings.url()) {
        std::fs::create_dir_all(folder).map_err(|error| {
            DbErr::Custom(format!(
                "cannot create the database folder {}: {error}",
                folder.display()
            ))
        })?;
    }
    let statement_timeout = settings.statement_timeout();
    let mut options = ConnectOptions::new(settings.url().to_owned());
    options
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .connect_timeout(settings.connect_timeout())
        .acquire_timeout(settings.acquire_timeout())
        // Statements are not logged: their bound values can be personal data.
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(move |pg| {
            pg.options([(
                "statement_timeout",
                format!("{}ms", statement_timeout.as_millis()),
            )])
        })
        .map_sqlx_sqlite_opts(move |sqlite| {
            sqlite
                .busy_timeout(statement_timeout)
                .foreign_keys(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        });
    Database::connect(options).await
}

/// The PostgreSQL advisory lock held while migrating (any fixed number; this one spells "rampart").
const MIGRATION_LOCK: i64 = 0x0072_616d_7061_7274;

/// Applies every pending migration; already applied ones are skipped.
///
/// On PostgreSQL, replicas starting together would otherwise race to apply the same migration
/// (the loser failing its start-up): the run holds a session advisory lock on a connection of its
/// own, so they apply one after another and the later ones find nothing pending. Each migration
/// keeps its own transaction (and may opt out of one, for `CREATE INDEX CONCURRENTLY`); the lock
/// goes with the connection if the process dies.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::sqlx::{Connection, postgres::PgConnection};
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    let lock_error = |error: sea_orm::sqlx::Error| {
        DbErr::Custom(format!("cannot take the migration lock: {error}"))
    };
    let options = db.get_postgres_connection_pool().connect_options();
    let mut lock = PgConnection::connect_with(&options)
        .await
        .map_err(lock_error)?;
    // Waiting for another replica's migrations is not a slow statement.
    sea_orm::sqlx::query("SET statement_timeout = 0")
        .execute(&mut lock)
        .await
        .map_err(lock_error)?;
    sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut lock)
        .await
        .map_err(lock_error)?;
    let migrated = Migrator::up(db, None).await;
    // Closing the session releases the lock in any case.
    let _ = lock.close().await;
    migrated
}

/// The folder holding a file-backed SQLite database, if `url` names one.
fn sqlite_file_folder(url: &str) -> Option<&Path> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path)
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_of_a_sqlite_file_is_found() {
        assert_eq!(
            sqlite_file_folder("sqlite://data/app.db?mode=rwc"),
            Some(Path::new("data"))
        );
        assert_eq!(
            sqlite_file_folder("sqlite:///var/lib/app/app.db"),
            Some(Path::new("/var/lib/app"))
        );
        assert_eq!(sqlite_file_folder("sqlite::memory:"), None);
        assert_eq!(sqlite_file_folder("sqlite://app.db"), None);
        assert_eq!(sqlite_file_folder("postgres://localhost/app"), None);
    }
}
