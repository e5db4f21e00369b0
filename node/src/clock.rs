//! Time as the federation sees it. The case engine never reads a clock: the leader stamps each
//! operation with this clock and every replica applies that stamp. A federation may run its
//! clock faster than the wall (demos and drills watch a 60-day limit pass in minutes).

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
            last_stamp: AtomicI64::new(0),
        }
    }

    /// Scaled time now.
    pub fn now(&self) -> Millis {
        let wall = wall_ms().saturating_add(self.skew_ms);
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
    fn a_scaled_clock_runs_faster_than_the_wall() {
        let origin = wall_ms() - 1_000;
        let clock = Clock::new(origin, 100.0, 0);
        assert!(clock.now() - origin >= 100_000);
    }
}
