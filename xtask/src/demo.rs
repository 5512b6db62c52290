//! `cargo xtask demo`: the default variant rendered into `target/demo/`, built, and run on its
//! embedded defaults (HTTPS with a development CA, a plain-HTTP redirect listener, SQLite);
//! `target/demo/demo.json` tells scripts (and the scanner) where it is and which CA to trust.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use xtask::cmd;
use xtask::service::{free_port, service_command};

use crate::render::{self, Variant};

/// The demo's project name, and so its folder under `target/demo/`.
const DEMO_NAME: &str = "service";

/// A rendered and built demo service.
#[derive(Debug)]
pub struct Demo {
    pub project: PathBuf,
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub demo_dir: PathBuf,
    /// The HTTPS listener.
    pub port: u16,
    /// The plain-HTTP listener that redirects to HTTPS.
    pub http_port: u16,
}

/// The target folder shared by this repository and every rendered project, so dependencies
/// are compiled once.
pub fn shared_target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

impl Demo {
    /// Renders the default variant into `target/demo/service` and builds it.
    pub fn prepare(root: &Path, port: u16, http_port: u16) -> Result<Self> {
        let demo_dir = root.join("target").join("demo");
        let project = render::render_fresh(root, Variant::DEFAULT, DEMO_NAME, &demo_dir)?;
        let target_dir = shared_target_dir(root);
        cmd::step("building the demo service");
        cmd::run(
            cmd::cargo()
                .current_dir(&project)
                .env("CARGO_TARGET_DIR", &target_dir)
                .args(["build", "--locked", "--package", "app"]),
        )?;
        Ok(Self {
            binary: target_dir.join("debug").join("app"),
            // Outside the rendered tree, so data survives a re-render.
            data_dir: demo_dir.join("data"),
            project,
            demo_dir,
            port,
            http_port,
        })
    }

    pub fn base_url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://localhost:{}", self.http_port)
    }

    /// The development CA the service creates on first run; clients trust it.
    pub fn ca_cert(&self) -> PathBuf {
        self.data_dir.join("tls").join("ca.pem")
    }

    /// The service command on its embedded defaults: SQLite under `target/demo/data`.
    pub fn command(&self) -> Command {
        service_command(
            &self.binary,
            &self.project,
            &self.data_dir,
            (self.port, self.http_port),
            None,
        )
    }

    /// Prepares the service without serving (`app init`): database, development certificate,
    /// and on first run the development administrator and demo API key.
    pub fn init(&self) -> Result<()> {
        let output = self
            .command()
            .arg("init")
            .env("APP_LOG__LEVEL", "warn")
            .output()
            .context("cannot run `app init`")?;
        if !output.status.success() {
            bail!(
                "`app init` failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The credentials the service wrote on its first run (`data/keys/bootstrap.json`).
    fn bootstrap_credentials(&self) -> Result<serde_json::Value> {
        let path = self.data_dir.join("keys").join("bootstrap.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Writes `target/demo/demo.json` (after [`Demo::init`]) and returns its path.
    pub fn write_manifest(&self) -> Result<PathBuf> {
        let base = self.base_url();
        let credentials = self.bootstrap_credentials()?;
        let manifest = serde_json::json!({
            "admin": credentials["admin"],
            "api_key": credentials["api_key"],
            "token_url": format!("{base}/oauth/token"),
            "base_url": base,
            "http_url": self.http_url(),
            "ca_cert": self.ca_cert(),
            "openapi_url": format!("{base}/openapi.json"),
            "docs_url": format!("{base}/docs"),
            "health_url": format!("{base}/health/ready"),
            "project_dir": self.project,
            "data_dir": self.data_dir,
        });
        let path = self.demo_dir.join("demo.json");
        std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)?;
        Ok(path)
    }
}

/// Renders, builds and runs the demo in the foreground until Ctrl-C.
pub fn run(root: &Path, port: u16, http_port: u16) -> Result<()> {
    let demo = Demo::prepare(root, port, http_port)?;
    demo.init()?;
    let manifest = demo.write_manifest()?;
    let base = demo.base_url();
    eprintln!(
        "\nThe demo service starts on {base}, TLS 1.3 with a development CA created on first run \
         ({ca}); {http} redirects to it. SQLite in {data}.\n\
         Try:\n  curl --cacert {ca} {base}/health/ready\n  curl --cacert {ca} {base}/openapi.json\n\
         \x20 curl -i {http}/docs\n  open {base}/docs (accept the development certificate, or trust {ca})\n\
         \x20 curl --cacert {ca} -H \"X-API-Key: $(jq -r .api_key {manifest})\" {base}/v1/me\n\
         The development administrator's email and password, and a demo API key, are in {manifest}.\n\
         Ctrl-C stops it.\n",
        http = demo.http_url(),
        ca = demo.ca_cert().display(),
        data = demo.data_dir.display(),
        manifest = manifest.display(),
    );
    let mut command = demo.command();
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        // Replace this process, so Ctrl-C and SIGTERM reach the service directly.
        let error = command.exec();
        Err(error).context("cannot start the demo service")
    }
    #[cfg(not(unix))]
    {
        let status = command.status().context("cannot start the demo service")?;
        if !status.success() {
            bail!("the demo service exited with {status}");
        }
        Ok(())
    }
}

/// Runs the demo briefly: it must become ready over HTTPS (trusting only the CA it created),
/// redirect plain HTTP, serve an OpenAPI 3 document, and stop cleanly on SIGTERM.
pub fn smoke(root: &Path) -> Result<()> {
    let demo = Demo::prepare(root, free_port()?, free_port()?)?;
    demo.init()?;
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo.write_manifest()?)?)?;
    let api_key = manifest["api_key"].as_str().unwrap_or_default().to_owned();
    if !api_key.starts_with("rmp_") || manifest["admin"]["password"].as_str().is_none() {
        bail!("demo.json lacks the development administrator or the demo API key");
    }
    let mut child = demo
        .command()
        .env("APP_LOG__LEVEL", "warn")
        .spawn()
        .context("cannot start the demo service")?;
    let outcome = probe(&demo, &api_key);
    // SIGTERM, as an orchestrator would send: the service must drain and exit 0.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the demo service did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    outcome?;
    if !status.success() {
        bail!("the demo service exited with {status} after SIGTERM");
    }
    eprintln!("demo: ready, OpenAPI 3 document served, clean stop on SIGTERM");
    Ok(())
}

