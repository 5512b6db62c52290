//! The formats of opaque credentials: API keys (AUTH-2: hashed at rest, shown once, prefixed and
//! checksummed) and the opaque tokens behind refresh and password-reset links (AUTH-3: opaque,
//! at least 256 bits, stored only as hashes).
//!
//! Threat: a credential stored as issued is handed to whoever reads the database, a backup or a
//! log of queries. A key without a recognisable shape leaks unnoticed into repositories and
//! tickets, and every random string presented to the API costs a database lookup. A guessable
//! or short token is found by enumeration; a hash compared with `==` tells a patient attacker,
//! byte by byte, how close a guess came.
//!
//! Control: every secret is 32 bytes (256 bits) from the system random number generator,
//! encoded base64url without padding. An API key reads `{prefix}_{random}{checksum}`: the
//! per-service prefix and the CRC32 checksum let secret scanners find leaked keys with one fixed
//! pattern ([`scanner_pattern`]) and let [`parse_api_key`] refuse typos and garbage offline,
//! before any database lookup. Only hashes are stored: API keys through [`KeyHasher`], an
//! HMAC-SHA256 keyed with a server secret (the "pepper"), so a stolen table is useless without
//! that secret; refresh and reset tokens through [`OpaqueToken::hash`], a plain SHA-256, enough
//! for 256 random bits. The plaintext exists once, in the response that issues it
//! ([`ApiKeySecret::expose`], [`OpaqueToken::expose`]); `Debug` never prints it and neither type
//! implements `Display`, `Clone` or `Serialize`. Hashes held in memory are compared in constant
//! time ([`CredentialHash`]'s `PartialEq`).
//!
//! Every refusal of a presented credential is an error with a fixed reason code for the audit
//! event; its text never contains the presented value.

use std::fmt;

use aws_lc_rs::{constant_time, digest, hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The prefix of API keys unless the service configures its own.
pub const DEFAULT_API_KEY_PREFIX: &str = "rmp";

/// The shortest server secret [`KeyHasher::new`] accepts, in bytes.
pub const MIN_PEPPER_BYTES: usize = 32;

/// Random bytes in every API key and opaque token (256 bits).
const RANDOM_BYTES: usize = 32;

/// Base64url characters of the random part: 32 bytes make 43 characters without padding.
const RANDOM_CHARS: usize = 43;

/// Base64url characters of the API key checksum: 4 bytes of CRC32 make 6 characters.
const CHECKSUM_CHARS: usize = 6;

/// What follows `{prefix}_` in an API key.
const API_KEY_BODY_CHARS: usize = RANDOM_CHARS + CHECKSUM_CHARS;

const MIN_PREFIX_CHARS: usize = 2;
const MAX_PREFIX_CHARS: usize = 10;

/// The characters of base64url, as a regex class body (`-` last, so it is literal).
const BASE64URL_CLASS: &str = "A-Za-z0-9_-";

/// The last character of 32 bytes in base64url carries 4 bits and 2 zero bits: these 16.
const RANDOM_LAST_CHARS: &str = "AEIMQUYcgkosw048";

/// The last character of 4 bytes in base64url carries 2 bits and 4 zero bits: these 4.
const CHECKSUM_LAST_CHARS: &str = "AQgw";

/// The prefix of this service's API keys: 2 to 10 lowercase ASCII letters or digits, starting
/// with a letter. A distinct prefix per service lets a secret scanner say which service a leaked
/// key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

/// A prefix that is not 2 to 10 lowercase ASCII letters or digits starting with a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "an API key prefix must be 2 to 10 lowercase ASCII letters or digits, starting with a letter"
)]
pub struct InvalidKeyPrefix;

