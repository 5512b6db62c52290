//! Transport security controls (checklist section "Transport Security", TLS-*).

pub mod client_ip;
pub mod connection_limits;
pub mod cors;
pub mod dev_ca;
pub mod origin;
pub mod plaintext;
pub mod secure_headers;
pub mod server;
pub mod tls;
