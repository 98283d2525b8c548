//! Liveness: whether sidelog itself keeps turning. The reader thread and the sender each say
//! when they will turn again at the latest; `/healthz` fails once one of them is late by more
//! than `liveness_timeout_secs`. Nothing outside the process counts: an intake that is down or
//! refuses the key, a missing Secret or a full disk leave sidelog alive (they show in the
//! metrics, `sidelog status` and the logs), since a restart cures none of them and a probe the
//! Pod's readiness follows would take the app out of service.
//!
//! The reader is late when a turn (a read of every file that has data) takes too long, or when
//! it sleeps past its own deadline; while it waits for the sender to take a batch it is never
//! late itself. The sender is late when it has work (the reader waits for it, or requests are
//! in flight) and nothing moved (a batch taken, an answer, a wait the outage gate decided) for
//! longer than its requests' timeout and the wait it announced.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::monotonic_ms;
use crate::delivery::DeliveryState;

/// A `due` that never comes: the stage waits on the other one.
const NEVER: u64 = u64::MAX;

/// The reader's and the sender's deadlines, for one run of the shipper.
pub struct Liveness {
    timeout_ms: u64,
    /// What the sender is allowed beyond its last progress: a request's timeout.
    request_timeout_ms: u64,
    /// When the reader will turn again at the latest ([`NEVER`] while it waits for the
    /// sender), in [`monotonic_ms`].
    reader_due: AtomicU64,
    /// Since when the reader has waited for the sender to take a batch (0: it does not).
    reader_waits_since: AtomicU64,
    /// Until when the sender is excused: its last progress plus a request's timeout, or the
    /// end of a wait the outage gate decided, whichever is later.
    sender_due: AtomicU64,
    /// The run's requests in flight.
    delivery: Arc<DeliveryState>,
}

/// Which stage is stuck, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub stage: &'static str,
    pub late: Duration,
}

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the {} has not turned for {} s past its deadline",
            self.stage,
            self.late.as_secs()
        )
    }
}

impl Liveness {
    pub fn new(
        timeout: Duration,
        request_timeout: Duration,
        delivery: Arc<DeliveryState>,
    ) -> Liveness {
        let now = monotonic_ms();
        Liveness {
            timeout_ms: timeout.as_millis() as u64,
            request_timeout_ms: request_timeout.as_millis() as u64,
            // Not started yet (the key may be awaited first): not late.
            reader_due: AtomicU64::new(NEVER),
            reader_waits_since: AtomicU64::new(0),
            sender_due: AtomicU64::new(now),
            delivery,
        }
    }

    /// The reader is taking a turn: it must be done within the timeout.
    pub fn reader_turns(&self) {
        self.reader_turns_at(monotonic_ms());
    }

    fn reader_turns_at(&self, now: u64) {
        self.reader_due.store(now, Ordering::Relaxed);
        self.reader_waits_since.store(0, Ordering::Relaxed);
    }

    /// The reader sleeps for `sleep` at most.
    pub fn reader_sleeps(&self, sleep: Duration) {
        let due = monotonic_ms().saturating_add(sleep.as_millis() as u64);
        self.reader_due.store(due, Ordering::Relaxed);
    }

    /// The reader waits for the sender to take a batch: the sender has work.
    pub fn reader_waits_for_sender(&self) {
        self.reader_due.store(NEVER, Ordering::Relaxed);
        let _ = self.reader_waits_since.compare_exchange(
            0,
            monotonic_ms().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The reader ended: it is never late again.
    pub fn reader_ended(&self) {
        self.reader_due.store(NEVER, Ordering::Relaxed);
        self.reader_waits_since.store(0, Ordering::Relaxed);
    }

    /// The sender moved: a batch taken from the reader, an answer received, a batch settled.
    pub fn sender_moved(&self) {
        let due = monotonic_ms().saturating_add(self.request_timeout_ms);
        self.sender_due.fetch_max(due, Ordering::Relaxed);
    }

    /// The sender will wait `wait` before its next attempt (the outage gate's decision).
    pub fn sender_waits(&self, wait: Duration) {
        let due = monotonic_ms()
            .saturating_add(wait.as_millis() as u64)
            .saturating_add(self.request_timeout_ms);
        self.sender_due.fetch_max(due, Ordering::Relaxed);
    }

    /// The stage that is stuck, if one is.
    pub fn stuck(&self) -> Option<Stuck> {
        self.stuck_at(monotonic_ms())
    }

    fn stuck_at(&self, now: u64) -> Option<Stuck> {
        let late = |due: u64| {
            let over = now.saturating_sub(due);
            (due != NEVER && over > self.timeout_ms).then(|| Duration::from_millis(over))
        };
        if let Some(late) = late(self.reader_due.load(Ordering::Relaxed)) {
            return Some(Stuck {
                stage: "reader",
                late,
            });
        }
        let has_work =
            self.reader_waits_since.load(Ordering::Relaxed) != 0 || self.delivery.in_flight() > 0;
        if has_work && let Some(late) = late(self.sender_due.load(Ordering::Relaxed)) {
            return Some(Stuck {
                stage: "sender",
                late,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liveness() -> (Liveness, Arc<DeliveryState>) {
        let delivery = Arc::new(DeliveryState::default());
        let l = Liveness::new(
            Duration::from_secs(10),
            Duration::from_secs(30),
            delivery.clone(),
        );
        (l, delivery)
    }

    #[test]
    fn a_reader_late_beyond_the_timeout_is_stuck() {
        let (l, _) = liveness();
        let t = 1_000_000;
        l.reader_turns_at(t);
        l.sender_due.store(t, Ordering::Relaxed);
        assert_eq!(l.stuck_at(t + 10_000), None, "within the timeout");
        let stuck = l.stuck_at(t + 10_001).expect("stuck");
        assert_eq!(stuck.stage, "reader");
        // Asleep until a deadline, it is late only past that deadline and the timeout.
        l.reader_due.store(t + 60_000, Ordering::Relaxed);
        assert_eq!(l.stuck_at(t + 70_000), None);
        assert!(l.stuck_at(t + 70_001).is_some());
    }

    #[test]
    fn waiting_for_the_sender_is_the_senders_lateness() {
        let (l, in_flight) = liveness();
        let t = 2_000_000;
        l.reader_due.store(NEVER, Ordering::Relaxed);
        l.reader_waits_since.store(t, Ordering::Relaxed);
        l.sender_due.store(t + 30_000, Ordering::Relaxed);
        assert_eq!(l.stuck_at(t + 40_000), None, "the request may still answer");
        assert_eq!(
            l.stuck_at(t + 40_001).map(|s| s.stage),
            Some("sender"),
            "nothing moved past its deadline while the reader waits"
        );
        // With nothing to do, an idle sender is never late.
        l.reader_turns_at(t + 40_001);
        assert_eq!(l.stuck_at(t + 45_000), None);
        in_flight.request_started();
        assert_eq!(l.stuck_at(t + 45_000).map(|s| s.stage), Some("sender"));
    }

    #[test]
    fn the_gates_wait_excuses_the_sender() {
        let (l, _) = liveness();
        l.reader_waits_for_sender();
        l.sender_waits(Duration::from_secs(600));
        assert_eq!(l.stuck(), None);
        let due = l.sender_due.load(Ordering::Relaxed);
        assert!(l.stuck_at(due + 10_000).is_none());
        assert!(l.stuck_at(due + 10_001).is_some());
    }
}
