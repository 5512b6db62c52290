//! Each configuration's runs summarised: medians over the rounds of throughput and latency, CPU
//! time per request over all of them, and the peak of resident memory.

use serde_json::{Value, json};

use super::configurations::Config;
use super::wrk::Run;

/// The median of `values` (0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The result of `config` over its `runs`, as `bench.json` reports it.
pub fn summarise(config: &Config, runs: &[Run]) -> Value {
    let requests: u64 = runs.iter().map(|run| run.requests).sum();
    let cpu: f64 = runs.iter().map(|run| run.cpu_seconds).sum();
    json!({
        "id": config.id,
        "name": config.name,
        "request": format!("{} {}", config.method, config.path),
        "runs": runs.len(),
        "requests": requests,
        "errors": runs.iter().map(|run| run.errors).sum::<u64>(),
        "requests_per_second": median(runs.iter().map(|run| run.requests as f64 / run.seconds).collect()),
        "p50_ms": median(runs.iter().map(|run| run.p50_us / 1000.0).collect()),
        "p99_ms": median(runs.iter().map(|run| run.p99_us / 1000.0).collect()),
        "cpu_us_per_request": if requests == 0 { 0.0 } else { cpu * 1e6 / requests as f64 },
        "peak_rss_kib": runs.iter().map(|run| run.peak_rss_kib).max().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
