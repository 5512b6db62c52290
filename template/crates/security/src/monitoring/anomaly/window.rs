//! The windows the detectors count in, and their clock. Time is a [`Tick`] read from the events;
//! counts are per fixed window (a minute by default). A key either learns its normal
//! ([`WindowCounter`]: the exponentially weighted average of its active windows, a window that
//! spiked never learned) or is held to fixed limits ([`FailureCounter`]: this window's failures,
//! and the last hour's estimated from two hourly counters). A [`Cooldown`] lets a key alert once
//! per finding and cool-down.

use super::config::{FailureThreshold, SpikeThreshold};

/// The long horizon of the per-address and per-account failure limits.
const FAILURE_HORIZON_SECONDS: u64 = 3600;

/// The weight of the newest window in a baseline (about the last ten active windows count).
const BASELINE_WEIGHT: f64 = 0.1;

/// The detectors' clock, read from the events: seconds since 1970 and the window index.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tick {
    pub(super) now: u64,
    pub(super) window: u64,
}

/// When a key last alerted for one finding; it alerts again only after the cool-down.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Cooldown(Option<u64>);

impl Cooldown {
    /// A clock stepped back before the last alert ends the cool-down: one alert too many
    /// rather than none until the clock catches up.
    pub(super) fn try_alert(&mut self, now: u64, cooldown: u64) -> bool {
        match self.0 {
            Some(last) if (last..last.saturating_add(cooldown)).contains(&now) => false,
            _ => {
                self.0 = Some(now);
                true
            }
        }
    }
}

/// One key's count in the current window and its baseline.
#[derive(Debug, Clone, Default)]
struct WindowCounter {
    window: u64,
    count: u32,
    /// Exponentially weighted average of the counts of past windows in which the key was
    /// active: a quiet night does not erase a principal's daytime habits.
    baseline: f64,
    learned_windows: u32,
    /// The current window reached its threshold: it is not learned.
    spiked: bool,
}

impl WindowCounter {
    /// Counts one event; true when it makes the window spike. Until `min_learned` windows are
    /// learned, every window is learned and none is judged.
    fn count(&mut self, window: u64, threshold: SpikeThreshold, min_learned: u32) -> bool {
        // Another window, later or (after a clock step back) earlier: never counted on.
        if window != self.window {
            self.close_window();
            self.window = window;
        }
        self.count = self.count.saturating_add(1);
        let judged = self.learned_windows >= min_learned;
        if judged && !self.spiked && f64::from(self.count) >= threshold.at(self.baseline) {
            self.spiked = true;
            return true;
        }
        false
    }

    fn close_window(&mut self) {
        if self.count > 0 && !self.spiked {
            let count = f64::from(self.count);
            self.baseline = if self.learned_windows == 0 {
                count
            } else {
                self.baseline + BASELINE_WEIGHT * (count - self.baseline)
            };
            self.learned_windows = self.learned_windows.saturating_add(1);
        }
        self.count = 0;
        self.spiked = false;
    }
}

/// A counter with its cool-down.
#[derive(Debug, Clone, Default)]
pub(super) struct SpikeState {
    counter: WindowCounter,
    cooldown: Cooldown,
}

impl SpikeState {
    /// Counts one event; true when the key alerts.
    pub(super) fn count(
        &mut self,
        tick: Tick,
        threshold: SpikeThreshold,
        min_learned: u32,
        cooldown: u64,
    ) -> bool {
        self.counter.count(tick.window, threshold, min_learned)
            && self.cooldown.try_alert(tick.now, cooldown)
    }
}

/// One address's or account's failures, against fixed limits: this window's, and this and the
/// previous hour's (the last hour is the previous one's share still in it plus this one's: the
/// usual sliding-window estimate, two counters instead of sixty).
#[derive(Debug, Clone, Default)]
pub(super) struct FailureCounter {
    window: u64,
    in_window: u32,
    hour: u64,
    this_hour: u32,
    previous_hour: u32,
    cooldown: Cooldown,
}

impl FailureCounter {
    /// Counts one failure; true when the key alerts.
    pub(super) fn count(&mut self, tick: Tick, threshold: FailureThreshold, cooldown: u64) -> bool {
        if tick.window != self.window {
            self.window = tick.window;
            self.in_window = 0;
        }
        let hour = tick.now / FAILURE_HORIZON_SECONDS;
        match hour.checked_sub(self.hour) {
            Some(0) => {}
            Some(1) => self.previous_hour = std::mem::take(&mut self.this_hour),
            Some(_) => (self.previous_hour, self.this_hour) = (0, 0),
            // The clock stepped back: the counts carry on.
            None => {}
        }
        self.hour = hour;
        self.in_window = self.in_window.saturating_add(1);
        self.this_hour = self.this_hour.saturating_add(1);
        let into_hour =
            (tick.now % FAILURE_HORIZON_SECONDS) as f64 / FAILURE_HORIZON_SECONDS as f64;
        let last_hour =
            f64::from(self.previous_hour) * (1.0 - into_hour) + f64::from(self.this_hour);
        (self.in_window >= threshold.per_window || last_hour >= f64::from(threshold.per_hour))
            && self.cooldown.try_alert(tick.now, cooldown)
    }
}
