//! Integration tests: each boots the real service on port 0 with a fresh database and speaks
//! HTTP to it. One test binary, one module per area.

mod config;
mod headers;
mod health;
mod helpers;
mod limits;
mod migrations;
mod openapi;
mod shutdown;
mod users;
mod validation;
