//! The service started as a real process for the scans: on its own database (a PostgreSQL
//! database made for the run when the project uses PostgreSQL) and Redis key prefix, with the
//! tokens a client would obtain.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A generated service started from its binary and configuration, stopped on drop.
#[derive(Debug)]
pub struct RunningService {
    child: Child,
    pub base_url: String,
    pub http_url: String,
    pub ca_cert: PathBuf,
    /// Where the service keeps its keys (`bootstrap.json`, the development signing key).
    pub key_dir: PathBuf,
    /// A PostgreSQL database made for this run, dropped with it.
    database: Option<TemporaryDatabase>,
}

/// The environment of a generated service run from `project` with its data under `data_dir`,
/// listening on `port` (HTTPS) and `http_port` (the redirect), on SQLite unless `database_url`.
pub fn service_command(
    binary: &Path,
    project: &Path,
    data_dir: &Path,
    (port, http_port): (u16, u16),
    database_url: Option<&str>,
) -> Command {
    let mut command = Command::new(binary);
    let sqlite = format!("sqlite://{}/app.db?mode=rwc", data_dir.display());
    command
        .current_dir(project)
        .env("APP_ENVIRONMENT", "development")
        .env("APP_CONFIG_DIR", project.join("config"))
        .env("APP_SERVER__PORT", port.to_string())
        .env(
            "APP_SERVER__PUBLIC_ORIGIN",
            format!("https://localhost:{port}"),
        )
        .env("APP_HTTP_REDIRECT__PORT", http_port.to_string())
        // A free port: the default 9091 may be taken by another service on this machine.
        .env("APP_ADMIN__PORT", "0")
        .env("APP_TLS__DEV_DIR", data_dir.join("tls"))
        .env("APP_AUTH__KEY_DIR", data_dir.join("keys"))
        .env("APP_DATABASE__URL", database_url.unwrap_or(&sqlite));
    command
}

impl RunningService {
    /// Prepares (`app init`) and starts the service, on PostgreSQL in a database of its own when
    /// the project is configured for it, and with a Redis key prefix of its own; waits until
    /// it is ready.
    pub fn start(
        binary: &Path,
        project: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let ports = (free_port()?, free_port()?);
        let (database, store) = crate::project::backend(project)?;
        // On the project's own servers when they are there; otherwise, as the test suite does,
        // on the embedded ones, said plainly (`cargo xtask ci --require-services` has already
        // failed by then where a server must be there).
        let postgres = database == "postgres" && crate::services::POSTGRES.reachable();
        let redis = store == "redis" && crate::services::REDIS.reachable();
        if database == "postgres" && !postgres {
            eprintln!("PostgreSQL cannot be reached: the service runs on SQLite for this run");
        }
        if store == "redis" && !redis {
            eprintln!("Redis cannot be reached: the service keeps its rate limits in process");
        }
        // Dropped again on every way out, including a failed start.
        let database = postgres.then(TemporaryDatabase::create).transpose()?;
        let url = database.as_ref().map(|database| {
            let name = &database.0;
            let server = crate::services::POSTGRES.url();
            let server = server
                .rsplit_once('/')
                .map_or(server.as_str(), |(server, _)| server);
            format!("{server}/{name}")
        });
        let prefix = format!("scan-{}-{}:", std::process::id(), unique());
        let command = |extra: &[(&str, &str)]| {
            let mut command = service_command(binary, project, data_dir, ports, url.as_deref());
            if redis {
                command.env("APP_RATE_LIMIT__REDIS_KEY_PREFIX", &prefix);
            } else {
                command.env("APP_RATE_LIMIT__STORE", "memory");
            }
            for (name, value) in env.iter().chain(extra) {
                command.env(name, value);
            }
            command
        };
        let init = command(&[("APP_LOG__LEVEL", "warn")])
            .arg("init")
            .output()
            .context("cannot run `app init`")?;
        if !init.status.success() {
            bail!(
                "`app init` failed: {}",
                String::from_utf8_lossy(&init.stderr)
            );
        }
        let log = std::fs::File::create(data_dir.join("service.log"))?;
        let child = command(&[("APP_LOG__LEVEL", "warn")])
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the service")?;
        let service = Self {
            child,
            base_url: format!("https://localhost:{}", ports.0),
            http_url: format!("http://localhost:{}", ports.1),
            ca_cert: data_dir.join("tls").join("ca.pem"),
            key_dir: data_dir.join("keys"),
            database,
        };
        service.wait_until_ready(data_dir)?;
        Ok(service)
    }

