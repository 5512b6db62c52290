//! Password hashing and password policy (AUTH-1: no home-made crypto; the password login in
//! front of the built-in issuer's AUTH-3 tokens).
//!
//! Threat: a leaked user table is cracked offline when passwords are stored with a fast or
//! home-made hash; a login endpoint that answers an unknown email faster than a wrong password
//! tells an attacker which accounts exist; a flood of logins, each hash taking about 19 MiB and
//! a CPU core for tens of milliseconds, exhausts memory or stalls the async executor; users
//! choose passwords that are at the top of every guessing list, or their own email address.
//!
//! Control: [`PasswordHasher`] hashes with Argon2id from the `argon2` crate (RustCrypto) at
//! OWASP's recommended parameters (m = 19456 KiB, t = 2, p = 1) and a random 16-byte salt, and
//! stores PHC strings, so the parameters travel with each hash. Every hash and verification
//! runs on tokio's blocking pool behind a semaphore: at most `max_concurrent` run at once
//! (memory capped at about `max_concurrent` × 19 MiB, executor threads left free), and a caller
//! that waits longer than `max_wait` for a slot gets [`PasswordError::Busy`] (answered 503)
//! rather than joining an unbounded queue. An unknown account is verified against a dummy hash
//! with the same parameters, so it costs the same work as a wrong password;
//! [`PasswordHasher::hashes_computed`] makes that observable to tests without timing.
//! [`PasswordPolicy`] refuses passwords shorter than [`MIN_PASSWORD_CHARS`] or longer than
//! [`MAX_PASSWORD_CHARS`] characters, those on a list of 10,000 common passwords, and the
//! account's email address or its local part. Neither passwords nor hashes appear in `Debug`
//! output, error text or logs.
//!
//! The common-password list (`common-passwords.txt`, beside this file) is the first 10,000
//! entries, in frequency order, lowercased and deduplicated, of the `passwords` frequency list in
//! the `zxcvbn` crate 3.1.1 (MIT; `src/frequency_lists.rs`), itself derived from public
//! leaked-password corpora. `zxcvbn` is not a dependency: the list is data. Most entries are
//! shorter than 12 characters and so already refused by length; the list catches the long
//! ones (`qwerty123456`, `1qaz2wsx3edc`). To extend it, append lowercase lines (one password
//! each, no comments, no duplicates); the unit tests check the file's shape.
//!
//! The policy is applied by the caller wherever a password is set; skipping it leaves accounts
//! to the first guesses of any attacker. The hashing parameters are constants: lowering them
//! makes a leaked table cheaper to crack, and hashes made before a change keep verifying with the
//! parameters written in them.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{self, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

/// Argon2id memory cost in KiB (OWASP Password Storage Cheat Sheet: 19 MiB).
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;

/// Argon2id iterations (OWASP: 2 with 19 MiB).
pub const ARGON2_ITERATIONS: u32 = 2;

/// Argon2id lanes (OWASP: 1).
pub const ARGON2_PARALLELISM: u32 = 1;

/// Hashes running at once unless configured otherwise: about 4 × 19 MiB of memory at most.
pub const DEFAULT_MAX_CONCURRENT_HASHES: usize = 4;

/// How long a hash or verification waits for a free slot before [`PasswordError::Busy`].
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

/// The shortest password accepted, in Unicode scalar values.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The longest password accepted, in Unicode scalar values; bounds what is hashed when a
/// password is set (the request body limit bounds what a login sends).
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Checked at compile time: invalid parameters fail the build, not a login.
const ARGON2_PARAMS: Params = match Params::new(
    ARGON2_MEMORY_KIB,
    ARGON2_ITERATIONS,
    ARGON2_PARALLELISM,
    None,
) {
    Ok(params) => params,
    Err(_) => panic!("invalid Argon2 parameters"),
};

/// What the dummy hash is a hash of. Its value does not matter: the unknown-account path returns
/// `false` whatever the comparison says.
#[cfg(test)]
const DUMMY_PASSWORD: &[u8] = b"no account has this password";

