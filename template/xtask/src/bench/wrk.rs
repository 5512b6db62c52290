//! The load generator: wrk, run with the request script for one measurement of a configuration,
//! and its report read back.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::configurations::Config;
use super::credentials::Credentials;
use super::instances::Process;
use super::procfs::{cpu_seconds, rss_kib};
use crate::cmd;

/// Whether wrk is on the PATH.
pub fn wrk_installed() -> bool {
    cmd::succeeds(Command::new("wrk").arg("--version")) || {
        // wrk prints its version and exits 1 for `--version`.
        Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("wrk"))
    }
}

/// Without wrk a local run says what it skips; with `REQUIRE_BENCH_TOOLS` set (CI) it fails.
pub fn missing_wrk() -> Result<()> {
    let install = "install wrk (Debian and Ubuntu: apt-get install wrk)";
    if std::env::var_os("REQUIRE_BENCH_TOOLS").is_some() {
        bail!("the bench needs wrk: {install}");
    }
    eprintln!("skipped the bench: {install}");
    Ok(())
}

/// One wrk measurement.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub requests: u64,
    /// Answers the script did not expect (the key flood: anything but 401).
    pub unexpected: u64,
    pub seconds: f64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

/// wrk with the request script.
pub struct Wrk {
    pub script: PathBuf,
    pub connections: u32,
}

impl Wrk {
    /// wrk sending `config`'s request (its connections, duration and URL still to add).
    pub fn command(&self, config: &Config, credentials: &Credentials) -> Command {
        let mut command = Command::new("wrk");
        command
            .args(["-t1", "--timeout", "10s", "-s"])
            .arg(&self.script)
            .env("BENCH_METHOD", config.method)
            .env_remove("BENCH_BODY")
            .env_remove("BENCH_CONTENT_TYPE")
            .env_remove("BENCH_TOKEN");
        if let Some(body) = &config.body {
            command.env("BENCH_BODY", body);
        }
        if let Some(content_type) = config.content_type {
            command.env("BENCH_CONTENT_TYPE", content_type);
        }
        if config.bearer {
            command.env("BENCH_TOKEN", &credentials.access_token);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// One measurement of `config` for `seconds`, with the process's CPU time and peak memory.
    pub fn measure(
        &self,
        process: &Process,
        config: &Config,
        credentials: &Credentials,
        seconds: u32,
        ticks: f64,
    ) -> Result<Run> {
        let mut command = self.command(config, credentials);
        command
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{seconds}s"))
            .arg(format!("{}{}", process.base_url, config.path));
        let cpu_before = cpu_seconds(process.pid(), ticks);
        let mut child = command.spawn().context("cannot run wrk")?;
        let mut peak_rss_kib = 0;
        while child.try_wait()?.is_none() {
            peak_rss_kib = peak_rss_kib.max(rss_kib(process.pid()));
            std::thread::sleep(Duration::from_millis(50));
        }
        let cpu = cpu_seconds(process.pid(), ticks) - cpu_before;
        let mut run = wrk_result(&child.wait_with_output()?)?;
        run.cpu_seconds = cpu;
        run.peak_rss_kib = peak_rss_kib.max(rss_kib(process.pid()));
        Ok(run)
    }
}

/// The `BENCH_RESULT` line the scripts print when wrk is done.
pub fn wrk_result(output: &std::process::Output) -> Result<Run> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("BENCH_RESULT "))
        .with_context(|| {
            format!(
                "wrk reported nothing:\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let value: Value = serde_json::from_str(line)?;
    let number = |name: &str| value[name].as_f64().unwrap_or_default();
    Ok(Run {
        requests: value["requests"].as_u64().unwrap_or_default(),
        seconds: number("duration_us") / 1e6,
        errors: value["errors"].as_u64().unwrap_or_default(),
        unexpected: value["unexpected"].as_u64().unwrap_or_default(),
        p50_us: number("p50_us"),
        p99_us: number("p99_us"),
        ..Run::default()
    })
}
