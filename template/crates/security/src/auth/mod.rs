//! Authentication and authorization controls (AUTH-*).

pub mod access_control;
pub mod issuer_keys;
pub mod jwt;
pub mod key_wrapping;
pub mod oidc;
pub mod password;
pub mod secrets;
