//! A local development CA and the certificate it signs, so the service speaks HTTPS from its
//! first run (TLS-1), with no `--insecure` habit to unlearn.
//!
//! [`ensure`] creates, in one folder (`data/tls` by default):
//! - `ca.pem` / `ca-key.pem`: a CA valid for ten years whose name constraints permit only the
//!   configured development hosts (`localhost`, `127.0.0.0/8`, `::1`, the public origin's host).
//!   Trusting it in a browser or an OS store therefore cannot vouch for any other site.
//! - `server.pem` / `server-key.pem`: the serving certificate for those hosts, valid for 88
//!   days including a day of back-dating (under the 90 days of Mozilla's "modern" profile, which
//!   sslyze checks in CI) and renewed after 60.
//!
//! Later runs reuse the files; a change of hosts creates a new CA. Private keys are written
//! with mode 0600. Production never uses this: it loads its certificate from files
//! (`tls.mode = "files"`) or sits behind a TLS-terminating proxy.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints,
};

use super::tls::{CertificateFiles, TlsError};

/// The common name of every development CA this module creates.
pub const CA_COMMON_NAME: &str = "Rampart local development CA";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
const SERVER_VALIDITY: Duration = Duration::from_secs(87 * 24 * 60 * 60);
const SERVER_RENEW_AFTER: Duration = Duration::from_secs(60 * 24 * 60 * 60);

/// The files [`ensure`] maintains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCertificates {
    /// The CA certificate clients trust (`curl --cacert`, reqwest `add_root_certificate`).
    pub ca_cert: PathBuf,
    /// The serving certificate and key.
    pub server: CertificateFiles,
}

impl DevCertificates {
    fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.pem"),
            server: CertificateFiles {
                cert: dir.join("server.pem"),
                key: dir.join("server-key.pem"),
            },
        }
    }
}

/// Creates the CA and serving certificate in `dir` for `hosts`, or reuses them.
pub fn ensure(dir: &Path, hosts: &[String]) -> Result<DevCertificates, TlsError> {
    let files = DevCertificates::in_dir(dir);
    let ca_key_path = dir.join("ca-key.pem");
    let hosts_path = dir.join("hosts");
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|h| (*h).to_owned())
        .chain(hosts.iter().cloned())
        .collect();
    hosts.sort();
    hosts.dedup();
    let hosts_line = hosts.join(" ");

    std::fs::create_dir_all(dir).map_err(|source| write_error(dir, source))?;
    let same_hosts = std::fs::read_to_string(&hosts_path).is_ok_and(|h| h.trim() == hosts_line);
    let ca_present = files.ca_cert.is_file() && ca_key_path.is_file();

    let ca_key = if same_hosts && ca_present {
        let pem = std::fs::read_to_string(&ca_key_path).map_err(|source| TlsError::Read {
            path: ca_key_path.clone(),
            source,
        })?;
        KeyPair::from_pem(&pem).map_err(|error| TlsError::Key {
            path: ca_key_path.clone(),
            reason: error.to_string(),
        })?
    } else {
        let key = KeyPair::generate().map_err(generate_error)?;
        let ca = ca_params(&hosts)?
            .self_signed(&key)
            .map_err(generate_error)?;
        write(&ca_key_path, &key.serialize_pem(), true)?;
        write(&files.ca_cert, &ca.pem(), false)?;
        // A new CA invalidates the serving certificate.
        let _ = std::fs::remove_file(&files.server.cert);
        key
    };

    if needs_new_server_certificate(&files.server) {
        let issuer = Issuer::new(ca_params(&hosts)?, &ca_key);
        let key = KeyPair::generate().map_err(generate_error)?;
        let server = server_params(&hosts)?
            .signed_by(&key, &issuer)
            .map_err(generate_error)?;
        write(&files.server.key, &key.serialize_pem(), true)?;
        write(&files.server.cert, &server.pem(), false)?;
    }
    write(&hosts_path, &hosts_line, false)?;
    Ok(files)
}

fn needs_new_server_certificate(server: &CertificateFiles) -> bool {
    let age = std::fs::metadata(&server.cert)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok());
    !server.key.is_file() || age.is_none_or(|age| age > SERVER_RENEW_AFTER)
}

fn ca_params(hosts: &[String]) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: hosts.iter().map(|host| permitted(host)).collect(),
        excluded_subtrees: Vec::new(),
    });
    set_validity(&mut params, CA_VALIDITY);
    Ok(params)
}

fn permitted(host: &str) -> GeneralSubtree {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_loopback() => {
            GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([127, 0, 0, 0], 8))
        }
        Ok(IpAddr::V4(ip)) => {
            GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix(ip.octets(), 32))
        }
        Ok(IpAddr::V6(ip)) => {
            GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix(ip.octets(), 128))
        }
        Err(_) => GeneralSubtree::DnsName(host.to_owned()),
    }
}

fn server_params(hosts: &[String]) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(hosts.to_vec()).map_err(generate_error)?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, SERVER_VALIDITY);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    // Back-dated by a day so a client whose clock runs slightly behind accepts it.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(24 * 60 * 60);
    params.not_after = now + validity;
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    use std::io::Write;
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|source| write_error(path, source))
}

fn write_error(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Write {
        path: path.to_owned(),
        source,
    }
}

fn generate_error(error: rcgen::Error) -> TlsError {
    TlsError::Generate(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ensure(dir.path(), &[]).expect("first run");
        let ca = std::fs::read(&first.ca_cert).expect("ca");
        let server = std::fs::read(&first.server.cert).expect("server");

        let second = ensure(dir.path(), &[]).expect("second run");
        assert_eq!(first, second);
        assert_eq!(std::fs::read(&second.ca_cert).expect("ca"), ca);
        assert_eq!(std::fs::read(&second.server.cert).expect("server"), server);
    }

    #[test]
    fn other_hosts_get_a_new_ca() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ensure(dir.path(), &[]).expect("first run");
        let ca = std::fs::read(&first.ca_cert).expect("ca");
        let second = ensure(dir.path(), &["api.dev.test".to_owned()]).expect("second run");
        assert_ne!(std::fs::read(&second.ca_cert).expect("ca"), ca);
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let files = ensure(dir.path(), &[]).expect("run");
        for key in [dir.path().join("ca-key.pem"), files.server.key] {
            let mode = std::fs::metadata(&key).expect("key").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }
}