/// The hash an unknown account is verified against: [`DUMMY_PASSWORD`] under the parameters
/// above, made once (any Argon2id implementation makes a valid one) and kept as text, so that
/// start-up computes no hash (19 MiB and tens of milliseconds) and the first unknown account
/// costs what every later one does. A unit test checks it still has the current parameters.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$sL/02Li8OkqTVO6hnEnAeA$kYEnousVMCu9K6LVhoO4JYcTXF6iBsNyTeRC8BYhm7E";

/// The common-password list, one lowercase password a line.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// Why a password could not be hashed or verified. The text never contains the password or hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Every hashing slot stayed taken for the whole wait; answer 503 with `Retry-After`.
    #[error("too many password hashes are in progress")]
    Busy,
    /// Argon2 or the blocking task failed; the detail is logged.
    #[error("the password could not be hashed")]
    Hashing,
}

/// Argon2id password hashing, bounded in concurrency and run off the async executor.
///
/// Cheap to clone: clones share the slots and the counter.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
    max_wait: Duration,
}

struct Inner {
    argon2: Argon2<'static>,
    slots: Arc<Semaphore>,
    max_concurrent: usize,
    hashes_computed: AtomicU64,
}

impl PasswordHasher {
    /// A hasher that runs at most `max_concurrent` hashes at once (at least 1), each on tokio's
    /// blocking pool. Memory for hashing is bounded by about `max_concurrent` × 19 MiB.
    pub fn new(max_concurrent: usize) -> Self {
        let max_concurrent = max_concurrent.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, ARGON2_PARAMS),
                slots: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                hashes_computed: AtomicU64::new(0),
            }),
            max_wait: DEFAULT_MAX_WAIT,
        }
    }

    /// The longest a call waits for a free slot before [`PasswordError::Busy`]
    /// (default [`DEFAULT_MAX_WAIT`]).
    pub fn with_max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Hashes `password` into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.run(move |inner| inner.hash_now(password.as_bytes()))
            .await?
    }

    /// Whether `password` matches `stored`, the account's PHC string, or `None` for an unknown
    /// account. An unknown account, and a stored hash that is unusable (logged as a warning),
    /// are verified against a dummy hash all the same and answer `false`: every refusal costs one
    /// full Argon2id computation, so response times do not tell which accounts exist.
    pub async fn verify(
        &self,
        stored: Option<&str>,
        password: &str,
    ) -> Result<bool, PasswordError> {
        let stored = stored.map(str::to_owned);
        let password = password.to_owned();
        self.run(move |inner| inner.verify_now(stored.as_deref(), password.as_bytes()))
            .await?
    }

    /// How many Argon2 computations this hasher (and its clones) has run: an observable counter
    /// that lets tests prove a code path did the work, without measuring time.
    pub fn hashes_computed(&self) -> u64 {
        self.inner.hashes_computed.load(Ordering::Relaxed)
    }

    /// Runs `job` on the blocking pool once a slot is free, or answers `Busy` after `max_wait`.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let acquire = Arc::clone(&self.inner.slots).acquire_owned();
        let permit = match tokio::time::timeout(self.max_wait, acquire).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; a closed one would mean no capacity either.
            Ok(Err(_)) | Err(_) => return Err(PasswordError::Busy),
        };
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // The slot moves into the task: a caller that stops waiting does not free it while
            // Argon2 still holds its memory.
            let _permit = permit;
            job(&inner)
        })
        .await
        .map_err(|error| {
            tracing::error!(%error, "the password hashing task failed");
            PasswordError::Hashing
        })
    }

    /// Holds one slot, so that tests can fill the hasher without running a hash.
    #[cfg(test)]
    fn take_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.inner.slots).try_acquire_owned().ok()
    }
}

impl Default for PasswordHasher {
    /// [`DEFAULT_MAX_CONCURRENT_HASHES`] slots, [`DEFAULT_MAX_WAIT`].
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CONCURRENT_HASHES)
    }
}

/// Shows the limits and the counter; never a hash.
impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("algorithm", &"argon2id")
            .field("memory_kib", &ARGON2_MEMORY_KIB)
            .field("iterations", &ARGON2_ITERATIONS)
            .field("parallelism", &ARGON2_PARALLELISM)
            .field("max_concurrent", &self.inner.max_concurrent)
            .field("max_wait", &self.max_wait)
            .field("hashes_computed", &self.hashes_computed())
            .finish_non_exhaustive()
    }
}

