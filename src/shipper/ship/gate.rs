//! The outage gate: while the intake fails, one request probes it and every other one waits.
//!
//! Without it, each batch in flight would retry on its own backoff: a failing intake gets
//! `request_concurrency` times the load, and after a long outage every batch sleeps through
//! the recovery on a backoff grown to a minute. With it, the first failure closes the gate;
//! from then on a single request (the probe) is sent after each wait, and the first answer
//! that shows the intake up opens the gate for all of them at once.
//!
//! Waits grow from `retry_initial_ms`, doubling per failed attempt up to `retry_max_ms`, with
//! "equal jitter" (uniform in the upper half of the step): probes from one sidecar are at
//! least half a step apart, which bounds the load on a failing intake, and thousands of
//! sidecars that failed together do not probe in step. A `Retry-After` from the intake is
//! honoured as given (plus up to a tenth, at most a second, of jitter). During a drain the
//! deadline is near: nobody waits longer than [`DRAIN_WAIT`] after the last failure.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::lock;
use crate::shutdown::ShutdownSignal;

/// The longest wait between attempts once the shipper is leaving.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_millis(500);

pub(crate) struct Gate {
    state: Mutex<GateState>,
    changed: Notify,
    initial: Duration,
    max: Duration,
}

#[derive(Debug)]
struct GateState {
    /// Failed attempts since the intake last answered; 0 while the gate is open.
    failures: u32,
    /// A probe is on its way.
    probing: bool,
    /// No request before this.
    not_before: Instant,
    /// The last failure, from which a drain's short wait counts.
    failed_at: Instant,
    /// When the gate closed, for the log line when it opens.
    closed_at: Instant,
}

/// Leave to send one attempt; report what became of it.
pub(crate) struct Pass<'a> {
    gate: &'a Gate,
    probe: bool,
    reported: bool,
}

/// What the gate did with a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed {
    /// How long the gate waits before the next attempt.
    pub wait: Duration,
    /// This failure closed the gate (the intake had been answering).
    pub closed: bool,
}

/// What the gate did with an answer that showed the intake up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reopened {
    pub closed_for: Duration,
    pub failures: u32,
}

impl Gate {
    pub(crate) fn new(initial: Duration, max: Duration) -> Gate {
        let now = Instant::now();
        Gate {
            state: Mutex::new(GateState {
                failures: 0,
                probing: false,
                not_before: now,
                failed_at: now,
                closed_at: now,
            }),
            changed: Notify::new(),
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
        }
    }

    /// Waits until this caller may send: at once while the gate is open; otherwise until it
    /// is its turn to probe or the gate opens. `None` once the shutdown abandons sending.
    pub(crate) async fn pass(&self, signal: &mut ShutdownSignal) -> Option<Pass<'_>> {
        loop {
            if signal.abandoning() {
                return None;
            }
            // Registered before the state is read, so an opening in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake_at = {
                let mut s = lock(&self.state);
                if s.failures == 0 {
                    return Some(self.ticket(false));
                }
                let due = self.due(&s, signal.phase().leaving());
                if !s.probing && Instant::now() >= due {
                    s.probing = true;
                    return Some(self.ticket(true));
                }
                (!s.probing).then_some(due)
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = sleep_until(wake_at) => {}
                _ = signal.changed() => {}
            }
        }
    }

    /// Closes the gate (or keeps it closed) and schedules the next probe, for a failure found
    /// outside one attempt: an endpoint that refuses every part of a batch (see
    /// `pipeline::refused`).
    pub(crate) fn fail(&self) -> Failed {
        self.failed(false, None)
    }

    /// Whether requests are being held back.
    #[cfg(test)]
    fn is_closed(&self) -> bool {
        lock(&self.state).failures > 0
    }

    fn ticket(&self, probe: bool) -> Pass<'_> {
        Pass {
            gate: self,
            probe,
            reported: false,
        }
    }

    fn due(&self, s: &GateState, leaving: bool) -> Instant {
        if leaving {
            s.not_before.min(s.failed_at + DRAIN_WAIT)
        } else {
            s.not_before
        }
    }

    fn answered(&self, probe: bool) -> Option<Reopened> {
        let mut s = lock(&self.state);
        if probe {
            s.probing = false;
        }
        if s.failures == 0 {
            return None;
        }
        let reopened = Reopened {
            closed_for: s.closed_at.elapsed(),
            failures: s.failures,
        };
        s.failures = 0;
        drop(s);
        self.changed.notify_waiters();
        Some(reopened)
    }

    fn failed(&self, probe: bool, retry_after: Option<Duration>) -> Failed {
        let mut s = lock(&self.state);
        let now = Instant::now();
        let closed = s.failures == 0;
        if closed {
            s.closed_at = now;
        }
        s.failures = s.failures.saturating_add(1);
        if probe {
            s.probing = false;
        }
        let wait = match retry_after {
            Some(after) => after + jitter_up_to((after / 10).min(Duration::from_secs(1))),
            None => equal_jitter(step(s.failures, self.initial, self.max)),
        };
        s.not_before = s.not_before.max(now + wait);
        s.failed_at = now;
        drop(s);
        self.changed.notify_waiters();
        Failed { wait, closed }
    }

    fn abandoned(&self, probe: bool) {
        if probe {
            lock(&self.state).probing = false;
            self.changed.notify_waiters();
        }
    }
}