impl KeyPrefix {
    /// Validates a configured prefix.
    pub fn new(prefix: &str) -> Result<Self, InvalidKeyPrefix> {
        if is_valid_prefix(prefix.as_bytes()) {
            Ok(Self(prefix.to_owned()))
        } else {
            Err(InvalidKeyPrefix)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    /// [`DEFAULT_API_KEY_PREFIX`].
    fn default() -> Self {
        Self(DEFAULT_API_KEY_PREFIX.to_owned())
    }
}

fn is_valid_prefix(prefix: &[u8]) -> bool {
    (MIN_PREFIX_CHARS..=MAX_PREFIX_CHARS).contains(&prefix.len())
        && prefix[0].is_ascii_lowercase()
        && prefix
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

/// A newly generated API key, `{prefix}_{random}{checksum}`. It is shown to its owner once,
/// through [`expose`](Self::expose), and stored only as [`KeyHasher::hash`]. `Debug` prints the
/// prefix alone: `ApiKeySecret(rmp_…redacted)`.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// 32 random bytes under `prefix`, with their checksum.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails: no key is better than a
    /// predictable one.
    pub fn generate(prefix: &KeyPrefix) -> Self {
        let random = URL_SAFE_NO_PAD.encode(random_bytes());
        let checksum = checksum(prefix.as_str(), &random);
        Self(format!("{}_{random}{checksum}", prefix.as_str()))
    }

    /// The key itself, to be shown to its owner in the response that creates it and nowhere
    /// else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{prefix}_` only: the prefix says which service the key is for and is no secret.
        let head = self
            .0
            .get(..self.0.len().saturating_sub(API_KEY_BODY_CHARS))
            .unwrap_or_default();
        write!(f, "ApiKeySecret({head}…redacted)")
    }
}

/// The CRC32 of `{prefix}_{random}`, big-endian, in base64url without padding (6 characters).
/// An integrity check against typos and forgeries by guessing, not a MAC: anyone can compute it.
fn checksum(prefix: &str, random: &str) -> String {
    let mut crc = crc32fast::Hasher::new();
    crc.update(prefix.as_bytes());
    crc.update(b"_");
    crc.update(random.as_bytes());
    URL_SAFE_NO_PAD.encode(crc.finalize().to_be_bytes())
}

/// Why a presented API key was refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyFormatError {
    /// Shaped like an API key, but of another prefix: another service's key, or another
    /// environment's.
    #[error("the API key has another service's prefix")]
    WrongPrefix,
    /// The checksum does not match: a typo, a truncated copy or a made-up key.
    #[error("the API key's checksum does not match")]
    BadChecksum,
    /// Not shaped like an API key at all: length, characters or encoding.
    #[error("the value is not a well-formed API key")]
    Malformed,
}

impl ApiKeyFormatError {
    /// A fixed code for the audit event.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::WrongPrefix => "wrong_prefix",
            Self::BadChecksum => "bad_checksum",
            Self::Malformed => "malformed",
        }
    }
}

/// Checks the shape of a presented API key: length, characters, `prefix` and checksum, all
/// offline, so that garbage never reaches the database. Returns the key unchanged, to be hashed
/// with [`KeyHasher::hash`] and looked up by that hash.
///
/// Passing proves only that the key is well formed, not that it was ever issued.
pub fn parse_api_key<'a>(
    prefix: &KeyPrefix,
    presented: &'a str,
) -> Result<&'a str, ApiKeyFormatError> {
    let bytes = presented.as_bytes();
    let shortest = MIN_PREFIX_CHARS + 1 + API_KEY_BODY_CHARS;
    let longest = MAX_PREFIX_CHARS + 1 + API_KEY_BODY_CHARS;
    // ASCII first, so that every byte offset below is a character boundary.
    if !presented.is_ascii() || !(shortest..=longest).contains(&bytes.len()) {
        return Err(ApiKeyFormatError::Malformed);
    }
    let (head, body) = bytes.split_at(bytes.len() - API_KEY_BODY_CHARS);
    let Some((b'_', presented_prefix)) = head.split_last() else {
        return Err(ApiKeyFormatError::Malformed);
    };
    if !is_valid_prefix(presented_prefix) {
        return Err(ApiKeyFormatError::Malformed);
    }
    if presented_prefix != prefix.as_str().as_bytes() {
        return Err(ApiKeyFormatError::WrongPrefix);
    }
    if !body.iter().copied().all(is_base64url) {
        return Err(ApiKeyFormatError::Malformed);
    }
    let (random, checksum_part) = presented[head.len()..].split_at(RANDOM_CHARS);
    // The checksum is public and so is this comparison's timing: the presenter holds the key.
    if checksum(prefix.as_str(), random) != checksum_part {
        return Err(ApiKeyFormatError::BadChecksum);
    }
    // Only a key crafted with a valid checksum gets here: 43 characters that are not the
    // canonical encoding of 32 bytes were never generated.
    if !is_canonical_random(random) {
        return Err(ApiKeyFormatError::Malformed);
    }
    Ok(presented)
}

