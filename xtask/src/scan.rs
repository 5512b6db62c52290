//! The checklist scanner (`crates/scanner`) run against a generated service, started as a real
//! process by the project's own `xtask::service`.

use std::path::Path;

use anyhow::Result;
use rampart_scanner::{Report, ScanConfig};
use xtask::service::RunningService;

/// What the scanner is given: the service's addresses, its development CA, two tokens (every
/// scope, and `profile` only), and the issuer's signing key where the service keeps it in a file
/// (it signs tokens with one claim changed).
pub fn scan_config(service: &RunningService) -> Result<ScanConfig> {
    let signing_key = service.key_dir.join("signing-key.pem");
    Ok(ScanConfig {
        http_url: Some(service.http_url.clone()),
        ca_cert: Some(service.ca_cert.clone()),
        tokens: service.tokens()?,
        signing_key: signing_key.is_file().then_some(signing_key),
        ..ScanConfig::new(&service.base_url)
    })
}

/// The checks that may be "not applicable" on a service scanned with `config`: only those that
/// sign tokens with the issuer's key, when the service keeps it in its database rather than a
/// file. Every other check must run and pass, or the scan of a generated service fails.
pub fn unexpectedly_not_applicable<'r>(
    report: &'r Report,
    config: &ScanConfig,
) -> Vec<&'r rampart_scanner::Finding> {
    use rampart_scanner::checks::jwt;
    let signed = [
        jwt::EXPIRED.id,
        jwt::NOT_YET_VALID.id,
        jwt::WRONG_AUDIENCE.id,
        jwt::WRONG_ISSUER.id,
    ];
    report
        .findings
        .iter()
        .filter(|finding| finding.status == rampart_scanner::Status::NotApplicable)
        .filter(|finding| config.signing_key.is_some() || !signed.contains(&finding.id))
        .collect()
}

/// Runs the scanner against the service.
pub fn scan(service: &RunningService) -> Result<Report> {
    run(&scan_config(service)?)
}

fn run(config: &ScanConfig) -> Result<Report> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(rampart_scanner::scan(config))
}

/// Scans the service and writes the table, JSON and SARIF under `out` as
/// `<name>.txt|json|sarif`; fails when a check failed or did not run though it should have.
pub fn scan_and_report(service: &RunningService, out: &Path, name: &str) -> Result<Report> {
    let config = scan_config(service)?;
    let report = run(&config)?;
    std::fs::create_dir_all(out)?;
    let table = rampart_scanner::report::table(&report);
    std::fs::write(out.join(format!("{name}.txt")), &table)?;
    std::fs::write(
        out.join(format!("{name}.json")),
        rampart_scanner::report::json(&report),
    )?;
    std::fs::write(
        out.join(format!("{name}.sarif")),
        rampart_scanner::report::sarif(&report),
    )?;
    eprint!("{table}");
    let failed: Vec<&str> = report.failed().map(|finding| finding.id).collect();
    if !failed.is_empty() {
        anyhow::bail!("the checklist scan of {name} failed: {}", failed.join(", "));
    }
    let skipped: Vec<&str> = unexpectedly_not_applicable(&report, &config)
        .iter()
        .map(|finding| finding.id)
        .collect();
    if !skipped.is_empty() {
        anyhow::bail!(
            "the checklist scan of {name} could not run checks that must run on a generated \
             service: {}",
            skipped.join(", ")
        );
    }
    Ok(report)
}
