//! TLS-1, TLS-2: the handshake. Only TLS 1.3 may be served (a TLS 1.2-only client must be
//! refused) and the certificate must chain to a trusted root and name the host.
//!
//! TLS 1.0 and 1.1 cannot be offered by rustls; a server that refuses 1.2 refuses them too, and
//! sslyze checks them separately in CI.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::target::Target;
use crate::{Check, Finding, Status};

pub const LEGACY_REFUSED: Check = Check {
    id: "tls.legacy-versions-refused",
    control: "TLS-2",
    title: "A client offering only TLS 1.2 is refused",
};
pub const TLS13_SERVED: Check = Check {
    id: "tls.1.3-served",
    control: "TLS-2",
    title: "TLS 1.3 is served",
};
pub const CERTIFICATE_VALID: Check = Check {
    id: "tls.certificate-valid",
    control: "TLS-1",
    title: "The certificate chains to a trusted root and is valid for the host",
};

/// What [`handshake`] says when the server refused the protocol version itself.
const PROTOCOL_VERSION_ALERT: &str = "the server sent a protocol_version alert";

pub async fn run(target: &Target) -> Vec<Finding> {
    if target.base.scheme() != "https" {
        let detail = format!("the base URL {} is not HTTPS", target.base);
        return [LEGACY_REFUSED, TLS13_SERVED, CERTIFICATE_VALID]
            .iter()
            .map(|check| Finding::new(check, Status::Fail, detail.clone()))
            .collect();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let probe = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map(|builder| {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(Arc::clone(
                        &provider,
                    ))))
                    .with_no_client_auth()
            })
    };
    let mut findings = Vec::new();

    findings.push(match probe(&[&rustls::version::TLS12]) {
        Ok(config) => match handshake(target, config).await {
            Ok(version) => Finding::new(
                &LEGACY_REFUSED,
                Status::Fail,
                format!("a TLS 1.2-only client completed a handshake ({version})"),
            ),
            // Only a protocol_version alert says the version itself was refused; another
            // failure (a cipher suite rustls does not offer, a timeout) proves nothing.
            Err(error) if error == PROTOCOL_VERSION_ALERT => Finding::new(
                &LEGACY_REFUSED,
                Status::Pass,
                format!("a TLS 1.2-only client was refused: {error}"),
            ),
            Err(error) => Finding::new(
                &LEGACY_REFUSED,
                Status::NotApplicable,
                format!(
                    "a TLS 1.2-only client failed without a protocol_version alert, so the \
                     version refusal cannot be told apart: {error}"
                ),
            ),
        },
        Err(error) => Finding::new(&LEGACY_REFUSED, Status::NotApplicable, error.to_string()),
    });

    findings.push(match probe(&[&rustls::version::TLS13]) {
        Ok(config) => match handshake(target, config).await {
            Ok(version) => {
                Finding::new(&TLS13_SERVED, Status::Pass, format!("negotiated {version}"))
            }
            Err(error) => Finding::new(
                &TLS13_SERVED,
                Status::Fail,
                format!("a TLS 1.3 client was refused: {error}"),
            ),
        },
        Err(error) => Finding::new(&TLS13_SERVED, Status::NotApplicable, error.to_string()),
    });

    findings.push(match verified_config(target, provider) {
        Ok((config, roots)) => match handshake(target, config).await {
            Ok(_) => Finding::new(
                &CERTIFICATE_VALID,
                Status::Pass,
                format!("verified for {} against {roots}", target.host()),
            ),
            Err(error) => Finding::new(
                &CERTIFICATE_VALID,
                Status::Fail,
                format!("not valid for {} against {roots}: {error}", target.host()),
            ),
        },
        Err(error) => Finding::new(&CERTIFICATE_VALID, Status::NotApplicable, error),
    });
    findings
}

/// The trust the caller asked for: the given CA file, else the system's roots.
fn verified_config(
    target: &Target,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<(ClientConfig, &'static str), String> {
    let mut roots = RootCertStore::empty();
    let source = if let Some(pem) = &target.ca_pem {
        for certificate in CertificateDer::pem_slice_iter(pem) {
            let certificate = certificate.map_err(|error| format!("the CA file: {error}"))?;
            roots
                .add(certificate)
                .map_err(|error| format!("the CA file: {error}"))?;
        }
        "the given CA file"
    } else {
        for certificate in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(certificate);
        }
        "the system's roots"
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((config, source))
}

/// Connects and completes a handshake; the negotiated version.
async fn handshake(target: &Target, config: ClientConfig) -> Result<String, String> {
    let name = ServerName::try_from(target.host().to_owned()).map_err(|error| error.to_string())?;
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        TcpStream::connect((target.host(), target.port())),
    )
    .await
    .map_err(|_| "connection timed out".to_owned())?
    .map_err(|error| format!("cannot connect: {error}"))?;
    let connector = TlsConnector::from(Arc::new(config));
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        connector.connect(name, tcp),
    )
    .await
    .map_err(|_| "handshake timed out".to_owned())?
    .map_err(|error| {
        let refused_version = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .is_some_and(|inner| {
                matches!(
                    inner,
                    rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
                )
            });
        if refused_version {
            PROTOCOL_VERSION_ALERT.to_owned()
        } else {
            error.to_string()
        }
    })?;
    let (_, connection) = stream.get_ref();
    Ok(connection
        .protocol_version()
        .map_or_else(|| "an unknown version".to_owned(), |v| format!("{v:?}")))
}

/// Accepts any certificate, so the version probes learn what the server speaks even when the
/// scan does not trust its certificate (that is the certificate check's finding). Only these
/// probes use it; nothing is sent over such a connection.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
