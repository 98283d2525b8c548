//! sidelog: tails log files and ships their lines to a Datadog-compatible logs intake, at least
//! once, in bounded memory.
//!
//! Stages, each in its own module: [`tail`] (discovery, reading, framing), [`position`] (file
//! identity, streams and the byte ranges the reader and the checkpoints share),
//! [`encode`] (events and batches), [`compress`], [`ship`] (HTTP and retries), [`checkpoint`]
//! (accepted positions), [`secret`] (the API key), `podtags` (tags from the Pod's labels),
//! wired together by [`pipeline`] and brought down by [`shutdown`]; [`admin`] serves metrics,
//! health and status, and [`health`] says whether sidelog itself keeps turning.
//!
//! This crate is the shipper and nothing else: the `sidelog` binary adds its command line, and
//! the development tools (`sidelog-devtools`), `sidelog inject` (`sidelog-inject`) and the
//! sample lines (`sidelog-sample`) are crates of their own that use this one.

#![forbid(unsafe_code)]

pub mod admin;
mod checkpoint;
pub mod clock;
pub mod compress;
pub mod config;
mod data_dir;
pub mod delivery;
pub mod encode;
pub mod failpoint;
pub mod health;
mod log_limit;
pub mod metrics;
mod optional;
pub mod pipeline;
mod podtags;
pub mod position;
pub mod process;
pub mod redact;
pub mod secret;
mod ship;
mod shutdown;
pub mod tail;
pub mod yaml11;

/// Locks a mutex, carrying on with its data when another thread panicked while holding it:
/// counters and queues stay usable, and sidelog keeps shipping.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Calls `f` every `period` until `stop`, the first time one period from now: the re-read of
/// a small file that stands in for a watch on it (the API key, the Pod's labels).
pub(crate) fn spawn_every(
    period: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
    f: impl Fn() + Send + 'static,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => f(),
                _ = stop.cancelled() => return,
            }
        }
    });
}
