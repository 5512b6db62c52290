//! Requests per second, latency and the service's CPU time and peak memory of every
//! configuration: a warm-up, then rounds over all of them, interleaved so that drift of the
//! machine affects them alike, each on instances that have settled.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;

use super::configurations::Config;
use super::credentials::Credentials;
use super::instances::Instances;
use super::isolation::Flood;
use super::options::BenchOptions;
use super::procfs::settle;
use super::wrk::{Run, Wrk};
use crate::cmd;

/// Every round's measurements.
pub struct Rounds {
    /// Each configuration's runs, in the order of the configurations.
    pub runs: Vec<Vec<Run>>,
    /// The wrong-login floods (g) ran under.
    pub floods: Vec<Value>,
}

/// Warms every instance up, then measures `configs` for `options.rounds` rounds; the clients'
/// `credentials` are obtained afresh each round.
pub fn measure(
    instances: &Instances,
    configs: &[Config],
    wrk: &Wrk,
    mut credentials: Credentials,
    data: &Path,
    options: &BenchOptions,
    ticks: f64,
) -> Result<Rounds> {
    // Warm-up: connections, caches and the allocator of every process, unmeasured.
    for config in configs {
        if let Some(process) = instances.of(config.instance) {
            wrk.measure(process, config, &credentials, 1, ticks)?;
        }
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
    let mut floods = Vec::new();
    for round in 0..options.rounds {
        cmd::step(&format!("bench: round {} of {}", round + 1, options.rounds));
        // A fresh token each round: one lives 15 minutes, a long run outlives it.
        credentials = Credentials::obtain(&instances.memory, data)?;
        // Each round starts with another configuration, so none always runs first.
        let count = configs.len();
        for offset in 0..count {
            let index = (offset + round as usize) % count;
            let config = &configs[index];
            let Some(process) = instances.of(config.instance) else {
                continue;
            };
            // Work left over from the last run, on any instance, must not land in this one.
            for instance in instances.all() {
                settle(instance.pid(), ticks);
            }
            let run = if config.under_flood {
                let flood = Flood::start(wrk, process, &credentials, options.seconds + 2)?;
                std::thread::sleep(Duration::from_secs(1));
                let run = wrk.measure(process, config, &credentials, options.seconds, ticks);
                floods.push(flood.finish()?);
                run?
            } else {
                wrk.measure(process, config, &credentials, options.seconds, ticks)?
            };
            eprintln!(
                "  ({}) {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>6.0} us CPU/req",
                config.id,
                run.requests as f64 / run.seconds,
                run.p50_us / 1000.0,
                run.p99_us / 1000.0,
                run.cpu_seconds * 1e6 / run.requests.max(1) as f64
            );
            // A smoke run's debug build hashes too slowly for 32 logins at once: some wait past
            // their slot and are answered 503. Every other error fails either run.
            let tolerated = options.smoke && config.id == "e";
            if run.errors > 0 && !tolerated {
                bail!(
                    "({}) {} of {} requests failed or were refused: the measurement would \
                     not be of the configuration described (see {})",
                    config.id,
                    run.errors,
                    run.requests,
                    data.display()
                );
            }
            runs[index].push(run);
        }
    }
    Ok(Rounds { runs, floods })
}
