//! Time as the federation sees it. The case engine never reads a clock: the leader stamps each
//! operation with this clock and every replica applies that stamp. A federation may run its
//! clock faster than the wall (demos and drills watch a 60-day limit pass in minutes).
//!
//! Drills skew a host's clock two ways: a fixed offset read at start (`LIANDONG_CLOCK_SKEW_MS`),
//! and a runtime offset from the fault file, so a running host's clock jumps forward or back
//! without a restart, as a stepped NTP correction does. A jump back never makes stamps go back:
//! [`Clock::stamp`] stays above the state machine's last applied time and every stamp before.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use liandong_domain::Millis;

#[derive(Debug)]
pub struct Clock {
    /// Wall time at which scaled time equals wall time (the federation's creation).
    origin_ms: Millis,
    /// How many federation milliseconds pass per wall millisecond.
    scale: f64,
    /// Drill knob: a fixed offset added to this host's wall clock (clock skew).
    skew_ms: Millis,
    /// Drill knob: an offset set while the host runs (the fault file's `clock_skew_ms`), on top
    /// of `skew_ms`.
    runtime_skew_ms: AtomicI64,
    /// The last stamp handed out: stamps strictly increase on this host (hybrid logical clock).
    last_stamp: AtomicI64,
}

pub fn wall_ms() -> Millis {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Millis::try_from(since.as_millis()).unwrap_or(Millis::MAX)
}

impl Clock {
    pub fn new(origin_ms: Millis, scale: f64, skew_ms: Millis) -> Clock {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        Clock {
            origin_ms,
            scale,
            skew_ms,
            runtime_skew_ms: AtomicI64::new(0),
            last_stamp: AtomicI64::new(0),
        }
    }

    /// Sets the runtime offset (replacing the previous one; 0 removes it): the clock jumps.
    pub fn set_runtime_skew(&self, skew_ms: Millis) {
        let previous = self.runtime_skew_ms.swap(skew_ms, Ordering::SeqCst);
        if previous != skew_ms {
            tracing::info!(
                from_ms = previous,
                to_ms = skew_ms,
                "runtime clock skew set"
            );
        }
    }

    /// The runtime offset in force.
    pub fn runtime_skew(&self) -> Millis {
        self.runtime_skew_ms.load(Ordering::SeqCst)
    }

    /// Scaled time now.
    pub fn now(&self) -> Millis {
        let wall = wall_ms()
            .saturating_add(self.skew_ms)
            .saturating_add(self.runtime_skew());
        let elapsed = wall.saturating_sub(self.origin_ms) as f64 * self.scale;
        self.origin_ms.saturating_add(elapsed as Millis)
    }

    /// A stamp for a new operation: after `floor` (what the state machine has applied) and after
    /// every stamp this host handed out before.
    pub fn stamp(&self, floor: Millis) -> Millis {
        let candidate = self.now().max(floor.saturating_add(1));
        let previous = self.last_stamp.fetch_max(candidate, Ordering::SeqCst);
        if previous >= candidate {
            self.last_stamp.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            candidate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_strictly_increase_even_when_the_clock_is_behind_the_floor() {
        let clock = Clock::new(wall_ms(), 1.0, 0);
        let floor = wall_ms() + 1_000_000;
        let first = clock.stamp(floor);
        let second = clock.stamp(floor);
        assert!(first > floor);
        assert!(second > first);
    }

    #[test]
    fn a_runtime_skew_jumps_the_clock_but_never_the_stamps_back() {
        let clock = Clock::new(wall_ms(), 1.0, 0);
        clock.set_runtime_skew(3_600_000);
        let ahead = clock.stamp(0);
        assert!(ahead >= wall_ms() + 3_500_000);
        clock.set_runtime_skew(-3_600_000);
        assert!(clock.now() < wall_ms() - 3_500_000);
        let after = clock.stamp(0);
        assert!(after > ahead, "stamps never go back: {ahead} then {after}");
    }

    #[test]
    fn a_scaled_clock_runs_faster_than_the_wall() {
        let origin = wall_ms() - 1_000;
        let clock = Clock::new(origin, 100.0, 0);
        assert!(clock.now() - origin >= 100_000);
    }
}
