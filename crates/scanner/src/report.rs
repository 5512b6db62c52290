//! The report as a table for people, JSON for scripts, and SARIF 2.1.0 for code-scanning upload.

use serde_json::{Value, json};

use crate::{Report, Status};

/// A plain-text table, one line per check, then a summary line.
pub fn table(report: &Report) -> String {
    let mut out = format!("Checklist scan of {}\n\n", report.target);
    let width = report
        .findings
        .iter()
        .map(|f| f.id.len())
        .max()
        .unwrap_or(10);
    out.push_str(&format!(
        "{:<8} {:<width$} {:<15} detail\n",
        "control", "check", "status"
    ));
    for finding in &report.findings {
        out.push_str(&format!(
            "{:<8} {:<width$} {:<15} {}\n",
            finding.control,
            finding.id,
            finding.status.label(),
            finding.detail
        ));
    }
    let count = |status| {
        report
            .findings
            .iter()
            .filter(|f| f.status == status)
            .count()
    };
    out.push_str(&format!(
        "\n{} passed, {} failed, {} not applicable\n",
        count(Status::Pass),
        count(Status::Fail),
        count(Status::NotApplicable)
    ));
    out
}

pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}

/// SARIF 2.1.0: one rule per check (tagged with its control id), one result per check with
/// `kind` pass, fail or notApplicable; failures are errors. The location is the scanned URL.
pub fn sarif(report: &Report) -> String {
    let rules: Vec<Value> = report
        .findings
        .iter()
        .map(|finding| {
            json!({
                "id": finding.id,
                "name": finding.id,
                "shortDescription": {"text": finding.title},
                "fullDescription": {"text": format!("{} (checklist control {})", finding.title, finding.control)},
                "defaultConfiguration": {"level": "error"},
                "properties": {"tags": ["security", finding.control]},
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .enumerate()
        .map(|(index, finding)| {
            let (kind, level) = match finding.status {
                Status::Pass => ("pass", "none"),
                Status::Fail => ("fail", "error"),
                Status::NotApplicable => ("notApplicable", "none"),
            };
            json!({
                "ruleId": finding.id,
                "ruleIndex": index,
                "kind": kind,
                "level": level,
                "message": {"text": format!("{}: {}", finding.title, finding.detail)},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": report.target}},
                }],
                "properties": {"control": finding.control},
            })
        })
        .collect();
    let document = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "rampart-scanner",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&document).unwrap_or_default()
}
