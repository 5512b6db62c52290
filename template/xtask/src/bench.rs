//! `cargo xtask bench`: what the security stack costs, and the service's footprint.
//!
//! The service is built in release with the `bench` feature (`crates/app/src/bench.rs`) and
//! measured over loopback by wrk, every configuration in the same run and interleaved round by
//! round, so that drift of the machine affects them alike:
//!
//! - (a) `baseline`: one small JSON handler, bare, on the service's own TLS 1.3 listener;
//! - (b) `full-stack`: the same handler behind every default control (bearer JWT verified, scope
//!   checked, in-process rate limit charged, headers, request id, metrics, audit events);
//! - (c) `redis-store`: (b) with the rate limits in Redis;
//! - (d) `token`: `POST /oauth/token` with `client_credentials`;
//! - (e) `login`: `POST /v1/auth/login`, Argon2id on purpose slow;
//! - (f) `own-record`: `GET /v1/me`, a read of the caller's own row, the common shape of an endpoint;
//! - (g) `isolation`: (b) while 200 connections post wrong passwords to the same instance.
//!
//! Rate limits are raised on the measured instances (see [`raised_rate_limits`]): every request
//! is still checked and charged, none refused, so the cost measured is the check. Reports go to
//! `target/bench/` (`bench.md`, `bench.json`); [`BUDGETS`] are judged against the run.
//!
//! `--smoke` runs everything briefly on a debug build, to prove the bench works; its numbers
//! mean nothing and no budget is judged.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd;
use crate::service::{AdminSession, client_trusting, free_port, runtime, service_command};

/// What `cargo xtask bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A short run on a debug build: proves the bench works, judges nothing.
    pub smoke: bool,
    /// A `bench` build to measure instead of building one (no build times then).
    pub binary: Option<PathBuf>,
    /// Where `bench.md` and `bench.json` go.
    pub out: PathBuf,
    /// Seconds of each measurement.
    pub seconds: u32,
    /// Rounds over every configuration.
    pub rounds: u32,
    /// Connections of each measurement.
    pub connections: u32,
}

impl BenchOptions {
    /// The defaults of a full run (`smoke`: of a smoke run) reporting under `root/target/bench`.
    pub fn new(root: &Path, smoke: bool) -> Self {
        Self {
            smoke,
            binary: None,
            out: root.join("target").join("bench"),
            seconds: if smoke { 1 } else { 8 },
            rounds: if smoke { 1 } else { 3 },
            connections: 32,
        }
    }
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

/// Connections posting wrong passwords during (g).
const FLOOD_CONNECTIONS: u32 = 200;

/// Distinct client addresses of the key flood (a full run; a smoke run sends fewer).
const FLOOD_KEYS: u32 = 100_000;

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

/// Which process a configuration is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instance {
    Baseline,
    Memory,
    Redis,
}

/// One configuration: a request, sent over and over by wrk.
#[derive(Debug, Clone)]
struct Config {
    id: &'static str,
    name: &'static str,
    instance: Instance,
    method: &'static str,
    path: &'static str,
    body: Option<String>,
    content_type: Option<&'static str>,
    bearer: bool,
    /// (g): measured while the wrong-login flood runs.
    under_flood: bool,
}

/// One wrk measurement.
#[derive(Debug, Clone, Default)]
struct Run {
    requests: u64,
    /// Answers the script did not expect (the key flood: anything but 401).
    unexpected: u64,
    seconds: f64,
    errors: u64,
    p50_us: f64,
    p99_us: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
}

/// `cargo xtask bench`.
pub fn run(root: &Path, options: &BenchOptions) -> Result<()> {
    if !Path::new("/proc/self/stat").is_file() {
        bail!("the bench reads CPU time and memory from /proc: it runs on Linux only");
    }
    if !wrk_installed() {
        return missing_wrk();
    }
    let mut builds = Value::Null;
    let binary = match &options.binary {
        Some(binary) => binary.clone(),
        None if options.smoke => smoke_build(root)?,
        None => {
            let (binary, measured) = release_builds(root)?;
            builds = measured;
            binary
        }
    };
    let out = &options.out;
    let data = out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let scripts = write_scripts(out)?;

    let report = measure(root, &binary, &data, &scripts, options, builds)?;
    std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let markdown = markdown(&report);
    std::fs::write(out.join("bench.md"), &markdown)?;
    println!("{markdown}");
    eprintln!(
        "reports: {} and {}",
        out.join("bench.md").display(),
        out.join("bench.json").display()
    );
    Ok(())
}

