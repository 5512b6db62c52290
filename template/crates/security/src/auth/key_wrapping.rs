//! Private keys kept in a shared database, encrypted (AUTH-1, for several instances).
//!
//! Threat: signing keys stored as plain rows hand token forgery to whoever reads the database, a
//! backup or a replica; keys copied by hand between instances drift, and a rotation seen by one
//! instance only makes the others refuse its tokens.
//!
//! Control: each private key is sealed with AES-256-GCM (aws-lc-rs) under a key-encryption key
//! that never enters the database (`auth.signing_key_encryption_key`, from the environment or a
//! secret store). Every seal has a fresh random 96-bit nonce, and the key's `kid` is the
//! associated data: a sealed key moved to another row does not open. The plaintext exists only
//! while the service loads the key; `Debug` never prints it.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{self, SecureRandom};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretSlice;

/// The length of a key-encryption key, in bytes (AES-256).
pub const KEY_ENCRYPTION_KEY_BYTES: usize = 32;

/// Why a key-encryption key was refused or a sealed key did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyWrappingError {
    #[error("must be {KEY_ENCRYPTION_KEY_BYTES} random bytes, base64-encoded")]
    InvalidKey,
    #[error("a sealed key did not open: wrong key-encryption key, or the row was altered")]
    Unsealing,
    #[error("the system random number generator failed")]
    Random,
}

/// The key that seals private keys at rest.
pub struct KeyEncryptionKey(LessSafeKey);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

impl KeyEncryptionKey {
    /// A key from its standard base64 encoding (as configured).
    pub fn from_base64(encoded: &str) -> Result<Self, KeyWrappingError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| KeyWrappingError::InvalidKey)?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyWrappingError> {
        if bytes.len() != KEY_ENCRYPTION_KEY_BYTES {
            return Err(KeyWrappingError::InvalidKey);
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyWrappingError::InvalidKey)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A new random key, base64-encoded (for `app` to create a development key, or an operator
    /// a production one).
    pub fn generate_base64() -> Result<String, KeyWrappingError> {
        let mut bytes = [0u8; KEY_ENCRYPTION_KEY_BYTES];
        rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyWrappingError::Random)?;
        Ok(STANDARD.encode(bytes))
    }

    /// `nonce || ciphertext || tag` of `plaintext`, bound to `kid`.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyWrappingError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| KeyWrappingError::Random)?;
        let mut sealed = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| KeyWrappingError::Unsealing)?;
        let mut stored = nonce.to_vec();
        stored.append(&mut sealed);
        Ok(stored)
    }

    /// The plaintext of what [`KeyEncryptionKey::seal`] made for the same `kid`.
    pub fn open(&self, kid: &str, stored: &[u8]) -> Result<SecretSlice<u8>, KeyWrappingError> {
        if stored.len() < NONCE_LEN {
            return Err(KeyWrappingError::Unsealing);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyWrappingError::Unsealing)?;
        let mut buffer = sealed.to_vec();
        let plaintext = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buffer)
            .map_err(|_| KeyWrappingError::Unsealing)?;
        let plaintext = plaintext.to_vec();
        secrecy::zeroize::Zeroize::zeroize(&mut buffer);
        Ok(SecretSlice::from(plaintext))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn key() -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().expect("random"))
            .expect("a generated key is valid")
    }

    #[test]
    fn a_sealed_key_opens_with_its_kid_and_key_only() {
        let kek = key();
        let sealed = kek.seal("kid-1", b"private key bytes").expect("seal");
        assert!(
            !sealed
                .windows(b"private key bytes".len())
                .any(|window| window == b"private key bytes"),
            "the plaintext is not stored"
        );
        assert_eq!(
            kek.open("kid-1", &sealed).expect("open").expose_secret(),
            b"private key bytes"
        );
        assert_eq!(
            kek.open("kid-2", &sealed).err(),
            Some(KeyWrappingError::Unsealing),
            "moved to another row"
        );
        assert_eq!(
            key().open("kid-1", &sealed).err(),
            Some(KeyWrappingError::Unsealing),
            "another key-encryption key"
        );
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            kek.open("kid-1", &altered).err(),
            Some(KeyWrappingError::Unsealing)
        );
        assert_eq!(
            kek.open("kid-1", &sealed[..5]).err(),
            Some(KeyWrappingError::Unsealing)
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let kek = key();
        assert_ne!(
            kek.seal("kid", b"same").expect("seal"),
            kek.seal("kid", b"same").expect("seal")
        );
    }

    #[test]
    fn only_32_byte_base64_keys_are_accepted_and_never_printed() {
        assert_eq!(
            KeyEncryptionKey::from_base64("c2hvcnQ=").err(),
            Some(KeyWrappingError::InvalidKey)
        );
        assert_eq!(
            KeyEncryptionKey::from_base64("not base64!").err(),
            Some(KeyWrappingError::InvalidKey)
        );
        let encoded = KeyEncryptionKey::generate_base64().expect("random");
        let kek = KeyEncryptionKey::from_base64(&encoded).expect("valid");
        assert!(!format!("{kek:?}").contains(&encoded));
    }
}
