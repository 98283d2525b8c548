//! Refused batches: a batch the intake refuses for good (400, 413) is either carrying bad
//! events, which are dropped alone, logged and counted, or meeting an endpoint that refuses
//! everything (a misconfigured proxy, a gateway that rejects the content type), which is an
//! outage: nothing may be dropped for it.
//!
//! Which of the two is decided by evidence that the endpoint accepts other content: a part of
//! the batch accepted, or any other body accepted since the refusal. The batch is first sent
//! as a few disjoint parts that double in size (the first event alone, the second, the next
//! two, four, ...): about `log2(events)` requests, and bad events among good ones show at once
//! in the parts accepted. Without any evidence (every part refused, each event alone
//! included, nothing else accepted), the batch is held behind the outage gate and its parts
//! retried one per probe until something is accepted; then refused parts are split in halves
//! until each is accepted or is one event refused alone while others are accepted, which is
//! dropped. A refused batch gives its request slot back first, so that other batches can show
//! the endpoint accepts what it should.
//!
//! Memory: one refused batch at a time holds its decompressed body (the dispatcher's
//! `splitting` permit), and one part of it at a time is copied out and compressed.

use std::collections::VecDeque;
use std::ops::Range;

use crate::encode;
use crate::metrics::Metrics;
use crate::ship::Delivery;
use crate::shutdown::ShutdownSignal;

/// The endpoint that refused a batch, as splitting sees it (the dispatcher provides it).
pub(super) trait Resend: Sync {
    /// Compresses a part with the endpoint's codec and delivers it (counted as sent once
    /// accepted); gives the body back. `None` when it cannot be compressed.
    fn send(
        &self,
        body: Vec<u8>,
        events: usize,
        signal: &mut ShutdownSignal,
    ) -> impl Future<Output = Option<(Delivery, Vec<u8>)>> + Send;
    /// Bodies the endpoint accepted so far.
    fn accepted(&self) -> u64;
    /// Every part refused and nothing else accepted: hold as in an outage.
    fn refuses_everything(&self, status: u16);
    fn metrics(&self) -> &Metrics;
}

/// The intake's refusal of a whole batch.
pub(super) struct Refusal {
    pub status: u16,
    pub detail: String,
    /// The endpoint's count of accepted bodies just after it: more since is evidence.
    pub accepted_before: u64,
}

/// A part of the batch the intake refused, and how.
struct Refused {
    events: Range<usize>,
    status: u16,
    detail: String,
    /// Refused while the endpoint was seen to accept other content: the part itself holds
    /// what is refused. Otherwise it is sent again once there is such evidence.
    proven: bool,
}

/// Sends a refused batch's events in parts until each is accepted or is one event refused
/// alone while the endpoint is seen to accept others (dropped); holds the batch as in an
/// outage while the endpoint refuses everything. Parts go in the order read, a refused part's
/// halves before the parts after it, so that with one request at a time a file's lines still
/// arrive in order. `None` when abandoned or not compressible.
pub(super) async fn split_and_deliver<R: Resend>(
    to: &R,
    raw: &[u8],
    refusal: Refusal,
    signal: &mut ShutdownSignal,
) -> Option<()> {
    let ranges = encode::event_ranges(raw);
    let before = refusal.accepted_before;
    let whole = Refused {
        events: 0..ranges.len(),
        status: refusal.status,
        detail: refusal.detail,
        proven: false,
    };
    // Parts refused before anything showed the endpoint accepts other content.
    let mut unproven: Vec<Refused> = Vec::new();
    // Events to send, in the order read.
    let mut work: VecDeque<Range<usize>> = VecDeque::new();
    if ranges.len() <= 1 || to.accepted() > before {
        // Nothing to part, or the endpoint accepted something while this batch waited its
        // turn to be split: the whole again first.
        unproven.push(whole);
    } else {
        work.extend(doubling_parts(ranges.len()));
    }
    let mut holding = false;
    loop {
        if !unproven.is_empty() && to.accepted() > before {
            // Evidence at last: those go first, again whole.
            for r in unproven.drain(..).rev() {
                work.push_front(r.events);
            }
        }
        let Some(next) = work.pop_front() else {
            if unproven.is_empty() {
                return Some(());
            }
            // Every part refused, each event alone included, nothing else accepted: an
            // endpoint that refuses everything. Held behind the outage gate, each part sent
            // again one per probe until something is accepted.
            if !holding {
                holding = true;
                to.refuses_everything(unproven[0].status);
            }
            work.extend(unproven.drain(..).map(|r| r.events));
            continue;
        };
        let Some(refused) = send_part(to, raw, &ranges, next, before, signal).await? else {
            continue;
        };
        if !refused.proven {
            unproven.push(refused);
        } else if refused.events.len() <= 1 {
            let event = ranges.get(refused.events.start).cloned();
            drop_refused(to.metrics(), raw, event, refused.status, &refused.detail);
        } else {
            to.metrics().batches_split.inc();
            tracing::debug!(
                status = refused.status,
                events = refused.events.len(),
                "intake refused a batch; splitting it in halves"
            );
            let (start, end) = (refused.events.start, refused.events.end);
            let mid = start + refused.events.len() / 2;
            work.push_front(mid..end);
            work.push_front(start..mid);
        }
    }
}

