//! Rate limits of the public surface: failures (a wrong verification code, an unknown case) per
//! client address and per case, and filings per client address. Fixed windows in a bounded
//! table; time is an input, so the limiter is tested without waiting.

use std::collections::HashMap;

/// One limit: at most `max` events per `window_ms`, for at most `keys` keys at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window_ms: u64,
    pub keys: usize,
}

/// Counts events per key in fixed windows. When the table is full, expired windows are dropped
/// first, then the oldest window: the table never holds more than `limit.keys` keys.
#[derive(Debug)]
pub struct Limiter {
    limit: Limit,
    /// key → (start of its window, events in it)
    windows: HashMap<String, (u64, u32)>,
}

impl Limiter {
    pub fn new(limit: Limit) -> Limiter {
        Limiter {
            limit,
            windows: HashMap::new(),
        }
    }

    /// Whether `key` may have another event at `now_ms` (nothing is counted).
    pub fn allows(&self, key: &str, now_ms: u64) -> bool {
        match self.windows.get(key) {
            Some((start, count)) if now_ms.saturating_sub(*start) < self.limit.window_ms => {
                *count < self.limit.max
            }
            _ => true,
        }
    }

    /// Counts one event of `key` at `now_ms`.
    pub fn count(&mut self, key: &str, now_ms: u64) {
        let window_ms = self.limit.window_ms;
        if let Some((start, count)) = self.windows.get_mut(key) {
            if now_ms.saturating_sub(*start) < window_ms {
                *count = count.saturating_add(1);
            } else {
                *start = now_ms;
                *count = 1;
            }
            return;
        }
        if self.windows.len() >= self.limit.keys {
            self.windows
                .retain(|_, (start, _)| now_ms.saturating_sub(*start) < window_ms);
        }
        if self.windows.len() >= self.limit.keys {
            let oldest = self
                .windows
                .iter()
                .min_by_key(|(_, (start, _))| *start)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.windows.remove(&oldest);
            }
        }
        self.windows.insert(key.to_string(), (now_ms, 1));
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        max: 3,
        window_ms: 1_000,
        keys: 4,
    };

    #[test]
    fn a_key_is_refused_after_its_maximum_until_its_window_ends() {
        let mut limiter = Limiter::new(LIMIT);
        for at in [0, 10, 20] {
            assert!(limiter.allows("ip:1", at));
            limiter.count("ip:1", at);
        }
        assert!(!limiter.allows("ip:1", 30));
        assert!(!limiter.allows("ip:1", 999));
        // Other keys are not affected.
        assert!(limiter.allows("ip:2", 30));
        // A new window starts after the old one ends.
        assert!(limiter.allows("ip:1", 1_000));
        limiter.count("ip:1", 1_000);
        assert!(limiter.allows("ip:1", 1_001));
    }

    #[test]
    fn the_table_stays_bounded_dropping_expired_then_oldest_windows() {
        let mut limiter = Limiter::new(LIMIT);
        for (i, at) in [0u64, 100, 200, 300].into_iter().enumerate() {
            limiter.count(&format!("k{i}"), at);
        }
        assert_eq!(limiter.len(), 4);
        // Full, nothing expired: the oldest (k0) goes.
        limiter.count("k4", 400);
        assert_eq!(limiter.len(), 4);
        assert!(limiter.allows("k0", 401));
        for _ in 0..3 {
            limiter.count("k4", 401);
        }
        assert!(!limiter.allows("k4", 402));
        // Much later every old window has expired: they are dropped for the new key.
        limiter.count("k9", 5_000);
        assert_eq!(limiter.len(), 1);
        for i in 0..1_000 {
            limiter.count(&format!("flood{i}"), 6_000);
        }
        assert!(limiter.len() <= LIMIT.keys);
    }
}
