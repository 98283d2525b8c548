//! The reader's outbox: the open batch the files' events go into, the batches waiting to be
//! handed over, the handover to the sender (blocking while it is behind, so the reader stops
//! reading), the body buffers the sender gives back, and when the open batch leaves.
//!
//! When it leaves is the schedule's decision (`schedule`) on times alone; this part adds what
//! delivery says: while an endpoint fails and requests wait on it, the open batch stays until
//! it is full, and a batch that lingered leaves once no request is in flight (the sender's
//! last request rings the reader then).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::emit::Events;
use super::schedule::{BatchDue, Schedule};
use super::wake::Wake;
use crate::delivery::DeliveryState;
use crate::encode::{Batch, BatchBuilder, EncodeStats};
use crate::health::Liveness;
use crate::metrics::Metrics;

/// What the batcher hands batches to and hears from.
pub(crate) struct BatcherLinks {
    pub out: mpsc::Sender<Batch>,
    pub recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    pub delivery: Arc<DeliveryState>,
    pub wake: Arc<Wake>,
    pub liveness: Arc<Liveness>,
    pub metrics: Arc<Metrics>,
}

pub(crate) struct Batcher {
    events: Events,
    out: mpsc::Sender<Batch>,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Requests in flight and endpoints failing.
    delivery: Arc<DeliveryState>,
    /// Told whether a lingering batch waits for the last request to end.
    wake: Arc<Wake>,
    /// Told while the reader waits for the sender.
    liveness: Arc<Liveness>,
    metrics: Arc<Metrics>,
}

impl Batcher {
    pub(crate) fn new(builder: BatchBuilder, links: BatcherLinks) -> Batcher {
        Batcher {
            events: Events {
                builder,
                ready: Vec::new(),
            },
            out: links.out,
            recycled: links.recycled,
            delivery: links.delivery,
            wake: links.wake,
            liveness: links.liveness,
            metrics: links.metrics,
        }
    }

    /// Where a read's events go.
    pub(crate) fn events(&mut self) -> &mut Events {
        &mut self.events
    }

    /// When the open batch began, if it holds any event.
    pub(crate) fn opened_at(&self) -> Option<Instant> {
        self.events.builder.opened_at()
    }

    /// What the encoder counted so far.
    pub(crate) fn stats(&self) -> EncodeStats {
        self.events.builder.stats
    }

    /// Takes back the body buffers the sender is done with.
    pub(crate) fn take_recycled(&mut self) {
        while let Ok(buf) = self.recycled.try_recv() {
            self.events.builder.recycle(buf);
        }
    }

    /// Counts the open batch from `at` if it began later.
    pub(crate) fn backdate(&mut self, at: Instant) {
        self.events.builder.backdate(at);
    }

    /// Whether batches are held until full: an endpoint fails and requests wait on it.
    pub(crate) fn holding_back(&self) -> bool {
        self.delivery.holding_back()
    }

    /// Whether no request is in flight.
    pub(crate) fn senders_idle(&self) -> bool {
        self.delivery.in_flight() == 0
    }

    /// Closes the open batch if it is due (see [`Self::batch_due`]).
    pub(crate) fn close_if_due(&mut self, schedule: &Schedule, reading: bool) {
        if self.batch_due(schedule, Instant::now(), reading)
            && let Some(batch) = self.events.builder.take()
        {
            self.events.ready.push(batch);
        }
    }

    /// Whether the open batch leaves now (see [`Schedule::batch_due`]). While an endpoint
    /// fails it leaves only full: the small batches a quiet Pod makes several times a second
    /// would all wait behind the outage gate and go at once when the intake heals, a burst
    /// of requests per Pod that a fleet multiplies; held in one open batch, an outage's lines
    /// go out in as few requests as they need, and the files keep the rest meanwhile. One
    /// that has lingered leaves now, or when the last request in flight ends: the flag is up
    /// before the count is read, so that request rings.
    fn batch_due(&self, schedule: &Schedule, now: Instant, reading: bool) -> bool {
        if self.delivery.holding_back() {
            self.wake.hold_for_sending(false);
            return false;
        }
        let due = schedule.batch_due(now, self.opened_at(), reading);
        let lingered = due == BatchDue::WhenIdle;
        self.wake.hold_for_sending(lingered);
        if !lingered {
            return due == BatchDue::Now;
        }
        let idle = self.delivery.is_idle();
        if idle {
            self.wake.hold_for_sending(false);
        }
        idle
    }

    /// Whether full or due batches wait to be handed over.
    pub(crate) fn has_ready(&self) -> bool {
        !self.events.ready.is_empty()
    }

    /// Hands the batches waiting to the sender, blocking while it is behind. False once the
    /// sender is gone.
    pub(crate) fn send_ready(&mut self) -> bool {
        for batch in self.events.ready.drain(..) {
            self.metrics.batches_built.inc();
            self.liveness.reader_waits_for_sender();
            let sent = self.out.blocking_send(batch);
            self.liveness.reader_turns();
            if sent.is_err() {
                return false;
            }
        }
        true
    }

