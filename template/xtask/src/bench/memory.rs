//! Resident memory: at idle, once the service is started and ready, and under a flood of
//! distinct client addresses (each a key of the rate limiter), then after housekeeping.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::instances::{Instances, Process};
use super::options::BenchOptions;
use super::procfs::{anonymous_kib, rss_kib, settle};
use super::wrk::wrk_result;

/// Distinct client addresses of the key flood (a full run; a smoke run sends fewer).
const FLOOD_KEYS: u32 = 100_000;

/// Resident memory at idle: started and ready, nothing asked of it yet.
pub struct Idle {
    /// The service's.
    pub rss_kib: u64,
    /// The anonymous part of the service's (heap, stacks).
    pub anonymous_kib: u64,
    /// The bare baseline's.
    pub baseline_rss_kib: u64,
}

impl Idle {
    /// Measured once the service has settled.
    pub fn measure(instances: &Instances, ticks: f64) -> Self {
        settle(instances.memory.pid(), ticks);
        Self {
            rss_kib: rss_kib(instances.memory.pid()),
            anonymous_kib: anonymous_kib(instances.memory.pid()),
            baseline_rss_kib: rss_kib(instances.baseline.pid()),
        }
    }
}

/// The flood of distinct client keys: anonymous requests, each from a new address, until every
/// address was seen; resident memory before, at the peak, and after the store's housekeeping
/// (which drops idle keys every minute) had its chance.
pub fn key_flood(
    service: &Process,
    script: &Path,
    options: &BenchOptions,
    ticks: f64,
) -> Result<Value> {
    let keys = if options.smoke { 2_000 } else { FLOOD_KEYS };
    settle(service.pid(), ticks);
    let before = rss_kib(service.pid());
    let mut peak = before;
    let mut sent = 0;
    let mut seconds = 0.0;
    // In runs of two seconds, each going on from the address where the last one stopped, until
    // every address has been sent once.
    while sent < u64::from(keys) {
        let mut child = Command::new("wrk")
            .args(["-t1", "--timeout", "10s", "-d2s", "-s"])
            .arg(script)
            .arg(format!("-c{}", options.connections))
            .arg(format!("{}/v1/bench/ping", service.base_url))
            .env("BENCH_KEYS", keys.to_string())
            .env("BENCH_FIRST_KEY", sent.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run wrk")?;
        while child.try_wait()?.is_none() {
            peak = peak.max(rss_kib(service.pid()));
            std::thread::sleep(Duration::from_millis(50));
        }
        let run = wrk_result(&child.wait_with_output()?)?;
        if run.requests == 0 {
            bail!("the key flood sent nothing");
        }
        if run.unexpected > 0 {
            bail!(
                "{} of the key flood's answers were not 401: its addresses were not each \
                 charged as an anonymous client",
                run.unexpected
            );
        }
        sent += run.requests;
        seconds += run.seconds;
    }
    peak = peak.max(rss_kib(service.pid()));
    // Every request is answered 401 (no credential), charged to its address's anonymous bucket.
    let distinct = sent.min(u64::from(keys));
    let after = if options.smoke {
        None
    } else {
        // Housekeeping runs every 60 s; give it two chances.
        let deadline = Instant::now() + Duration::from_secs(130);
        let mut lowest = rss_kib(service.pid());
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            lowest = lowest.min(rss_kib(service.pid()));
        }
        Some(lowest)
    };
    Ok(json!({
        "distinct_addresses": distinct,
        "requests": sent,
        "seconds": seconds,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "rss_after_kib": after,
    }))
}
