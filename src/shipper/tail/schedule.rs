//! The reader's schedule: how long it sleeps, how long writes gather before a read, when the
//! open batch leaves, and when rescans and polls of files without a name are due.
//!
//! Decisions only: every method is given the time (`now`) and what the reader knows (when
//! the open batch began, whether files are being read, whether requests are in flight), so
//! the schedule is tested with a simulated clock; the reader's loop in `tail/mod.rs` acts on
//! them.

use std::time::{Duration, Instant};

/// How often files whose name no longer leads to them are checked for growth: no file event
/// names them any more.
pub(super) const ORPHAN_POLL: Duration = Duration::from_secs(1);
/// While draining, how often every open file is looked at, file events or not.
pub(super) const DRAIN_POLL: Duration = Duration::from_millis(200);
/// After a write wakes the reader from sleep, how long it waits for more before reading:
/// an app's appends come in bursts, and one read of a burst costs a fraction of one read per
/// append (docs/performance.md, "Measurements behind the code").
pub(super) const WRITE_COALESCE: Duration = Duration::from_millis(20);
/// A turn that made fewer events than this leaves the Pod quiet: the next writes gather
/// until a batch would leave anyway (see [`Schedule::gather_for`]).
const QUIET_EVENTS: u64 = 256;

/// The settings the schedule follows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// A batch leaves this long after its first event at the latest (`batch.timeout_ms`).
    pub batch_timeout: Duration,
    /// Once every file is read to its end, a batch leaves this long after its first event
    /// if no request is in flight (`batch.linger_ms`).
    pub linger_batch: Duration,
    /// In a quiet Pod, writes gather until a batch can hold about this many events
    /// (`batch.quiet_min_events`), up to `batch_timeout`.
    pub quiet_min_events: u64,
    /// `tail.rescan_interval_ms`.
    pub rescan_every: Duration,
}

/// What becomes of the open batch at a turn's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchDue {
    /// It stays open (none is open, it is young, or files are still being read).
    Stays,
    /// It has lingered: it leaves now if no request is in flight, else when the last one
    /// ends (the reader asks to be rung then).
    WhenIdle,
    /// Its timeout has come: it leaves now.
    Now,
}

/// Which periodic work a wake-up found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Due {
    pub rescan: bool,
    /// Look at files without a name (and, while draining, at every open file).
    pub poll: bool,
}

pub(super) struct Schedule {
    timing: Timing,
    next_rescan: Instant,
    next_poll: Instant,
    draining: bool,
    /// The last turn made few events: writes may gather longer (see `gather_for`).
    quiet: bool,
    /// The last turn made events: more are likely, so the reader gathers them without
    /// waiting for the first one's file event.
    flowing: bool,
    /// Events per second lately (from the last two turns that made any), and when the last
    /// of them made some.
    rate: f64,
    last_events_at: Option<Instant>,
}

impl Schedule {
    pub(super) fn new(timing: Timing, now: Instant) -> Schedule {
        Schedule {
            timing,
            next_rescan: now + timing.rescan_every,
            next_poll: now + ORPHAN_POLL,
            draining: false,
            quiet: true,
            flowing: false,
            rate: f64::MAX,
            last_events_at: None,
        }
    }

    /// Lines kept coming at the last turn: the next ones gather at once, without a wake-up
    /// for the first of them (one wake-up per batch in a steady quiet Pod, not two).
    pub(super) fn flowing(&self) -> bool {
        self.flowing && !self.draining
    }

    pub(super) fn draining(&self) -> bool {
        self.draining
    }

    /// A drain began: every open file is looked at from now on, file events or not.
    pub(super) fn start_drain(&mut self, now: Instant) {
        self.draining = true;
        self.next_poll = now + DRAIN_POLL;
    }

