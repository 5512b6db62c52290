//! The service. Reading order:
//!
//! 1. [`config`]: typed, layered settings and the rules that refuse unsafe ones;
//! 2. [`startup`]: [`startup::App::build`] and `startup::routes`, the middleware stack in order;
//! 3. [`api`]: the operations, one module per OpenAPI tag, and [`auth`], who may call them;
//!    [`policy`]: the tables of public, sensitive and rate-limit-exempt operations;
//! 4. [`error`]: the one mapping from errors to JSON responses;
//! 5. [`persistence`]: the pool, migrations and entities;
//! 6. [`telemetry`], structured logs.
//!
//! The security controls themselves live in the `security` crate, one module per control.

pub mod api;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod mail;
pub mod persistence;
pub mod policy;
pub mod rate_limits;
pub mod startup;
pub mod telemetry;
