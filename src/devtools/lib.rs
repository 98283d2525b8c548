//! Tools to try, test and measure sidelog, kept out of the binary that runs in Pods (the
//! `devtools` feature of the `sidelog` binary, on by default; the image is built without it):
//!
//! - [`intake`]: a Datadog-compatible logs intake, with faults on demand (also the tests'
//!   receiver);
//! - [`bench`]: end-to-end benchmarks of the real binary;
//! - [`demo`]: the intake, a sample writer and the shipper in one process;
//! - [`writer`] (lines written like an app), [`kubelet`] (volumes updated like the
//!   kubelet's) and [`config`] (typed configuration files), for the benchmarks and the tests.
//!
//! They use the shipper's crate (its codecs, events and configuration) as any other user
//! would; the shipper knows nothing of them.

pub mod bench;
pub mod config;
pub mod demo;
pub mod intake;
pub mod kubelet;
pub mod writer;

/// Locks a mutex, carrying on with its data when another thread panicked while holding it:
/// the intake keeps counting what arrived, so a test reports the panic, not a poisoned lock.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
