//! The security controls of the service, one module per control, grouped by the sections of the
//! API security checklist (control ids as defined in the project's `docs/controls.md`).
//!
//! Every module here is free of application types: it holds its configuration, its poem
//! middleware and its unit tests, so it can be read, tested and reused on its own.
//!
//! Reading order:
//! 1. [`logging::request_id`]: the correlation id every response, log line and audit event carries.
//! 2. [`transport::secure_headers`]: the security headers of every response.
//! 3. [`input::body_limit`]: request body size and read-time limits.
//! 4. [`input::strict_json`]: JSON bodies parsed strictly and checked against the OpenAPI document.
//! 5. [`auth::jwt`]: bearer access tokens validated (signature by the key's own algorithm, time,
//!    issuer, audience, type) and issued by the built-in issuer.

pub mod auth;
pub mod disclosure;
pub mod input;
pub mod json_error;
pub mod logging;
pub mod monitoring;
pub mod operations;
pub mod rate_limit;
pub mod transport;