    /// How long the loop may sleep: until the next rescan, the open batch's deadline (its
    /// linger only while no request is in flight), the next poll of files without a name
    /// (`polling`), or `group` (a multi-line event's timeout).
    pub(super) fn sleep_for(
        &self,
        now: Instant,
        batch_opened: Option<Instant>,
        requests_idle: bool,
        polling: bool,
        group: Option<Instant>,
    ) -> Duration {
        let t = &self.timing;
        let mut due = self.next_rescan;
        if let Some(opened) = batch_opened {
            due = due.min(opened + t.batch_timeout);
            if requests_idle {
                due = due.min(opened + t.linger_batch);
            }
        }
        if self.draining || polling {
            due = due.min(self.next_poll);
        }
        if let Some(group) = group {
            due = due.min(group);
        }
        due.saturating_duration_since(now)
    }

    /// The rescan (due, or asked for by the file watch) and the poll that are due at `now`,
    /// each scheduled again from `now`.
    pub(super) fn due(&mut self, now: Instant, rescan_asked: bool) -> Due {
        let mut due = Due::default();
        if rescan_asked || now >= self.next_rescan {
            due.rescan = true;
            self.next_rescan = now + self.timing.rescan_every;
        }
        if now >= self.next_poll {
            due.poll = true;
            self.next_poll = now
                + if self.draining {
                    DRAIN_POLL
                } else {
                    ORPHAN_POLL
                };
        }
        due
    }

    /// How long writes may gather before they are read: in a quiet Pod (the last turn made
    /// few events) until the open batch, or one opened now, would leave anyway, so that a
    /// batch costs the reader one wake-up instead of one per write; otherwise briefly.
    pub(super) fn gather_for(&self, now: Instant, batch_opened: Option<Instant>) -> Duration {
        if !self.quiet {
            return WRITE_COALESCE;
        }
        let t = &self.timing;
        // Long enough for `quiet_min_events` at the rate lines came lately: a Pod writing a
        // few lines a second sends a batch of several, not one per linger.
        let filled = Duration::from_secs_f64(t.quiet_min_events as f64 / self.rate.max(0.01));
        let window = filled.clamp(t.linger_batch, t.batch_timeout.max(t.linger_batch));
        let until = batch_opened.unwrap_or(now) + window;
        until.saturating_duration_since(now).max(WRITE_COALESCE)
    }

    /// Whether the open batch leaves: `batch.timeout_ms` after its first event at the
    /// latest; `batch.linger_ms` after it once every file is read to its end (`reading` is
    /// false) and no request is in flight (while one is, the batch fills: fewer, larger
    /// requests under load).
    pub(super) fn batch_due(
        &self,
        now: Instant,
        opened: Option<Instant>,
        reading: bool,
    ) -> BatchDue {
        let Some(opened) = opened else {
            return BatchDue::Stays;
        };
        let age = now.saturating_duration_since(opened);
        if age >= self.timing.batch_timeout {
            BatchDue::Now
        } else if age < self.timing.linger_batch || reading {
            BatchDue::Stays
        } else {
            BatchDue::WhenIdle
        }
    }

