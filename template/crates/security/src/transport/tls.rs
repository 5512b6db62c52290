//! The TLS configuration of the HTTPS listener (TLS-2), and certificates that can be replaced
//! without a restart (TLS-1).
//!
//! Threat: TLS 1.2 and older keep cipher suites and handshakes with known weaknesses (CBC
//! padding oracles, RSA key exchange without forward secrecy, renegotiation); a downgrade to
//! them is an attacker's first move. An expired certificate that needs a restart to replace
//! turns every renewal into an outage.
//!
//! Control:
//! - [`install_crypto_provider`] makes aws-lc-rs the process-wide rustls provider. Both rustls
//!   providers get compiled into most dependency graphs, and rustls refuses to guess which one
//!   to use, so this runs first thing at start-up.
//! - [`server_config`] builds the `ServerConfig` by hand with TLS 1.3 as the only protocol
//!   version (poem's `RustlsConfig` has no version setting and allows 1.2) and ALPN `h2` and
//!   `http/1.1`. A TLS 1.2 client fails at the handshake: no request of it is ever read.
//! - [`ReloadingCertificate`] serves the certificate and key read from two PEM files and
//!   re-reads them when they change on disk (checked every few seconds) or on SIGHUP. A new
//!   pair is used for the next handshake; open connections keep theirs. A pair that does not
//!   parse or does not match is logged and ignored, so a half-written file never takes the
//!   service down.
//!
//! Each handshake runs in its own task under `tls.handshake_timeout_seconds` (10 s), so a client
//! that never sends its ClientHello blocks nobody (`transport::server`).
//!
//! Default: TLS 1.3 only, aws-lc-rs, no setting to allow 1.2. Allowing it would bring back the
//! downgrade and the cipher suites above; a client that cannot speak 1.3 belongs behind a proxy
//! that terminates its TLS.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::ClientHello;
pub use rustls::server::ResolvesServerCert;
use rustls::sign::CertifiedKey;
use rustls::version::TLS13;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocols offered, most preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} does not hold a usable PEM private key: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a development certificate: {0}")]
    Generate(String),
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
}

/// The process-wide provider: aws-lc-rs. Safe to call more than once.
pub fn install_crypto_provider() -> Arc<CryptoProvider> {
    // Err means a provider is installed already (by an earlier call): keep it.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// A TLS 1.3-only server configuration offering h2 and http/1.1.
pub fn server_config(
    certificates: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = install_crypto_provider();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Where the serving certificate chain and its private key are read from (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificate served to new connections, replaced when its files change.
pub struct ReloadingCertificate {
    files: CertificateFiles,
    current: RwLock<Loaded>,
}

struct Loaded {
    key: Arc<CertifiedKey>,
    /// The PEM bytes it was built from, to notice a change.
    source: (Vec<u8>, Vec<u8>),
}

impl fmt::Debug for ReloadingCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertificate")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingCertificate {
    /// Loads the pair; start-up fails if it is unusable.
    pub fn load(files: CertificateFiles) -> Result<Arc<Self>, TlsError> {
        let source = read_pair(&files)?;
        let key = certified_key(&files, &source)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Loaded { key, source }),
        }))
    }

    /// Re-reads the files and switches to them if they changed. Returns whether it switched.
    /// On error the previous certificate stays in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let source = read_pair(&self.files)?;
        if self.read_current(|loaded| loaded.source == source) {
            return Ok(false);
        }
        let key = certified_key(&self.files, &source)?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Loaded { key, source };
        Ok(true)
    }

    /// Reloads every `interval` and on SIGHUP, for as long as the returned task runs. The
    /// SIGHUP handler is in place when this returns (without one, SIGHUP ends the process).
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        let mut hangups = hangup_signals();
        tokio::spawn(async move {
            // The first check one interval from now: the files were just read.
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let trigger = tokio::select! {
                    _ = ticks.tick() => "file check",
                    () = next_hangup(&mut hangups) => "SIGHUP",
                };
                match this.reload() {
                    Ok(true) => tracing::info!(
                        trigger,
                        cert = %this.files.cert.display(),
                        "TLS certificate reloaded"
                    ),
                    Ok(false) => {}
                    Err(error) => tracing::error!(
                        trigger,
                        error = %error,
                        "TLS certificate not reloaded; the previous one stays in use"
                    ),
                }
            }
        })
    }

    fn read_current<T>(&self, f: impl FnOnce(&Loaded) -> T) -> T {
        f(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read_current(|loaded| Arc::clone(&loaded.key)))
    }
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

#[cfg(unix)]
fn hangup_signals() -> Hangups {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn hangup_signals() -> Hangups {}

#[cfg(unix)]
async fn next_hangup(signals: &mut Hangups) {
    let received = match signals {
        Some(signal) => signal.recv().await.is_some(),
        None => false,
    };
    if !received {
        std::future::pending::<()>().await;
    }
}
#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangups) {
    std::future::pending().await
}

fn read_pair(files: &CertificateFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(&files.cert)?, read(&files.key)?))
}

fn certified_key(
    files: &CertificateFiles,
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: files.cert.clone(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|error| TlsError::Key {
        path: files.key.clone(),
        reason: error.to_string(),
    })?;
    let provider = install_crypto_provider();
    let certified =
        CertifiedKey::from_der(chain, key, &provider).map_err(|error| TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
            reason: error.to_string(),
        })?;
    Ok(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::dev_ca;

    fn pair(dir: &Path) -> CertificateFiles {
        let generated = dev_ca::ensure(dir, &["localhost".to_owned()]).expect("dev certificate");
        generated.server
    }

    #[test]
    fn only_tls_1_3_is_offered_with_h2_and_http_1_1() {
        let dir = tempfile::tempdir().expect("temp dir");
        let certificate = ReloadingCertificate::load(pair(dir.path())).expect("load");
        let config = server_config(certificate).expect("config");
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        // The config only carries versions it was built with; a 1.2 handshake is refused in the
        // wire tests of the app.
        assert!(config.max_early_data_size == 0, "no 0-RTT replay window");
    }

    #[test]
    fn an_unchanged_pair_is_not_reloaded_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = pair(dir.path());
        let certificate = ReloadingCertificate::load(files.clone()).expect("load");
        assert!(!certificate.reload().expect("reload"));

        std::fs::write(&files.key, "not a key").expect("write");
        assert!(certificate.reload().is_err());
        let served = certificate.read_current(|loaded| loaded.key.cert[0].clone());
        assert!(
            !served.is_empty(),
            "the previous certificate is still served"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let first = tempfile::tempdir().expect("temp dir");
        let second = tempfile::tempdir().expect("temp dir");
        let a = pair(first.path());
        let b = pair(second.path());
        let mixed = CertificateFiles {
            cert: a.cert,
            key: b.key,
        };
        assert!(matches!(
            ReloadingCertificate::load(mixed),
            Err(TlsError::Mismatch { .. })
        ));
    }
}
