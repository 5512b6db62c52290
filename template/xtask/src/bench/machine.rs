//! The machine the bench ran on, for the report: CPU, cores, memory, kernel, and the versions
//! of rustc and wrk.

use std::process::Command;

use serde_json::{Value, json};

use super::procfs::field_kib;

/// The machine, as `bench.json` reports it.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = field_kib(&meminfo, "MemTotal:").map(|kib| (kib as f64 / 1048576.0).round());
    let first_line = |program: &str, arg: &str| {
        Command::new(program).arg(arg).output().ok().map(|output| {
            let text = if output.stdout.is_empty() {
                output.stderr
            } else {
                output.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
    };
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "memory_gib": memory_gib,
        "kernel": first_line("uname", "-r"),
        "rustc": first_line("rustc", "-V"),
        "wrk": first_line("wrk", "--version").map(|line| line.split(" [").next().unwrap_or_default().to_owned()),
    })
}
