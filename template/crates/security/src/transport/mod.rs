//! Transport security controls (checklist section "Transport Security", TLS-*).

pub mod secure_headers;
