//! A server configuration that accepts TLS 1.2 beside 1.3: the weakening of TLS-2. Built here,
//! with rustls's `tls12` feature that only this crate enables, so the template's service has no
//! TLS 1.2 code to fall back to.

use std::sync::Arc;

use security::transport::tls::{self, ALPN_PROTOCOLS, ResolvesServerCert, ServerConfig, TlsError};

/// `security::transport::tls::server_config`, with TLS 1.2 allowed.
pub fn server_config_accepting_tls12(
    certificates: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = tls::install_crypto_provider();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
