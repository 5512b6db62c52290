//! The shared store (RATE-4): one GCRA state per key in Redis, so every instance of the service
//! draws on the same budget.
//!
//! Threat: with per-instance limits, N instances behind a load balancer give an attacker N times
//! the budget; a limiter that waits on an unreachable Redis turns a cache outage into an API
//! outage; clocks of different instances disagree.
//!
//! Control: one Lua script reads and updates a key atomically on Redis's own clock (`TIME`), so
//! concurrent instances cannot both take the last request and no instance's clock matters;
//! another gives one request's allowance back the same way (a refund). Every
//! call has a deadline; after a failure the store answers "unavailable" at once for a short
//! back-off instead of queueing requests behind a dead connection, and the connection manager
//! reconnects by itself. What "unavailable" means is each tier's choice
//! ([`super::WhenStoreFails`]): general tiers fail open, sensitive tiers closed (503 with
//! `Retry-After`), each audited (`ratelimit.store_unavailable`) and counted.
//!
//! Keys are the limiter's keyed hashes (never an address, an email or a principal id in clear)
//! and expire once their bucket is full again, so Redis holds only clients limited right now.
//! A `rediss://` URL speaks TLS (rustls on aws-lc-rs, certificate and host name verified against
//! the system's roots or only `rate_limit.redis_ca_cert`); the service warns at production
//! start-up when a `redis://` URL leaves this host.
//!
//! Default: the in-process store; `rate_limit.store = "redis"` (set by the template's
//! `rate_limit_store = redis`) for several instances. Calls get `rate_limit.redis_timeout_ms`
//! (250 ms), then `BACK_OFF`; after `FAILURES_BEFORE_RECONNECT` failures in a row the
//! connection is made anew. Readiness reports the store without leaving rotation for it: every
//! instance shares it, so none would be better placed to serve.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Charge, ChargedBucket, Decision, LimitKey, StoreUnavailable, Tier};

/// GCRA in one step. KEYS[1]: the client's key. ARGV[1]: the emission interval in microseconds;
/// ARGV[2]: the burst (requests). The stored value is the theoretical arrival time (TAT), in
/// microseconds of Redis time; the key expires when its bucket is full again. Returns
/// {admitted (0/1), remaining, retry_after_us, reset_us}.
const GCRA_SCRIPT: &str = r"
-- Redis 3.2 to 4: replicate the effects, so TIME may precede a write (the default from 5 on).
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local capacity = interval * burst
local new_tat = tat + interval
if new_tat - now > capacity then
  return {0, 0, new_tat - capacity - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((capacity - (new_tat - now)) / interval), 0, new_tat - now}
";

/// One request's allowance back, in one step. KEYS[1]: the key; ARGV[1]: the emission interval
/// in microseconds. The TAT moves back one interval; a key whose bucket is then full again is
/// deleted, and an absent key (already full) stays absent. Returns 1.
const REFUND_SCRIPT: &str = r"
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 1 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local new_tat = tat - interval
if new_tat <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
end
return 1
";

/// After a failed call, calls fail at once for this long (no request waits on a dead server).
const BACK_OFF: Duration = Duration::from_millis(500);

/// After this many failed calls in a row the connection is made anew: a connection that died
/// without being closed (a failover, a dropped NAT entry) only ever times out, and the manager
/// reconnects only on errors it sees as a broken connection.
const FAILURES_BEFORE_RECONNECT: u64 = 3;

/// Why the Redis store could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    /// The URL is not a Redis URL (its text is never printed: it may hold a password).
    #[error("rate_limit.redis_url is not a valid redis:// URL")]
    InvalidUrl,
    #[error("cannot set up the Redis connection: {0}")]
    Connection(String),
}

/// Whether `pem` holds at least one certificate and nothing unreadable: a CA file that does not
/// would trust nothing, and every connection would fail.
pub fn is_ca_certificate_pem(pem: &[u8]) -> bool {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certificates: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    certificates.is_ok_and(|certificates| !certificates.is_empty())
}

