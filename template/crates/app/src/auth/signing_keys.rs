//! The built-in issuer's keys, as every instance of the service sees them (AUTH-1, AUTH-5).
//!
//! `auth.signing_keys = "file"`: the keys come from files (`signing_key_path`,
//! `retired_signing_keys`; in development one generated in `key_dir`) and change with the
//! configuration and a restart. Several instances then mount the same secret.
//!
//! `auth.signing_keys = "database"`: the keys live in the shared database, each private key sealed
//! under `auth.signing_key_encryption_key` (`security::auth::key_wrapping`), so every instance
//! signs with the same key and a rotation ([`DatabaseKeys::rotate`], `app rotate-signing-key`)
//! reaches them all: each re-reads the keys every `signing_key_refresh_seconds`, and at once (at
//! most once a second) when a token names a key of this issuer it has not seen, so a token signed
//! by an instance that already rotated verifies everywhere. Instances that have not re-read yet
//! still sign with the previous key: its tokens keep verifying if issued up to the refresh
//! interval plus the clock leeway after its retirement ([`DatabaseKeys::new`]'s `grace`). The
//! first instance to start on an empty table creates the first key; two instances starting (or
//! rotating) together cannot both win, as each key's sequence number is the primary key.
//! `"database"` is the default of the postgres variant, the one meant for several instances.
//!
//! Threat: a signing key copied by hand to every instance, or stored in clear in the shared
//! database, leaks with any backup; a rotation that reaches only some instances makes the others
//! refuse valid tokens. Hence the sealing (AES-256-GCM, bound to the key's `kid`, under a
//! key-encryption key from the environment that the database never holds), and a rotation that
//! refuses a key-encryption key unable to open the current key, so a typo cannot start a second,
//! unreadable chain of keys. `app rotate-signing-key --revoke-previous` deletes the older keys
//! instead of retiring them: for a key that leaked, whose tokens must stop verifying as soon as
//! every instance has re-read the keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set, SqlErr, TransactionTrait,
};
use secrecy::ExposeSecret;
use security::auth::issuer_keys::{IssuerKeyError, IssuerKeys, RetiredKey};
use security::auth::jwt::{MAX_LEEWAY, MAX_OWN_LIFETIME, SigningKey};
use security::auth::key_wrapping::{KeyEncryptionKey, KeyWrappingError};

use crate::persistence::signing_keys;

/// Why the shared keys could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyStoreError {
    #[error("database: {0}")]
    Database(#[from] DbErr),
    #[error("the key-encryption key: {0}")]
    Wrapping(#[from] KeyWrappingError),
    #[error("stored key {0} is not the Ed25519 key its id names")]
    Corrupt(String),
    #[error("another instance rotated the keys at the same moment; nothing was changed here")]
    ConcurrentRotation,
    #[error(
        "the configured key-encryption key does not open the current signing key {0}: refusing to \
         add a key no other instance could read"
    )]
    WrongKeyEncryptionKey(String),
    #[error(transparent)]
    Keys(#[from] IssuerKeyError),
}

/// How long after its retirement a key cannot have signed an unexpired token any more; its row is
/// deleted on the next rotation after a day.
const RETIRED_ROWS_KEPT: Duration = Duration::from_secs(24 * 60 * 60);

/// The keys in the shared database.
pub struct DatabaseKeys {
    db: DatabaseConnection,
    kek: KeyEncryptionKey,
    /// How long after its retirement a key may still sign on instances that have not re-read
    /// the keys yet: their tokens must keep verifying.
    grace: Duration,
}

impl std::fmt::Debug for DatabaseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseKeys").finish_non_exhaustive()
    }
}

impl DatabaseKeys {
    /// `refresh` is how often instances re-read the keys (`auth.signing_key_refresh_seconds`):
    /// a retired key's tokens verify if issued up to `refresh` + the clock leeway after its
    /// retirement.
    pub fn new(db: DatabaseConnection, kek: KeyEncryptionKey, refresh: Duration) -> Self {
        Self {
            db,
            kek,
            grace: refresh + MAX_LEEWAY,
        }
    }

    /// The current keys; on an empty table, a first key is created (by one instance only).
    pub async fn load_or_create(
        &self,
        now: DateTime<Utc>,
    ) -> Result<IssuerKeys, SigningKeyStoreError> {
        if let Some(keys) = self.load().await? {
            return Ok(keys);
        }
        match self.insert_key(&self.db, 1, now).await {
            Ok(_) => {}
            // Another instance created it first: use that one.
            Err(SigningKeyStoreError::Database(error))
                if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {}
            Err(error) => return Err(error),
        }
        self.load()
            .await?
            .ok_or_else(|| SigningKeyStoreError::Corrupt("(none after creation)".to_owned()))
    }

