//! Wall-clock time as the intake and the checkpoint file count it: milliseconds since the
//! Unix epoch. A clock set before 1970 reads as 0 rather than failing. And a monotonic
//! count for what measures intervals (rate limits, time since the last delivery), which a
//! wall clock set back or forth by NTP or a resumed VM must not disturb.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds on a monotonic clock, from 1 at the first call in the process (so that 0
/// can stand for "never").
pub fn monotonic_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Unix microseconds now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
