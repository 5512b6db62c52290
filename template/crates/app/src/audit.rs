//! The audit sink (LOG-1 .. LOG-3): every audit event as one JSON line in the documented schema
//! (`docs/audit-events.md`), on stdout or appended to a file, apart from the application log.
//!
//! A line carries exactly the schema's fields: `timestamp` (UTC, RFC 3339), `event`, `outcome`,
//! `reason`, `principal`, `client_ip`, `route`, `request_id` and `policy`. Nothing else can reach
//! it: the record type has no field for a credential, a body or a header.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use security::logging::audit::{AuditHub, AuditObserver, AuditRecord};

use crate::config::{AuditSettings, AuditSinkKind};

/// How many lines may wait for the writer before new ones are dropped.
pub const CHANNEL_CAPACITY: usize = 8192;

/// Writes each record as one JSON line, off the request path: [`AuditObserver::observe`] (called
/// on the runtime's worker threads) only hands the line to a bounded channel, and one dedicated
/// thread writes and flushes. A stalled stdout pipe or a slow disk therefore never blocks a
/// request; when the channel is full the line is dropped and counted ([`Self::dropped_lines`]),
/// with a warning on the application log at every power of two.
pub struct JsonLinesSink {
    lines: SyncSender<String>,
    dropped: AtomicU64,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for JsonLinesSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLinesSink")
            .field("dropped", &self.dropped_lines())
            .finish_non_exhaustive()
    }
}

impl JsonLinesSink {
    /// A sink writing to `out` from its own thread, with room for [`CHANNEL_CAPACITY`] lines.
    pub fn new(out: Box<dyn Write + Send>) -> std::io::Result<Self> {
        Self::with_capacity(out, CHANNEL_CAPACITY)
    }

    /// A sink writing to `out` from its own thread, with room for `capacity` waiting lines.
    /// The thread ends once the sink is dropped and the waiting lines are written.
    pub fn with_capacity(out: Box<dyn Write + Send>, capacity: usize) -> std::io::Result<Self> {
        let (lines, receiver) = std::sync::mpsc::sync_channel(capacity);
        let writer = std::thread::Builder::new()
            .name("audit-sink".to_owned())
            .spawn(move || write_lines(&receiver, out))?;
        Ok(Self {
            lines,
            dropped: AtomicU64::new(0),
            writer: Some(writer),
        })
    }

    /// How many lines were dropped because the writer could not keep up (or had stopped).
    pub fn dropped_lines(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for JsonLinesSink {
    /// Closes the queue and gives the writer two seconds to drain it, so the lines recorded just
    /// before shutdown reach the sink (a stalled sink cannot hold the shutdown longer).
    fn drop(&mut self) {
        let (closed, _) = std::sync::mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.lines, closed));
        if let Some(writer) = self.writer.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !writer.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if writer.is_finished() {
                let _ = writer.join();
            }
        }
    }
}

/// How long the writer lets lines gather after the first one of a batch: under load it wakes
/// and writes once per batch instead of once per line; an idle sink waits without polling.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Bytes of audit lines buffered between writes (one system call per batch, not per line).
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The writer thread: waits for a line, lets the batch gather for [`BATCH_WINDOW`], writes
/// everything waiting, flushes, and waits again.
fn write_lines(receiver: &Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, out);
    while let Ok(line) = receiver.recv() {
        let mut result = out.write_all(line.as_bytes());
        std::thread::sleep(BATCH_WINDOW);
        while result.is_ok() {
            match receiver.try_recv() {
                Ok(line) => result = out.write_all(line.as_bytes()),
                Err(_) => break,
            }
        }
        // An audit line that cannot be written is reported on the application log; the
        // service goes on (the metrics and detectors still saw the event).
        if let Err(error) = result.and_then(|()| out.flush()) {
            tracing::error!(error = %error, "cannot write the audit log");
        }
    }
}

/// One line of the audit log: exactly the schema's fields, borrowed from the record.
#[derive(serde::Serialize)]
struct AuditLine<'a> {
    timestamp: String,
    log: &'static str,
    event: &'a str,
    outcome: &'a str,
    reason: &'a str,
    principal: Option<&'a str>,
    client_ip: Option<std::net::IpAddr>,
    route: Option<&'a str>,
    request_id: Option<&'a str>,
    policy: Option<&'a str>,
}

