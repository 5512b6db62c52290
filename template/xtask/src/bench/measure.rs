//! Everything measured after the build, in order: the data folder prepared, the password hashing
//! parameters read, the instances started (start-up time) and left idle (memory at idle), every
//! configuration measured round by round, then the key flood on the service alone.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use super::budgets;
use super::configurations;
use super::credentials::Credentials;
use super::instances::{Instances, Setup};
use super::isolation;
use super::login;
use super::memory::{self, Idle};
use super::options::BenchOptions;
use super::procfs::clock_ticks_per_second;
use super::summary::summarise;
use super::throughput;
use super::wrk::Wrk;
use super::wrk_scripts::Scripts;
use crate::cmd;

/// What one run measured, as the report states it.
pub struct Measurements {
    /// The service's time from spawn to ready.
    pub startup: Duration,
    pub idle: Idle,
    /// What `bench-service params` printed.
    pub password_hashing: Value,
    /// Each configuration's summary.
    pub configurations: Vec<Value>,
    /// The wrong-login flood (g) ran under, summarised.
    pub wrong_login_flood: Value,
    /// Resident memory before, during and after the key flood.
    pub key_flood: Value,
    /// Each budget's measured value and verdict.
    pub budgets: Vec<Value>,
}

/// Measures the benchmark service of `setup` with the wrk `scripts`.
pub fn run(setup: Setup, scripts: &Scripts, options: &BenchOptions) -> Result<Measurements> {
    let data = setup.data;
    cmd::step("bench: preparing the service (started once, stopped when it listens)");
    setup.prepare()?;
    let password_hashing = login::password_hashing_params(setup)?;

    cmd::step("bench: starting the baseline and the service");
    let (instances, startup) = Instances::start(setup)?;
    let ticks = clock_ticks_per_second();
    let idle = Idle::measure(&instances, ticks);
    let credentials = Credentials::obtain(&instances.memory, data)?;
    let configs = configurations::all(&credentials, instances.redis.is_some());
    let wrk = Wrk {
        script: scripts.request.clone(),
        connections: options.connections,
    };
    let rounds = throughput::measure(
        &instances,
        &configs,
        &wrk,
        credentials,
        data,
        options,
        ticks,
    )?;
    let Instances {
        baseline,
        memory: service,
        redis,
    } = instances;
    drop(baseline);
    drop(redis);

    cmd::step("bench: a flood of distinct client addresses");
    let key_flood = memory::key_flood(&service, &scripts.key_flood, options, ticks)?;

    let configurations: Vec<Value> = configs
        .iter()
        .zip(&rounds.runs)
        .map(|(config, runs)| summarise(config, runs))
        .collect();
    let budgets = budgets::judge(&configurations, idle.rss_kib, &key_flood, options.smoke);
    Ok(Measurements {
        startup,
        idle,
        password_hashing,
        configurations,
        wrong_login_flood: isolation::summarise(&rounds.floods),
        key_flood,
        budgets,
    })
}
