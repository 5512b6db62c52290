//! The report: `bench.json`, everything measured with the run's settings, and `bench.md`, the
//! same as tables (configurations, footprint, budgets) and a line on the machine.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

use super::isolation::FLOOD_CONNECTIONS;
use super::machine::machine;
use super::measure::Measurements;
use super::options::BenchOptions;

/// `bench.json`: the run's settings, the `builds` (or `null`) and the `measured`.
pub fn json(options: &BenchOptions, binary: &Path, builds: Value, measured: Measurements) -> Value {
    json!({
        "machine": machine(),
        "smoke": options.smoke,
        "seconds_per_run": options.seconds,
        "rounds": options.rounds,
        "connections": options.connections,
        "flood_connections": FLOOD_CONNECTIONS,
        "binary": binary.display().to_string(),
        "builds": builds,
        "startup_to_ready_ms": measured.startup.as_secs_f64() * 1000.0,
        "idle_rss_kib": measured.idle.rss_kib,
        "idle_anonymous_kib": measured.idle.anonymous_kib,
        "baseline_idle_rss_kib": measured.idle.baseline_rss_kib,
        "password_hashing": measured.password_hashing,
        "configurations": measured.configurations,
        "wrong_login_flood": measured.wrong_login_flood,
        "key_flood": measured.key_flood,
        "budgets": measured.budgets,
    })
}

/// Writes `bench.json` and `bench.md` into `out`, and prints the latter.
pub fn write(out: &Path, report: &Value) -> Result<()> {
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    let markdown = markdown(report);
    std::fs::write(out.join("bench.md"), &markdown)?;
    println!("{markdown}");
    eprintln!(
        "reports: {} and {}",
        out.join("bench.md").display(),
        out.join("bench.json").display()
    );
    Ok(())
}

/// `bench.md`: the report's tables.
fn markdown(report: &Value) -> String {
    let mut text = String::new();
    let number = |value: &Value, digits: usize| {
        value
            .as_f64()
            .map_or_else(|| "n/a".to_owned(), |value| format!("{value:.digits$}"))
    };
    let mib = |value: &Value| {
        value.as_f64().map_or_else(
            || "n/a".to_owned(),
            |kib| format!("{:.1} MiB", kib / 1024.0),
        )
    };
    if report["smoke"] == true {
        text.push_str("_Smoke run: the numbers prove the bench works and mean nothing._\n\n");
    }
    let _ = writeln!(
        text,
        "| Configuration | Request | req/s | p50 ms | p99 ms | CPU µs/req | Peak RSS |\n\
         |---|---|---:|---:|---:|---:|---:|"
    );
    for result in report["configurations"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "| ({}) {} | `{}` | {} | {} | {} | {} | {} |",
            result["id"].as_str().unwrap_or_default(),
            result["name"].as_str().unwrap_or_default(),
            result["request"].as_str().unwrap_or_default(),
            number(&result["requests_per_second"], 0),
            number(&result["p50_ms"], 2),
            number(&result["p99_ms"], 2),
            number(&result["cpu_us_per_request"], 0),
            mib(&result["peak_rss_kib"]),
        );
    }
    let builds = &report["builds"];
    let hashing = &report["password_hashing"];
    let flood = &report["key_flood"];
    let _ = writeln!(
        text,
        "\n| Footprint | |\n|---|---:|\n\
         | Resident memory at idle (of which anonymous: heap, stacks) | {} ({}) |\n\
         | Start-up to ready | {} ms |\n\
         | Release binary | {} |\n\
         | Clean release build | {} s |\n\
         | Incremental release build (one file of `app`) | {} s |\n\
         | Key flood: {} distinct addresses, RSS before / peak / after housekeeping | {} / {} / {} |\n\
         | Wrong-login flood during (g): {} connections | {} req/s |\n\
         | Argon2id | m = {} KiB, t = {}, p = {}; {} at once |",
        mib(&report["idle_rss_kib"]),
        mib(&report["idle_anonymous_kib"]),
        number(&report["startup_to_ready_ms"], 0),
        builds["release_binary_bytes"].as_f64().map_or_else(
            || "n/a".to_owned(),
            |bytes| format!("{:.1} MiB", bytes / 1024.0 / 1024.0)
        ),
        number(&builds["clean_build_seconds"], 0),
        number(&builds["incremental_build_seconds"], 0),
        flood["distinct_addresses"],
        mib(&flood["rss_before_kib"]),
        mib(&flood["rss_peak_kib"]),
        mib(&flood["rss_after_kib"]),
        report["flood_connections"],
        number(&report["wrong_login_flood"]["requests_per_second"], 0),
        hashing["memory_kib"],
        hashing["iterations"],
        hashing["parallelism"],
        hashing["max_concurrent"],
    );
    let _ = writeln!(
        text,
        "\n| Budget | Limit | Measured | Met |\n|---|---|---:|---|"
    );
    for budget in report["budgets"].as_array().into_iter().flatten() {
        let met = match budget["met"].as_bool() {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not judged",
        };
        let _ = writeln!(
            text,
            "| {} | {} | {} | {met} |",
            budget["budget"].as_str().unwrap_or_default(),
            budget["limit"].as_str().unwrap_or_default(),
            number(&budget["measured"], 2),
        );
    }
    let machine = &report["machine"];
    let _ = writeln!(
        text,
        "\nMachine: {}, {} cores, {} GiB, Linux {}; {}; {}. {} connections (the flood {}), \
         {} s per run, {} rounds interleaved, medians; wrk on the same machine.",
        machine["cpu"].as_str().unwrap_or("unknown CPU"),
        machine["cores"],
        machine["memory_gib"],
        machine["kernel"].as_str().unwrap_or_default(),
        machine["rustc"].as_str().unwrap_or_default(),
        machine["wrk"].as_str().unwrap_or_default(),
        report["connections"],
        report["flood_connections"],
        report["seconds_per_run"],
        report["rounds"],
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_markdown_has_a_row_for_each_configuration_and_budget() {
        let report = json!({
            "smoke": true,
            "configurations": [{
                "id": "a",
                "name": "baseline",
                "request": "GET /v1/bench/ping",
                "requests_per_second": 1234.4,
                "p50_ms": 0.123,
                "p99_ms": 1.5,
                "cpu_us_per_request": 6.0,
                "peak_rss_kib": 2048,
            }],
            "budgets": [{
                "budget": "full-stack p99 / baseline",
                "limit": "<= 1.25",
                "measured": 1.1,
                "met": null,
            }],
        });
        let text = markdown(&report);
        assert!(text.starts_with("_Smoke run"), "{text}");
        assert!(
            text.contains(
                "| (a) baseline | `GET /v1/bench/ping` | 1234 | 0.12 | 1.50 | 6 | 2.0 MiB |"
            ),
            "{text}"
        );
        assert!(
            text.contains("| full-stack p99 / baseline | <= 1.25 | 1.10 | not judged |"),
            "{text}"
        );
        assert!(text.contains("| Release binary | n/a |"), "{text}");
    }
}
