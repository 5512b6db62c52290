//! The real binary (`CARGO_BIN_EXE_app`), started on free ports with the test configuration,
//! its JSON log lines readable one by one: for what only a process shows (signals, the log
//! itself, two instances sharing servers, the operator commands).

use std::path::Path;
use std::sync::Arc;

use super::config::{config_dir, test_config, with_overrides};
use crate::backend;

/// What the binary changes from the test configuration: its log at `info` and its audit events
/// on stdout, where the tests read them.
const BINARY_OVERRIDES: &str = "[log]\nlevel = \"info\"\n[audit]\nsink = \"stdout\"\n";

/// The real binary, started with the test configuration and `overrides` (its `test.toml`), its
/// JSON log lines readable one by one.
pub struct RunningBinary {
    pub child: std::process::Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Every line the process wrote, stdout and stderr, as written.
    output: Arc<std::sync::Mutex<Vec<String>>>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl RunningBinary {
    pub fn start(overrides: &str) -> Self {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        let data_dir = tempfile::tempdir().expect("data dir");
        let config = with_overrides(&test_config(data_dir.path()), BINARY_OVERRIDES);
        let config_dir = config_dir(&config, overrides);
        let mut child = Command::new(env!("CARGO_BIN_EXE_app"))
            .env_clear()
            .env("APP_CONFIG_DIR", config_dir.path())
            .env("APP_ENVIRONMENT", "test")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let output: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (sender, events) = std::sync::mpsc::channel::<serde_json::Value>();
        let stdout_lines = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                stdout_lines.lock().expect("output").push(line.clone());
                if let Ok(event) = serde_json::from_str(&line) {
                    // The test may have stopped listening; keep collecting the output.
                    let _ = sender.send(event);
                }
            }
        });
        let stderr_lines = Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                stderr_lines.lock().expect("output").push(line);
            }
        });
        Self {
            child,
            events,
            output,
            _dirs: (config_dir, data_dir),
        }
    }

    /// The next log event matching `wanted`; a missing event fails the test instead of hanging.
    pub fn wait_for(&self, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        loop {
            let event = self
                .events
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("the expected log line within 30 s");
            if wanted(&event) {
                return event;
            }
        }
    }

    /// What `app check-config` prints for this binary's configuration (stdout and stderr).
    pub fn check_config_output(&self) -> String {
        self.run_command("check-config")
    }

    /// Runs `app <command>` with this binary's configuration; its output (stdout and stderr)
    /// once it succeeded.
    pub fn run_command(&self, command: &str) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_app"))
            .arg(command)
            .env_clear()
            .env("APP_CONFIG_DIR", self._dirs.0.path())
            .env("APP_ENVIRONMENT", "test")
            .output()
            .unwrap_or_else(|error| panic!("run {command}: {error}"));
        assert!(output.status.success(), "{command} failed: {output:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Every line written so far, stdout and stderr.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().expect("output").clone()
    }

    /// The URL of the binary's database.
    pub fn database_url(&self) -> String {
        backend::database_url(self._dirs.1.path())
    }

    /// The folder of the binary's data: `app.db`, `keys/`, `tls/`.
    pub fn data_dir(&self) -> &Path {
        self._dirs.1.path()
    }

    /// The development CA the binary created (`self_signed` mode).
    pub fn dev_ca_cert(&self) -> std::path::PathBuf {
        self._dirs.1.path().join("tls").join("ca.pem")
    }

    /// The address logged with `message`.
    pub fn address(&self, message: &str) -> String {
        let event = self.wait_for(|event| event["message"] == message);
        event["address"].as_str().expect("address").to_owned()
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        backend::release(self._dirs.1.path());
    }
}