    /// Closes the open batch, whatever its age, and hands everything over.
    pub(crate) fn hand_over_open_batch(&mut self) -> bool {
        if let Some(batch) = self.events.builder.take() {
            self.events.ready.push(batch);
        }
        self.send_ready()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::encode::{EventFields, EventRange, EventTemplate, LinePiece};
    use crate::position::StreamId;
    use crate::tail::schedule::Timing;

    struct Bench {
        batcher: Batcher,
        batches: mpsc::Receiver<Batch>,
        recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
        delivery: Arc<DeliveryState>,
        metrics: Arc<Metrics>,
        schedule: Schedule,
    }

    fn bench(t0: Instant) -> Bench {
        let (out, batches) = mpsc::channel(8);
        let (recycle, recycled) = std::sync::mpsc::sync_channel(1);
        let delivery = Arc::new(DeliveryState::default());
        let metrics = Arc::new(Metrics::default());
        let liveness = Arc::new(Liveness::new(
            Duration::from_secs(60),
            Duration::from_secs(30),
            delivery.clone(),
        ));
        let links = BatcherLinks {
            out,
            recycled,
            delivery: delivery.clone(),
            wake: Arc::new(Wake::default()),
            liveness,
            metrics: metrics.clone(),
        };
        let schedule = Schedule::new(
            Timing {
                batch_timeout: Duration::from_millis(1000),
                linger_batch: Duration::from_millis(100),
                quiet_min_events: 1,
                rescan_every: Duration::from_secs(10),
            },
            t0,
        );
        Bench {
            batcher: Batcher::new(BatchBuilder::new(10, 1_000_000), links),
            batches,
            recycle,
            delivery,
            metrics,
            schedule,
        }
    }

    fn add_line(b: &mut Batcher, text: &str) {
        let template = EventTemplate::new(&EventFields {
            status: "info",
            hostname: "h",
            service: "s",
            source: "",
            tags: "",
        });
        let range = EventRange {
            stream: StreamId(1),
            start: 0,
            text_offset: 0,
            end: text.len() as u64 + 1,
        };
        let piece = LinePiece {
            text: text.as_bytes(),
            valid_utf8: true,
            cut_before: false,
            cut_after: false,
            status: None,
        };
        let Events { builder, ready } = b.events();
        builder.append_line(&template, 0, range, piece, &mut |batch| ready.push(batch));
    }

    #[test]
    fn a_lingered_batch_leaves_when_no_request_is_in_flight() {
        let t0 = Instant::now();
        let mut b = bench(t0);
        add_line(&mut b.batcher, "one");
        let opened = b.batcher.opened_at().expect("open");
        let lingered = opened + Duration::from_millis(200);
        assert!(
            !b.batcher.batch_due(&b.schedule, opened, false),
            "too young"
        );
        b.delivery.request_started();
        assert!(
            !b.batcher.batch_due(&b.schedule, lingered, false),
            "fills while a request is in flight"
        );
        assert!(b.delivery.request_ended());
        assert!(b.batcher.batch_due(&b.schedule, lingered, false));
        assert!(
            !b.batcher.batch_due(&b.schedule, lingered, true),
            "files being read"
        );
    }

    #[test]
    fn while_an_endpoint_fails_the_open_batch_stays_until_full() {
        let t0 = Instant::now();
        let mut b = bench(t0);
        add_line(&mut b.batcher, "one");
        let opened = b.batcher.opened_at().expect("open");
        let late = opened + Duration::from_secs(5);
        b.delivery.endpoint_failing();
        assert!(
            b.batcher.batch_due(&b.schedule, late, false),
            "nothing in flight"
        );
        b.delivery.request_started();
        assert!(b.batcher.holding_back());
        assert!(
            !b.batcher.batch_due(&b.schedule, late, false),
            "past its timeout"
        );
        for i in 0..9 {
            add_line(&mut b.batcher, &format!("line {i}"));
        }
        assert!(b.batcher.has_ready(), "a full batch leaves all the same");
        assert!(b.batcher.send_ready());
        let batch = b.batches.try_recv().expect("handed over");
        assert_eq!(batch.events, 10);
        assert_eq!(b.metrics.batches_built.get(), 1);
    }

    #[test]
    fn the_open_batch_is_handed_over_and_buffers_come_back() {
        let mut b = bench(Instant::now());
        add_line(&mut b.batcher, "one");
        assert!(b.batcher.hand_over_open_batch());
        let batch = b.batches.try_recv().expect("handed over");
        assert_eq!(batch.events, 1);
        assert!(b.batcher.opened_at().is_none());
        b.recycle.send(batch.body).expect("recycle");
        b.batcher.take_recycled();
        assert!(b.recycle.try_send(Vec::new()).is_ok(), "taken back");
    }

    #[test]
    fn a_sender_gone_ends_the_handover() {
        let mut b = bench(Instant::now());
        add_line(&mut b.batcher, "one");
        drop(b.batches);
        assert!(!b.batcher.hand_over_open_batch());
    }
}
