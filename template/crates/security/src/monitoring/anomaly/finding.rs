//! What the detectors report: an [`AnomalyKind`] (the event's reason and the detector, its
//! policy), one [`Anomaly`] per finding, recorded as a `security.anomaly` audit event, and
//! [`Seen`], the principal of a record as a geography or usage finding names it.

use std::net::IpAddr;

use crate::logging::audit::{AuditEvent, AuditHub, Outcome};

/// The name of the audit event every detector raises.
pub const ANOMALY_EVENT: &str = "security.anomaly";

/// What a detector found: the event's reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    AuthFailureSpikeIp,
    AuthFailureSpikeAccount,
    AuthFailureSpikeGlobal,
    NewCountry,
    ImpossibleTravel,
    RequestRate,
    EndpointMix,
}

impl AnomalyKind {
    /// The event's `reason`.
    pub fn reason(self) -> &'static str {
        match self {
            Self::AuthFailureSpikeIp => "auth_failure_spike_ip",
            Self::AuthFailureSpikeAccount => "auth_failure_spike_account",
            Self::AuthFailureSpikeGlobal => "auth_failure_spike_global",
            Self::NewCountry => "new_country",
            Self::ImpossibleTravel => "impossible_travel",
            Self::RequestRate => "request_rate",
            Self::EndpointMix => "endpoint_mix",
        }
    }

    /// The detector that finds it: the event's `policy` and the metric's label.
    pub fn detector(self) -> &'static str {
        match self {
            Self::AuthFailureSpikeIp
            | Self::AuthFailureSpikeAccount
            | Self::AuthFailureSpikeGlobal => "auth_failures",
            Self::NewCountry | Self::ImpossibleTravel => "geography",
            Self::RequestRate | Self::EndpointMix => "usage",
        }
    }
}

/// One finding, as it becomes a `security.anomaly` audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// The traffic's outcome: `Denied` for refused credentials, else the request's own.
    pub outcome: Outcome,
    /// The account or principal it is about (an id, never an email).
    pub principal: Option<String>,
    /// The client address it is about, or that tipped it.
    pub client_ip: Option<IpAddr>,
    /// The route template of the event that tipped it.
    pub route: Option<String>,
}

impl Anomaly {
    /// Records the `security.anomaly` event: the audit log and every observer of `hub`.
    pub fn record(&self, hub: &AuditHub) {
        let mut event = AuditEvent::detached(hub, ANOMALY_EVENT, self.outcome, self.kind.reason())
            .policy(self.kind.detector());
        if let Some(client_ip) = self.client_ip {
            event = event.client_ip(client_ip);
        }
        if let Some(principal) = &self.principal {
            event = event.subject(principal);
        }
        event.route = self.route.as_deref();
        event.record();
    }
}

/// A principal seen in one record.
pub(super) struct Seen<'a> {
    pub(super) principal: &'a str,
    pub(super) client_ip: Option<IpAddr>,
    pub(super) outcome: Outcome,
    pub(super) route: Option<&'a str>,
}

impl Seen<'_> {
    pub(super) fn anomaly(&self, kind: AnomalyKind) -> Anomaly {
        Anomaly {
            kind,
            outcome: self.outcome,
            principal: Some(self.principal.to_owned()),
            client_ip: self.client_ip,
            route: self.route.map(str::to_owned),
        }
    }
}
