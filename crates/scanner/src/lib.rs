//! The executable checklist: a black-box scan of a running API.
//!
//! Given a base URL, its OpenAPI document and optionally credentials, [`scan`] checks the API
//! from outside, the way an attacker or an auditor would, and tags every check with the control
//! id of the checklist (`template/docs/controls.md`): TLS versions and certificate, plain-HTTP
//! handling, HSTS and security headers, CORS, credentials and scopes on every documented
//! operation, forged and mutated JWTs, strict input, rate limits, and error bodies free of
//! internals.
//!
//! It assumes only the standards (TLS, HTTP, OpenAPI 3, OAuth 2.0 bearer tokens, JWT/JWKS,
//! RFC 8414 metadata), so it runs against any API, not only those built from this template; a
//! check it cannot run says "not applicable" and why.
//!
//! Reading order: [`ScanConfig`] (what it is given), [`scan`] (the order of the checks), then one
//! module per group of checks under [`checks`], and [`report`] for the table, JSON and SARIF.
//!
//! In CI (OPS-2): Rampart's `cargo xtask ci` starts every rendered variant's service as a real
//! process (its own database and Redis prefix) and scans it (`xtask/src/scan.rs`); a check that
//! fails or does not run fails CI, except the four signed-claim checks where the signing keys live
//! in the database. Reports go to `target/scan/<variant>/` and the SARIF to code scanning. Test
//! builds that turn one control off at a time must each fail the matching check
//! (`xtask/tests/weakened_builds.rs`, decision 0013), so a check that cannot fail is caught. Then, on a fresh instance with the rate limits raised so fuzzing reaches
//! the logic behind them, the generated project's `cargo xtask scan` runs the third-party
//! scanners (sslyze, Mozilla "modern"; drheader; schemathesis, every check, anonymous and with a
//! token), a CycloneDX SBOM of every crate, and detect-secrets against the reviewed
//! `.secrets.baseline`, with a planted secret it must catch. A generated project's own workflow
//! runs `cargo xtask scan` after its `cargo xtask ci`.

use std::path::PathBuf;

use serde::Serialize;

pub mod checks;
pub mod openapi;
pub mod report;
pub mod target;
pub mod tokens;

/// What the scan is given.
#[derive(Debug, Clone, Default)]
pub struct ScanConfig {
    /// The API's HTTPS base URL, e.g. `https://api.example.com`.
    pub base_url: String,
    /// The OpenAPI document: a URL, or a file; `None` tries `{base}/openapi.json`.
    pub openapi: Option<String>,
    /// The plain-HTTP URL of the same service; `None` tries port 80 when the base is on 443.
    pub http_url: Option<String>,
    /// A PEM file of CA certificates to trust instead of the system's.
    pub ca_cert: Option<PathBuf>,
    /// Valid access tokens (bearer JWTs). The scopes each holds are read from its `scope` or
    /// `scp` claim; tokens with fewer scopes let the scope check run.
    pub tokens: Vec<String>,
    /// The issuer's JWKS URL; `None` discovers it from the RFC 8414 / OIDC metadata.
    pub jwks_url: Option<String>,
    /// An API key, sent in `api_key_header`, used where no token has the operation's scopes.
    pub api_key: Option<String>,
    pub api_key_header: String,
    /// A PKCS#8 PEM Ed25519 key the API trusts (a test issuer's): lets the scan sign tokens with
    /// one claim changed (expired, not yet valid, other audience, other issuer). Without it those
    /// checks are not applicable, as only the issuer can sign.
    pub signing_key: Option<PathBuf>,
    /// The path the rate-limit check sends requests to; `None` picks a protected `GET`.
    pub rate_limit_path: Option<String>,
    /// How many requests the rate-limit check sends at most before it says the limit never came.
    pub rate_limit_requests: usize,
    /// Skip the rate-limit check (it spends the scanning address's budget).
    pub skip_rate_limit: bool,
}

impl ScanConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key_header: "X-API-Key".to_owned(),
            rate_limit_requests: 1000,
            ..Self::default()
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotApplicable,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::NotApplicable => "not applicable",
        }
    }
}

/// One check of the checklist, run against the target.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable check id, e.g. `tls.legacy-versions-refused`.
    pub id: &'static str,
    /// The control id of the checklist (`template/docs/controls.md`), e.g. `TLS-2`.
    pub control: &'static str,
    /// What the check expects, in a sentence.
    pub title: &'static str,
    pub status: Status,
    /// What was seen: the evidence for a pass or a failure, or why it could not run.
    pub detail: String,
}

impl Finding {
    pub fn new(check: &Check, status: Status, detail: impl Into<String>) -> Self {
        Self {
            id: check.id,
            control: check.control,
            title: check.title,
            status,
            detail: detail.into(),
        }
    }
}

/// A check's identity: id, control and what it expects.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub id: &'static str,
    pub control: &'static str,
    pub title: &'static str,
}

/// The scan of one target.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub openapi: Option<String>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn failed(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|finding| finding.status == Status::Fail)
    }

    pub fn passed(&self) -> bool {
        self.failed().next().is_none()
    }

    /// The finding of the check with this id.
    pub fn finding(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|finding| finding.id == id)
    }
}

/// Runs every check against the target, cheapest and least disturbing first; the rate-limit
/// check, which spends the scanning address's budget, runs last but for the error-body check
/// that reads every response the scan received.
pub async fn scan(config: &ScanConfig) -> anyhow::Result<Report> {
    let target = target::Target::new(config)?;
    let document = openapi::load(&target, config.openapi.as_deref()).await;
    let credentials = tokens::Credentials::new(config);

    let mut findings = Vec::new();
    findings.extend(checks::tls::run(&target).await);
    findings.extend(checks::plaintext::run(&target).await);
    let api = document.as_ref().ok();
    findings.extend(checks::headers::run(&target, api, &credentials).await);
    findings.extend(checks::cors::run(&target, api, &credentials).await);
    findings.extend(checks::access::run(&target, api, &credentials).await);
    findings.extend(checks::jwt::run(&target, api, &credentials, config).await);
    findings.extend(checks::input::run(&target, api, &credentials).await);
    checks::errors::provoke(&target).await;
    if config.skip_rate_limit {
        findings.push(Finding::new(
            &checks::rate_limit::CHECK,
            Status::NotApplicable,
            "skipped on request (--skip-rate-limit)",
        ));
    } else {
        findings.push(checks::rate_limit::run(&target, api, config).await);
    }
    findings.push(checks::errors::run(&target).await);

    if let Err(error) = &document {
        findings.push(Finding::new(
            &openapi::CHECK,
            Status::NotApplicable,
            format!(
                "the OpenAPI document could not be read, so operation checks did not run: {error:#}"
            ),
        ));
    }
    Ok(Report {
        target: config.base_url.clone(),
        openapi: document.ok().map(|document| document.source),
        findings,
    })
}