/// The regular expression that finds this service's API keys in text, for secret scanners
/// (GitHub custom patterns, gitleaks, trufflehog, a pre-commit hook). For the default prefix:
///
/// ```text
/// \brmp_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048][A-Za-z0-9_-]{5}[AQgw]\b
/// ```
///
/// It matches every generated key and little else: the last character of the random part and
/// of the checksum can each take only the values a canonical encoding produces. It uses no
/// lookaround, so RE2 (Go), Rust's `regex`, PCRE, Hyperscan and JavaScript all accept it. A
/// scanner that can run code should confirm each match with [`parse_api_key`], which checks the
/// checksum, and so discards nearly every false positive without asking the service.
pub fn scanner_pattern(prefix: &KeyPrefix) -> String {
    format!(
        r"\b{prefix}_[{class}]{{{head}}}[{RANDOM_LAST_CHARS}][{class}]{{{tail}}}[{CHECKSUM_LAST_CHARS}]\b",
        prefix = prefix.as_str(),
        class = BASE64URL_CLASS,
        head = RANDOM_CHARS - 1,
        tail = CHECKSUM_CHARS - 1,
    )
}

/// The stored form of a credential: 32 bytes, a [`KeyHasher`] tag for an API key or a SHA-256
/// for an opaque token. Stored as [`to_hex`](Self::to_hex) in a unique column and looked up by
/// equality in the database; compared in constant time when compared in memory.
#[derive(Clone, Copy)]
pub struct CredentialHash([u8; 32]);

/// A stored hash that is not 64 lowercase hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a credential hash must be 64 lowercase hexadecimal digits")]
pub struct InvalidCredentialHash;

