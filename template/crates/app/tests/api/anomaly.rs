//! Anomaly detection over HTTPS (LOG-4): a burst of wrong passwords from one address becomes
//! `security.anomaly` audit events, per address and per account, naming neither the email nor
//! the password tried.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{audit_events_named, client_from, json_body, spawn_app_with};

/// The first `security.anomaly` event with `reason` matching `about`, waiting up to 10 s: the
/// detectors run beside the requests, in a task of their own.
async fn anomaly(
    reason: &str,
    about: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    for _ in 0..100 {
        if let Some(event) = audit_events_named("security.anomaly")
            .into_iter()
            .find(|event| event.get("reason").map(String::as_str) == Some(reason) && about(event))
        {
            return event;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {reason} anomaly within 10 s");
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_from_one_address_raises_anomaly_events() {
    // Low floors, so that a short burst is a spike; every other threshold as by default.
    let app = spawn_app_with(
        "[anomaly]\n\
         auth_failures_per_ip = { per_window = 4, per_hour = 30 }\n\
         auth_failures_per_account = { per_window = 4, per_hour = 20 }\n",
    )
    .await;
    let me = app
        .admin
        .get(app.url("/v1/me"))
        .send()
        .await
        .expect("request");
    let admin_id = json_body(me).await["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    // An address of its own: no other test of this process sends from it.
    let attacker_ip: IpAddr = "127.0.0.77".parse().expect("an address");
    let attacker = client_from(app.ca_cert.as_deref(), attacker_ip);
    let password = "not-the-password-at-all";
    // Ten guesses: wherever a minute ends among them, one window holds at least five.
    let guesses = (0..10).map(|_| {
        attacker
            .post(app.url("/v1/auth/login"))
            .json(&json!({"email": app.credentials.admin.email, "password": password}))
            .send()
    });
    for response in futures_util::future::join_all(guesses).await {
        assert_eq!(response.expect("request").status(), 401);
    }

    let per_address = anomaly("auth_failure_spike_ip", |event| {
        event.get("client_ip").map(String::as_str) == Some("127.0.0.77")
    })
    .await;
    assert_eq!(per_address["policy"], "auth_failures");
    assert_eq!(per_address["outcome"], "denied");
    assert_eq!(per_address["route"], "/v1/auth/login");
    let per_account = anomaly("auth_failure_spike_account", |event| {
        event.get("subject") == Some(&admin_id)
    })
    .await;
    assert_eq!(per_account["policy"], "auth_failures");
    for event in [&per_address, &per_account] {
        for value in event.values() {
            assert!(
                !value.contains(&app.credentials.admin.email) && !value.contains(password),
                "an anomaly event names the email or the password: {event:?}"
            );
        }
    }
}