    /// A turn ended at `now` having made `made` events.
    pub(super) fn turn_made(&mut self, now: Instant, made: u64) {
        self.quiet = made < QUIET_EVENTS;
        self.flowing = made > 0;
        if made > 0 {
            let since = self.last_events_at.replace(now);
            if let Some(since) = since {
                let elapsed = now.saturating_duration_since(since).as_secs_f64();
                self.rate = made as f64 / elapsed.max(0.001);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The defaults: a batch leaves 1 s after its first event at the latest, or 250 ms
    /// after it once the files are read; 12 events make a quiet Pod's batch.
    fn schedule(t0: Instant) -> Schedule {
        Schedule::new(
            Timing {
                batch_timeout: ms(1000),
                linger_batch: ms(250),
                quiet_min_events: 12,
                rescan_every: ms(10_000),
            },
            t0,
        )
    }

    #[test]
    fn a_batch_lingers_while_files_are_read_and_leaves_at_its_timeout() {
        let t0 = Instant::now();
        let s = schedule(t0);
        assert_eq!(s.batch_due(t0 + ms(5000), None, false), BatchDue::Stays);
        assert_eq!(s.batch_due(t0 + ms(249), Some(t0), false), BatchDue::Stays);
        assert_eq!(
            s.batch_due(t0 + ms(250), Some(t0), false),
            BatchDue::WhenIdle
        );
        assert_eq!(s.batch_due(t0 + ms(600), Some(t0), true), BatchDue::Stays);
        assert_eq!(s.batch_due(t0 + ms(1000), Some(t0), true), BatchDue::Now);
    }

    #[test]
    fn sleep_ends_at_the_first_thing_due() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        // Nothing open: the next rescan.
        assert_eq!(s.sleep_for(t0, None, true, false, None), ms(10_000));
        // An open batch: its linger while no request is in flight, its timeout while one is.
        assert_eq!(
            s.sleep_for(t0 + ms(100), Some(t0), true, false, None),
            ms(150)
        );
        assert_eq!(
            s.sleep_for(t0 + ms(100), Some(t0), false, false, None),
            ms(900)
        );
        // Files without a name are polled every second; a multi-line event's timeout too.
        assert_eq!(s.sleep_for(t0, None, true, true, None), ORPHAN_POLL);
        assert_eq!(s.sleep_for(t0, None, true, true, Some(t0 + ms(70))), ms(70));
        // Overdue is now, not a wrap-around.
        assert_eq!(
            s.sleep_for(t0 + ms(2000), Some(t0), true, false, None),
            ms(0)
        );
        // Draining: every open file is polled every 200 ms.
        s.start_drain(t0);
        assert_eq!(s.sleep_for(t0, None, true, false, None), DRAIN_POLL);
    }

    #[test]
    fn rescans_and_polls_come_on_their_schedule() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert_eq!(s.due(t0 + ms(500), false), Due::default());
        assert_eq!(
            s.due(t0 + ms(500), true),
            Due {
                rescan: true,
                poll: false
            }
        );
        assert_eq!(
            s.due(t0 + ms(1000), false),
            Due {
                rescan: false,
                poll: true
            }
        );
        // Each is scheduled again from when it ran.
        assert_eq!(s.due(t0 + ms(1500), false), Due::default());
        assert_eq!(
            s.due(t0 + ms(2000), false),
            Due {
                rescan: false,
                poll: true
            }
        );
        assert!(!s.due(t0 + ms(10_499), false).rescan);
        assert!(s.due(t0 + ms(10_500), false).rescan);
        s.start_drain(t0 + ms(11_000));
        assert!(s.due(t0 + ms(11_200), false).poll);
        assert!(!s.due(t0 + ms(11_300), false).poll);
        assert!(
            s.due(t0 + ms(11_400), false).poll,
            "200 ms apart while draining"
        );
    }

    #[test]
    fn a_quiet_pod_gathers_writes_until_a_batch_would_leave() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        // Before any rate is known: the linger.
        assert_eq!(s.gather_for(t0, None), ms(250));
        // 50 lines/s, 12 per batch: 240 ms, held to the linger at least.
        s.turn_made(t0, 5);
        s.turn_made(t0 + ms(100), 5);
        assert_eq!(s.gather_for(t0, None), ms(250));
        // 10 lines/s: 1.2 s, held to the timeout; counted from the open batch's start.
        s.turn_made(t0 + ms(200), 1);
        assert_eq!(s.gather_for(t0 + ms(200), None), ms(1000));
        assert_eq!(s.gather_for(t0 + ms(700), Some(t0 + ms(200))), ms(500));
        // Never less than the coalescing of a burst, even when overdue.
        assert_eq!(s.gather_for(t0 + ms(5000), Some(t0)), WRITE_COALESCE);
        // A busy turn: writes gather only briefly.
        s.turn_made(t0 + ms(300), 1000);
        assert_eq!(s.gather_for(t0 + ms(300), None), WRITE_COALESCE);
    }

    #[test]
    fn lines_that_keep_coming_are_gathered_without_a_wake_up_until_a_drain() {
        let t0 = Instant::now();
        let mut s = schedule(t0);
        assert!(!s.flowing());
        s.turn_made(t0, 3);
        assert!(s.flowing());
        s.turn_made(t0 + ms(250), 0);
        assert!(
            !s.flowing(),
            "a turn that found nothing sleeps on file events again"
        );
        s.turn_made(t0 + ms(500), 3);
        s.start_drain(t0 + ms(600));
        assert!(!s.flowing() && s.draining());
    }
}
