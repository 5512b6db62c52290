//! The detectors' input: which audit records they read and what each tells them, a failed
//! authentication attempt or a verified principal seen. Every other record is not even queued,
//! and a detector's own finding is never read back (no feedback loop through the hub).

use std::net::IpAddr;

use super::finding::ANOMALY_EVENT;
use crate::logging::audit::{AuditRecord, Outcome};

/// Rate-limit tiers guarding a credential check: their refusals (`ratelimit.exceeded`) are
/// failed attempts the check never saw (a locked-out account's later guesses, among others).
const AUTHENTICATION_TIERS: [&str; 4] =
    ["login", "login_account", "token", "password_reset_confirm"];

/// What one audit record tells the detectors.
pub(super) enum Signal<'a> {
    /// A credential was presented and refused, or an authentication tier refused the attempt.
    AuthFailure {
        client_ip: Option<IpAddr>,
        /// The account a refused password was for, when it exists.
        account: Option<&'a str>,
    },
    /// A verified principal was seen: at login, at a token grant, or making a request.
    Principal {
        principal: &'a str,
        client_ip: Option<IpAddr>,
        /// The operation, for requests (`GET /v1/notes/{id}`).
        operation: Option<&'a str>,
    },
}

/// The signal in `record`, if any.
pub(super) fn signal(record: &AuditRecord) -> Option<Signal<'_>> {
    let principal = record.principal.as_deref();
    match record.event {
        // A detector's own findings are never its input: no feedback loop through the hub.
        ANOMALY_EVENT => None,
        // No credential at all is not an authentication attempt.
        "authn.missing" => None,
        event if event.starts_with("authn.") && record.outcome == Outcome::Denied => {
            // The service's own outage is not an attack.
            (record.reason != "verifier_unavailable").then_some(Signal::AuthFailure {
                client_ip: record.client_ip,
                account: principal,
            })
        }
        // A guess the rate limits refused is still a guess. No account: the refusal names
        // the key's kind only.
        "ratelimit.exceeded"
            if record
                .policy
                .as_deref()
                .is_some_and(|tier| AUTHENTICATION_TIERS.contains(&tier)) =>
        {
            Some(Signal::AuthFailure {
                client_ip: record.client_ip,
                account: None,
            })
        }
        // Allowed or not, the credential behind a scope decision was verified.
        "authz.scope" => Some(Signal::Principal {
            principal: principal?,
            client_ip: record.client_ip,
            operation: record
                .policy
                .as_deref()
                .and_then(|policy| policy.split_once(" requires "))
                .map(|(operation, _)| operation)
                .or(record.route.as_deref()),
        }),
        "authn.password" | "authn.client" if record.outcome == Outcome::Allowed => {
            Some(Signal::Principal {
                principal: principal?,
                client_ip: record.client_ip,
                operation: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::anomaly::synthetic_traffic::{DAY_ZERO, PARIS, at_host, login_failure};

    #[test]
    fn anomalies_and_requests_without_a_credential_are_not_read() {
        let mut anomaly = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        anomaly.event = ANOMALY_EVENT;
        assert!(signal(&anomaly).is_none());
        let mut missing = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        missing.event = "authn.missing";
        assert!(signal(&missing).is_none());
        let mut outage = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        outage.event = "authn.access_token";
        outage.reason = "verifier_unavailable";
        assert!(signal(&outage).is_none());
        outage.reason = "expired";
        assert!(signal(&outage).is_some());
    }
}
