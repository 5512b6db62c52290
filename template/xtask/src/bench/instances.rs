//! The measured processes, each a `bench-service` started from the same data folder: the bare
//! baseline (`bench-service baseline`), the service with its rate limits in process, and, when
//! Redis can be reached, a second replica with them in Redis (`bench-service serve`).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::service::{client_trusting, free_port, runtime, service_command};

/// Which process a configuration is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    Baseline,
    Memory,
    Redis,
}

/// The environment of every measured service: each tier's quota raised to the most the
/// configuration accepts (1000 a second, as a burst of a day's worth), so requests are checked
/// and charged but never refused; forwarding headers trusted from loopback, so the key flood can
/// come from many addresses.
pub fn raised_rate_limits() -> Vec<(String, String)> {
    const TIERS: [&str; 10] = [
        "ANONYMOUS",
        "AUTHENTICATED",
        "LOGIN",
        "LOGIN_ACCOUNT",
        "PASSWORD_RESET",
        "PASSWORD_RESET_ACCOUNT",
        "PASSWORD_RESET_CONFIRM",
        "TOKEN",
        "API_KEY_MANAGEMENT",
        "PAYMENT",
    ];
    let mut env: Vec<(String, String)> = TIERS
        .iter()
        .flat_map(|tier| {
            [
                (
                    format!("APP_RATE_LIMIT__{tier}__PERIOD_SECONDS"),
                    "86400".to_owned(),
                ),
                (
                    format!("APP_RATE_LIMIT__{tier}__REQUESTS"),
                    "86400000".to_owned(),
                ),
            ]
        })
        .collect();
    env.push((
        "APP_SERVER__TRUSTED_PROXIES".to_owned(),
        "[\"127.0.0.1/32\"]".to_owned(),
    ));
    env
}

/// A service process, stopped on drop.
pub struct Process {
    child: Child,
    /// Its HTTPS port, on loopback.
    port: u16,
    pub base_url: String,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What every process is started from: the `bench-service` binary, the project whose
/// configuration it loads, and the data folder all of them share (keys, certificate, database,
/// logs).
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    pub binary: &'a Path,
    pub project: &'a Path,
    pub data: &'a Path,
}

/// One process to start: its `bench-service` subcommand, its environment on top of the raised
/// rate limits, and its log file in the data folder.
struct Launch<'a> {
    subcommand: &'a str,
    env: &'a [(&'a str, String)],
    log_name: &'a str,
}

/// Every measured process.
pub struct Instances {
    pub baseline: Process,
    /// Rate limits in process: (b), (d) to (g), and the key flood.
    pub memory: Process,
    /// Rate limits in Redis: (c), when Redis can be reached.
    pub redis: Option<Process>,
}

impl Instances {
    /// Starts every process; returns them and the service's time from spawn to ready.
    pub fn start(setup: Setup) -> Result<(Self, Duration)> {
        let (baseline, _) = setup.start(&Launch {
            subcommand: "baseline",
            env: &[],
            log_name: "baseline.log",
        })?;
        let (memory, startup) = setup.start(&Launch {
            subcommand: "serve",
            env: &[("APP_RATE_LIMIT__STORE", "memory".to_owned())],
            log_name: "service.log",
        })?;
        let redis_reachable = crate::services::REDIS.reachable();
        let redis = if redis_reachable {
            let prefix = format!("bench-{}:", std::process::id());
            let env = [
                // A second replica of the same service: same origin, keys and issuer.
                ("APP_SERVER__PUBLIC_ORIGIN", memory.base_url.clone()),
                ("APP_RATE_LIMIT__STORE", "redis".to_owned()),
                ("APP_RATE_LIMIT__REDIS_URL", crate::services::REDIS.url()),
                ("APP_RATE_LIMIT__REDIS_KEY_PREFIX", prefix),
            ];
            let launch = Launch {
                subcommand: "serve",
                env: &env,
                log_name: "service-redis.log",
            };
            Some(setup.start(&launch)?.0)
        } else {
            eprintln!("Redis cannot be reached: (c) is not measured");
            None
        };
        let instances = Self {
            baseline,
            memory,
            redis,
        };
        Ok((instances, startup))
    }

    /// The process `instance` runs on, if it was started.
    pub fn of(&self, instance: Instance) -> Option<&Process> {
        match instance {
            Instance::Baseline => Some(&self.baseline),
            Instance::Memory => Some(&self.memory),
            Instance::Redis => self.redis.as_ref(),
        }
    }

    /// Every process started.
    pub fn all(&self) -> impl Iterator<Item = &Process> {
        [
            Some(&self.baseline),
            Some(&self.memory),
            self.redis.as_ref(),
        ]
        .into_iter()
        .flatten()
    }
}

impl Setup<'_> {
    /// Prepares the data folder as start-up does (database, migrations, development certificate
    /// and administrator): `bench-service serve` started once and stopped as soon as it listens,
    /// so that the baseline finds its certificate and the start-up measured is that of a prepared
    /// service.
    pub fn prepare(&self) -> Result<()> {
        let (mut first_start, _) = self.spawn(&Launch {
            subcommand: "serve",
            env: &[("APP_RATE_LIMIT__STORE", "memory".to_owned())],
            log_name: "prepare.log",
        })?;
        // Start-up binds its listener last, once everything above is ready. A TCP connection is
        // the sign: no HTTPS client can trust the development CA before it exists.
        let address = ("127.0.0.1", first_start.port);
        // A debug build hashes the administrator's password slowly.
        let limit = Duration::from_secs(300);
        self.wait_until(&mut first_start, "prepare.log", limit, || {
            TcpStream::connect(address).is_ok()
        })
    }

    /// Starts a process and waits until `/health/ready` answers 200; returns the process and the
    /// time from spawn to ready.
    fn start(&self, launch: &Launch) -> Result<(Process, Duration)> {
        let (mut process, started) = self.spawn(launch)?;
        let client = client(self.data)?;
        let runtime = runtime()?;
        let url = format!("{}/health/ready", process.base_url);
        let limit = Duration::from_secs(60);
        self.wait_until(&mut process, launch.log_name, limit, || {
            runtime.block_on(async {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|response| response.status() == 200)
            })
        })?;
        Ok((process, started.elapsed()))
    }

    /// Spawns a process on free ports; returns it and when it was spawned.
    fn spawn(&self, launch: &Launch) -> Result<(Process, Instant)> {
        let port = free_port()?;
        let ports = (port, free_port()?);
        let mut command = service_command(self.binary, self.project, self.data, ports, None);
        command.envs(raised_rate_limits());
        command.env("APP_LOG__LEVEL", "warn");
        for (name, value) in launch.env {
            command.env(name, value);
        }
        let log = std::fs::File::create(self.data.join(launch.log_name))?;
        let started = Instant::now();
        let child = command
            .arg(launch.subcommand)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let process = Process {
            child,
            port,
            base_url: format!("https://localhost:{port}"),
        };
        Ok((process, started))
    }

    /// Polls `ready` until it holds; fails, with the process's log, when the process exits first
    /// or `limit` passes.
    fn wait_until(
        &self,
        process: &mut Process,
        log_name: &str,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        let log = || std::fs::read_to_string(self.data.join(log_name)).unwrap_or_default();
        let binary = self.binary.display();
        loop {
            if let Some(status) = process.child.try_wait()? {
                bail!("{binary} exited ({status}) before it was ready:\n{}", log());
            }
            if ready() {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("{binary} never became ready:\n{}", log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A client trusting the development CA the service made in `data`.
pub fn client(data: &Path) -> Result<reqwest::Client> {
    client_trusting(&data.join("tls").join("ca.pem"))
}
