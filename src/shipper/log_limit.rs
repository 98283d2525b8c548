//! Rate limits for sidelog's own warnings: a condition that repeats (a full disk under
//! `data_dir`, an inotify limit, a file that cannot be read) is logged at most once per
//! interval, with the number of repeats that were not logged, so `kubectl logs` stays
//! readable and the log does not cost what it reports on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Lets a warning through at most once per interval; counts the ones held back.
pub struct LogLimit {
    interval_ms: u64,
    /// [`crate::clock::monotonic_ms`] of the last warning let through; 0 before the first.
    /// Not the wall clock: set back an hour, it would silence warnings for that hour.
    last_ms: AtomicU64,
    held_back: AtomicU64,
}

impl LogLimit {
    pub const fn new(interval: Duration) -> LogLimit {
        LogLimit {
            interval_ms: interval.as_millis() as u64,
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this occurrence should be logged, `n` being how many were held back
    /// since the last one logged; `None` when it should not.
    pub fn check(&self) -> Option<u64> {
        self.check_at(crate::clock::monotonic_ms())
    }

    fn check_at(&self, now: u64) -> Option<u64> {
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.interval_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Logs a warning through a [`LogLimit`] of one minute kept at the call site.
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::log_limit::LogLimit =
            $crate::log_limit::LogLimit::new(std::time::Duration::from_secs(60));
        if let Some(held_back) = LIMIT.check() {
            tracing::warn!(held_back, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_with_the_count_held_back() {
        let l = LogLimit::new(Duration::from_secs(60));
        assert_eq!(l.check_at(1_000), Some(0));
        assert_eq!(l.check_at(2_000), None);
        assert_eq!(l.check_at(30_000), None);
        assert_eq!(l.check_at(61_000), Some(2));
        assert_eq!(l.check_at(61_001), None);
    }
}
