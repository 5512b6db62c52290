//! The `usage` detector: a principal's request rate far above its own learned baseline
//! (`request_rate`), or a burst of requests to operations that make under 1% of its history
//! (`endpoint_mix`). A principal's profile holds its rate and a bounded, ageing count of calls per
//! operation, the operation named by a hash: the profile holds no text.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use super::bounded_map::BoundedMap;
use super::config::AnomalyConfig;
use super::finding::{Anomaly, AnomalyKind, Seen};
use super::window::{Cooldown, SpikeState, Tick};

/// An operation making less than this share of a principal's history is unfamiliar to it.
const RARE_OPERATION_SHARE: f64 = 0.01;

/// Operations remembered per principal; the least called makes room.
const MAX_OPERATIONS_PER_PRINCIPAL: usize = 32;

/// A principal's operation counts are halved at this total, so old habits fade.
const OPERATION_HISTORY_AGING: u32 = 10_000;

/// How often a principal calls each of its operations, and its unfamiliar calls this window.
#[derive(Debug, Default)]
struct OperationMix {
    /// The history: (operation hash, calls), at most [`MAX_OPERATIONS_PER_PRINCIPAL`].
    calls: Vec<(u64, u32)>,
    total: u32,
    window: u64,
    /// This window's calls, judged against the history as it was when the window opened and
    /// learned when it closes, unless it alerted.
    pending: Vec<(u64, u32)>,
    unfamiliar_in_window: u32,
    spiked: bool,
}

impl OperationMix {
    /// Counts one call; true when it makes the window's unfamiliar calls reach the threshold.
    fn count(&mut self, operation: u64, window: u64, config: &AnomalyConfig) -> bool {
        if window != self.window {
            self.close_window();
            self.window = window;
        }
        let room = self.pending.len() < MAX_OPERATIONS_PER_PRINCIPAL;
        match self
            .pending
            .iter_mut()
            .find(|(known, _)| *known == operation)
        {
            Some((_, calls)) => *calls = calls.saturating_add(1),
            None if room => self.pending.push((operation, 1)),
            // Beyond the bound a call is still judged, not learned.
            None => {}
        }
        let unfamiliar = self.total >= config.min_history_requests
            && f64::from(self.calls_to(operation)) < RARE_OPERATION_SHARE * f64::from(self.total);
        if unfamiliar {
            self.unfamiliar_in_window += 1;
            if !self.spiked && self.unfamiliar_in_window >= config.unfamiliar_operation_requests {
                self.spiked = true;
                return true;
            }
        }
        false
    }

    fn close_window(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if !self.spiked {
            for (operation, calls) in pending {
                self.learn(operation, calls);
            }
        }
        self.unfamiliar_in_window = 0;
        self.spiked = false;
    }

    fn calls_to(&self, operation: u64) -> u32 {
        self.calls
            .iter()
            .find(|(known, _)| *known == operation)
            .map_or(0, |(_, calls)| *calls)
    }

    fn learn(&mut self, operation: u64, calls: u32) {
        match self.calls.iter_mut().find(|(known, _)| *known == operation) {
            Some((_, known_calls)) => *known_calls = known_calls.saturating_add(calls),
            None => {
                if self.calls.len() >= MAX_OPERATIONS_PER_PRINCIPAL
                    && let Some(least) = (0..self.calls.len()).min_by_key(|&i| self.calls[i].1)
                {
                    self.total -= self.calls.swap_remove(least).1;
                }
                self.calls.push((operation, calls));
            }
        }
        self.total = self.total.saturating_add(calls);
        if self.total >= OPERATION_HISTORY_AGING {
            for (_, calls) in &mut self.calls {
                *calls /= 2;
            }
            self.calls.retain(|(_, calls)| *calls > 0);
            self.total = self.calls.iter().map(|(_, calls)| calls).sum();
        }
    }
}

/// A principal's request rate and operations.
#[derive(Debug, Default)]
pub(super) struct UsageProfile {
    rate: SpikeState,
    operations: OperationMix,
    mix_cooldown: Cooldown,
}

