//! The audit sink (LOG-1 .. LOG-3): every audit event as one JSON line in the documented schema
//! (`docs/audit-events.md`), on stdout or appended to a file, apart from the application log.
//!
//! A line carries exactly the schema's fields: `timestamp` (UTC, RFC 3339), `event`, `outcome`,
//! `reason`, `principal`, `client_ip`, `route`, `request_id` and `policy`. Nothing else can reach
//! it: the record type has no field for a credential, a body or a header.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use security::logging::audit::{AuditHub, AuditObserver, AuditRecord};

use crate::config::{AuditSettings, AuditSinkKind};

/// Writes each record as one JSON line.
pub struct JsonLinesSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink").finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out: Mutex::new(out),
        }
    }
}

/// One record as its JSON line (without the newline).
pub fn json_line(record: &AuditRecord) -> String {
    let timestamp: DateTime<Utc> = record.at.into();
    serde_json::json!({
        "timestamp": timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        "log": "audit",
        "event": record.event,
        "outcome": record.outcome.as_str(),
        "reason": record.reason,
        "principal": record.principal,
        "client_ip": record.client_ip.map(|ip| ip.to_string()),
        "route": record.route,
        "request_id": record.request_id,
        "policy": record.policy,
    })
    .to_string()
}

impl AuditObserver for JsonLinesSink {
    fn observe(&self, record: &AuditRecord) {
        let mut line = json_line(record);
        line.push('\n');
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // An audit line that cannot be written is reported on the application log; the
        // request goes on (the metrics and detectors still saw the event).
        if let Err(error) = out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
            tracing::error!(error = %error, "cannot write the audit log");
        }
    }
}

/// The service's audit hub: the configured sink first, then `observers` (metrics, detectors).
pub fn hub_with(
    settings: &AuditSettings,
    observers: Vec<Arc<dyn AuditObserver>>,
) -> std::io::Result<AuditHub> {
    let out: Box<dyn Write + Send> = match settings.sink {
        AuditSinkKind::Stdout => Box::new(std::io::stdout()),
        AuditSinkKind::File => {
            if let Some(parent) = settings.file_path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&settings.file_path)?,
            )
        }
        AuditSinkKind::Off => {
            return Ok(AuditHub::new(observers));
        }
    };
    let mut all: Vec<Arc<dyn AuditObserver>> = vec![Arc::new(JsonLinesSink::new(out))];
    all.extend(observers);
    Ok(AuditHub::new(all))
}

/// The service's audit hub with the configured sink only.
pub fn hub(settings: &AuditSettings) -> std::io::Result<AuditHub> {
    hub_with(settings, Vec::new())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use security::logging::audit::Outcome;

    use super::*;

    #[test]
    fn a_line_carries_exactly_the_schema() {
        let record = AuditRecord {
            at: UNIX_EPOCH + Duration::from_millis(1_764_300_000_123),
            event: "authn.password",
            outcome: Outcome::Denied,
            reason: "wrong_password",
            principal: Some("0b6c".to_owned()),
            client_ip: Some("192.0.2.1".parse().expect("ip")),
            route: Some("/v1/auth/login".to_owned()),
            request_id: Some("r-1".to_owned()),
            policy: None,
        };
        let line: serde_json::Value = serde_json::from_str(&json_line(&record)).expect("json");
        let keys: Vec<&str> = line
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "client_ip",
                "event",
                "log",
                "outcome",
                "policy",
                "principal",
                "reason",
                "request_id",
                "route",
                "timestamp"
            ]
        );
        assert_eq!(line["timestamp"], "2025-11-28T03:20:00.123Z");
        assert_eq!(line["outcome"], "denied");
    }
}
