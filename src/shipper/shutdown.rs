//! The shipper's way out, as one named type with explicit phases.
//!
//! A sidecar's files live on an `emptyDir` that is deleted with its Pod, so SIGTERM does not
//! mean "stop reading": it means "read everything that is left, ship it, and only then go".
//! The phases, in the only order they can be taken:
//!
//! ```text
//! Running ──SIGTERM──▶ Draining ──every file read and quiet, all accepted──▶ (exit)
//!    │                    │ deadline (shutdown_timeout_ms) or a second signal
//!    │                    ▼
//!    └──reload, or ──▶ Stopping ──in-flight batches answered──▶ (exit)
//!       host mode         │ deadline or a second signal
//!                         ▼
//!                     Abandoning: retries given up; what was not accepted is counted and
//!                                 read again by the next start
//! ```
//!
//! Every stage holds a [`ShutdownSignal`] and asks it what to do; only the owner of the
//! [`Shutdown`] moves the phase, and only forward.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Where the shipper is on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Reading, shipping, checkpointing.
    Running,
    /// Read every followed file to its end until all are quiet, ship all of it; retries wait
    /// for a short backoff only.
    Draining,
    /// Read nothing more; ship what was read (a reload, or a host where the files outlive
    /// the process).
    Stopping,
    /// Give up what is still in flight and write the checkpoints.
    Abandoning,
}

impl Phase {
    /// Past `Running`: the end is near, so nobody should sleep long.
    pub fn leaving(self) -> bool {
        self != Phase::Running
    }
}

/// What was decided about the end: the phase, and the deadline once one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    phase: Phase,
    deadline: Option<Instant>,
    /// The drain was asked for at some point (what was not shipped is then lost with the Pod).
    drained: bool,
}

/// The owner's handle: moves the phase forward and sets the deadline.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<State>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, _) = watch::channel(State {
            phase: Phase::Running,
            deadline: None,
            drained: false,
        });
        Shutdown { tx }
    }

    /// A view for a stage.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Whether a drain was asked for at some point.
    pub fn drained(&self) -> bool {
        self.tx.borrow().drained
    }

    /// Moves to `phase` if that is forward (Draining may become Stopping, never the reverse),
    /// and starts the deadline `within` from now unless one runs already. False when nothing
    /// changed.
    pub fn advance(&self, phase: Phase, within: Option<Duration>) -> bool {
        self.tx.send_if_modified(|s| {
            let mut changed = false;
            if phase > s.phase {
                s.phase = phase;
                s.drained |= phase == Phase::Draining;
                changed = true;
            }
            if let (None, Some(within)) = (s.deadline, within) {
                s.deadline = Some(Instant::now() + within);
                changed = true;
            }
            changed
        })
    }
}

/// A stage's view of the shutdown: the phase now, and a way to wait for it to change.
#[derive(Debug, Clone)]
pub struct ShutdownSignal {
    rx: watch::Receiver<State>,
}

impl ShutdownSignal {
    pub fn phase(&self) -> Phase {
        self.rx.borrow().phase
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.rx.borrow().deadline
    }

    pub fn abandoning(&self) -> bool {
        self.phase() == Phase::Abandoning
    }

    /// Waits for the next change of phase or deadline. Never returns when the owner is
    /// gone: nothing will change any more.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until the phase is `Abandoning`.
    pub async fn abandoned(&mut self) {
        while !self.abandoning() {
            self.changed().await;
        }
    }

    /// Waits until the deadline passes (never, while there is none).
    pub async fn deadline_passed(&mut self) {
        loop {
            match self.deadline() {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => return,
                        _ = self.changed() => {}
                    }
                }
                None => self.changed().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let s = Shutdown::new();
        let view = s.signal();
        assert_eq!(view.phase(), Phase::Running);
        assert!(!s.drained());
        assert!(s.advance(Phase::Draining, None));
        assert!(s.drained());
        assert!(!s.advance(Phase::Running, None));
        assert_eq!(view.phase(), Phase::Draining);
        assert!(s.advance(Phase::Stopping, None));
        assert!(!s.advance(Phase::Draining, None));
        assert!(s.advance(Phase::Abandoning, None));
        assert!(view.abandoning());
    }

    #[test]
    fn the_first_deadline_stays() {
        let s = Shutdown::new();
        assert!(s.advance(Phase::Draining, Some(Duration::from_secs(5))));
        let first = s.signal().deadline().expect("deadline");
        assert!(!s.advance(Phase::Draining, Some(Duration::from_secs(50))));
        assert_eq!(s.signal().deadline(), Some(first));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_end_at_the_deadline_and_at_abandon() {
        let s = Shutdown::new();
        let mut view = s.signal();
        s.advance(Phase::Draining, Some(Duration::from_secs(20)));
        let started = Instant::now();
        view.deadline_passed().await;
        assert!(started.elapsed() >= Duration::from_secs(20));
        let mut view2 = s.signal();
        let waiter = tokio::spawn(async move { view2.abandoned().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.advance(Phase::Abandoning, None);
        waiter.await.expect("abandoned");
    }
}
