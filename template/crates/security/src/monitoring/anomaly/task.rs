//! Anomaly detection off the request path. [`AnomalyDetector`] is the audit observer: it only
//! filters a record and hands it to a bounded channel, never waiting; when the channel is full the
//! record is dropped and counted. [`DetectorTask`] is the one background task that runs the
//! detectors over the queued records and records each finding on the audit hub.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::config::AnomalyConfig;
use super::detectors::Detectors;
use crate::logging::audit::{AuditHub, AuditObserver, AuditRecord};
use crate::monitoring::geoip::GeoIp;

/// Records waiting for the detectors; beyond it they are dropped and counted.
const INBOX_CAPACITY: usize = 8192;

/// The audit observer of anomaly detection: hands the records the detectors read to their task
/// and returns at once, whatever the task is doing.
#[derive(Debug)]
pub struct AnomalyDetector {
    inbox: mpsc::Sender<AuditRecord>,
    dropped: Arc<AtomicU64>,
}

impl AnomalyDetector {
    /// The observer to put in the service's [`AuditHub`] and the task to spawn with that hub.
    pub fn new(config: AnomalyConfig, geoip: Option<GeoIp>) -> (Arc<Self>, DetectorTask) {
        let (inbox, records) = mpsc::channel(INBOX_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let detector = Arc::new(Self {
            inbox,
            dropped: Arc::clone(&dropped),
        });
        let task = DetectorTask {
            detectors: Detectors::new(config, geoip),
            records,
            dropped,
        };
        (detector, task)
    }

    /// Records dropped because the detectors had fallen behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl AuditObserver for AnomalyDetector {
    fn observe(&self, record: &AuditRecord) {
        if Detectors::reads(record) && self.inbox.try_send(record.clone()).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The detectors' background task: reads the queued records, records each anomaly on the hub.
#[derive(Debug)]
pub struct DetectorTask {
    detectors: Detectors,
    records: mpsc::Receiver<AuditRecord>,
    dropped: Arc<AtomicU64>,
}

impl DetectorTask {
    /// Whether the geography detector runs.
    pub fn has_geography(&self) -> bool {
        self.detectors.has_geography()
    }

    /// Runs until aborted (the hub holds the observer, so the queue never closes on its own).
    pub fn spawn(self, hub: AuditHub) -> tokio::task::JoinHandle<()> {
        let Self {
            mut detectors,
            mut records,
            dropped,
        } = self;
        tokio::spawn(async move {
            let mut reported = 0;
            while let Some(record) = records.recv().await {
                for anomaly in detectors.inspect(&record) {
                    anomaly.record(&hub);
                }
                // Said at 1, 2, 4, 8 ... drops: loud enough, never a flood of its own.
                let now_dropped = dropped.load(Ordering::Relaxed);
                if now_dropped > 0 && now_dropped >= reported * 2 {
                    reported = now_dropped;
                    // In the message: the application log prints allowlisted fields only.
                    tracing::warn!(
                        "anomaly detection fell behind: {now_dropped} audit events skipped so far"
                    );
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::logging::audit::Outcome;
    use crate::monitoring::anomaly::finding::ANOMALY_EVENT;
    use crate::monitoring::anomaly::synthetic_traffic::{
        ATTACK, DAY_ZERO, PARIS, at_host, login_failure,
    };

    /// Collects the anomaly events published to the hub.
    struct Collector(mpsc::UnboundedSender<AuditRecord>);

    impl AuditObserver for Collector {
        fn observe(&self, record: &AuditRecord) {
            if record.event == ANOMALY_EVENT {
                let _ = self.0.send(record.clone());
            }
        }
    }

    #[tokio::test]
    async fn the_task_records_each_anomaly_once_on_the_hub() {
        let (detector, task) = AnomalyDetector::new(AnomalyConfig::default(), None);
        let (collected, mut anomalies) = mpsc::unbounded_channel();
        let observers: Vec<Arc<dyn AuditObserver>> =
            vec![detector.clone(), Arc::new(Collector(collected))];
        let hub = AuditHub::new(observers);
        let running = task.spawn(hub.clone());
        let attacker = at_host(PARIS, 250);
        for guess in 0..20 {
            hub.publish(&login_failure(ATTACK + guess, attacker, None));
        }
        let event = tokio::time::timeout(Duration::from_secs(10), anomalies.recv())
            .await
            .expect("an anomaly within 10 s")
            .expect("an event");
        assert_eq!(event.reason, "auth_failure_spike_ip");
        assert_eq!(event.policy.as_deref(), Some("auth_failures"));
        assert_eq!(event.client_ip, Some(attacker));
        assert_eq!(event.outcome, Outcome::Denied);
        // The anomaly went back through the hub to the detector, which ignored it: nothing
        // else follows.
        hub.publish(&login_failure(ATTACK + 30, attacker, None));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(anomalies.try_recv().is_err());
        assert_eq!(detector.dropped(), 0);
        running.abort();
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (detector, _task) = AnomalyDetector::new(AnomalyConfig::default(), None);
        let record = login_failure(DAY_ZERO, at_host(PARIS, 1), None);
        for _ in 0..INBOX_CAPACITY + 5 {
            detector.observe(&record);
        }
        assert_eq!(detector.dropped(), 5);
        let mut ignored = record.clone();
        ignored.event = "token.issued";
        detector.observe(&ignored);
        assert_eq!(
            detector.dropped(),
            5,
            "records no detector reads are not queued"
        );
    }
}