/// GCRA state in Redis, shared by every instance that uses the same URL and prefix.
pub struct RedisStore {
    client: redis::Client,
    config: ConnectionManagerConfig,
    connection: std::sync::Mutex<ConnectionManager>,
    consecutive_failures: AtomicU64,
    gcra: redis::Script,
    refund: redis::Script,
    prefix: String,
    timeout: Duration,
    started: Instant,
    /// Milliseconds since `started` before which calls fail at once.
    failing_until: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on `url` whose keys start with `prefix`. The connection is made on first use and
    /// remade after failures, so the service starts while Redis is down (its tiers then behave
    /// as configured for an unavailable store). Each call, connecting included, gets `timeout`.
    /// A `rediss://` URL speaks TLS (rustls, certificate and host name verified) against the
    /// system's roots, or only `ca_cert` (PEM) when given.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        ca_cert: Option<Vec<u8>>,
    ) -> Result<Self, RedisSetupError> {
        let client = match ca_cert {
            None => redis::Client::open(url),
            Some(root_cert) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            ),
        }
        .map_err(|_| RedisSetupError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|error| RedisSetupError::Connection(format!("{:?}", error.kind())))?;
        Ok(Self {
            client,
            config,
            connection: std::sync::Mutex::new(connection),
            consecutive_failures: AtomicU64::new(0),
            gcra: redis::Script::new(GCRA_SCRIPT),
            refund: redis::Script::new(REFUND_SCRIPT),
            prefix: prefix.to_owned(),
            timeout,
            started: Instant::now(),
            failing_until: AtomicU64::new(0),
        })
    }

    /// Replaces the connection with a new one, made lazily on the next call.
    fn reconnect(&self) {
        if let Ok(fresh) =
            ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
        {
            *self
                .connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    fn elapsed_millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Charges one request to `key` under `tier`.
    pub async fn check(&self, tier: &Tier, key: &LimitKey) -> Result<Decision, StoreUnavailable> {
        self.take(tier, key).await.map(|charge| charge.decision)
    }

    /// Charges one request to `key` under `tier`, atomically.
    pub async fn take(&self, tier: &Tier, key: &LimitKey) -> Result<Charge, StoreUnavailable> {
        let bucket = ChargedBucket(*key.digest());
        let mut invocation = self.gcra.prepare_invoke();
        invocation
            .key(self.redis_key(tier, bucket))
            .arg(emission_interval_micros(tier))
            .arg(tier.quota.requests());
        let (admitted, remaining, retry_after, reset) =
            self.invoke::<(i64, i64, i64, i64)>(&invocation).await?;
        let micros = |value: i64| Duration::from_micros(u64::try_from(value).unwrap_or(0));
        let decision = if admitted == 1 {
            Decision::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset: micros(reset),
            }
        } else {
            Decision::Limited {
                retry_after: micros(retry_after),
                reset: micros(reset),
            }
        };
        Ok(Charge {
            decision,
            bucket,
            pooled: false,
        })
    }

    /// Gives one admitted request's allowance back to `bucket` under `tier`, atomically.
    pub async fn refund(&self, tier: &Tier, bucket: ChargedBucket) -> Result<(), StoreUnavailable> {
        let mut invocation = self.refund.prepare_invoke();
        invocation
            .key(self.redis_key(tier, bucket))
            .arg(emission_interval_micros(tier));
        self.invoke::<i64>(&invocation).await.map(|_| ())
    }

    fn redis_key(&self, tier: &Tier, bucket: ChargedBucket) -> String {
        format!("{}{}:{}", self.prefix, tier.name, bucket.to_hex())
    }

    /// Whether Redis answers `PING` within the timeout (for readiness). Bypasses the back-off so
    /// a probe sees recovery at once, and counts toward reconnecting like any failed call.
    pub async fn ping(&self) -> Result<(), StoreUnavailable> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let reply = tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await;
        match reply {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => {
                self.count_failure();
                Err(StoreUnavailable(format!("{:?}", error.kind())))
            }
            Err(_) => {
                self.count_failure();
                Err(StoreUnavailable(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// After `FAILURES_BEFORE_RECONNECT` failures in a row, a new connection.
    fn count_failure(&self) {
        if self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
            >= FAILURES_BEFORE_RECONNECT
        {
            self.reconnect();
        }
    }

    /// Runs a script within the deadline; after a failure, backs off and counts toward
    /// reconnecting.
    async fn invoke<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreUnavailable> {
        if self.elapsed_millis() < self.failing_until.load(Ordering::Relaxed) {
            return Err(StoreUnavailable("backing off after a failure".to_owned()));
        }
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let reply =
            tokio::time::timeout(self.timeout, invocation.invoke_async::<T>(&mut connection)).await;
        let failure = match reply {
            Ok(Ok(value)) => {
                self.consecutive_failures.store(0, Ordering::Relaxed);
                return Ok(value);
            }
            Ok(Err(error)) => format!("{:?}", error.kind()),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        let back_off = u64::try_from(BACK_OFF.as_millis()).unwrap_or(500);
        self.failing_until
            .store(self.elapsed_millis() + back_off, Ordering::Relaxed);
        self.count_failure();
        Err(StoreUnavailable(failure))
    }
}

/// A tier's emission interval in microseconds (at least 1), as the scripts take it.
fn emission_interval_micros(tier: &Tier) -> u64 {
    u64::try_from(tier.quota.emission_interval().as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secrets::KeyHasher;
    use crate::rate_limit::{KeyDeriver, Quota};

    /// The Redis server for these tests (`TEST_REDIS_URL`, default the local one); `None`, after
    /// saying so, when it is unreachable, unless `TEST_REQUIRE_SERVICES=1` makes that a failure.
    async fn redis_url() -> Option<String> {
        let url =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        let reachable = match redis::Client::open(url.as_str()) {
            Ok(client) => match client.get_multiplexed_async_connection().await {
                Ok(mut connection) => redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok(),
                Err(_) => false,
            },
            Err(_) => false,
        };
        if reachable {
            return Some(url);
        }
        assert!(
            std::env::var("TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "Redis is required (TEST_REQUIRE_SERVICES=1) but {url} cannot be reached"
        );
        eprintln!("skipped: Redis at {url} cannot be reached");
        None
    }

    /// A prefix no other test run uses.
    fn unique_prefix() -> String {
        format!("test-{}:", uuid::Uuid::new_v4())
    }

    fn key(name: &str) -> LimitKey {
        KeyDeriver::new(KeyHasher::new(&[3u8; 32]).expect("32 bytes")).principal(name)
    }

    fn tier(requests: u32, seconds: u64) -> Tier {
        Tier::sensitive(
            "login",
            Quota::new(requests, Duration::from_secs(seconds)).expect("valid"),
        )
    }

    #[tokio::test]
    async fn a_key_trips_at_its_quota_and_recovers() {
        let Some(url) = redis_url().await else { return };
        let store =
            RedisStore::new(&url, &unique_prefix(), Duration::from_secs(2), None).expect("store");
        let tier = tier(2, 1);
        let alice = key("alice");
        let remaining: Vec<_> = [
            store.check(&tier, &alice).await,
            store.check(&tier, &alice).await,
        ]
        .into_iter()
        .map(|decision| match decision.expect("answered") {
            Decision::Allowed { remaining, .. } => remaining,
            limited => panic!("refused early: {limited:?}"),
        })
        .collect();
        assert_eq!(remaining, [1, 0]);
        let Decision::Limited { retry_after, .. } =
            store.check(&tier, &alice).await.expect("answered")
        else {
            panic!("the third request within a second was admitted");
        };
        assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}");
        assert!(matches!(
            store.check(&tier, &key("bob")).await,
            Ok(Decision::Allowed { .. })
        ));
        tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
        assert!(matches!(
            store.check(&tier, &alice).await,
            Ok(Decision::Allowed { .. })
        ));
    }

    #[tokio::test]
    async fn a_refund_gives_back_exactly_one_charge() {
        let Some(url) = redis_url().await else { return };
        let store =
            RedisStore::new(&url, &unique_prefix(), Duration::from_secs(2), None).expect("store");
        let tier = tier(2, 60);
        let alice = key("alice");
        let first = store.take(&tier, &alice).await.expect("answered");
        let second = store.take(&tier, &alice).await.expect("answered");
        assert!(matches!(
            second.decision,
            Decision::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(
            store.check(&tier, &alice).await,
            Ok(Decision::Limited { .. })
        ));
        store.refund(&tier, second.bucket).await.expect("refunded");
        assert!(matches!(
            store.check(&tier, &alice).await,
            Ok(Decision::Allowed { remaining: 0, .. })
        ));
        assert!(matches!(
            store.check(&tier, &alice).await,
            Ok(Decision::Limited { .. })
        ));
        // Refunds beyond a full bucket give nothing: the key is gone, a fresh one gets two.
        let bob = key("bob");
        let charge = store.take(&tier, &bob).await.expect("answered");
        for _ in 0..3 {
            store.refund(&tier, charge.bucket).await.expect("refunded");
        }
        for expected in [1, 0] {
            assert!(matches!(
                store.check(&tier, &bob).await,
                Ok(Decision::Allowed { remaining, .. }) if remaining == expected
            ));
        }
        assert_eq!(first.bucket, second.bucket);
    }

    #[tokio::test]
    async fn concurrent_takes_admit_exactly_the_quota() {
        let Some(url) = redis_url().await else { return };
        let prefix = unique_prefix();
        // Two stores (two instances), 16 takes each at once.
        let stores = [
            RedisStore::new(&url, &prefix, Duration::from_secs(2), None).expect("store"),
            RedisStore::new(&url, &prefix, Duration::from_secs(2), None).expect("store"),
        ];
        let tier = tier(3, 300);
        let alice = key("alice");
        let takes = stores
            .iter()
            .flat_map(|store| (0..16).map(|_| store.take(&tier, &alice)));
        let admitted = futures_util::future::join_all(takes)
            .await
            .into_iter()
            .filter(|charge| {
                matches!(
                    charge.as_ref().expect("answered").decision,
                    Decision::Allowed { .. }
                )
            })
            .count();
        assert_eq!(admitted, 3);
    }

    #[tokio::test]
    async fn two_stores_on_one_redis_share_one_budget() {
        let Some(url) = redis_url().await else { return };
        let prefix = unique_prefix();
        let first = RedisStore::new(&url, &prefix, Duration::from_secs(2), None).expect("store");
        let second = RedisStore::new(&url, &prefix, Duration::from_secs(2), None).expect("store");
        let tier = tier(4, 60);
        let alice = key("alice");
        let mut admitted = 0;
        for round in 0..5 {
            let store = if round % 2 == 0 { &first } else { &second };
            if matches!(
                store.check(&tier, &alice).await,
                Ok(Decision::Allowed { .. })
            ) {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 4);
        // Another prefix (another service or test run) has its own state.
        let other =
            RedisStore::new(&url, &unique_prefix(), Duration::from_secs(2), None).expect("store");
        assert!(matches!(
            other.check(&tier, &alice).await,
            Ok(Decision::Allowed { .. })
        ));
    }

    #[tokio::test]
    async fn keys_expire_once_their_bucket_is_full_again() {
        let Some(url) = redis_url().await else { return };
        let prefix = unique_prefix();
        let store = RedisStore::new(&url, &prefix, Duration::from_secs(2), None).expect("store");
        let tier = tier(10, 60);
        store.check(&tier, &key("alice")).await.expect("answered");
        let client = redis::Client::open(url.as_str()).expect("client");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connection");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await
            .expect("keys");
        assert_eq!(keys.len(), 1);
        assert!(!keys[0].contains("alice"), "the key names the principal");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&keys[0])
            .query_async(&mut connection)
            .await
            .expect("ttl");
        // One request of ten per minute comes back after 6 seconds.
        assert!((1..=6_000).contains(&ttl), "{ttl}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_reported_within_the_deadline_and_then_backed_off() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let url = format!("redis://127.0.0.1:{port}");
        let store =
            RedisStore::new(&url, "test:", Duration::from_millis(200), None).expect("store");
        let tier = tier(5, 60);
        assert!(store.check(&tier, &key("alice")).await.is_err());
        // Within the back-off, the store answers at once without trying.
        let error = store
            .check(&tier, &key("alice"))
            .await
            .expect_err("unavailable");
        assert!(error.0.contains("backing off"), "{error}");
    }

    /// A `redis-server` of the test's own speaking TLS only, its certificate from a development
    /// CA made for the test; `None`, after saying so, where `redis-server` cannot run (unless
    /// `TEST_REQUIRE_SERVICES=1`).
    struct TlsRedis {
        port: u16,
        ca_cert: Vec<u8>,
        process: std::process::Child,
        _dir: tempfile::TempDir,
    }

    impl TlsRedis {
        fn start() -> Option<Self> {
            let dir = tempfile::tempdir().expect("dir");
            let files = crate::transport::dev_ca::ensure(dir.path(), &[]).expect("certificates");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = listener.local_addr().expect("address").port();
            drop(listener);
            let path = |path: &std::path::Path| path.display().to_string();
            let started = std::process::Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--bind",
                    "127.0.0.1",
                    "--tls-port",
                    &port.to_string(),
                ])
                .args(["--tls-cert-file", &path(&files.server.cert)])
                .args(["--tls-key-file", &path(&files.server.key)])
                .args(["--tls-ca-cert-file", &path(&files.ca_cert)])
                .args([
                    "--tls-auth-clients",
                    "no",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            let process = match started {
                Ok(process) => process,
                Err(error) => {
                    assert!(
                        std::env::var("TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                        "redis-server is required (TEST_REQUIRE_SERVICES=1): {error}"
                    );
                    eprintln!("skipped: redis-server cannot be started here: {error}");
                    return None;
                }
            };
            let listening = (0..100).any(|_| {
                let open = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
                if !open {
                    std::thread::sleep(Duration::from_millis(20));
                }
                open
            });
            assert!(listening, "redis-server did not open its TLS port");
            Some(Self {
                port,
                ca_cert: std::fs::read(&files.ca_cert).expect("CA"),
                process,
                _dir: dir,
            })
        }
    }

    impl Drop for TlsRedis {
        fn drop(&mut self) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }

    #[tokio::test]
    async fn rediss_talks_tls_to_a_server_whose_certificate_chains_to_the_configured_ca() {
        let Some(server) = TlsRedis::start() else {
            return;
        };
        crate::transport::tls::install_crypto_provider();
        let url = format!("rediss://localhost:{}", server.port);
        let timeout = Duration::from_secs(2);
        let trusted = RedisStore::new(
            &url,
            &unique_prefix(),
            timeout,
            Some(server.ca_cert.clone()),
        )
        .expect("store");
        let tier = tier(2, 60);
        for _ in 0..2 {
            assert!(matches!(
                trusted.check(&tier, &key("alice")).await,
                Ok(Decision::Allowed { .. })
            ));
        }
        assert!(matches!(
            trusted.check(&tier, &key("alice")).await,
            Ok(Decision::Limited { .. })
        ));
        assert!(trusted.ping().await.is_ok());

        // A certificate from any other CA is refused: no decision, the store is unavailable.
        let other_dir = tempfile::tempdir().expect("dir");
        let other = crate::transport::dev_ca::ensure(other_dir.path(), &[]).expect("other CA");
        let other_ca = std::fs::read(&other.ca_cert).expect("CA");
        let untrusted =
            RedisStore::new(&url, &unique_prefix(), timeout, Some(other_ca)).expect("store");
        assert!(untrusted.check(&tier, &key("alice")).await.is_err());
        // Nor does plaintext reach a TLS-only server.
        let plaintext = RedisStore::new(
            &format!("redis://localhost:{}", server.port),
            &unique_prefix(),
            timeout,
            None,
        )
        .expect("store");
        assert!(plaintext.check(&tier, &key("alice")).await.is_err());
    }

    #[test]
    fn only_a_file_with_certificates_is_a_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let files = crate::transport::dev_ca::ensure(dir.path(), &[]).expect("certificates");
        assert!(is_ca_certificate_pem(
            &std::fs::read(files.ca_cert).expect("CA")
        ));
        assert!(!is_ca_certificate_pem(b""));
        assert!(!is_ca_certificate_pem(b"not a certificate"));
    }

    #[test]
    fn a_malformed_url_is_refused_without_echoing_it() {
        let error = RedisStore::new("http://user:secret@x", "p:", Duration::from_secs(1), None)
            .expect_err("refused");
        assert!(!error.to_string().contains("secret"));
    }
}