fn probe(demo: &Demo, api_key: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = demo
            .ca_cert()
            .is_file()
            .then(|| https_get(demo, "/health/ready", None));
        match ready {
            Some(Ok((200, _))) => break,
            _ if Instant::now() > deadline => {
                bail!("the demo never answered 200 on https://.../health/ready")
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    let (status, _) = https_get(demo, "/v1/me", None)?;
    if status != 401 {
        bail!("/v1/me without a credential answered {status}, not 401");
    }
    let (status, _) = https_get(demo, "/v1/me", Some(("x-api-key", api_key)))?;
    if status != 200 {
        bail!("/v1/me with the demo API key answered {status}, not 200");
    }
    let (status, body) = https_get(demo, "/openapi.json", None)?;
    if status != 200 {
        bail!("/openapi.json answered {status}");
    }
    let document: serde_json::Value =
        serde_json::from_str(&body).context("/openapi.json is not JSON")?;
    let version = document["openapi"].as_str().unwrap_or_default();
    if !version.starts_with("3.") || document["paths"].as_object().is_none() {
        bail!("/openapi.json is not an OpenAPI 3 document (openapi = {version:?})");
    }

    let mut plain = TcpStream::connect(("127.0.0.1", demo.http_port))?;
    let (status, head) = http_get(&mut plain, "/docs", None)?;
    let expected = format!("location: {}/docs", demo.base_url());
    if status != 308 || !head.to_ascii_lowercase().contains(&expected) {
        bail!(
            "plain HTTP did not redirect to {}/docs: {head}",
            demo.base_url()
        );
    }
    Ok(())
}

/// A GET over TLS 1.3 that trusts only the demo's development CA.
fn https_get(demo: &Demo, path: &str, header: Option<(&str, &str)>) -> Result<(u16, String)> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(demo.ca_cert())? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost")?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect(("127.0.0.1", demo.port))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    http_get(&mut stream, path, header)
}

/// A minimal HTTP/1.1 GET (read to the end; bodies here are not chunked). Returns the status
/// and, for a redirect, the head; otherwise the body.
fn http_get(
    stream: &mut (impl Read + Write),
    path: &str,
    header: Option<(&str, &str)>,
) -> Result<(u16, String)> {
    let extra = header
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    // A peer that closes without TLS close_notify is fine here: the response is complete.
    if let Err(error) = stream.read_to_end(&mut response)
        && error.kind() != std::io::ErrorKind::UnexpectedEof
    {
        return Err(error.into());
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status line")?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((
        status,
        if (300..400).contains(&status) {
            head.to_owned()
        } else {
            body.to_owned()
        },
    ))
}