/// One record as its JSON line (without the newline).
pub fn json_line(record: &AuditRecord) -> String {
    let timestamp: DateTime<Utc> = record.at.into();
    let line = AuditLine {
        timestamp: timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        log: "audit",
        event: record.event,
        outcome: record.outcome.as_str(),
        reason: record.reason,
        principal: record.principal.as_deref(),
        client_ip: record.client_ip,
        route: record.route.as_deref(),
        request_id: record.request_id.as_deref(),
        policy: record.policy.as_deref(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

impl AuditObserver for JsonLinesSink {
    fn observe(&self, record: &AuditRecord) {
        let mut line = json_line(record);
        line.push('\n');
        // Never waits: a full channel (the writer stalled) or a stopped writer drops the line.
        if let Err(error) = self.lines.try_send(line) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                let cause = match error {
                    TrySendError::Full(_) => "the audit writer is behind",
                    TrySendError::Disconnected(_) => "the audit writer stopped",
                };
                tracing::warn!(dropped, cause, "audit lines dropped");
            }
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
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            // Readable by the service's user only (applies when the file is created).
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            Box::new(options.open(&settings.file_path)?)
        }
        AuditSinkKind::Off => {
            return Ok(AuditHub::new(observers));
        }
    };
    let mut all: Vec<Arc<dyn AuditObserver>> = vec![Arc::new(JsonLinesSink::new(out)?)];
    all.extend(observers);
    Ok(AuditHub::new(all))
}

/// The service's audit hub with the configured sink only.
pub fn hub(settings: &AuditSettings) -> std::io::Result<AuditHub> {
    hub_with(settings, Vec::new())
}

#[cfg(test)]
mod tests {
    use std::sync::{Barrier, Mutex, mpsc};
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use security::logging::audit::Outcome;

    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            at: UNIX_EPOCH + Duration::from_millis(1_764_300_000_123),
            event: "authn.password",
            outcome: Outcome::Denied,
            reason: "wrong_password",
            principal: Some("0b6c".to_owned()),
            client_ip: Some("192.0.2.1".parse().expect("ip")),
            route: Some("/v1/auth/login".to_owned()),
            request_id: Some("r-1".to_owned()),
            policy: None,
        }
    }

    #[test]
    fn a_line_carries_exactly_the_schema() {
        let record = record();
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

    /// A writer counting the writes it is asked for (each one a system call on a file or pipe).
    struct CountingWriter {
        writes: Arc<AtomicU64>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for CountingWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.written.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_burst_of_lines_is_written_in_a_few_writes_not_one_per_line() {
        const LINES: usize = 200;
        let writes = Arc::new(AtomicU64::new(0));
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = JsonLinesSink::new(Box::new(CountingWriter {
            writes: Arc::clone(&writes),
            written: Arc::clone(&written),
        }))
        .expect("sink");
        for _ in 0..LINES {
            sink.observe(&record());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let newlines = || {
            let written = written.lock().expect("lock");
            written.iter().filter(|&&byte| byte == b'\n').count()
        };
        while newlines() < LINES && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(newlines(), LINES);
        let writes = writes.load(Ordering::Relaxed);
        assert!(writes <= 5, "{writes} writes for {LINES} lines");
    }

    /// A writer whose first write stalls (a full stdout pipe, a hung disk) until released.
    struct StalledWriter {
        entered: Option<mpsc::Sender<()>>,
        release: Arc<Barrier>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for StalledWriter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Some(entered) = self.entered.take() {
                entered.send(()).expect("the test waits");
                self.release.wait();
            }
            self.written.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_never_blocks_observers_a_full_channel_drops_and_counts() {
        const CAPACITY: usize = 4;
        let (entered, writer_entered) = mpsc::channel();
        let release = Arc::new(Barrier::new(2));
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = JsonLinesSink::with_capacity(
            Box::new(StalledWriter {
                entered: Some(entered),
                release: Arc::clone(&release),
                written: Arc::clone(&written),
            }),
            CAPACITY,
        )
        .expect("sink");

        // The first line is taken by the writer, which stalls writing it.
        sink.observe(&record());
        writer_entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer took the first line");
        // The channel fills up; everything after is dropped, counted, without waiting.
        let started = Instant::now();
        for _ in 0..CAPACITY + 10 {
            sink.observe(&record());
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "observe waited for the stalled writer"
        );
        assert_eq!(sink.dropped_lines(), 10);

        // Released, the writer catches up with every line that was queued.
        release.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        let lines = loop {
            let lines = written
                .lock()
                .expect("lock")
                .iter()
                .filter(|&&byte| byte == b'\n')
                .count();
            if lines == 1 + CAPACITY || Instant::now() > deadline {
                break lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(lines, 1 + CAPACITY);
        // Room again: the next line is queued, not dropped.
        sink.observe(&record());
        assert_eq!(sink.dropped_lines(), 10);
    }

    #[cfg(unix)]
    #[test]
    fn the_audit_file_is_created_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().expect("dir");
        let settings = AuditSettings {
            sink: AuditSinkKind::File,
            file_path: dir.path().join("logs").join("audit.jsonl"),
        };
        let hub = hub(&settings).expect("hub");
        hub.publish(&record());
        let mode = std::fs::metadata(&settings.file_path)
            .expect("the file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&settings.file_path)
            .expect("read")
            .lines()
            .count()
            < 1
        {
            assert!(Instant::now() < deadline, "the line was written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
