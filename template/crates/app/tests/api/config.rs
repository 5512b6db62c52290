//! The real binary refuses to start on bad configuration, naming the key.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::backend;
use crate::helpers::test_config;

/// Runs the service binary with `vars`, expecting it to exit on its own; returns its exit code
/// and standard error.
fn run_binary(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let config_dir = tempfile::tempdir().expect("config dir");
    let data_dir = tempfile::tempdir().expect("data dir");
    let config = test_config(data_dir.path());
    std::fs::write(config_dir.path().join("default.toml"), config).expect("write config");

    let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
    command
        .env_clear()
        .env("APP_CONFIG_DIR", config_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in vars {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start the binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary started instead of refusing its configuration");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    backend::release(data_dir.path());
    (status.code(), stderr)
}

#[test]
fn an_unknown_key_refuses_start_up_naming_it() {
    let (code, stderr) = run_binary(&[("APP_SERVER__PROT", "8080")]);
    assert_eq!(code, Some(78), "exits with EX_CONFIG; stderr: {stderr}");
    assert!(stderr.contains("server.prot"), "{stderr}");
    assert!(stderr.contains("unknown key"), "{stderr}");
}

#[test]
fn a_malformed_value_refuses_start_up_naming_it() {
    let (code, stderr) = run_binary(&[("APP_DATABASE__MAX_CONNECTIONS", "many")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("database.max_connections"), "{stderr}");
}

#[test]
fn unsafe_production_settings_refuse_start_up_naming_them() {
    let (code, stderr) = run_binary(&[("APP_ENVIRONMENT", "production")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("tls.mode"),
        "the development CA in production; {stderr}"
    );
}

#[test]
fn a_wildcard_cors_origin_refuses_start_up() {
    let (code, stderr) = run_binary(&[("APP_CORS__ALLOWED_ORIGINS", r#"["*"]"#)]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("cors.allowed_origins"), "{stderr}");
    assert!(stderr.contains("wildcard"), "{stderr}");
}

#[test]
fn a_plaintext_public_origin_refuses_start_up() {
    let (code, stderr) = run_binary(&[("APP_SERVER__PUBLIC_ORIGIN", "http://localhost")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("server.public_origin"), "{stderr}");
}

#[test]
fn an_unknown_environment_name_refuses_start_up() {
    let (code, stderr) = run_binary(&[("APP_ENVIRONMENT", "prod")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("APP_ENVIRONMENT"), "{stderr}");
}