/// The batch's events `0..n` as disjoint parts doubling in size: `[0]`, `[1]`, `[2, 4)`,
/// `[4, 8)`, ... up to `n`.
fn doubling_parts(n: usize) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut size = 1;
    while start < n {
        let end = (start + size).min(n);
        parts.push(start..end);
        if start > 0 {
            size *= 2;
        }
        start = end;
    }
    parts
}

/// Sends some events of a refused batch on their own. `Some(None)` when accepted,
/// `Some(Some(refusal))` when refused again, `None` when abandoned or not compressible.
async fn send_part<R: Resend>(
    to: &R,
    raw: &[u8],
    ranges: &[Range<usize>],
    part: Range<usize>,
    before: u64,
    signal: &mut ShutdownSignal,
) -> Option<Option<Refused>> {
    let events = &ranges[part.clone()];
    let mut body = encode::join_events(raw, events);
    loop {
        let (delivery, back) = to.send(body, events.len(), signal).await?;
        body = back;
        match delivery {
            Delivery::Accepted => return Some(None),
            Delivery::Abandoned => return None,
            Delivery::Reencode => continue,
            Delivery::Refused { status, detail } => {
                return Some(Some(Refused {
                    events: part,
                    status,
                    detail,
                    proven: to.accepted() > before,
                }));
            }
        }
    }
}

/// The intake refused one event on its own, while it accepts others: a logged, counted
/// decision. The log names the file and size, never the content (it may hold what the user
/// masks elsewhere).
fn drop_refused(m: &Metrics, raw: &[u8], event: Option<Range<usize>>, status: u16, detail: &str) {
    let reason = if status == 413 {
        m.events_dropped_too_large.inc();
        "too large"
    } else {
        m.events_dropped_invalid.inc();
        "invalid"
    };
    let (file, bytes) = match event {
        Some(r) => (encode::event_file_name(&raw[r.clone()]), r.len()),
        None => (String::new(), 0),
    };
    tracing::error!(status, reason, file = %file, event_bytes = bytes, intake_said = %detail, "the intake refused one event on its own; it is dropped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_parts_cover_the_batch_once() {
        assert_eq!(doubling_parts(1), vec![(0..1)]);
        assert_eq!(doubling_parts(2), [0..1, 1..2]);
        assert_eq!(doubling_parts(8), [0..1, 1..2, 2..4, 4..8]);
        assert_eq!(doubling_parts(10), [0..1, 1..2, 2..4, 4..8, 8..10]);
        let parts = doubling_parts(1000);
        assert_eq!(parts.len(), 11, "about log2(n) requests");
        let covered: Vec<usize> = parts.into_iter().flatten().collect();
        assert_eq!(covered, (0..1000).collect::<Vec<_>>());
    }
}