impl Pass<'_> {
    /// The intake answered (accepted, or refused the body for its content): it is up.
    /// `Some` when this answer opened the gate.
    pub(crate) fn answered(mut self) -> Option<Reopened> {
        self.reported = true;
        self.gate.answered(self.probe)
    }

    /// The intake refused the body for good (400, 413). While the gate is open that says
    /// nothing of the intake. A refused probe keeps the gate closed, with the next wait: an
    /// endpoint that refuses everything (a gateway in front of it) is not shown up by
    /// refusing, and only an accepted body opens the gate. `Some` for a probe.
    pub(crate) fn refused(mut self) -> Option<Failed> {
        self.reported = true;
        self.probe.then(|| self.gate.failed(true, None))
    }

    /// The attempt failed in a way worth retrying; returns how long the gate now waits,
    /// and whether this failure closed it.
    pub(crate) fn failed(mut self, retry_after: Option<Duration>) -> Failed {
        self.reported = true;
        self.gate.failed(self.probe, retry_after)
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.reported {
            // Abandoned on its way: let another caller probe.
            self.gate.abandoned(self.probe);
        }
    }
}

/// The backoff step after `failures` failed attempts: `initial * 2^(failures-1)`, at most `max`.
pub(crate) fn step(failures: u32, initial: Duration, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1u32 << exp).min(max)
}

/// Uniform in `[step / 2, step]`.
fn equal_jitter(step: Duration) -> Duration {
    let ms = step.as_millis() as u64;
    Duration::from_millis(fastrand::u64(ms / 2..=ms))
}

fn jitter_up_to(max: Duration) -> Duration {
    Duration::from_millis(fastrand::u64(0..=max.as_millis() as u64))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::{Phase, Shutdown};
    use std::sync::Arc;

    fn gate() -> Arc<Gate> {
        Arc::new(Gate::new(
            Duration::from_millis(1000),
            Duration::from_millis(2500),
        ))
    }

    #[test]
    fn steps_double_up_to_the_cap() {
        let (i, m) = (Duration::from_millis(1000), Duration::from_millis(2500));
        assert_eq!(step(1, i, m), Duration::from_millis(1000));
        assert_eq!(step(2, i, m), Duration::from_millis(2000));
        assert_eq!(step(3, i, m), Duration::from_millis(2500));
        assert_eq!(step(400, i, m), Duration::from_millis(2500));
        for _ in 0..200 {
            let d = equal_jitter(Duration::from_millis(2500));
            assert!(d >= Duration::from_millis(1250) && d <= Duration::from_millis(2500));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_gate_lets_everyone_through() {
        let g = gate();
        let shutdown = Shutdown::new();
        let mut signal = shutdown.signal();
        let a = g.pass(&mut signal).await.expect("pass");
        let b = g.pass(&mut signal).await.expect("pass");
        assert!(!a.probe && !b.probe);
        assert_eq!(a.answered(), None);
        assert_eq!(b.answered(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_and_a_success_releases_all() {
        let g = gate();
        let shutdown = Shutdown::new();
        let mut signal = shutdown.signal();
        let first = g.pass(&mut signal).await.expect("pass");
        let failed = first.failed(None);
        assert!(failed.closed, "the first failure closes the gate");
        let waited = failed.wait;
        assert!(waited >= Duration::from_millis(500) && waited <= Duration::from_millis(1000));
        // Three callers wait; only one of them gets to probe, and not before the wait.
        let started = Instant::now();
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let (g, mut signal) = (g.clone(), shutdown.signal());
            waiters.push(tokio::spawn(async move {
                let pass = g.pass(&mut signal).await.expect("pass");
                let probe = pass.probe;
                if probe {
                    // Hold the probe a while, then report the intake up.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    assert!(pass.answered().is_some());
                } else {
                    pass.answered();
                }
                (probe, Instant::now() - started)
            }));
        }
        let mut results = Vec::new();
        for w in waiters {
            results.push(w.await.expect("waiter"));
        }
        let probes: Vec<_> = results.iter().filter(|(probe, _)| *probe).collect();
        assert_eq!(probes.len(), 1, "{results:?}");
        let probe_at = probes[0].1;
        assert!(probe_at >= waited, "{results:?}");
        for (probe, at) in &results {
            if !probe {
                // Released by the probe's success, not before it.
                assert!(*at >= probe_at, "{results:?}");
            }
        }
        assert!(!g.is_closed());
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured_and_a_drain_waits_short() {
        let g = gate();
        let shutdown = Shutdown::new();
        let mut signal = shutdown.signal();
        let pass = g.pass(&mut signal).await.expect("pass");
        let waited = pass.failed(Some(Duration::from_secs(30))).wait;
        assert!(waited >= Duration::from_secs(30) && waited <= Duration::from_secs(31));
        let started = Instant::now();
        let (g2, mut signal2) = (g.clone(), shutdown.signal());
        let waiter = tokio::spawn(async move {
            let pass = g2.pass(&mut signal2).await.expect("pass");
            let at = Instant::now();
            pass.answered();
            at
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished(), "Retry-After not honoured");
        shutdown.advance(Phase::Draining, None);
        let at = waiter.await.expect("waiter");
        // Woken by the drain, and let through at once: the last failure was 5 s ago.
        assert!(at - started <= Duration::from_secs(5) + DRAIN_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_another_caller_probe() {
        let g = gate();
        let shutdown = Shutdown::new();
        let mut signal = shutdown.signal();
        g.pass(&mut signal).await.expect("pass").failed(None);
        let probe = g.pass(&mut signal).await.expect("probe");
        assert!(probe.probe);
        drop(probe);
        let again = g.pass(&mut signal).await.expect("probe again");
        assert!(again.probe);
        shutdown.advance(Phase::Abandoning, None);
        drop(again);
        assert!(g.pass(&mut signal).await.is_none());
    }
}
