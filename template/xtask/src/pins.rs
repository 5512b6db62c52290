//! `cargo xtask pins`: the SPKI pins a mobile client embeds (TLS-3).
//!
//! A pin is the base64 SHA-256 of a key's SubjectPublicKeyInfo (the form of RFC 7469, used by
//! OkHttp's `CertificatePinner`, Android's network security config and TrustKit). Pinning the
//! key rather than the certificate lets the certificate be renewed with the same key.
//!
//! Two pins always ship together: the serving key's, and a backup key's that is generated now,
//! kept offline and used for nothing until the serving key must be replaced. An app that pins
//! only the current key cannot follow a key change: its users are locked out until they update.
//!
//! `cargo xtask pins` prints both pins and creates the backup key once (mode 0600, beside the
//! serving key); later runs print the same pins. The generated README ("Certificate pinning")
//! explains rotation and why the backup pin ships in the app before it is needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The pin of a certificate's public key (the first certificate of a PEM chain).
pub fn certificate_pin(cert_pem: &[u8]) -> Result<String> {
    let cert = CertificateDer::pem_slice_iter(cert_pem)
        .next()
        .context("no PEM certificate")?
        .context("unreadable PEM certificate")?;
    let parsed = rustls::server::ParsedCertificate::try_from(&cert)
        .map_err(|error| anyhow::anyhow!("unparsable certificate: {error}"))?;
    Ok(pin_of_spki(parsed.subject_public_key_info().as_ref()))
}

/// The pin of the public half of a private key (PEM).
pub fn private_key_pin(key_pem: &[u8]) -> Result<String> {
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("no PEM private key")?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| anyhow::anyhow!("unsupported private key: {error}"))?;
    let spki = signing_key
        .public_key()
        .context("the key type does not expose its public key")?;
    Ok(pin_of_spki(spki.as_ref()))
}

fn pin_of_spki(spki: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Creates a P-256 backup key at `path` (mode 0600) unless one is there. Returns whether it
/// created one.
pub fn ensure_backup_key(path: &Path) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let key = rcgen::KeyPair::generate().context("generate the backup key")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(path)
        .and_then(|mut file| file.write_all(key.serialize_pem().as_bytes()))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(true)
}

/// The two pins to ship.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    pub serving: String,
    pub backup: String,
}

/// Computes the pins of the certificate at `cert` and of the backup key at `backup_key`
/// (created if missing).
pub fn pins(cert: &Path, backup_key: &Path) -> Result<(Pins, bool)> {
    let cert_pem = std::fs::read(cert).with_context(|| {
        format!(
            "read {} (start the service once to create the development certificate, or pass \
             --cert with the production certificate)",
            cert.display()
        )
    })?;
    let created = ensure_backup_key(backup_key)?;
    let backup_pem =
        std::fs::read(backup_key).with_context(|| format!("read {}", backup_key.display()))?;
    let pins = Pins {
        serving: certificate_pin(&cert_pem)?,
        backup: private_key_pin(&backup_pem)?,
    };
    if pins.serving == pins.backup {
        bail!("the backup key is the serving key: generate a separate backup key");
    }
    Ok((pins, created))
}

/// `cargo xtask pins`: prints both pins and how to use them.
pub fn run(root: &Path, cert: Option<PathBuf>, backup_key: Option<PathBuf>) -> Result<()> {
    let cert = cert.unwrap_or_else(|| root.join("data/tls/server.pem"));
    let backup_key = backup_key.unwrap_or_else(|| root.join("data/tls/backup-key.pem"));
    let (pins, created) = pins(&cert, &backup_key)?;
    if created {
        eprintln!(
            "created the backup key {}: move it off this machine to safe offline storage; it \
             must stay unused until it replaces the serving key",
            backup_key.display()
        );
    }
    println!("serving key ({}): sha256/{}", cert.display(), pins.serving);
    println!(
        "backup key  ({}): sha256/{}",
        backup_key.display(),
        pins.backup
    );
    println!(
        "Ship both pins in the app before relying on either; see README, \"Certificate pinning\"."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_and_its_key_have_the_same_pin_and_the_backup_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let cert_path = dir.path().join("server.pem");
        std::fs::write(&cert_path, cert.pem()).expect("write");
        let backup = dir.path().join("nested/backup-key.pem");

        let (first, created) = pins(&cert_path, &backup).expect("pins");
        assert!(created);
        assert_eq!(
            first.serving,
            private_key_pin(key.serialize_pem().as_bytes()).expect("key pin")
        );
        assert_ne!(first.serving, first.backup);
        assert_eq!(first.serving.len(), 44, "base64 of 32 bytes");

        let (second, created) = pins(&cert_path, &backup).expect("pins again");
        assert!(!created, "the backup key is generated once");
        assert_eq!(first, second, "pins are stable across runs");
    }

    #[cfg(unix)]
    #[test]
    fn the_backup_key_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("backup-key.pem");
        ensure_backup_key(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