/// Whether wrk is on the PATH.
pub fn wrk_installed() -> bool {
    cmd::succeeds(Command::new("wrk").arg("--version")) || {
        // wrk prints its version and exits 1 for `--version`.
        Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("wrk"))
    }
}

/// Without wrk a local run says what it skips; with `REQUIRE_BENCH_TOOLS` set (CI) it fails.
fn missing_wrk() -> Result<()> {
    let install = "install wrk (Debian and Ubuntu: apt-get install wrk)";
    if std::env::var_os("REQUIRE_BENCH_TOOLS").is_some() {
        bail!("the bench needs wrk: {install}");
    }
    eprintln!("skipped the bench: {install}");
    Ok(())
}

/// A debug `bench` build in the usual target folder.
/// A debug `bench` build, copied out of the target folder; the build without the feature is then
/// put back in its place, so that whatever runs `target/debug/app` next (the scans) runs the
/// service as shipped.
fn smoke_build(root: &Path) -> Result<PathBuf> {
    cmd::step("bench: debug build with the bench feature");
    let build = |features: &[&str]| {
        cmd::run(
            cmd::cargo()
                .current_dir(root)
                .args(["build", "--locked", "--package", "app"])
                .args(features),
        )
    };
    build(&["--features", "bench"])?;
    let built = target_dir(root).join("debug").join("app");
    let copy = root.join("target").join("bench").join("app-bench");
    std::fs::create_dir_all(root.join("target").join("bench"))?;
    std::fs::copy(&built, &copy)
        .with_context(|| format!("cannot copy {} to {}", built.display(), copy.display()))?;
    build(&[])?;
    Ok(copy)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The release builds, timed in a target folder of their own: clean, then incremental after one
/// source file of the service changed; then the `bench` build that is measured.
fn release_builds(root: &Path) -> Result<(PathBuf, Value)> {
    let target = root.join("target").join("bench-build");
    let build = |features: &[&str]| -> Result<Duration> {
        let mut command = cmd::cargo();
        command
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--release", "--locked", "--package", "app"])
            .args(features);
        let started = Instant::now();
        cmd::run(&mut command)?;
        Ok(started.elapsed())
    };
    cmd::step("bench: clean release build");
    let _ = std::fs::remove_dir_all(&target);
    let clean = build(&[])?;
    let binary_bytes = std::fs::metadata(target.join("release").join("app"))?.len();

    cmd::step("bench: incremental release build (crates/app/src/lib.rs changed)");
    std::fs::File::options()
        .append(true)
        .open(root.join("crates/app/src/lib.rs"))?
        .set_modified(std::time::SystemTime::now())?;
    let incremental = build(&[])?;

    cmd::step("bench: release build with the bench feature");
    build(&["--features", "bench"])?;
    Ok((
        target.join("release").join("app"),
        json!({
            "clean_build_seconds": clean.as_secs_f64(),
            "incremental_build_seconds": incremental.as_secs_f64(),
            "release_binary_bytes": binary_bytes,
        }),
    ))
}

/// The wrk scripts: one request from the environment, reporting as one JSON line; and the key
/// flood, one new client address per request.
fn write_scripts(out: &Path) -> Result<(PathBuf, PathBuf)> {
    let dir = out.join("scripts");
    std::fs::create_dir_all(&dir)?;
    let report = r#"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function done(summary, latency, requests)
  local e = summary.errors
  local unexpected = 0
  for _, thread in ipairs(threads) do
    unexpected = unexpected + (thread:get("unexpected") or 0)
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"errors":%d,"p50_us":%d,"p99_us":%d,"unexpected":%d}\n',
    summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), unexpected))
