//! Refused batches: a batch the intake refuses for good (400, 413) is sent again in halves,
//! and halves of halves, until each part is accepted or is one event the intake refuses on
//! its own, which is dropped, logged and counted.

use super::dispatch::{ShipContext, Sink, count_sent, pack};
use crate::encode;
use crate::ship::Delivery;
use crate::shutdown::ShutdownSignal;

/// Sends a refused batch's events in halves, and halves of halves, until each part is
/// accepted or is one event refused on its own.
pub(super) async fn split_and_deliver<S: Sink>(
    ctx: &ShipContext<S>,
    to: &S,
    raw: &[u8],
    refusal: (u16, String),
    signal: &mut ShutdownSignal,
) -> Option<()> {
    let ranges = encode::event_ranges(raw);
    // Parts still to send, last first; the first is the whole batch, refused already.
    let mut parts = vec![(0..ranges.len(), Some(refusal))];
    while let Some((part, refusal)) = parts.pop() {
        let (status, detail) = match refusal {
            Some(r) => r,
            None => match send_part(ctx, to, raw, &ranges[part.clone()], signal).await? {
                None => continue,
                Some(refused) => refused,
            },
        };
        if part.len() <= 1 {
            drop_refused(ctx, raw, ranges.get(part.start).cloned(), status, &detail);
            continue;
        }
        ctx.metrics.batches_split.inc();
        tracing::debug!(
            status,
            events = part.len(),
            "intake refused a batch; splitting it in halves"
        );
        let mid = part.start + part.len() / 2;
        parts.push((mid..part.end, None));
        parts.push((part.start..mid, None));
    }
    Some(())
}

/// Sends some events of a refused batch on their own. `Some(None)` when accepted,
/// `Some(Some(refusal))` when refused again, `None` when abandoned or not compressible.
async fn send_part<S: Sink>(
    ctx: &ShipContext<S>,
    to: &S,
    raw: &[u8],
    events: &[std::ops::Range<usize>],
    signal: &mut ShutdownSignal,
) -> Option<Option<(u16, String)>> {
    let body = encode::join_events(raw, events);
    let body_len = body.len();
    loop {
        let packed = pack(ctx, to, body.clone()).await?;
        let packed_len = packed.body.len();
        match to.deliver(packed.body, packed.codec, signal).await {
            Delivery::Accepted => {
                count_sent(ctx, to, events.len(), body_len, packed_len);
                return Some(None);
            }
            Delivery::Abandoned => return None,
            Delivery::Reencode => continue,
            Delivery::Refused { status, detail } => return Some(Some((status, detail))),
        }
    }
}

/// The intake refused one event on its own: a logged, counted decision. The log names the
/// file and size, never the content (it may hold what the user masks elsewhere).
fn drop_refused<S: Sink>(
    ctx: &ShipContext<S>,
    raw: &[u8],
    event: Option<std::ops::Range<usize>>,
    status: u16,
    detail: &str,
) {
    let m = &ctx.metrics;
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
