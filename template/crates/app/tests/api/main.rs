//! Integration tests: each boots the real service on port 0 with a fresh database and speaks
//! HTTP to it. One test binary, one module per area. `backend` says which database and
//! rate-limit store they run on.

mod anomaly;
mod api_keys;
mod audit_sink;
mod auth;
mod backend;
mod browser;
mod cli;
mod config;
mod connections;
mod cors;
mod headers;
mod health;
mod helpers;
mod leaks;
mod limits;
mod malformed;
mod metrics;
mod migrations;
mod notes;
mod oauth_audit;
mod oidc;
mod openapi;
mod payments;
mod rate_limits;
mod scale_out;
mod security_txt;
mod shutdown;
mod tokens;
mod transport;
mod users;
mod validation;
