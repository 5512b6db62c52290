//! The audit events every service of this test process records, captured from `tracing` with
//! their fields as text. Services run in-process, so a test finds its own events by the request
//! id of its response.

/// The captured events.
#[derive(Debug, Default)]
struct AuditCapture {
    events: std::sync::Mutex<Vec<std::collections::BTreeMap<String, String>>>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for &'static AuditCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "audit" {
            return;
        }
        struct Fields(std::collections::BTreeMap<String, String>);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(
                    field.name().to_owned(),
                    format!("{value:?}").trim_matches('"').to_owned(),
                );
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        let mut fields = Fields(std::collections::BTreeMap::new());
        event.record(&mut fields);
        self.events.lock().expect("audit lock").push(fields.0);
    }
}

static AUDIT: std::sync::OnceLock<&'static AuditCapture> = std::sync::OnceLock::new();

/// Starts capturing audit events (once per process).
pub fn capture_audit_events() {
    AUDIT.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let capture: &'static AuditCapture = Box::leak(Box::default());
        let subscriber = tracing_subscriber::registry().with(capture);
        let _ = tracing::subscriber::set_global_default(subscriber);
        capture
    });
}

/// The audit events named `name` recorded so far by every service of this process (detached
/// events, such as `security.anomaly`, carry no request id).
pub fn audit_events_named(name: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    audit_events_where("event", name)
}

/// The audit events recorded for the request whose response carried `request_id`.
pub fn audit_events_for(request_id: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    audit_events_where("request_id", request_id)
}

/// The captured events whose `field` is `value`.
fn audit_events_where(field: &str, value: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let capture = AUDIT.get().expect("capture_audit_events() was called");
    capture
        .events
        .lock()
        .expect("audit lock")
        .iter()
        .filter(|event| event.get(field).map(String::as_str) == Some(value))
        .cloned()
        .collect()
}