impl CredentialHash {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hexadecimal digits, the one form stored.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }

    /// Reads [`to_hex`](Self::to_hex)'s form back. Uppercase digits are refused, so that each
    /// hash has a single spelling in the unique column.
    pub fn from_hex(hex: &str) -> Result<Self, InvalidCredentialHash> {
        fn digit(byte: u8) -> Result<u8, InvalidCredentialHash> {
            match byte {
                b'0'..=b'9' => Ok(byte - b'0'),
                b'a'..=b'f' => Ok(byte - b'a' + 10),
                _ => Err(InvalidCredentialHash),
            }
        }
        let hex = hex.as_bytes();
        if hex.len() != 64 {
            return Err(InvalidCredentialHash);
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

impl PartialEq for CredentialHash {
    fn eq(&self, other: &Self) -> bool {
        // Constant time: an early exit at the first differing byte would tell an attacker who
        // can time the comparison how much of a guessed hash was right.
        constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl Eq for CredentialHash {}

impl fmt::Debug for CredentialHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short fingerprint to correlate with the database, not the full lookup value.
        let hex = self.to_hex();
        write!(f, "CredentialHash({}…)", &hex[..8])
    }
}

/// Hashes API keys for storage and lookup: HMAC-SHA256 keyed with a server secret (the
/// "pepper"), kept out of the database (configuration, a secret manager).
///
/// A generated key's 256 random bits would already defeat brute force against a plain SHA-256;
/// the pepper adds what a hash alone cannot. A stolen table, without the pepper, cannot confirm
/// whether a key found elsewhere (a log, a repository) is valid here, and keys of less entropy
/// (imported from an older system) cannot be brute-forced offline. Rotating the pepper means
/// rehashing on next use or reissuing keys, so it is a long-lived secret: at least
/// [`MIN_PEPPER_BYTES`] random bytes. `Debug` never prints it.
pub struct KeyHasher {
    key: hmac::Key,
}

/// A server secret shorter than [`MIN_PEPPER_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the API key hashing secret must be at least 32 bytes")]
pub struct PepperTooShort;

impl KeyHasher {
    /// Keys the hasher with `secret`, refused if shorter than [`MIN_PEPPER_BYTES`].
    pub fn new(secret: &[u8]) -> Result<Self, PepperTooShort> {
        if secret.len() < MIN_PEPPER_BYTES {
            return Err(PepperTooShort);
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// The stored form of an API key. Call it after [`parse_api_key`] and look the key up by
    /// the result.
    pub fn hash(&self, secret: &str) -> CredentialHash {
        let tag = hmac::sign(&self.key, secret.as_bytes());
        let mut bytes = [0; 32];
        bytes.copy_from_slice(tag.as_ref());
        CredentialHash(bytes)
    }

    /// A hasher under a key derived from this one for another `purpose` (HMAC as a KDF), so one
    /// configured secret serves several uses without any two sharing a key.
    pub fn derive(&self, purpose: &str) -> Self {
        let derived = hmac::sign(&self.key, purpose.as_bytes());
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHasher")
            .field("algorithm", &"HMAC-SHA256")
            .finish_non_exhaustive()
    }
}

/// A refresh token or a password-reset token: 32 random bytes (256 bits) in base64url without
/// padding, 43 characters that mean nothing; what they grant lives in the database, under
/// [`OpaqueToken::hash`]. Shown once through [`expose`](Self::expose); `Debug` prints nothing
/// of it.
pub struct OpaqueToken(String);

/// A presented value that is not 43 base64url characters encoding 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the value is not a well-formed token")]
pub struct MalformedOpaqueToken;

impl MalformedOpaqueToken {
    /// A fixed code for the audit event.
    pub fn reason_code(&self) -> &'static str {
        "malformed"
    }
}

impl OpaqueToken {
    /// 32 bytes from the system random number generator.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails: no token is better than a
    /// predictable one.
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(random_bytes()))
    }

    /// The token itself, to be handed to its holder once (a response body, a reset link).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form of a token: SHA-256, unkeyed. A pepper protects secrets that can be
    /// guessed; these cannot. With 256 bits from the system random number generator there is
    /// no list of likely tokens to hash, and searching the space is out of reach, so whoever
    /// steals the table holds hashes that lead to no token. The tokens also live only minutes to
    /// days, and a server secret would add key management and rotation for no strength.
    pub fn hash(presented: &str) -> CredentialHash {
        let digest = digest::digest(&digest::SHA256, presented.as_bytes());
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest.as_ref());
        CredentialHash(bytes)
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(redacted)")
    }
}

