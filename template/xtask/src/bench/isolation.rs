//! The wrong-login flood that (g) is measured under: [`FLOOD_CONNECTIONS`] connections posting
//! a wrong password to the same instance, in the background, and how fast it was answered.

use std::process::Child;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::configurations;
use super::credentials::Credentials;
use super::instances::Process;
use super::summary::median;
use super::wrk::{Wrk, wrk_result};

/// Connections posting wrong passwords during (g).
pub const FLOOD_CONNECTIONS: u32 = 200;

/// The wrong-login flood of (g), running in the background.
pub struct Flood(Child);

impl Flood {
    /// [`FLOOD_CONNECTIONS`] connections posting a wrong password to `process`, for `seconds`.
    pub fn start(
        wrk: &Wrk,
        process: &Process,
        credentials: &Credentials,
        seconds: u32,
    ) -> Result<Self> {
        let config = configurations::wrong_login(credentials);
        let mut command = wrk.command(&config, credentials);
        command
            .arg(format!("-c{FLOOD_CONNECTIONS}"))
            .arg(format!("-d{seconds}s"))
            .arg(format!("{}{}", process.base_url, config.path));
        Ok(Self(command.spawn().context("cannot run wrk")?))
    }

    /// Waits for the flood to end; its throughput and latency.
    pub fn finish(self) -> Result<Value> {
        let output = self.0.wait_with_output()?;
        let result = wrk_result(&output)?;
        Ok(json!({
            "requests": result.requests,
            "requests_per_second": result.requests as f64 / result.seconds,
            "p50_ms": result.p50_us / 1000.0,
            "p99_ms": result.p99_us / 1000.0,
        }))
    }
}

/// The floods of every round: their median throughput and p99 latency.
pub fn summarise(runs: &[Value]) -> Value {
    json!({
        "connections": FLOOD_CONNECTIONS,
        "requests_per_second": median(runs.iter().filter_map(|run| run["requests_per_second"].as_f64()).collect()),
        "p99_ms": median(runs.iter().filter_map(|run| run["p99_ms"].as_f64()).collect()),
    })
}
