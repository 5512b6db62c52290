//! Clients of the service under test: HTTP clients trusting its development CA, with a bearer
//! token or from another loopback address, raw TLS configurations limited to one protocol
//! version, and readers of responses.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The protocol versions of a client limited to TLS 1.3, or to TLS 1.2.
pub const TLS_1_3: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
pub const TLS_1_2: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A rustls client that trusts `ca_cert` and speaks only `versions`, with ALPN http/1.1.
pub fn tls_client_config(
    ca_cert: Option<&Path>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca_cert) = ca_cert {
        for cert in CertificateDer::pem_file_iter(ca_cert).expect("read the CA") {
            roots.add(cert.expect("a PEM certificate")).expect("a CA");
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// An HTTP client that trusts only `ca_cert` (when given) and follows no redirects.
pub fn client_trusting(ca_cert: Option<&Path>) -> reqwest::Client {
    trusting(no_redirects(), ca_cert)
}

/// A client whose connections leave from `local` (any 127.0.0.x reaches the service on
/// 127.0.0.1), to act as many clients from one machine.
pub fn client_from(ca_cert: Option<&Path>, local: std::net::IpAddr) -> reqwest::Client {
    trusting(no_redirects().local_address(local), ca_cert)
}

/// A client that sends `token` as the bearer credential on every request.
pub fn client_with_token(ca_cert: Option<&Path>, token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let mut value =
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
    value.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, value);
    trusting(no_redirects().default_headers(headers), ca_cert)
}

fn no_redirects() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// `builder`, trusting only `ca_cert` when given, built.
fn trusting(mut builder: reqwest::ClientBuilder, ca_cert: Option<&Path>) -> reqwest::Client {
    if let Some(ca_cert) = ca_cert {
        let pem = std::fs::read(ca_cert).expect("read the development CA");
        let ca = reqwest::Certificate::from_pem(&pem).expect("a PEM certificate");
        builder = builder.tls_certs_only([ca]);
    }
    builder.build().expect("client")
}

/// Reads a JSON body, failing with the raw text when it is not JSON.
pub async fn json_body(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON body, got: {text}"))
}

/// A response header as text ("" when absent or not text).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
