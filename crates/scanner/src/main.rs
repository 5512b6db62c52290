//! `rampart-scan`: the checklist scanner's command line. Exits 1 when any check fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use rampart_scanner::{ScanConfig, report, scan};

/// Scan a running API against the API security checklist, from outside.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The API's HTTPS base URL, e.g. https://api.example.com.
    #[arg(long)]
    base_url: String,
    /// The OpenAPI 3 document: a URL or a file (default: {base}/openapi.json).
    #[arg(long)]
    openapi: Option<String>,
    /// The plain-HTTP URL of the service (default: port 80 when the base is on 443).
    #[arg(long)]
    http_url: Option<String>,
    /// Trust only the CA certificates in this PEM file (default: the system's roots).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// A valid access token; repeat with tokens of fewer scopes to check scope enforcement.
    #[arg(
        long = "token",
        env = "SCAN_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    tokens: Vec<String>,
    /// The issuer's JWKS URL (default: discovered from RFC 8414 / OIDC metadata).
    #[arg(long)]
    jwks_url: Option<String>,
    /// An API key.
    #[arg(long, env = "SCAN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The header the API key goes in.
    #[arg(long, default_value = "X-API-Key")]
    api_key_header: String,
    /// A PKCS#8 PEM Ed25519 key the API trusts, to sign tokens with one claim changed.
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// The path the rate-limit check sends requests to (default: a protected GET).
    #[arg(long)]
    rate_limit_path: Option<String>,
    /// The most requests the rate-limit check sends.
    #[arg(long, default_value_t = 1000)]
    rate_limit_requests: usize,
    /// Skip the rate-limit check.
    #[arg(long)]
    skip_rate_limit: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the report as SARIF 2.1.0 to this file.
    #[arg(long)]
    sarif: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let config = ScanConfig {
        openapi: cli.openapi,
        http_url: cli.http_url,
        ca_cert: cli.ca_cert,
        tokens: cli.tokens,
        jwks_url: cli.jwks_url,
        api_key: cli.api_key,
        api_key_header: cli.api_key_header,
        signing_key: cli.signing_key,
        rate_limit_path: cli.rate_limit_path,
        rate_limit_requests: cli.rate_limit_requests,
        skip_rate_limit: cli.skip_rate_limit,
        ..ScanConfig::new(cli.base_url)
    };
    let report = scan(&config).await?;
    print!("{}", report::table(&report));
    if let Some(path) = &cli.json {
        std::fs::write(path, report::json(&report))
            .with_context(|| format!("{}", path.display()))?;
    }
    if let Some(path) = &cli.sarif {
        std::fs::write(path, report::sarif(&report))
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
