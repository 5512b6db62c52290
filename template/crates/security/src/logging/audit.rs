//! Audit events (LOG-1, LOG-2, LOG-3): security decisions as structured records on their own
//! `tracing` target, `audit`, so they can be routed to a dedicated sink.
//!
//! Threat: an attack that leaves no trace cannot be noticed, investigated or proven; an audit
//! trail mixed into the application log is lost with its noise, and one that records credentials
//! or bodies becomes a target of its own.
//!
//! Control: an event names what happened, its outcome and a reason code, the principal, the
//! client address, the route template and the request id, and the policy it was decided by; it
//! never carries a credential, a body, a header value or an email. The schema and every event
//! name are in `docs/audit-events.md`. Who records what:
//! - LOG-1, every authentication attempt, allowed or denied: `authn.access_token`,
//!   `authn.api_key`, `authn.password`, `authn.client`, `authn.missing`, `authn.ambiguous`
//!   (access control and the login and token endpoints), the token and key lifecycle
//!   (`token.issued`, `token.refresh_reuse`, `api_key.created`, ...), and credentials sent over
//!   plain HTTP;
//! - LOG-2, every authorization decision: `authz.scope` for every protected request (its
//!   `policy` the operation and its scopes), `authz.object` (another principal's object),
//!   `authz.api_key_scopes`, `authz.api_keys_of_other`, and the rate limiter's
//!   `ratelimit.exceeded` and `ratelimit.store_unavailable`;
//! - LOG-3, every refused input, once, from the service's one error mapping:
//!   `input.validation` with `body_schema`, `request_malformed`, `business_rule`,
//!   `body_too_large` or `unsupported_media_type`, and the route template, never the value.
//!
//! Records reach the service's [`AuditHub`], which hands each to its [`AuditObserver`]s: the
//! sink that writes them as JSON lines apart from the application log (off the request path,
//! from its own thread), the metrics and the anomaly detectors.
//!
//! Default: every event is recorded; there is no switch per event. The sink (`[audit] sink`:
//! stdout marked `"log": "audit"`, or a file) may be `off` outside production only.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use poem::Request;

use crate::logging::request_id::RequestId;
use crate::transport::client_ip::client_ip_of;

/// The `tracing` target of every audit event.
pub const AUDIT_TARGET: &str = "audit";

/// Whether the decision let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// The operation's route template (`/v1/notes/{id}`), never the raw path.
    pub route: Option<&'a str>,
    /// Where the event goes besides the log: the service's sink, metrics and detectors.
    pub hub: Option<&'a AuditHub>,
}

/// The route template of the request's operation, set by [`crate::operations::RouteTemplates`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTemplate(pub Arc<str>);

/// What an audit event needs of a request, kept after the request itself was handed on: for
/// events decided on the response (a validation failure mapped to 400).
#[derive(Debug, Clone, Default)]
pub struct AuditContext {
    client_ip: Option<IpAddr>,
    request_id: Option<String>,
    route: Option<Arc<str>>,
    hub: Option<AuditHub>,
}

impl AuditContext {
    pub fn of(request: &Request) -> Self {
        let event = AuditEvent::for_request(request, "", Outcome::Allowed, "");
        Self {
            client_ip: event.client_ip,
            request_id: event.request_id.map(str::to_owned),
            route: request
                .extensions()
                .get::<RouteTemplate>()
                .map(|route| Arc::clone(&route.0)),
            hub: request.data::<AuditHub>().cloned(),
        }
    }

    /// An event about the request this context was taken from.
    pub fn event(
        &self,
        name: &'static str,
        outcome: Outcome,
        reason: &'static str,
    ) -> AuditEvent<'_> {
        AuditEvent {
            name,
            outcome,
            reason,
            client_ip: self.client_ip,
            request_id: self.request_id.as_deref(),
            subject: None,
            policy: None,
            route: self.route.as_deref(),
            hub: self.hub.as_ref(),
        }
    }
}

/// An audit event as its observers receive it: the documented schema, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// When it was recorded (UTC on output).
    pub at: SystemTime,
    /// Dotted event name, e.g. `authn.password`.
    pub event: &'static str,
    pub outcome: Outcome,
    /// A fixed reason code.
    pub reason: &'static str,
    /// Who acted, once known: a user id, client id or API key id, never a credential.
    pub principal: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// The route template, never the raw path.
    pub route: Option<String>,
    pub request_id: Option<String>,
    /// What decided: a policy, a tier, a detector.
    pub policy: Option<String>,
}

/// Receives every audit event of a service: its sink, its metrics, its anomaly detectors. Called
/// on the request path: keep it short (count, or hand over to a task).
pub trait AuditObserver: Send + Sync + 'static {
    fn observe(&self, record: &AuditRecord);
}

/// The observers of one service instance, carried as request data (`Route::data(hub)`) so that
/// every [`AuditEvent::for_request`] reaches them; background work passes it explicitly.
#[derive(Clone, Default)]
pub struct AuditHub {
    observers: Arc<[Arc<dyn AuditObserver>]>,
}

impl std::fmt::Debug for AuditHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHub")
            .field("observers", &self.observers.len())
            .finish()
    }
}

impl AuditHub {
    pub fn new(observers: Vec<Arc<dyn AuditObserver>>) -> Self {
        Self {
            observers: observers.into(),
        }
    }

    /// Hands `record` to every observer.
    pub fn publish(&self, record: &AuditRecord) {
        for observer in self.observers.iter() {
            observer.observe(record);
        }
    }
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
            client_ip: client_ip_of(request),
            request_id: request
                .extensions()
                .get::<RequestId>()
                .map(RequestId::as_str),
            subject: None,
            policy: None,
            route: request
                .extensions()
                .get::<RouteTemplate>()
                .map(|route| &*route.0),
            hub: request.data::<AuditHub>(),
        }
    }

    /// An event outside any request (a background task, a detector), published to `hub`.
    pub fn detached(
        hub: &'a AuditHub,
        name: &'static str,
        outcome: Outcome,
        reason: &'static str,
    ) -> Self {
        Self {
            name,
            outcome,
            reason,
            client_ip: None,
            request_id: None,
            subject: None,
            policy: None,
            route: None,
            hub: Some(hub),
        }
    }

    /// Names the client address (for detached events).
    pub fn client_ip(mut self, client_ip: IpAddr) -> Self {
        self.client_ip = Some(client_ip);
        self
    }

    /// The owned record observers receive.
    pub fn to_record(&self) -> AuditRecord {
        AuditRecord {
            at: SystemTime::now(),
            event: self.name,
            outcome: self.outcome,
            reason: self.reason,
            principal: self.subject.map(str::to_owned),
            client_ip: self.client_ip,
            route: self.route.map(str::to_owned),
            request_id: self.request_id.map(str::to_owned),
            policy: self.policy.map(str::to_owned),
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

    /// Writes the event to the `audit` log target and to the service's observers.
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
            route = self.route,
            "audit"
        );
        if let Some(hub) = self.hub {
            hub.publish(&self.to_record());
        }
    }
}
