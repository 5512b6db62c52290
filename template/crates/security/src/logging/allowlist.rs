//! Allowlist-only application logging (LOG-5): a field reaches the log only if its name is on
//! the list.
//!
//! Threat: a secret logged by accident: a token in a debug field, a password in an error, a
//! dependency logging a header, an SQL statement with its values, a request body. Redaction by
//! denylist misses the field nobody thought of.
//!
//! Control: [`AllowlistLayer`] formats every event itself and writes only the message and the
//! fields named in [`LOGGED_FIELDS`] (a dependency's event only at `WARN` and above); any
//! other field is dropped and counted
//! ([`AllowlistLayer::dropped_fields`]), never printed. Values are escaped (JSON escaping, or
//! `escape_debug` for the terminal format), so a client cannot forge log lines with newlines or
//! control characters. No header is ever logged whole: the service's access log records method,
//! route template (never the raw path or query), status, latency and an allowlist of request
//! headers (user agent, content type and length), so `Authorization`, `Cookie`, `Set-Cookie` and
//! API-key headers cannot appear. Secrets are typed (`secrecy`'s `SecretString`, `ApiKeySecret`,
//! `OpaqueToken`, and a redacting `Debug` on every request type holding a password or token) as a
//! second line of defence. The service logs a server error by its message chain, never `Debug`;
//! a configuration error names the setting, never its value; `app check-config` prints the
//! effective settings with every secret redacted. Audit events go to their own sink, never here.
//!
//! Default: this layer writes every log line of the service; there is no switch. Replacing it
//! with `tracing-subscriber`'s JSON formatter, logging the raw URI or every header, or
//! serialising a secret each makes the leak scenario test (`tests/api/leaks.rs`) fail.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The field names the application log may carry, besides `message`. Each is a fixed code, a
/// number, an address or an error description, never a client-supplied secret.
pub const LOGGED_FIELDS: &[&str] = &[
    "error",
    "status",
    "method",
    "headers",
    "latency_ms",
    "address",
    "peer",
    "issuer",
    "ca_cert",
    "cert",
    "file",
    "tier",
    "trigger",
    "deleted",
    "grace_seconds",
    "authorized",
    "routed",
    "request_id",
    "route",
];

/// The crates of the service itself. A message from any other target (a dependency) is written
/// only at `WARN` and `ERROR`: below that a dependency's message can be anything (an SQL statement
/// with its values inlined, a header dump), and it is dropped and counted like a field.
pub const SERVICE_TARGETS: &[&str] = &["app", "security", "migration"];

/// Whether `target` belongs to one of [`SERVICE_TARGETS`].
fn is_service_target(target: &str) -> bool {
    SERVICE_TARGETS.iter().any(|crate_name| {
        target == *crate_name
            || target
                .strip_prefix(crate_name)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

/// How a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFormat {
    /// One JSON object per line.
    Json,
    /// `timestamp LEVEL target: message key=value ...`, values escaped.
    Pretty,
}

/// A `tracing` layer writing the allowlisted part of every event to `writer`.
#[derive(Debug)]
pub struct AllowlistLayer<W> {
    writer: W,
    format: LineFormat,
    dropped: Arc<AtomicU64>,
}

impl<W> AllowlistLayer<W> {
    pub fn new(writer: W, format: LineFormat) -> Self {
        Self {
            writer,
            format,
            dropped: Arc::default(),
        }
    }

    /// Counts into `counter` instead of a counter of its own, so that the counter can exist before
    /// the layer does (the process-wide log outlives any one service's metrics).
    #[must_use]
    pub fn counting_into(mut self, counter: Arc<AtomicU64>) -> Self {
        self.dropped = counter;
        self
    }

    /// Fields (and dependency messages below `WARN`) dropped so far because they are not
    /// allowlisted (shared counter).
    pub fn dropped_fields(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }
}

/// Collects the allowlisted fields of one event, in order.
#[derive(Default)]
struct Allowlisted {
    message: Option<String>,
    fields: Vec<(&'static str, serde_json::Value)>,
    dropped: u64,
}

impl Allowlisted {
    fn keep(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            });
        } else if let Some(name) = LOGGED_FIELDS.iter().find(|name| **name == field.name()) {
            self.fields.push((name, value));
        } else {
            self.dropped += 1;
        }
    }
}