    /// The current keys: the highest sequence signs, the rest are retired. `None` if there are
    /// none yet.
    pub async fn load(&self) -> Result<Option<IssuerKeys>, SigningKeyStoreError> {
        let rows = signing_keys::Entity::find()
            .order_by_desc(signing_keys::Column::Sequence)
            .all(&self.db)
            .await?;
        let Some((newest, older)) = rows.split_first() else {
            return Ok(None);
        };
        let active = self.open(newest)?;
        let grace = chrono::Duration::from_std(self.grace).unwrap_or_default();
        let mut retired = Vec::with_capacity(older.len());
        let mut successor_created = newest.created_at;
        for row in older {
            // Retired when its successor was created, if the row does not say.
            let retired_at = row.retired_at.unwrap_or(successor_created);
            successor_created = row.created_at;
            // A retired key that does not open cannot verify anything: skipped, so it cannot keep
            // every instance from starting.
            let key = match self.open(row) {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(error = %error, "a retired signing key is unreadable; skipped");
                    continue;
                }
            };
            retired.push(RetiredKey {
                key: key.verifying_key().clone(),
                retired_at: u64::try_from((retired_at + grace).timestamp()).unwrap_or(0),
            });
        }
        Ok(Some(IssuerKeys::new(active, retired)?))
    }

    /// Makes a new key the signing one and retires the current one: tokens it signed keep
    /// verifying until they expire. With `revoke_previous` (a key that leaked) every older key is
    /// deleted instead: each instance stops accepting its tokens when it next re-reads the keys,
    /// at the price of refusing the tokens lagging instances sign until then. Returns the new
    /// key's id.
    pub async fn rotate(
        &self,
        now: DateTime<Utc>,
        revoke_previous: bool,
    ) -> Result<String, SigningKeyStoreError> {
        let transaction = self.db.begin().await?;
        let newest = signing_keys::Entity::find()
            .order_by_desc(signing_keys::Column::Sequence)
            .one(&transaction)
            .await?;
        let sequence = newest.as_ref().map_or(1, |newest| newest.sequence + 1);
        // Never before the current key was made (a rotating host's clock behind the others').
        let now = newest
            .as_ref()
            .map_or(now, |newest| now.max(newest.created_at));
        if let Some(newest) = newest {
            // A key sealed under another key-encryption key would stop every instance's start.
            if self.open(&newest).is_err() {
                return Err(SigningKeyStoreError::WrongKeyEncryptionKey(newest.kid));
            }
            let mut retiring: signing_keys::ActiveModel = newest.into();
            retiring.retired_at = Set(Some(now));
            retiring.update(&transaction).await?;
        }
        let kid = match self.insert_key(&transaction, sequence, now).await {
            Ok(kid) => kid,
            Err(SigningKeyStoreError::Database(error))
                if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
            {
                return Err(SigningKeyStoreError::ConcurrentRotation);
            }
            Err(error) => return Err(error),
        };
        let forgotten = now
            - chrono::Duration::from_std(RETIRED_ROWS_KEPT + MAX_OWN_LIFETIME + MAX_LEEWAY)
                .unwrap_or_default();
        let deleted = if revoke_previous {
            signing_keys::Entity::delete_many().filter(signing_keys::Column::Sequence.lt(sequence))
        } else {
            signing_keys::Entity::delete_many()
                .filter(signing_keys::Column::RetiredAt.lt(forgotten))
        };
        deleted.exec(&transaction).await?;
        transaction.commit().await.map_err(|error| {
            if matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
                SigningKeyStoreError::ConcurrentRotation
            } else {
                SigningKeyStoreError::Database(error)
            }
        })?;
        Ok(kid)
    }

    async fn insert_key(
        &self,
        connection: &impl sea_orm::ConnectionTrait,
        sequence: i64,
        now: DateTime<Utc>,
    ) -> Result<String, SigningKeyStoreError> {
        let der = SigningKey::generate_ed25519_pkcs8().map_err(IssuerKeyError::from)?;
        let key = SigningKey::from_ed25519_pkcs8_thumbprint(&der).map_err(IssuerKeyError::from)?;
        let kid = key.kid().to_owned();
        let sealed = self.kek.seal(&kid, &der)?;
        signing_keys::ActiveModel {
            sequence: Set(sequence),
            kid: Set(kid.clone()),
            sealed_private_key: Set(sealed),
            created_at: Set(now),
            retired_at: Set(None),
        }
        .insert(connection)
        .await?;
        Ok(kid)
    }

    /// The row's key, checked against its id: a row whose key is not the one its `kid` names
    /// is refused rather than trusted.
    fn open(&self, row: &signing_keys::Model) -> Result<SigningKey, SigningKeyStoreError> {
        let der = self.kek.open(&row.kid, &row.sealed_private_key)?;
        let key = SigningKey::from_ed25519_pkcs8_thumbprint(der.expose_secret())
            .map_err(|_| SigningKeyStoreError::Corrupt(row.kid.clone()))?;
        if key.kid() != row.kid {
            return Err(SigningKeyStoreError::Corrupt(row.kid.clone()));
        }
        Ok(key)
    }
}