/// How a comparison with a stored hash came out.
enum Comparison {
    Match,
    Mismatch,
    Unusable(password_hash::Error),
}

impl Inner {
    fn hash_now(&self, password: &[u8]) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = self
            .argon2
            .hash_password(password, &salt)
            .map_err(|error| {
                tracing::error!(%error, "Argon2 could not hash a password");
                PasswordError::Hashing
            })?
            .to_string();
        self.hashes_computed.fetch_add(1, Ordering::Relaxed);
        Ok(hash)
    }

    fn verify_now(&self, stored: Option<&str>, password: &[u8]) -> Result<bool, PasswordError> {
        if let Some(stored) = stored {
            // The error names what is wrong with the string, never the string itself.
            match PasswordHash::new(stored).map(|hash| self.compare(&hash, password)) {
                Ok(Comparison::Match) => return Ok(true),
                Ok(Comparison::Mismatch) => return Ok(false),
                Ok(Comparison::Unusable(error)) | Err(error) => {
                    tracing::warn!(%error, "a stored password hash is unusable; password refused");
                }
            }
        }
        // Unknown account, or unusable stored hash: do the work of a wrong password anyway, so
        // that the answer takes as long as for an existing account.
        if let Ok(dummy) = PasswordHash::new(DUMMY_HASH) {
            let _ = self.compare(&dummy, password);
        }
        Ok(false)
    }

    /// Argon2 runs with the parameters written in `hash`.
    fn compare(&self, hash: &PasswordHash<'_>, password: &[u8]) -> Comparison {
        let comparison = match self.argon2.verify_password(password, hash) {
            Ok(()) => Comparison::Match,
            Err(password_hash::Error::Password) => Comparison::Mismatch,
            Err(error) => return Comparison::Unusable(error),
        };
        self.hashes_computed.fetch_add(1, Ordering::Relaxed);
        comparison
    }
}

/// One rule a new password breaks. The message is fixed and never quotes the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("must be at least {} characters", MIN_PASSWORD_CHARS)]
    TooShort,
    #[error("must be at most {} characters", MAX_PASSWORD_CHARS)]
    TooLong,
    #[error("is too common")]
    TooCommon,
    #[error("must not be or contain the email address")]
    ContainsEmail,
}

/// The rules a new password must meet (length, not common, not the email address).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct PasswordPolicy;

