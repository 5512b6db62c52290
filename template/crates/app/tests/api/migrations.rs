use app::persistence;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};

use crate::helpers::{TestDatabase, postgres_admin_url, settings};

/// Migrations apply to an empty database, and applying them again changes nothing.
async fn migrations_apply_once_then_are_a_no_op(url: &str) {
    let data_dir = tempfile::tempdir().expect("data dir");
    let mut settings = settings(data_dir.path(), "");
    crate::backend::release(data_dir.path());
    settings.database.url = url.to_owned().into();
    let db = persistence::connect(&settings.database)
        .await
        .expect("connect");

    assert!(
        !Migrator::get_pending_migrations(&db)
            .await
            .expect("status")
            .is_empty()
    );
    persistence::migrate(&db).await.expect("first run");
    assert!(
        Migrator::get_pending_migrations(&db)
            .await
            .expect("status")
            .is_empty()
    );
    let applied = Migrator::get_applied_migrations(&db)
        .await
        .expect("applied")
        .len();

    db.execute_unprepared(
        "INSERT INTO users (id, email, name, role, created_at) \
         VALUES ('6f1c1a2e-0000-4000-8000-000000000001', 'a@example.com', 'A', 'user', CURRENT_TIMESTAMP)",
    )
    .await
    .expect("the users table exists");

    persistence::migrate(&db).await.expect("second run");
    assert_eq!(
        Migrator::get_applied_migrations(&db)
            .await
            .expect("applied")
            .len(),
        applied,
        "nothing new applied"
    );
    assert_eq!(
        app::persistence::users::Entity::find()
            .count(&db)
            .await
            .expect("count"),
        1,
        "the data survived"
    );
    db.close().await.expect("close");
}

#[tokio::test]
async fn sqlite_migrations_apply_to_a_fresh_file_and_reapply_as_a_no_op() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/fresh/app.db?mode=rwc", dir.path().display());
    migrations_apply_once_then_are_a_no_op(&url).await;
    assert!(
        dir.path().join("fresh/app.db").is_file(),
        "the file was created on first run"
    );
}

#[tokio::test]
async fn postgres_migrations_apply_to_a_fresh_database_and_reapply_as_a_no_op() {
    let Some(admin_url) = postgres_admin_url().await else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let url = database.url();
    migrations_apply_once_then_are_a_no_op(&url).await;
    database.drop_database().await;
}

#[tokio::test]
async fn replicas_starting_together_apply_the_migrations_once_without_failing() {
    let Some(admin_url) = postgres_admin_url().await else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    let url = database.url();
    let data_dir = tempfile::tempdir().expect("data dir");
    let mut settings = settings(data_dir.path(), "");
    crate::backend::release(data_dir.path());
    settings.database.url = url.clone().into();
    let mut replicas = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let database = settings.database.clone();
        replicas.spawn(async move {
            let db = persistence::connect(&database).await.expect("connect");
            persistence::migrate(&db).await
        });
    }
    while let Some(started) = replicas.join_next().await {
        started
            .expect("no panic")
            .expect("every replica migrates or finds it done");
    }
    let db = persistence::connect(&settings.database)
        .await
        .expect("connect");
    assert!(
        Migrator::get_pending_migrations(&db)
            .await
            .expect("status")
            .is_empty()
    );
    db.close().await.expect("close");
    database.drop_database().await;
}

/// The outbox held reset links in plain text before its bodies were sealed: the sealing
/// migration deletes those rows rather than keep them readable (it has no key to seal them).
async fn plaintext_outbox_rows_do_not_survive_the_sealing_migration(url: &str) {
    let data_dir = tempfile::tempdir().expect("data dir");
    let mut settings = settings(data_dir.path(), "");
    crate::backend::release(data_dir.path());
    settings.database.url = url.to_owned().into();
    let db = persistence::connect(&settings.database)
        .await
        .expect("connect");
    // The schema as it was before the outbox was sealed.
    Migrator::up(&db, Some(5)).await.expect("older migrations");
    db.execute_unprepared(
        "INSERT INTO outbox_messages (id, recipient, subject, body, created_at) \
         VALUES ('6f1c1a2e-0000-4000-8000-000000000002', 'a@example.com', 'Reset your password', \
         'https://localhost/reset-password#token=plaintext', CURRENT_TIMESTAMP)",
    )
    .await
    .expect("a plaintext reset link");

    persistence::migrate(&db)
        .await
        .expect("the remaining migrations");
    assert_eq!(
        persistence::outbox::Entity::find()
            .count(&db)
            .await
            .expect("the sealed outbox can be read"),
        0,
        "no plaintext reset link is left"
    );
    db.close().await.expect("close");
}

#[tokio::test]
async fn sqlite_plaintext_outbox_rows_do_not_survive_the_sealing_migration() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/app.db?mode=rwc", dir.path().display());
    plaintext_outbox_rows_do_not_survive_the_sealing_migration(&url).await;
}

#[tokio::test]
async fn postgres_plaintext_outbox_rows_do_not_survive_the_sealing_migration() {
    let Some(admin_url) = postgres_admin_url().await else {
        return;
    };
    let database = TestDatabase::create(&admin_url).await;
    plaintext_outbox_rows_do_not_survive_the_sealing_migration(&database.url()).await;
    database.drop_database().await;
}
