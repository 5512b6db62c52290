//! What the bench reads of a process from `/proc` (Linux): resident memory, its anonymous part,
//! and CPU time; and waiting until a process is idle.

use std::process::Command;
use std::time::{Duration, Instant};

/// The number after `name` in a `/proc` status-like `text` (a size in KiB).
pub fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Resident memory of `pid` in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of `pid`'s resident memory in KiB (heap and stacks; the rest is the
/// binary's code and other files, shared with the page cache).
pub fn anonymous_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon:")
}

/// A size in `/proc/<pid>/status`, in KiB (0 once the process is gone).
fn status_kib(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| field_kib(&status, name))
        .unwrap_or_default()
}

/// User and system CPU time of `pid` so far, in seconds.
pub fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let tick = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_default()
    };
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 from field 3.
    (tick(11) + tick(12)) / ticks
}

/// The kernel's clock ticks a second, in which `/proc` counts CPU time.
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Waits (at most 30 s) until `pid` is nearly idle: background work of one run (hashes still
/// queued, connections closing) must not be billed to the next.
pub fn settle(pid: u32, ticks: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = cpu_seconds(pid, ticks);
        std::thread::sleep(Duration::from_millis(300));
        let busy = cpu_seconds(pid, ticks) - before;
        if busy < 0.015 || Instant::now() > deadline {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_from_status_lines() {
        let status = "Name:\tapp\nVmRSS:\t   2048 kB\nRssAnon:\t    512 kB\n";
        assert_eq!(field_kib(status, "VmRSS:"), Some(2048));
        assert_eq!(field_kib(status, "RssAnon:"), Some(512));
        assert_eq!(field_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let pid = std::process::id();
        assert!(rss_kib(pid) > 0);
        assert!(anonymous_kib(pid) > 0);
        let busy_until = Instant::now() + Duration::from_millis(50);
        while Instant::now() < busy_until {}
        assert!(cpu_seconds(pid, clock_ticks_per_second()) > 0.0);
    }
}