impl PasswordPolicy {
    /// Every rule `password` breaks, at once; `email` is the account's address, when known.
    /// Comparisons with the list and the email ignore case and surrounding whitespace.
    pub fn check(&self, password: &str, email: Option<&str>) -> Result<(), Vec<PolicyViolation>> {
        let mut violations = Vec::new();
        let chars = password.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            violations.push(PolicyViolation::TooShort);
        }
        if chars > MAX_PASSWORD_CHARS {
            violations.push(PolicyViolation::TooLong);
        }
        let normalized = password.trim().to_lowercase();
        if COMMON_PASSWORDS.contains(normalized.as_str()) {
            violations.push(PolicyViolation::TooCommon);
        }
        if let Some(email) = email.map(|email| email.trim().to_lowercase())
            && is_based_on_email(&normalized, &email)
        {
            violations.push(PolicyViolation::ContainsEmail);
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

/// Whether `password` is the email address, contains it, or is its local part (all lowercase).
fn is_based_on_email(password: &str, email: &str) -> bool {
    if email.is_empty() {
        return false;
    }
    let local_part = email.rsplit_once('@').map_or(email, |(local, _)| local);
    password.contains(email) || (!local_part.is_empty() && password == local_part)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `phc` and asserts it is Argon2id v19 with the OWASP parameters.
    fn assert_owasp_argon2id(phc: &str) {
        let parsed = PasswordHash::new(phc).expect("a PHC string");
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident(), "algorithm");
        assert_eq!(parsed.version, Some(0x13), "version");
        let params = Params::try_from(&parsed).expect("Argon2 parameters");
        assert_eq!(params.m_cost(), 19_456, "m");
        assert_eq!(params.t_cost(), 2, "t");
        assert_eq!(params.p_cost(), 1, "p");
        let salt = parsed.salt.expect("a salt");
        assert_eq!(salt.len(), 22, "a 16-byte salt, base64 without padding");
    }

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let hasher = PasswordHasher::default();
        let stored = hasher.hash("violet staple quarry").await.expect("hash");

        assert_eq!(
            hasher.verify(Some(&stored), "violet staple quarry").await,
            Ok(true)
        );
        assert_eq!(
            hasher.verify(Some(&stored), "violet staple quarrY").await,
            Ok(false)
        );
        assert!(
            !stored.contains("violet"),
            "the hash does not contain the password"
        );
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_with_the_owasp_parameters() {
        let hasher = PasswordHasher::default();
        let stored = hasher.hash("violet staple quarry").await.expect("hash");

        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_owasp_argon2id(&stored);
        assert_eq!(hasher.hashes_computed(), 1);
    }

    #[tokio::test]
    async fn an_unknown_account_costs_one_full_hash_and_is_refused() {
        let hasher = PasswordHasher::default();

        assert_eq!(hasher.verify(None, "violet staple quarry").await, Ok(false));
        assert_eq!(
            hasher.hashes_computed(),
            1,
            "the dummy hash verified against, as a wrong password would be"
        );

        // Even the dummy's own password is refused: there is no account to log in to.
        let dummy_password = std::str::from_utf8(DUMMY_PASSWORD).expect("UTF-8");
        assert_eq!(hasher.verify(None, dummy_password).await, Ok(false));
        assert_eq!(
            hasher.hashes_computed(),
            2,
            "exactly one Argon2 run per unknown account"
        );
    }

    #[tokio::test]
    async fn the_dummy_hash_has_the_current_parameters_and_verifies_its_password() {
        assert_owasp_argon2id(DUMMY_HASH);
        let hasher = PasswordHasher::default();
        let dummy_password = std::str::from_utf8(DUMMY_PASSWORD).expect("UTF-8");
        assert_eq!(
            hasher.verify(Some(DUMMY_HASH), dummy_password).await,
            Ok(true),
            "a real hash, so verifying against it is a full Argon2id run"
        );
    }

    #[tokio::test]
    async fn an_unusable_stored_hash_is_refused_after_the_same_work() {
        let hasher = PasswordHasher::default();
        let cases = [
            ("not a PHC string", "garbage"),
            (
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$",
                "a PHC string without its hash",
            ),
        ];
        for (stored, case) in cases {
            let before = hasher.hashes_computed();
            assert_eq!(
                hasher.verify(Some(stored), "violet staple quarry").await,
                Ok(false),
                "{case}"
            );
            assert!(
                hasher.hashes_computed() > before,
                "{case}: the dummy hash ran"
            );
        }
    }

    #[tokio::test]
    async fn a_hash_waiting_longer_than_the_wait_for_the_only_slot_is_busy() {
        let hasher = PasswordHasher::new(1).with_max_wait(Duration::from_millis(10));
        let slot = hasher.take_slot().expect("the only slot is free");

        assert_eq!(
            hasher.hash("violet staple quarry").await,
            Err(PasswordError::Busy)
        );
        assert_eq!(
            hasher.verify(None, "violet staple quarry").await,
            Err(PasswordError::Busy)
        );
        assert_eq!(
            hasher.hashes_computed(),
            0,
            "nothing ran while the slot was held"
        );

        drop(slot);
        assert!(hasher.take_slot().is_some(), "the slot is free again");
    }

    #[test]
    fn zero_slots_means_one() {
        let hasher = PasswordHasher::new(0);
        let first = hasher.take_slot();
        assert!(first.is_some(), "one slot");
        assert!(hasher.take_slot().is_none(), "only one");
    }

    #[test]
    fn debug_output_never_shows_a_hash() {
        let hasher = PasswordHasher::new(2);
        let debug = format!("{hasher:?}");
        assert!(debug.contains("max_concurrent: 2"), "{debug}");
        assert!(!debug.contains("$argon2id$"), "{debug}");
        assert!(!debug.contains("sL/02Li8"), "{debug}");
    }

    #[test]
    fn passwords_shorter_than_12_characters_are_refused_counting_characters_not_bytes() {
        let policy = PasswordPolicy::default();
        let cases = [
            (
                "violet-stap",
                Err(vec![PolicyViolation::TooShort]),
                "11 ASCII characters",
            ),
            ("violet-stapl", Ok(()), "12 ASCII characters"),
            (
                "ééééééééééé",
                Err(vec![PolicyViolation::TooShort]),
                "11 characters, 22 bytes",
            ),
            ("éééééééééééé", Ok(()), "12 characters"),
        ];
        for (password, expected, case) in cases {
            assert_eq!(policy.check(password, None), expected, "{case}");
        }
    }

    #[test]
    fn passwords_longer_than_128_characters_are_refused() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            policy.check(&"x7".repeat(64), None),
            Ok(()),
            "128 characters"
        );
        assert_eq!(
            policy.check(&format!("{}y", "x7".repeat(64)), None),
            Err(vec![PolicyViolation::TooLong]),
            "129 characters"
        );
        assert_eq!(
            policy.check(&"é".repeat(129), None),
            Err(vec![PolicyViolation::TooLong]),
            "129 characters of two bytes"
        );
    }

    #[test]
    fn common_passwords_are_refused_whatever_their_case_and_surrounding_spaces() {
        let policy = PasswordPolicy::default();
        let cases = [
            ("qwerty123456", "as listed"),
            ("QWERTY123456", "upper case"),
            ("  Qwerty123456\t", "surrounding whitespace"),
            ("1qaz2wsx3edc", "keyboard walk"),
            ("LeaveMeAlone", "a phrase"),
        ];
        for (password, case) in cases {
            assert!(
                COMMON_PASSWORDS.contains(password.trim().to_lowercase().as_str()),
                "{case}: the test needs an entry of the list"
            );
            assert_eq!(
                policy.check(password, None),
                Err(vec![PolicyViolation::TooCommon]),
                "{case}"
            );
        }
        assert_eq!(
            policy.check("password", None),
            Err(vec![PolicyViolation::TooShort, PolicyViolation::TooCommon]),
            "every violation at once"
        );
    }

    #[test]
    fn the_email_address_or_its_local_part_is_refused() {
        let policy = PasswordPolicy::default();
        let email = Some("Violet.Staple@Example.com");
        let cases = [
            (
                "violet.staple@example.com",
                Err(vec![PolicyViolation::ContainsEmail]),
                "the address",
            ),
            (
                "VIOLET.STAPLE",
                Err(vec![PolicyViolation::ContainsEmail]),
                "its local part",
            ),
            (
                "my violet.staple@example.com!",
                Err(vec![PolicyViolation::ContainsEmail]),
                "contains it",
            ),
            (
                "violet.staple quarry",
                Ok(()),
                "the local part among other words",
            ),
        ];
        for (password, expected, case) in cases {
            assert_eq!(policy.check(password, email), expected, "{case}");
        }
        assert_eq!(
            policy.check("violet.staple@example.com", None),
            Ok(()),
            "no email known"
        );
    }

    #[test]
    fn violation_messages_are_fixed_and_never_quote_the_password() {
        let password = "qwerty123456";
        let violations = PasswordPolicy::default()
            .check(password, Some("qwerty123456@example.com"))
            .expect_err("common and the local part");
        assert_eq!(
            violations,
            [PolicyViolation::TooCommon, PolicyViolation::ContainsEmail]
        );
        for violation in violations {
            let text = format!("{violation} {violation:?}");
            assert!(!text.contains(password), "{text}");
        }
        let messages = [
            (PolicyViolation::TooShort, "must be at least 12 characters"),
            (PolicyViolation::TooLong, "must be at most 128 characters"),
            (PolicyViolation::TooCommon, "is too common"),
            (
                PolicyViolation::ContainsEmail,
                "must not be or contain the email address",
            ),
        ];
        for (violation, message) in messages {
            assert_eq!(violation.to_string(), message);
        }
    }

    #[test]
    fn the_common_password_list_is_10000_unique_lowercase_lines() {
        let text = include_str!("common-passwords.txt");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 10_000);
        for line in &lines {
            assert!(!line.is_empty(), "no empty line");
            assert_eq!(*line, line.trim().to_lowercase(), "trimmed and lowercase");
        }
        assert_eq!(COMMON_PASSWORDS.len(), lines.len(), "no duplicates");
        assert!(
            text.ends_with('\n') && !text.contains('\r'),
            "Unix line ends"
        );
    }
}
