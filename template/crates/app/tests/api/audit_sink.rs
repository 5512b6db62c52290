//! LOG-1 .. LOG-3: what the audit sink writes is exactly what was recorded, once per event, in
//! the documented schema (the other tests read the in-process `tracing` capture of the same
//! events; this one proves the capture and the sink agree).

use serde_json::{Value, json};

use crate::helpers::{audit_events_for, spawn_app_with};

#[tokio::test]
async fn the_sink_writes_each_recorded_event_once_in_the_schema() {
    let app = spawn_app_with("[audit]\nsink = \"file\"\n").await;
    let mut request_ids = Vec::new();
    for response in [
        app.admin
            .get(app.url("/v1/me"))
            .send()
            .await
            .expect("request"),
        app.client
            .get(app.url("/v1/me"))
            .send()
            .await
            .expect("request"),
        app.client
            .post(app.url("/v1/auth/login"))
            .json(&json!({"email": "nobody@example.com", "password": "wrong-password-1"}))
            .send()
            .await
            .expect("request"),
        app.admin
            .post(app.url("/v1/users"))
            .json(&json!({"name": ""}))
            .send()
            .await
            .expect("request"),
    ] {
        let id = response.headers()["x-request-id"]
            .to_str()
            .expect("id")
            .to_owned();
        request_ids.push(id);
    }
    // The writer thread appends asynchronously: wait until every recorded event is in the file.
    let path = app.data_dir.path().join("audit.log");
    let expected: usize = request_ids
        .iter()
        .map(|id| audit_events_for(id).len())
        .sum();
    assert!(
        expected >= 6,
        "too few events to prove anything: {expected}"
    );
    let mut lines: Vec<Value> = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .filter(|line: &Value| {
                request_ids
                    .iter()
                    .any(|id| line["request_id"] == id.as_str())
            })
            .collect();
        if lines.len() >= expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for id in &request_ids {
        let mut captured: Vec<String> = audit_events_for(id)
            .iter()
            .map(|event| {
                format!(
                    "{} {} {}",
                    event["event"], event["outcome"], event["reason"]
                )
            })
            .collect();
        let mut written: Vec<String> = lines
            .iter()
            .filter(|line| line["request_id"] == id.as_str())
            .map(|line| {
                format!(
                    "{} {} {}",
                    line["event"].as_str().unwrap_or_default(),
                    line["outcome"].as_str().unwrap_or_default(),
                    line["reason"].as_str().unwrap_or_default()
                )
            })
            .collect();
        captured.sort();
        written.sort();
        assert_eq!(written, captured, "request {id}");
    }
    let schema = [
        "client_ip",
        "event",
        "log",
        "outcome",
        "policy",
        "principal",
        "reason",
        "request_id",
        "route",
        "timestamp",
    ];
    for line in &lines {
        let keys: Vec<&str> = line
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, schema, "{line}");
        assert_eq!(line["log"], "audit");
        assert!(
            line["timestamp"]
                .as_str()
                .expect("timestamp")
                .ends_with('Z')
        );
    }
}