/// Refuses, before any lookup, anything that is not exactly 43 base64url characters encoding
/// 32 bytes, the form [`OpaqueToken::generate`] produces. Returns the token unchanged, to be
/// looked up by [`OpaqueToken::hash`].
pub fn parse_opaque_token(presented: &str) -> Result<&str, MalformedOpaqueToken> {
    if presented.len() == RANDOM_CHARS
        && presented.bytes().all(is_base64url)
        && is_canonical_random(presented)
    {
        Ok(presented)
    } else {
        Err(MalformedOpaqueToken)
    }
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// Whether 43 base64url characters are the canonical encoding of 32 bytes (the decoder refuses
/// set trailing bits).
fn is_canonical_random(encoded: &str) -> bool {
    let mut bytes = [0; RANDOM_BYTES];
    matches!(
        URL_SAFE_NO_PAD.decode_slice(encoded, &mut bytes),
        Ok(RANDOM_BYTES)
    )
}

fn random_bytes() -> [u8; RANDOM_BYTES] {
    let mut bytes = [0; RANDOM_BYTES];
    rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const PEPPER: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn rmp() -> KeyPrefix {
        KeyPrefix::default()
    }

    /// `key` with the byte at `index` replaced.
    fn with_byte(key: &str, index: usize, byte: u8) -> String {
        let mut bytes = key.as_bytes().to_vec();
        bytes[index] = byte;
        String::from_utf8(bytes).expect("ASCII stays UTF-8")
    }

    #[test]
    fn key_prefixes_are_2_to_10_lowercase_letters_or_digits_starting_with_a_letter() {
        for good in ["rmp", "ab", "a1", "abcdefghij", "acme2"] {
            assert!(KeyPrefix::new(good).is_ok(), "{good:?} should be accepted");
        }
        for bad in [
            "",
            "a",
            "abcdefghijk",
            "1ab",
            "RMP",
            "rMp",
            "rm_p",
            "rm-p",
            "rm p",
            "rmé",
        ] {
            assert_eq!(KeyPrefix::new(bad), Err(InvalidKeyPrefix), "{bad:?}");
        }
        assert_eq!(KeyPrefix::default().as_str(), DEFAULT_API_KEY_PREFIX);
    }

    #[test]
    fn a_generated_key_has_the_documented_shape_and_parses() {
        let prefix = rmp();
        let key = ApiKeySecret::generate(&prefix);
        let exposed = key.expose();
        assert_eq!(exposed.len(), "rmp_".len() + 43 + 6);
        assert!(exposed.starts_with("rmp_"));
        assert_eq!(parse_api_key(&prefix, exposed), Ok(exposed));

        let acme = KeyPrefix::new("acme").expect("valid prefix");
        let key = ApiKeySecret::generate(&acme);
        assert_eq!(parse_api_key(&acme, key.expose()), Ok(key.expose()));
    }

    #[test]
    fn generated_keys_differ() {
        let keys: HashSet<String> = (0..100)
            .map(|_| ApiKeySecret::generate(&rmp()).expose().to_owned())
            .collect();
        assert_eq!(keys.len(), 100);
    }

    #[test]
    fn any_single_character_changed_in_the_random_part_or_checksum_is_a_bad_checksum() {
        let prefix = rmp();
        let key = ApiKeySecret::generate(&prefix);
        let key = key.expose();
        let body_start = "rmp_".len();
        for index in body_start..key.len() {
            for &replacement in BASE64URL {
                if replacement == key.as_bytes()[index] {
                    continue;
                }
                let changed = with_byte(key, index, replacement);
                assert_eq!(
                    parse_api_key(&prefix, &changed),
                    Err(ApiKeyFormatError::BadChecksum),
                    "position {index} changed to {:?}",
                    char::from(replacement)
                );
            }
        }
    }

    #[test]
    fn a_key_of_another_prefix_is_refused_as_wrong_prefix() {
        let key = ApiKeySecret::generate(&KeyPrefix::new("acme").expect("valid prefix"));
        assert_eq!(
            parse_api_key(&rmp(), key.expose()),
            Err(ApiKeyFormatError::WrongPrefix)
        );
        // The same random part and checksum relabelled: the checksum covers the prefix too.
        let relabelled = key.expose().replacen("acme_", "rmp_", 1);
        assert_eq!(
            parse_api_key(&rmp(), &relabelled),
            Err(ApiKeyFormatError::BadChecksum)
        );
    }

    #[test]
    fn wrong_lengths_characters_and_shapes_are_malformed() {
        let prefix = rmp();
        let key = ApiKeySecret::generate(&prefix);
        let key = key.expose();
        let cases = [
            (String::new(), "empty"),
            ("rmp_".to_owned(), "prefix alone"),
            (key[..key.len() - 1].to_owned(), "one character short"),
            (format!("{key}A"), "one character long"),
            (format!("{key}{key}"), "twice"),
            (with_byte(key, 10, b'+'), "standard base64 character"),
            (with_byte(key, 10, b'='), "padding"),
            (with_byte(key, 10, b'.'), "dot"),
            (with_byte(key, 3, b'-'), "no underscore after the prefix"),
            (with_byte(key, 0, b'R'), "uppercase prefix"),
            (key.replacen('_', " ", 1), "space for underscore"),
            (
                format!("{}é", &key[..key.len() - 2]),
                "non-ASCII at the end",
            ),
            ("x".repeat(key.len()), "random letters"),
            ("Bearer abc".to_owned(), "another credential"),
        ];
        for (presented, why) in &cases {
            assert_eq!(
                parse_api_key(&prefix, presented),
                Err(ApiKeyFormatError::Malformed),
                "{why}"
            );
        }
    }

    #[test]
    fn a_non_canonical_random_part_is_malformed_even_with_a_valid_checksum() {
        let prefix = rmp();
        let key = ApiKeySecret::generate(&prefix);
        let random = &key.expose()["rmp_".len().."rmp_".len() + 43];
        // The 43rd character carries 2 zero bits; 'B' sets one of them.
        let forged_random = format!("{}B", &random[..42]);
        let forged = format!("rmp_{forged_random}{}", checksum("rmp", &forged_random));
        assert_eq!(
            parse_api_key(&prefix, &forged),
            Err(ApiKeyFormatError::Malformed)
        );
    }

    #[test]
    fn every_reason_code_is_distinct_and_fixed() {
        let codes: Vec<&str> = [
            ApiKeyFormatError::WrongPrefix,
            ApiKeyFormatError::BadChecksum,
            ApiKeyFormatError::Malformed,
        ]
        .iter()
        .map(ApiKeyFormatError::reason_code)
        .collect();
        assert_eq!(codes, ["wrong_prefix", "bad_checksum", "malformed"]);
        assert_eq!(MalformedOpaqueToken.reason_code(), "malformed");
    }

    /// One element of the pattern subset [`scanner_pattern`] uses.
    enum Element {
        WordBoundary,
        /// Allowed bytes, and how many in a row.
        Class(Vec<u8>, usize),
    }

    /// Compiles `\b`, literal characters, `[...]` classes with ranges and `{n}`: all the syntax
    /// of [`scanner_pattern`], and nothing more (anything else panics, so a pattern that grows
    /// new syntax fails this test rather than being misread).
    fn compile(pattern: &str) -> Vec<Element> {
        let bytes = pattern.as_bytes();
        let mut elements = Vec::new();
        let mut index = 0;
        while index < bytes.len() {
            let allowed = match bytes[index] {
                b'\\' => {
                    assert_eq!(bytes[index + 1], b'b', "only \\b is supported");
                    elements.push(Element::WordBoundary);
                    index += 2;
                    continue;
                }
                b'[' => {
                    let end = index + pattern[index..].find(']').expect("closed class");
                    let body = &bytes[index + 1..end];
                    let mut allowed = Vec::new();
                    let mut at = 0;
                    while at < body.len() {
                        if at + 2 < body.len() && body[at + 1] == b'-' {
                            allowed.extend(body[at]..=body[at + 2]);
                            at += 3;
                        } else {
                            allowed.push(body[at]);
                            at += 1;
                        }
                    }
                    index = end + 1;
                    allowed
                }
                byte => {
                    assert!(
                        byte.is_ascii_alphanumeric() || byte == b'_',
                        "unsupported syntax {:?}",
                        char::from(byte)
                    );
                    index += 1;
                    vec![byte]
                }
            };
            let mut count = 1;
            if bytes.get(index) == Some(&b'{') {
                let end = index + pattern[index..].find('}').expect("closed quantifier");
                count = pattern[index + 1..end].parse().expect("{n}");
                index = end + 1;
            }
            elements.push(Element::Class(allowed, count));
        }
        elements
    }

    fn is_word(byte: Option<&u8>) -> bool {
        byte.is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
    }

    /// The first match of the compiled pattern in `haystack`, as a regex engine would find it.
    fn find<'a>(pattern: &[Element], haystack: &'a str) -> Option<&'a str> {
        let bytes = haystack.as_bytes();
        (0..=bytes.len()).find_map(|start| {
            let mut at = start;
            for element in pattern {
                match element {
                    Element::WordBoundary => {
                        let before = at.checked_sub(1).and_then(|i| bytes.get(i));
                        if is_word(before) == is_word(bytes.get(at)) {
                            return None;
                        }
                    }
                    Element::Class(allowed, count) => {
                        for _ in 0..*count {
                            if !bytes.get(at).is_some_and(|byte| allowed.contains(byte)) {
                                return None;
                            }
                            at += 1;
                        }
                    }
                }
            }
            Some(&haystack[start..at])
        })
    }

    #[test]
    fn the_scanner_pattern_finds_generated_keys_in_text() {
        let prefix = rmp();
        let pattern = scanner_pattern(&prefix);
        assert_eq!(
            pattern,
            r"\brmp_[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048][A-Za-z0-9_-]{5}[AQgw]\b"
        );
        let compiled = compile(&pattern);
        // Enough keys that the constrained last characters take many of their values.
        for _ in 0..200 {
            let key = ApiKeySecret::generate(&prefix);
            let key = key.expose();
            for text in [
                key.to_owned(),
                format!("export API_KEY={key}\n"),
                format!("{{\"key\":\"{key}\"}}"),
                format!("X-Api-Key: {key} "),
            ] {
                assert_eq!(find(&compiled, &text), Some(key), "in {text:?}");
            }
        }
    }

    #[test]
    fn the_scanner_pattern_ignores_near_misses() {
        let prefix = rmp();
        let compiled = compile(&scanner_pattern(&prefix));
        let key = ApiKeySecret::generate(&prefix);
        let key = key.expose();
        let other = ApiKeySecret::generate(&KeyPrefix::new("acme").expect("valid prefix"));
        for text in [
            key[..key.len() - 1].to_owned(),
            format!("{key}x"),
            format!("x{key}"),
            with_byte(key, key.len() - 1, b'B'),
            other.expose().to_owned(),
            "rmp_".to_owned() + &"a".repeat(49),
        ] {
            assert_eq!(find(&compiled, &text), None, "in {text:?}");
        }
    }

    #[test]
    fn key_hashes_depend_on_the_key_and_the_pepper() {
        let key = ApiKeySecret::generate(&rmp());
        let hasher = KeyHasher::new(PEPPER).expect("32 bytes");
        let hash = hasher.hash(key.expose());
        assert_eq!(hash, hasher.hash(key.expose()));
        assert_ne!(hash, hasher.hash(ApiKeySecret::generate(&rmp()).expose()));

        let other_pepper = KeyHasher::new(b"fedcba9876543210fedcba9876543210").expect("32 bytes");
        assert_ne!(hash, other_pepper.hash(key.expose()));
        // Keyed: not the plain SHA-256 a table thief could compute.
        assert_ne!(hash, OpaqueToken::hash(key.expose()));
    }

    #[test]
    fn a_pepper_shorter_than_32_bytes_is_refused() {
        assert!(KeyHasher::new(&[7; 31]).is_err());
        assert!(KeyHasher::new(b"").is_err());
        assert!(KeyHasher::new(&[7; 32]).is_ok());
        assert!(KeyHasher::new(&[7; 64]).is_ok());
    }

    #[test]
    fn credential_hashes_round_trip_through_lowercase_hex() {
        let hash = OpaqueToken::hash("anything");
        let hex = hash.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(CredentialHash::from_hex(&hex), Ok(hash));
        assert_eq!(
            CredentialHash::from_bytes([0xab; 32]).to_hex(),
            "ab".repeat(32)
        );
        for bad in [
            hex.to_uppercase(),
            hex[..63].to_owned(),
            format!("{hex}0"),
            format!("{}g", &hex[..63]),
            String::new(),
        ] {
            assert_eq!(
                CredentialHash::from_hex(&bad),
                Err(InvalidCredentialHash),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn credential_hashes_differing_in_any_byte_are_unequal() {
        let hash = CredentialHash::from_bytes([0x5a; 32]);
        for index in 0..32 {
            let mut bytes = *hash.as_bytes();
            bytes[index] ^= 1;
            assert_ne!(hash, CredentialHash::from_bytes(bytes), "byte {index}");
        }
        assert_eq!(hash, CredentialHash::from_bytes([0x5a; 32]));
    }

    #[test]
    fn opaque_tokens_are_43_base64url_characters_and_differ() {
        let tokens: HashSet<String> = (0..100)
            .map(|_| {
                let token = OpaqueToken::generate();
                assert_eq!(token.expose().len(), 43);
                assert!(token.expose().bytes().all(is_base64url));
                assert_eq!(parse_opaque_token(token.expose()), Ok(token.expose()));
                token.expose().to_owned()
            })
            .collect();
        assert_eq!(tokens.len(), 100);
    }

    #[test]
    fn malformed_opaque_tokens_are_refused() {
        let token = OpaqueToken::generate();
        let token = token.expose();
        let cases = [
            (token[..42].to_owned(), "42 characters"),
            (format!("{token}A"), "44 characters"),
            (String::new(), "empty"),
            (with_byte(token, 5, b'+'), "standard base64"),
            (with_byte(token, 5, b'/'), "standard base64"),
            (with_byte(token, 5, b'='), "padding"),
            (with_byte(token, 5, b' '), "space"),
            (format!("{}é", &token[..41]), "non-ASCII"),
            (format!("{}B", &token[..42]), "non-canonical last character"),
            (
                ApiKeySecret::generate(&rmp()).expose().to_owned(),
                "API key",
            ),
        ];
        for (presented, why) in &cases {
            assert_eq!(
                parse_opaque_token(presented),
                Err(MalformedOpaqueToken),
                "{why}"
            );
        }
    }

    #[test]
    fn opaque_token_hashes_are_stable_sha256() {
        let token = OpaqueToken::generate();
        assert_eq!(
            OpaqueToken::hash(token.expose()),
            OpaqueToken::hash(token.expose())
        );
        assert_ne!(
            OpaqueToken::hash(token.expose()),
            OpaqueToken::hash(OpaqueToken::generate().expose())
        );
        // SHA-256("abc"), FIPS 180-2 appendix B.1: the hash is the documented one.
        assert_eq!(
            OpaqueToken::hash("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_output_never_contains_a_secret() {
        let key = ApiKeySecret::generate(&rmp());
        let printed = format!("{key:?}");
        assert_eq!(printed, "ApiKeySecret(rmp_…redacted)");
        assert!(!printed.contains(&key.expose()["rmp_".len()..]));

        let token = OpaqueToken::generate();
        let printed = format!("{token:?}");
        assert_eq!(printed, "OpaqueToken(redacted)");
        assert!(!printed.contains(token.expose()));

        let pepper = b"do-not-print-this-pepper-anywhere!";
        let hasher = KeyHasher::new(pepper).expect("34 bytes");
        let printed = format!("{hasher:?}");
        assert!(!printed.contains("do-not-print"), "{printed}");
        assert!(!printed.contains("100, 111"), "{printed}"); // the pepper as a byte list
        assert!(printed.starts_with("KeyHasher"));

        let hash = hasher.hash(key.expose());
        assert!(!format!("{hash:?}").contains(&hash.to_hex()));
    }
}