end
"#;
    let request = format!(
        r#"-- One request, from BENCH_METHOD, BENCH_BODY, BENCH_CONTENT_TYPE and BENCH_TOKEN.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type then wrk.headers["Content-Type"] = content_type end
local token = os.getenv("BENCH_TOKEN")
if token then wrk.headers["Authorization"] = "Bearer " .. token end
{report}"#
    );
    let flood = format!(
        r#"-- Anonymous requests, each from the next of BENCH_KEYS client addresses (X-Forwarded-For,
-- trusted from loopback on the measured instance), from BENCH_FIRST_KEY on; the thread stops
-- once the last address is answered.
local keys = tonumber(os.getenv("BENCH_KEYS"))
local first = tonumber(os.getenv("BENCH_FIRST_KEY"))
local sent, answered = 0, 0
function request()
  local i = (first + sent) % keys
  sent = sent + 1
  local address = string.format("10.%d.%d.%d", math.floor(i / 65536) % 256, math.floor(i / 256) % 256, i % 256)
  return wrk.format("GET", nil, {{["X-Forwarded-For"] = address}})
end
unexpected = 0
function response(status, headers, body)
  answered = answered + 1
  -- Each must be refused for want of a credential: anything else (a 429 of a bucket shared by
  -- pooled addresses, an error) is counted.
  if status ~= 401 then unexpected = unexpected + 1 end
  if first + answered >= keys then wrk.thread:stop() end
end
{report}"#
    );
    let request_script = dir.join("request.lua");
    let flood_script = dir.join("key-flood.lua");
    std::fs::write(&request_script, request)?;
    std::fs::write(&flood_script, flood)?;
    Ok((request_script, flood_script))
}

