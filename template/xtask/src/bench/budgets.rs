//! The budgets each run is judged against (issue 9), and the verdicts: the security stack's cost
//! in throughput and latency against the bare handler, isolation from a login flood, and
//! resident memory at idle, under load and under a flood of client addresses.

use serde_json::{Value, json};

/// A budget: a measured ratio or size against its limit.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub name: &'static str,
    pub limit: f64,
    /// Whether the measured value must stay at most (`true`) or at least (`false`) the limit.
    pub at_most: bool,
}

/// The budgets of issue 9, each judged from one run on one machine.
pub const BUDGETS: [Budget; 8] = [
    Budget {
        name: "full-stack throughput / baseline",
        limit: 0.85,
        at_most: false,
    },
    Budget {
        name: "full-stack p99 / baseline",
        limit: 1.25,
        at_most: true,
    },
    Budget {
        name: "redis-store throughput / baseline",
        limit: 0.70,
        at_most: false,
    },
    Budget {
        name: "isolation p99 / full-stack p99",
        limit: 2.0,
        at_most: true,
    },
    Budget {
        name: "resident memory during isolation (MiB)",
        limit: 64.0,
        at_most: true,
    },
    Budget {
        name: "resident memory at idle (MiB)",
        limit: 30.0,
        at_most: true,
    },
    Budget {
        name: "resident memory, 100k-key flood (MiB)",
        limit: 64.0,
        at_most: true,
    },
    Budget {
        name: "key flood: share of its growth given back",
        limit: 0.5,
        at_most: false,
    },
];

/// Each budget's measured value and verdict (none in a smoke run).
pub fn judge(results: &[Value], idle_rss_kib: u64, key_flood: &Value, smoke: bool) -> Vec<Value> {
    let of = |id: &str, field: &str| {
        results
            .iter()
            .find(|result| result["id"] == id)
            .and_then(|result| result[field].as_f64())
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let mib = |kib: Option<f64>| kib.map(|kib| kib / 1024.0);
    let measured = [
        ratio(
            of("b", "requests_per_second"),
            of("a", "requests_per_second"),
        ),
        ratio(of("b", "p99_ms"), of("a", "p99_ms")),
        ratio(
            of("c", "requests_per_second"),
            of("a", "requests_per_second"),
        ),
        ratio(of("g", "p99_ms"), of("b", "p99_ms")),
        mib(of("g", "peak_rss_kib")),
        mib(Some(idle_rss_kib as f64)),
        mib(key_flood["rss_peak_kib"].as_f64()),
        given_back(key_flood),
    ];
    BUDGETS
        .iter()
        .zip(measured)
        .map(|(budget, value)| {
            let met = match value {
                _ if smoke => Value::Null,
                None => Value::Null,
                Some(value) if budget.at_most => json!(value <= budget.limit),
                Some(value) => json!(value >= budget.limit),
            };
            json!({
                "budget": budget.name,
                "limit": format!("{} {}", if budget.at_most { "<=" } else { ">=" }, budget.limit),
                "measured": value,
                "met": met,
            })
        })
        .collect()
}

/// The share of the key flood's growth in resident memory that housekeeping gave back.
fn given_back(key_flood: &Value) -> Option<f64> {
    let kib = |name: &str| key_flood[name].as_f64();
    let (before, peak, after) = (
        kib("rss_before_kib")?,
        kib("rss_peak_kib")?,
        kib("rss_after_kib")?,
    );
    (peak > before).then(|| (peak - after) / (peak - before))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_is_met_within_its_limit_and_not_judged_in_a_smoke_run() {
        let results = [
            json!({"id": "a", "requests_per_second": 1000.0, "p99_ms": 1.0}),
            json!({"id": "b", "requests_per_second": 900.0, "p99_ms": 2.0}),
        ];
        let key_flood =
            json!({"rss_before_kib": 10240.0, "rss_peak_kib": 20480.0, "rss_after_kib": 12288.0});
        let budgets = judge(&results, 20 * 1024, &key_flood, false);
        let verdict = |name: &str| {
            budgets
                .iter()
                .find(|budget| budget["budget"] == name)
                .map(|budget| budget["met"].clone())
        };
        assert_eq!(
            verdict("full-stack throughput / baseline"),
            Some(json!(true))
        );
        assert_eq!(verdict("full-stack p99 / baseline"), Some(json!(false)));
        assert_eq!(verdict("resident memory at idle (MiB)"), Some(json!(true)));
        assert_eq!(
            verdict("key flood: share of its growth given back"),
            Some(json!(true))
        );
        // (c) was not measured: its budget is not judged.
        assert_eq!(
            verdict("redis-store throughput / baseline"),
            Some(Value::Null)
        );
        let smoke = judge(&results, 20 * 1024, &key_flood, true);
        assert!(smoke.iter().all(|budget| budget["met"].is_null()));
    }
}