impl Visit for Allowlisted {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.keep(field, serde_json::Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.keep(field, serde_json::Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.keep(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.keep(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.keep(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.keep(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.keep(field, serde_json::Value::String(value.to_string()));
    }
}

/// The current time, RFC 3339 in UTC with milliseconds.
fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

/// One event as a line (without the newline).
fn render(format: LineFormat, level: &tracing::Level, target: &str, event: Allowlisted) -> String {
    match format {
        LineFormat::Json => {
            let mut line = serde_json::Map::new();
            line.insert("timestamp".to_owned(), timestamp().into());
            line.insert("level".to_owned(), level.as_str().into());
            line.insert("target".to_owned(), target.into());
            if let Some(message) = event.message {
                line.insert("message".to_owned(), message.into());
            }
            for (name, value) in event.fields {
                line.insert(name.to_owned(), value);
            }
            serde_json::Value::Object(line).to_string()
        }
        LineFormat::Pretty => {
            let mut line = format!("{} {:>5} {}:", timestamp(), level.as_str(), target);
            if let Some(message) = event.message {
                let _ = write!(line, " {}", message.escape_debug());
            }
            for (name, value) in event.fields {
                let value = match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
                let _ = write!(line, " {name}={}", value.escape_debug());
            }
            line
        }
    }
}

impl<S, W> Layer<S> for AllowlistLayer<W>
where
    S: Subscriber,
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        let mut fields = Allowlisted::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        if !is_service_target(metadata.target()) && *metadata.level() > tracing::Level::WARN {
            // A dependency below WARN: nothing of it is written, and all of it is counted.
            let dropped =
                fields.dropped + fields.fields.len() as u64 + u64::from(fields.message.is_some());
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
            return;
        }
        if fields.dropped > 0 {
            self.dropped.fetch_add(fields.dropped, Ordering::Relaxed);
        }
        let mut line = render(self.format, metadata.level(), metadata.target(), fields);
        line.push('\n');
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged(format: LineFormat, emit: impl FnOnce()) -> (String, u64) {
        let buffer = Buffer::default();
        let layer = AllowlistLayer::new(buffer.clone(), format);
        let dropped = layer.dropped_fields();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        (text, dropped.load(Ordering::Relaxed))
    }

    #[test]
    fn only_allowlisted_fields_are_written_and_the_rest_counted() {
        let (text, dropped) = logged(LineFormat::Json, || {
            tracing::info!(
                status = 401,
                password = "hunter2-hunter2",
                authorization = "Bearer eyJhbGciOi",
                route = "/v1/auth/login",
                "login refused"
            );
        });
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("eyJhbGciOi"), "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["message"], "login refused");
        assert_eq!(line["status"], 401);
        assert_eq!(line["route"], "/v1/auth/login");
        assert_eq!(line["level"], "INFO");
        assert_eq!(dropped, 2);
    }

    #[test]
    fn a_dependencys_message_is_written_only_when_it_warns() {
        let (text, dropped) = logged(LineFormat::Json, || {
            tracing::debug!(target: "sea_orm::driver", status = 1, "SELECT * FROM users WHERE email = 'a@b.c'");
            tracing::warn!(target: "sqlx::pool", "pool timed out");
            tracing::info!(target: "app::telemetry", "request");
        });
        assert!(
            !text.contains("a@b.c") && !text.contains("sea_orm"),
            "{text}"
        );
        assert!(text.contains("pool timed out"), "{text}");
        assert!(text.contains("\"message\":\"request\""), "{text}");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(dropped, 2, "the message and its field");
        assert!(is_service_target("app") && is_service_target("security::auth"));
        assert!(!is_service_target("application") && !is_service_target("securityx::a"));
    }

    #[test]
    fn newlines_and_control_characters_cannot_forge_a_line() {
        let forged = "/x\n{\"level\":\"ERROR\",\"message\":\"forged\"}\u{1b}[2J";
        for format in [LineFormat::Json, LineFormat::Pretty] {
            let (text, _) = logged(format, || {
                tracing::info!(route = forged, "request");
            });
            assert_eq!(text.lines().count(), 1, "{format:?}: {text}");
            assert!(!text.contains('\u{1b}'), "{format:?}: {text}");
        }
    }
}