/// How soon a failed periodic re-read is tried again.
const FAILED_READ_RETRY: Duration = Duration::from_secs(5);

/// How soon after one re-read a token naming an unseen key may cause another.
const UNKNOWN_KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The issuer's keys as this instance currently holds them.
pub struct IssuerKeyRing {
    current: RwLock<Arc<IssuerKeys>>,
    /// Bumped whenever `current` changes, so the token validator knows to rebuild.
    generation: AtomicU64,
    shared: Option<DatabaseKeys>,
    /// Held across each re-read and swap, so an older read never replaces a newer one.
    reloading: tokio::sync::Mutex<()>,
    /// Re-reads of the database so far.
    reads: AtomicU64,
    /// When the keys were last read successfully: a failed periodic re-read is retried soon.
    last_successful_read: std::sync::Mutex<Instant>,
    /// When a token naming an unseen key last caused a re-read: at most one a second, so
    /// invented key ids cannot make every request a database query.
    last_unknown_key_reload: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for IssuerKeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeyRing")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl IssuerKeyRing {
    /// Keys from files: fixed for the life of the process.
    pub fn fixed(keys: IssuerKeys) -> Self {
        Self {
            current: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(0),
            shared: None,
            reloading: tokio::sync::Mutex::new(()),
            reads: AtomicU64::new(0),
            last_successful_read: std::sync::Mutex::new(Instant::now()),
            last_unknown_key_reload: std::sync::Mutex::new(None),
        }
    }

    /// Keys from the shared database, loaded (or, on an empty table, created) now.
    pub async fn shared(
        store: DatabaseKeys,
        now: DateTime<Utc>,
    ) -> Result<Self, SigningKeyStoreError> {
        let keys = store.load_or_create(now).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(keys)),
            generation: AtomicU64::new(0),
            shared: Some(store),
            reloading: tokio::sync::Mutex::new(()),
            reads: AtomicU64::new(0),
            last_successful_read: std::sync::Mutex::new(Instant::now()),
            last_unknown_key_reload: std::sync::Mutex::new(None),
        })
    }

    /// The keys now: the active one signs.
    pub fn current(&self) -> Arc<IssuerKeys> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Changes whenever the keys do.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the keys come from the shared database (and can change while running).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// How often the keys were re-read from the database since start-up.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Re-reads the shared keys; returns whether they changed. A failure keeps the keys held.
    pub async fn reload(&self) -> bool {
        let Some(store) = &self.shared else {
            return false;
        };
        let _one_at_a_time = self.reloading.lock().await;
        self.reads.fetch_add(1, Ordering::Relaxed);
        let loaded = store.load().await;
        if loaded.is_ok() {
            *self
                .last_successful_read
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        }
        match loaded {
            Ok(Some(keys)) => {
                let changed = {
                    let held = self.current();
                    held.active().kid() != keys.active().kid()
                        || held.retired_kids() != keys.retired_kids()
                };
                if changed {
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    tracing::info!("signing keys changed: reloaded from the database");
                }
                changed
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(error = %error, "cannot re-read the signing keys; keeping those held");
                false
            }
        }
    }

    /// For a token of this issuer naming a key not held: re-reads the shared keys, at most once
    /// a second. Within that second the caller waits for the next permitted re-read (one caller
    /// makes it, the others wait for it), so a token of a key rotated in meanwhile is not refused,
    /// while invented key ids still cost at most one query a second. The caller compares
    /// [`IssuerKeyRing::generation`] before and after to know whether validating again can help.
    pub async fn reload_for_unknown_key(&self) {
        if self.shared.is_none() {
            return;
        }
        if let Some(wait) = self.claim_unknown_key_reload() {
            tokio::time::sleep(wait).await;
            if self.claim_unknown_key_reload().is_some() {
                // Someone else made the re-read of this slot: wait for it to finish.
                drop(self.reloading.lock().await);
                return;
            }
        }
        self.reload().await;
    }

    /// Claims the re-read slot (`None`) if the last one is a second old, or says how long until
    /// it is.
    fn claim_unknown_key_reload(&self) -> Option<Duration> {
        let mut last = self
            .last_unknown_key_reload
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if at.elapsed() < UNKNOWN_KEY_RELOAD_INTERVAL => {
                Some(UNKNOWN_KEY_RELOAD_INTERVAL - at.elapsed())
            }
            _ => {
                *last = Some(Instant::now());
                None
            }
        }
    }

    /// Re-reads the shared keys every `interval` until the task is aborted; a failed read is
    /// retried every few seconds rather than a whole interval later, as the grace of a retired
    /// key assumes instances re-read within an interval.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        interval: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        self.shared.as_ref()?;
        let ring = Arc::clone(self);
        let check_every = interval.min(FAILED_READ_RETRY);
        Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(check_every);
            every.tick().await;
            loop {
                every.tick().await;
                let since_read = ring
                    .last_successful_read
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed();
                if since_read + check_every / 2 >= interval {
                    ring.reload().await;
                }
            }
        }))
    }
}