/// A service process, stopped on drop.
struct Process {
    child: Child,
    base_url: String,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` (with `args`) and waits until `ready_path` answers 200; returns the process
/// and the time from spawn to ready.
fn start(
    binary: &Path,
    root: &Path,
    data: &Path,
    args: &[&str],
    env: &[(&str, String)],
    log_name: &str,
    ready_path: &str,
) -> Result<(Process, Duration)> {
    let port = free_port()?;
    let mut command = service_command(binary, root, data, (port, free_port()?), None);
    command.envs(raised_rate_limits());
    command.env("APP_LOG__LEVEL", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let log = std::fs::File::create(data.join(log_name))?;
    let started = Instant::now();
    let child = command
        .args(args)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut process = Process {
        child,
        base_url: format!("https://localhost:{port}"),
    };
    let client = client(data)?;
    let runtime = runtime()?;
    let url = format!("{}{ready_path}", process.base_url);
    loop {
        if let Some(status) = process.child.try_wait()? {
            let log = std::fs::read_to_string(data.join(log_name)).unwrap_or_default();
            bail!(
                "{} exited ({status}) before it was ready:\n{log}",
                binary.display()
            );
        }
        let ready = runtime.block_on(async {
            client
                .get(&url)
                .send()
                .await
                .is_ok_and(|response| response.status() == 200)
        });
        if ready {
            return Ok((process, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(data.join(log_name)).unwrap_or_default();
            bail!("{} never became ready:\n{log}", binary.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn client(data: &Path) -> Result<reqwest::Client> {
    client_trusting(&data.join("tls").join("ca.pem"))
}

/// What a client holds: the administrator's access token, its login body, and an API key's
/// `client_credentials` body.
struct Credentials {
    access_token: String,
    login_body: String,
    wrong_login_body: String,
    token_body: String,
}

fn credentials(service: &Process, data: &Path) -> Result<Credentials> {
    let client = client(data)?;
    let admin = runtime()?.block_on(AdminSession::open(
        &client,
        &service.base_url,
        &data.join("keys"),
        "bench",
    ))?;
    let login_body = json!({"email": admin.email, "password": admin.password});
    // The right one with a character more: wrong, and as long to hash.
    let wrong_password = format!("{}x", admin.password);
    let wrong_login_body = json!({"email": admin.email, "password": wrong_password});
    Ok(Credentials {
        token_body: admin.client_credentials_form()?,
        login_body: login_body.to_string(),
        wrong_login_body: wrong_login_body.to_string(),
        access_token: admin.access_token,
    })
}

fn configs(credentials: &Credentials, redis: bool) -> Vec<Config> {
    let ping = |id, name, instance, under_flood| Config {
        id,
        name,
        instance,
        method: "GET",
        path: "/v1/bench/ping",
        body: None,
        content_type: None,
        bearer: true,
        under_flood,
    };
    let mut configs = vec![
        ping(
            "a",
            "baseline: bare handler, same TLS listener",
            Instance::Baseline,
            false,
        ),
        ping(
            "b",
            "full stack: JWT, scope, rate limit, headers, audit",
            Instance::Memory,
            false,
        ),
    ];
    if redis {
        configs.push(ping(
            "c",
            "full stack, rate limits in Redis",
            Instance::Redis,
            false,
        ));
    }
    configs.extend([
        Config {
            id: "d",
            name: "token: client_credentials",
            instance: Instance::Memory,
            method: "POST",
            path: "/oauth/token",
            body: Some(credentials.token_body.clone()),
            content_type: Some("application/x-www-form-urlencoded"),
            bearer: false,
            under_flood: false,
        },
        Config {
            id: "e",
            name: "login: Argon2id",
            instance: Instance::Memory,
            method: "POST",
            path: "/v1/auth/login",
            body: Some(credentials.login_body.clone()),
            content_type: Some("application/json"),
            bearer: false,
            under_flood: false,
        },
        Config {
            id: "f",
            name: "own record: GET /v1/me (database read)",
            instance: Instance::Memory,
            method: "GET",
            path: "/v1/me",
            body: None,
            content_type: None,
            bearer: true,
            under_flood: false,
        },
        ping(
            "g",
            "isolation: (b) during 200 wrong logins (CPU includes the flood's)",
            Instance::Memory,
            true,
        ),
    ]);
    configs
}

/// Everything measured after the build: processes started, configurations interleaved, memory.
fn measure(
    root: &Path,
    binary: &Path,
    data: &Path,
    (request_script, flood_script): &(PathBuf, PathBuf),
    options: &BenchOptions,
    builds: Value,
) -> Result<Value> {
    cmd::step("bench: preparing the service (app init)");
    let mut init = service_command(binary, root, data, (free_port()?, free_port()?), None);
    let output = init.env("APP_LOG__LEVEL", "warn").arg("init").output()?;
    if !output.status.success() {
        bail!(
            "`app init` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let params: Value = serde_json::from_slice(
        &service_command(binary, root, data, (0, 0), None)
            .arg("bench-params")
            .output()?
            .stdout,
    )
    .context("`app bench-params` printed no JSON")?;

    cmd::step("bench: starting the baseline and the service");
    let (baseline, _) = start(
        binary,
        root,
        data,
        &["bench-baseline"],
        &[],
        "baseline.log",
        "/health/ready",
    )?;
    let (memory, startup) = start(
        binary,
        root,
        data,
        &[],
        &[("APP_RATE_LIMIT__STORE", "memory".to_owned())],
        "service.log",
        "/health/ready",
    )?;
    let redis_reachable = crate::services::REDIS.reachable();
    let redis = if redis_reachable {
        let prefix = format!("bench-{}:", std::process::id());
        Some(
            start(
                binary,
                root,
                data,
                &[],
                &[
                    // A second replica of the same service: same origin, keys and issuer.
                    ("APP_SERVER__PUBLIC_ORIGIN", memory.base_url.clone()),
                    ("APP_RATE_LIMIT__STORE", "redis".to_owned()),
                    ("APP_RATE_LIMIT__REDIS_URL", crate::services::REDIS.url()),
                    ("APP_RATE_LIMIT__REDIS_KEY_PREFIX", prefix),
                ],
                "service-redis.log",
                "/health/ready",
            )?
            .0,
        )
    } else {
        eprintln!("Redis cannot be reached: (c) is not measured");
        None
    };
    // Idle: started and ready, nothing asked of it yet.
    let ticks = clock_ticks_per_second();
    settle(memory.pid(), ticks);
    let idle_rss_kib = rss_kib(memory.pid());
    let idle_anonymous_kib = anonymous_kib(memory.pid());
    let baseline_idle_rss_kib = rss_kib(baseline.pid());
    let mut credentials = credentials(&memory, data)?;

    let configs = configs(&credentials, redis.is_some());
    let process_of = |instance| match instance {
        Instance::Baseline => Some(&baseline),
        Instance::Memory => Some(&memory),
        Instance::Redis => redis.as_ref(),
    };
    let wrk = Wrk {
        script: request_script.clone(),
        connections: options.connections,
    };
    // Warm-up: connections, caches and the allocator of every process, unmeasured.
    for config in &configs {
        if let Some(process) = process_of(config.instance) {
            wrk.measure(process, config, &credentials, 1, ticks)?;
        }
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
    let mut flood_runs = Vec::new();
    for round in 0..options.rounds {
        cmd::step(&format!("bench: round {} of {}", round + 1, options.rounds));
        // A fresh token each round: one lives 15 minutes, a long run outlives it.
        credentials = self::credentials(&memory, data)?;
        // Each round starts with another configuration, so none always runs first.
        let count = configs.len();
        for offset in 0..count {
            let index = (offset + round as usize) % count;
            let config = &configs[index];
            let Some(process) = process_of(config.instance) else {
                continue;
            };
            // Work left over from the last run, on any instance, must not land in this one.
            for instance in [Some(&baseline), Some(&memory), redis.as_ref()]
                .into_iter()
                .flatten()
            {
                settle(instance.pid(), ticks);
            }
            let run = if config.under_flood {
                let flood = wrk.flood(process, &credentials, options.seconds + 2)?;
                std::thread::sleep(Duration::from_secs(1));
                let run = wrk.measure(process, config, &credentials, options.seconds, ticks);
                flood_runs.push(flood.finish()?);
                run?
            } else {
                wrk.measure(process, config, &credentials, options.seconds, ticks)?
            };
            eprintln!(
                "  ({}) {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>6.0} us CPU/req",
                config.id,
                run.requests as f64 / run.seconds,
                run.p50_us / 1000.0,
                run.p99_us / 1000.0,
                run.cpu_seconds * 1e6 / run.requests.max(1) as f64
            );
            // A smoke run's debug build hashes too slowly for 32 logins at once: some wait past
            // their slot and are answered 503. Every other error fails either run.
            let tolerated = options.smoke && config.id == "e";
            if run.errors > 0 && !tolerated {
                bail!(
                    "({}) {} of {} requests failed or were refused: the measurement would \
                     not be of the configuration described (see {})",
                    config.id,
                    run.errors,
                    run.requests,
                    data.display()
                );
            }
            runs[index].push(run);
        }
    }
    drop(baseline);
    drop(redis);

    cmd::step("bench: a flood of distinct client addresses");
    let keys = if options.smoke { 2_000 } else { FLOOD_KEYS };
    let key_flood = key_flood(&memory, flood_script, keys, options, ticks)?;

    let results: Vec<Value> = configs
        .iter()
        .zip(&runs)
        .map(|(config, runs)| summarise(config, runs))
        .collect();
    let flood = summarise_flood(&flood_runs);
    let budgets = judge(&results, idle_rss_kib, &key_flood, options.smoke);
    Ok(json!({
        "machine": machine(),
        "smoke": options.smoke,
        "seconds_per_run": options.seconds,
        "rounds": options.rounds,
        "connections": options.connections,
        "flood_connections": FLOOD_CONNECTIONS,
        "binary": binary.display().to_string(),
        "builds": builds,
        "startup_to_ready_ms": startup.as_secs_f64() * 1000.0,
        "idle_rss_kib": idle_rss_kib,
        "idle_anonymous_kib": idle_anonymous_kib,
        "baseline_idle_rss_kib": baseline_idle_rss_kib,
        "password_hashing": params,
        "configurations": results,
        "wrong_login_flood": flood,
        "key_flood": key_flood,
        "budgets": budgets,
    }))
}

/// wrk with the request script.
struct Wrk {
    script: PathBuf,
    connections: u32,
}

/// The wrong-login flood of (g), running in the background.
struct Flood(Child);

impl Flood {
    fn finish(self) -> Result<Value> {
        let output = self.0.wait_with_output()?;
        let result = wrk_result(&output)?;
        Ok(json!({
            "requests": result.requests,
            "requests_per_second": result.requests as f64 / result.seconds,
            "p50_ms": result.p50_us / 1000.0,
            "p99_ms": result.p99_us / 1000.0,
        }))
    }
}

impl Wrk {
    fn command(&self, config: &Config, credentials: &Credentials) -> Command {
        let mut command = Command::new("wrk");
        command
            .args(["-t1", "--timeout", "10s", "-s"])
            .arg(&self.script)
            .env("BENCH_METHOD", config.method)
            .env_remove("BENCH_BODY")
            .env_remove("BENCH_CONTENT_TYPE")
            .env_remove("BENCH_TOKEN");
        if let Some(body) = &config.body {
            command.env("BENCH_BODY", body);
        }
        if let Some(content_type) = config.content_type {
            command.env("BENCH_CONTENT_TYPE", content_type);
        }
        if config.bearer {
            command.env("BENCH_TOKEN", &credentials.access_token);
        }
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command
    }

    /// One measurement of `config` for `seconds`, with the process's CPU time and peak memory.
    fn measure(
        &self,
        process: &Process,
        config: &Config,
        credentials: &Credentials,
        seconds: u32,
        ticks: f64,
    ) -> Result<Run> {
        let mut command = self.command(config, credentials);
        command
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{seconds}s"))
            .arg(format!("{}{}", process.base_url, config.path));
        let cpu_before = cpu_seconds(process.pid(), ticks);
        let mut child = command.spawn().context("cannot run wrk")?;
        let mut peak_rss_kib = 0;
        while child.try_wait()?.is_none() {
            peak_rss_kib = peak_rss_kib.max(rss_kib(process.pid()));
            std::thread::sleep(Duration::from_millis(50));
        }
        let cpu = cpu_seconds(process.pid(), ticks) - cpu_before;
        let mut run = wrk_result(&child.wait_with_output()?)?;
        run.cpu_seconds = cpu;
        run.peak_rss_kib = peak_rss_kib.max(rss_kib(process.pid()));
        Ok(run)
    }

    /// [`FLOOD_CONNECTIONS`] connections posting a wrong password, for `seconds`.
    fn flood(&self, process: &Process, credentials: &Credentials, seconds: u32) -> Result<Flood> {
        let config = Config {
            id: "flood",
            name: "wrong logins",
            instance: Instance::Memory,
            method: "POST",
            path: "/v1/auth/login",
            body: Some(credentials.wrong_login_body.clone()),
            content_type: Some("application/json"),
            bearer: false,
            under_flood: false,
        };
        let mut command = self.command(&config, credentials);
        command
            .arg(format!("-c{FLOOD_CONNECTIONS}"))
            .arg(format!("-d{seconds}s"))
            .arg(format!("{}{}", process.base_url, config.path));
        Ok(Flood(command.spawn().context("cannot run wrk")?))
    }
}

fn wrk_result(output: &std::process::Output) -> Result<Run> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("BENCH_RESULT "))
        .with_context(|| {
            format!(
                "wrk reported nothing:\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let value: Value = serde_json::from_str(line)?;
    let number = |name: &str| value[name].as_f64().unwrap_or_default();
    Ok(Run {
        requests: value["requests"].as_u64().unwrap_or_default(),
        seconds: number("duration_us") / 1e6,
        errors: value["errors"].as_u64().unwrap_or_default(),
        unexpected: value["unexpected"].as_u64().unwrap_or_default(),
        p50_us: number("p50_us"),
        p99_us: number("p99_us"),
        ..Run::default()
    })
}

/// The flood of distinct client keys: anonymous requests, each from a new address, until `keys`
/// addresses were seen; resident memory before, at the peak, and after the store's housekeeping
/// (which drops idle keys every minute) had its chance.
fn key_flood(
    service: &Process,
    script: &Path,
    keys: u32,
    options: &BenchOptions,
    ticks: f64,
) -> Result<Value> {
    settle(service.pid(), ticks);
    let before = rss_kib(service.pid());
    let mut peak = before;
    let mut sent = 0;
    let mut seconds = 0.0;
    // In runs of two seconds, each going on from the address where the last one stopped, until
    // every address has been sent once.
    while sent < u64::from(keys) {
        let mut child = Command::new("wrk")
            .args(["-t1", "--timeout", "10s", "-d2s", "-s"])
            .arg(script)
            .arg(format!("-c{}", options.connections))
            .arg(format!("{}/v1/bench/ping", service.base_url))
            .env("BENCH_KEYS", keys.to_string())
            .env("BENCH_FIRST_KEY", sent.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run wrk")?;
        while child.try_wait()?.is_none() {
            peak = peak.max(rss_kib(service.pid()));
            std::thread::sleep(Duration::from_millis(50));
        }
        let run = wrk_result(&child.wait_with_output()?)?;
        if run.requests == 0 {
            bail!("the key flood sent nothing");
        }
        if run.unexpected > 0 {
            bail!(
                "{} of the key flood's answers were not 401: its addresses were not each \
                 charged as an anonymous client",
                run.unexpected
            );
        }
        sent += run.requests;
        seconds += run.seconds;
    }
    peak = peak.max(rss_kib(service.pid()));
    // Every request is answered 401 (no credential), charged to its address's anonymous bucket.
    let distinct = sent.min(u64::from(keys));
    let after = if options.smoke {
        None
    } else {
        // Housekeeping runs every 60 s; give it two chances.
        let deadline = Instant::now() + Duration::from_secs(130);
        let mut lowest = rss_kib(service.pid());
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(2));
            lowest = lowest.min(rss_kib(service.pid()));
        }
        Some(lowest)
    };
    Ok(json!({
        "distinct_addresses": distinct,
        "requests": sent,
        "seconds": seconds,
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "rss_after_kib": after,
    }))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn summarise(config: &Config, runs: &[Run]) -> Value {
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

fn summarise_flood(runs: &[Value]) -> Value {
    json!({
        "connections": FLOOD_CONNECTIONS,
        "requests_per_second": median(runs.iter().filter_map(|run| run["requests_per_second"].as_f64()).collect()),
        "p99_ms": median(runs.iter().filter_map(|run| run["p99_ms"].as_f64()).collect()),
    })
}

/// Each budget's measured value and verdict (none in a smoke run).
fn judge(results: &[Value], idle_rss_kib: u64, key_flood: &Value, smoke: bool) -> Vec<Value> {
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

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = field_kib(&meminfo, "MemTotal:").map(|kib| (kib as f64 / 1048576.0).round());
    let first_line = |program: &str, arg: &str| {
        Command::new(program).arg(arg).output().ok().map(|output| {
            let text = if output.stdout.is_empty() {
                output.stderr
            } else {
                output.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
    };
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "memory_gib": memory_gib,
        "kernel": first_line("uname", "-r"),
        "rustc": first_line("rustc", "-V"),
        "wrk": first_line("wrk", "--version").map(|line| line.split(" [").next().unwrap_or_default().to_owned()),
    })
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Resident memory of `pid` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| field_kib(&status, "VmRSS:"))
        .unwrap_or_default()
}

/// The anonymous part of `pid`'s resident memory in KiB (heap and stacks; the rest is the
/// binary's code and other files, shared with the page cache).
fn anonymous_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| field_kib(&status, "RssAnon:"))
        .unwrap_or_default()
}

/// User and system CPU time of `pid` so far, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let tick = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or_default()
    };
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 from field 3.
    (tick(11) + tick(12)) / ticks
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Waits (at most 30 s) until `pid` is nearly idle: background work of one run (hashes still
/// queued, connections closing) must not be billed to the next.
fn settle(pid: u32, ticks: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let before = cpu_seconds(pid, ticks);
        std::thread::sleep(Duration::from_millis(300));
        let busy = cpu_seconds(pid, ticks) - before;
        if busy < 0.015 || Instant::now() > deadline {
            return;
        }
    }
}
