//! The database and rate-limit store the suite runs on: SQLite and the in-process store by
//! default; PostgreSQL with `TEST_DATABASE=postgres` and Redis with
//! `TEST_RATE_LIMIT_STORE=redis` (a rendered project's `cargo xtask ci` sets both from its own
//! `config/default.toml`, so the whole suite runs on the variant's servers).
//!
//! Each test's service gets a PostgreSQL database and a Redis key prefix of its own, created with
//! its data folder and removed when the test lets go of it ([`release`]); databases a killed run
//! left behind are dropped by the next run after an hour.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The servers of this run, from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitStore {
    Memory,
    Redis,
}

pub fn database() -> Database {
    match std::env::var("TEST_DATABASE").as_deref() {
        Ok("postgres") => Database::Postgres,
        Ok("sqlite" | "") | Err(_) => Database::Sqlite,
        Ok(other) => panic!("TEST_DATABASE must be sqlite or postgres, not {other}"),
    }
}

pub fn rate_limit_store() -> RateLimitStore {
    match std::env::var("TEST_RATE_LIMIT_STORE").as_deref() {
        Ok("redis") => RateLimitStore::Redis,
        Ok("memory" | "") | Err(_) => RateLimitStore::Memory,
        Ok(other) => panic!("TEST_RATE_LIMIT_STORE must be memory or redis, not {other}"),
    }
}

/// The PostgreSQL server's maintenance URL (`TEST_POSTGRES_URL`, default the local server).
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The Redis server's URL (`TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// What one data folder's service uses on the shared servers.
#[derive(Debug, Clone)]
struct Resources {
    database_url: String,
    /// The PostgreSQL database to drop, if one was created.
    postgres_database: Option<String>,
    redis_prefix: Option<String>,
}

static RESOURCES: Mutex<Option<HashMap<PathBuf, Resources>>> = Mutex::new(None);

/// A database name or key prefix no other run uses: seconds since 1970 (for the sweep) and a
/// random part.
fn unique_name(separator: char) -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{seconds}{separator}{}", &random[..12])
}

/// Runs `future` to completion on a runtime of its own, on a thread of its own: callable from
/// synchronous code inside a test's runtime.
fn block_on<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    })
    .join()
    .expect("the helper thread does not panic")
}

async fn create_postgres_database() -> (String, String) {
    use sea_orm::ConnectionTrait;
    let admin_url = postgres_url();
    let admin = sea_orm::Database::connect(&admin_url)
        .await
        .unwrap_or_else(|error| {
            panic!("TEST_DATABASE=postgres but {admin_url} cannot be reached: {error}")
        });
    sweep_abandoned_databases(&admin).await;
    let name = format!("rampart_test_{}", unique_name('_'));
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create the test database");
    let (server, _) = admin_url.rsplit_once('/').expect("a database in the URL");
    (format!("{server}/{name}"), name)
}

/// Drops the databases of runs that ended more than an hour ago without cleaning up (a killed
/// test process). Once per process.
async fn sweep_abandoned_databases(admin: &sea_orm::DatabaseConnection) {
    use sea_orm::{ConnectionTrait, Statement};
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let hour_ago = SystemTime::now()
        .checked_sub(Duration::from_secs(3600))
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |age| age.as_secs());
    let Ok(rows) = admin
        .query_all_raw(Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'rampart_test_%'",
        ))
        .await
    else {
        return;
    };
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let created = name
            .trim_start_matches("rampart_test_")
            .split('_')
            .next()
            .and_then(|seconds| seconds.parse::<u64>().ok());
        if created.is_some_and(|created| created < hour_ago) {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// The resources of the service whose data folder is `data_dir`, created on first use.
fn resources_for(data_dir: &Path) -> Resources {
    let mut registry = RESOURCES.lock().unwrap_or_else(|e| e.into_inner());
    let registry = registry.get_or_insert_with(HashMap::new);
    if let Some(existing) = registry.get(data_dir) {
        return existing.clone();
    }
    let (database_url, postgres_database) = match database() {
        Database::Sqlite => (
            format!("sqlite://{}/app.db?mode=rwc", data_dir.display()),
            None,
        ),
        Database::Postgres => {
            let (url, name) = block_on(create_postgres_database());
            (url, Some(name))
        }
    };
    let redis_prefix = match rate_limit_store() {
        RateLimitStore::Memory => None,
        RateLimitStore::Redis => Some(format!("test:{}:", unique_name(':'))),
    };
    let resources = Resources {
        database_url,
        postgres_database,
        redis_prefix,
    };
    registry.insert(data_dir.to_owned(), resources.clone());
    resources
}

/// `base` (a configuration file naming `DATA_DIR`) pointed at `data_dir` and at this run's
/// servers.
pub fn configure(base: &str, data_dir: &Path) -> String {
    let resources = resources_for(data_dir);
    let mut config = base
        .replace(
            "url = \"sqlite://DATA_DIR/app.db?mode=rwc\"",
            &format!("url = \"{}\"", resources.database_url),
        )
        .replace("DATA_DIR", &data_dir.display().to_string());
    if let Some(prefix) = &resources.redis_prefix {
        config = config
            .replace("store = \"memory\"", "store = \"redis\"")
            .replace(
                "redis_url = \"redis://127.0.0.1:6379\"",
                &format!("redis_url = \"{}\"", redis_url()),
            )
            .replace(
                "redis_key_prefix = \"test:\"",
                &format!("redis_key_prefix = \"{prefix}\""),
            );
    }
    config
}

/// The database URL the service of `data_dir` uses.
pub fn database_url(data_dir: &Path) -> String {
    resources_for(data_dir).database_url
}

/// Drops the database and the Redis keys of `data_dir`'s service, if it has any.
pub fn release(data_dir: &Path) {
    let released = RESOURCES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|registry| registry.remove(data_dir));
    let Some(resources) = released else {
        return;
    };
    if resources.postgres_database.is_none() && resources.redis_prefix.is_none() {
        return;
    }
    block_on(async move {
        use sea_orm::ConnectionTrait;
        if let Some(name) = resources.postgres_database
            && let Ok(admin) = sea_orm::Database::connect(postgres_url()).await
        {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
        if let Some(prefix) = resources.redis_prefix {
            delete_redis_keys(&prefix).await;
        }
    });
}

/// Deletes every Redis key starting with `prefix` (a test's own, so `KEYS` scans little).
pub async fn delete_redis_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await;
    }
}

/// Whether Redis answers; `false`, after saying so, when it does not, unless
/// `TEST_REQUIRE_SERVICES=1` makes that a failure.
pub async fn redis_reachable() -> bool {
    let url = redis_url();
    let reachable = match redis::Client::open(url.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await.is_ok(),
        Err(_) => false,
    };
    if !reachable {
        assert!(
            std::env::var("TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "Redis is required (TEST_REQUIRE_SERVICES=1) but {url} cannot be reached"
        );
        eprintln!("skipped: Redis at {url} cannot be reached");
    }
    reachable
}