    fn wait_until_ready(&self, data_dir: &Path) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let runtime = runtime()?;
        let client = self.client()?;
        loop {
            let ready = runtime.block_on(async {
                client
                    .get(format!("{}/health/ready", self.base_url))
                    .send()
                    .await
                    .is_ok_and(|response| response.status() == 200)
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(data_dir.join("service.log")).unwrap_or_default();
                bail!("the service never became ready:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn client(&self) -> Result<reqwest::Client> {
        client_trusting(&self.ca_cert)
    }

    /// Two access tokens, obtained as clients do: the development administrator's (every scope)
    /// from the login endpoint, and a `profile`-only token through `client_credentials` with an
    /// API key the administrator creates for it.
    pub fn tokens(&self) -> Result<Vec<String>> {
        let client = self.client()?;
        let base = &self.base_url;
        runtime()?.block_on(async {
            let admin = AdminSession::open(&client, base, &self.key_dir, "scanner").await?;
            let token: serde_json::Value = client
                .post(format!("{base}/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(admin.client_credentials_form()?)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let narrow = token["access_token"]
                .as_str()
                .context("no access_token")?
                .to_owned();
            Ok(vec![admin.access_token, narrow])
        })
    }
}

/// The development administrator logged in (credentials from `bootstrap.json`), with a
/// `profile`-only API key it created.
#[derive(Debug)]
pub struct AdminSession {
    pub email: String,
    pub password: String,
    /// Every scope an administrator may have.
    pub access_token: String,
    /// The API key as `client_credentials` wants it: its id and its secret.
    pub key_id: String,
    pub key_secret: String,
}

impl AdminSession {
    /// Logs in at `base` and creates the API key, named `key_name`.
    pub async fn open(
        client: &reqwest::Client,
        base: &str,
        key_dir: &Path,
        key_name: &str,
    ) -> Result<Self> {
        let bootstrap: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(key_dir.join("bootstrap.json"))
                .context("the service wrote no bootstrap.json")?,
        )?;
        let field = |name: &str| {
            bootstrap["admin"][name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("bootstrap.json has no admin {name}"))
        };
        let (email, password) = (field("email")?, field("password")?);
        let login: serde_json::Value = client
            .post(format!("{base}/v1/auth/login"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let access_token = login["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned();
        let key: serde_json::Value = client
            .post(format!("{base}/v1/api-keys"))
            .bearer_auth(&access_token)
            .json(&serde_json::json!({"name": key_name, "scopes": ["profile"]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let text = |name: &str| {
            key[name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("the new API key has no {name}"))
        };
        Ok(Self {
            email,
            password,
            access_token,
            key_id: text("id")?,
            key_secret: text("secret")?,
        })
    }

    /// The form body of a `client_credentials` request for a `profile` token with the key.
    pub fn client_credentials_form(&self) -> Result<String> {
        Ok(serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("client_id", self.key_id.as_str()),
            ("client_secret", self.key_secret.as_str()),
            ("scope", "profile"),
        ])?)
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Then the database, which the service no longer holds.
        self.database.take();
    }
}

/// A PostgreSQL database of its own for one run, dropped when this is.
#[derive(Debug)]
struct TemporaryDatabase(String);

impl TemporaryDatabase {
    fn create() -> Result<Self> {
        let name = format!("rampart_scan_{}_{}", std::process::id(), unique());
        psql(&format!("CREATE DATABASE \"{name}\""))?;
        Ok(Self(name))
    }
}

impl Drop for TemporaryDatabase {
    fn drop(&mut self) {
        let _ = psql(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.0
        ));
    }
}

fn psql(statement: &str) -> Result<()> {
    let url = crate::services::POSTGRES.url();
    let status = Command::new("psql")
        .args([url.as_str(), "-q", "-v", "ON_ERROR_STOP=1", "-c", statement])
        .stdout(Stdio::null())
        .status()
        .context("cannot run psql")?;
    if !status.success() {
        bail!("psql failed: {statement}");
    }
    Ok(())
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// An HTTP client that follows no redirect and trusts only the CA in `ca_cert` (PEM), when
/// that file holds one.
pub fn client_trusting(ca_cert: &Path) -> Result<reqwest::Client> {
    let pem = std::fs::read(ca_cert).unwrap_or_default();
    let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Ok(certificate) = reqwest::Certificate::from_pem(&pem) {
        builder = builder.tls_certs_only([certificate]);
    }
    Ok(builder.build()?)
}

/// A single-threaded runtime for the few requests a task sends.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
