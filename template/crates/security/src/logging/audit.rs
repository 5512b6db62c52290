//! Audit events (LOG-1, LOG-2, LOG-3): security decisions as structured records on their own
//! `tracing` target, `audit`, so they can be routed to a dedicated sink.
//!
//! An event names what happened, its outcome and a reason code, the client address and the
//! request id; it never carries a credential, a body or a header value.

use std::net::IpAddr;

use poem::Request;

use crate::logging::request_id::RequestId;
use crate::transport::client_ip::ClientIp;

/// The `tracing` target of every audit event.
pub const AUDIT_TARGET: &str = "audit";

/// Whether the decision let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// Dotted event name, e.g. `transport.plaintext_credentials`.
    pub name: &'static str,
    pub outcome: Outcome,
    /// A fixed reason code, e.g. `authorization_header`.
    pub reason: &'static str,
    pub client_ip: Option<IpAddr>,
    pub request_id: Option<&'a str>,
    /// Who acted, once known: a user id, client id or API key id, never a credential.
    pub subject: Option<&'a str>,
    /// What decided an authorization: e.g. `GET /v1/users/{id} requires users:read`.
    pub policy: Option<&'a str>,
}

impl<'a> AuditEvent<'a> {
    /// An event about `request`, with its peer address and request id filled in.
    pub fn for_request(
        request: &'a Request,
        name: &'static str,
        outcome: Outcome,
        reason: &'static str,
    ) -> Self {
        Self {
            name,
            outcome,
            reason,
            // The resolved client (trusted proxies' forwarding headers), else the peer.
            client_ip: request
                .extensions()
                .get::<ClientIp>()
                .map(|client| client.0)
                .or_else(|| {
                    request
                        .remote_addr()
                        .as_socket_addr()
                        .map(|addr| addr.ip().to_canonical())
                }),
            request_id: request
                .extensions()
                .get::<RequestId>()
                .map(RequestId::as_str),
            subject: None,
            policy: None,
        }
    }

    /// Names who acted.
    pub fn subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Names the policy that decided.
    pub fn policy(mut self, policy: &'a str) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Writes the event.
    pub fn record(&self) {
        tracing::info!(
            target: AUDIT_TARGET,
            event = self.name,
            outcome = self.outcome.as_str(),
            reason = self.reason,
            client_ip = self.client_ip.map(tracing::field::display),
            request_id = self.request_id,
            subject = self.subject,
            policy = self.policy,
            "audit"
        );
    }
}