/// Request rates and operation mixes per principal.
#[derive(Debug)]
pub(super) struct UnusualUsage {
    pub(super) principals: BoundedMap<String, UsageProfile>,
}

impl UnusualUsage {
    /// At most `capacity` principals.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            principals: BoundedMap::new(capacity),
        }
    }

    /// Judges one request of a principal to `operation`; pushes to `found` what it tipped over.
    pub(super) fn inspect(
        &mut self,
        config: &AnomalyConfig,
        tick: Tick,
        seen: &Seen<'_>,
        operation: &str,
        found: &mut Vec<Anomaly>,
    ) {
        let cooldown = config.cooldown.as_secs();
        let profile =
            self.principals
                .touch(seen.principal.to_owned(), tick.now, UsageProfile::default);
        if profile.rate.count(
            tick,
            config.requests_per_principal,
            config.usage_history_windows,
            cooldown,
        ) {
            found.push(seen.anomaly(AnomalyKind::RequestRate));
        }
        // A hash names the operation: the profile holds no text.
        let mut hasher = DefaultHasher::new();
        operation.hash(&mut hasher);
        if profile
            .operations
            .count(hasher.finish(), tick.window, config)
            && profile.mix_cooldown.try_alert(tick.now, cooldown)
        {
            found.push(seen.anomaly(AnomalyKind::EndpointMix));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::audit::AuditRecord;
    use crate::monitoring::anomaly::synthetic_traffic::{
        ATTACK, USUAL_OPERATIONS, after_a_normal_day, feed, kinds, request, user,
    };

    #[test]
    fn a_principal_at_twenty_times_its_rate_is_detected() {
        let mut detectors = after_a_normal_day();
        let busy = user(4); // Sydney, five requests a minute.
        assert_eq!(busy.rate, 5);
        // Its usual operations, 100 a minute for three minutes.
        let flood: Vec<AuditRecord> = (0..300)
            .map(|call| {
                let operation = USUAL_OPERATIONS[call % 3].0;
                request(
                    ATTACK + call as u64 * 180 / 300,
                    &busy.id,
                    busy.ip(),
                    operation,
                )
            })
            .collect();
        let anomalies = feed(&mut detectors, &flood);
        assert_eq!(kinds(&anomalies), [AnomalyKind::RequestRate]);
        assert_eq!(anomalies[0].kind.detector(), "usage");
        assert_eq!(anomalies[0].principal.as_deref(), Some(busy.id.as_str()));
        let route = anomalies[0].route.as_deref().unwrap_or_default();
        assert!(route.starts_with("/v1/notes"), "{route}");
    }

    #[test]
    fn a_principal_calling_operations_it_never_used_is_detected() {
        let mut detectors = after_a_normal_day();
        let user = user(7); // Sydney, three requests a minute.
        // 15 a minute, well within its rate, but on administration operations it never called.
        let admin_calls: Vec<AuditRecord> = (0..30)
            .map(|call| {
                let operation =
                    ["GET /v1/users", "DELETE /v1/users/{id}", "GET /v1/api-keys"][call % 3];
                request(ATTACK + call as u64 * 4, &user.id, user.ip(), operation)
            })
            .collect();
        let anomalies = feed(&mut detectors, &admin_calls);
        assert_eq!(kinds(&anomalies), [AnomalyKind::EndpointMix]);
        assert_eq!(anomalies[0].principal.as_deref(), Some(user.id.as_str()));
    }

    #[test]
    fn a_principal_calling_thousands_of_operations_keeps_a_bounded_profile() {
        let mut wanderer = OperationMix::default();
        for operation in 0..5_000 {
            // Each call in a window of its own, so each is learned.
            wanderer.count(operation, operation, &AnomalyConfig::default());
            wanderer.count(operation + 10_000, operation, &AnomalyConfig::default());
        }
        assert!(wanderer.calls.len() <= MAX_OPERATIONS_PER_PRINCIPAL);
        assert!(wanderer.pending.len() <= MAX_OPERATIONS_PER_PRINCIPAL);
        assert_eq!(
            wanderer.total,
            wanderer.calls.iter().map(|(_, calls)| calls).sum::<u32>()
        );
    }
}
