//! From the reader's batches to accepted requests: admission into the window of batches past
//! the reader, compression (inline for small bodies, else on a compressor thread), sending in
//! the order read, splitting refused batches, and acknowledging the file ranges of what was
//! settled.
//!
//! At most `request_concurrency + 2 * compressors` batches are past the reader. A batch is
//! taken from the reader only when a compressor is free or about to be, so uncompressed
//! buffers exist only for the batch being filled, the one in the channel, one waiting for a
//! compressor and the ones being compressed (each goes back to the reader right after
//! compression): memory is bounded by about `(compressors + 3) * batch.max_bytes` plus the
//! compressed bodies waiting or in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::additional::{BestEffort, Endpoints};
use super::compressors::Compressors;
use crate::checkpoint::Tracker;
use crate::compress::{self, Codec, Compressed};
use crate::config::Config;
use crate::encode::{self, Batch};
use crate::metrics::Metrics;
use crate::ship::{Delivery, Sender};
use crate::shutdown::ShutdownSignal;
use crate::tail::Wake;

/// What the dispatcher's batch source did.
pub(super) enum Taken {
    /// A batch was handed to a task of its own, which compresses, sends and acknowledges it.
    Dispatched,
    /// The reader ended and handed over everything it had.
    ReaderEnded,
}

/// Owns the batches past the reader.
pub(super) struct Dispatcher {
    ctx: Arc<ShipContext>,
    /// Places for batches past the reader.
    window: Arc<Semaphore>,
    /// Compressors free or about to be (one batch may wait for one).
    compress_slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    next_seq: u64,
    /// The best-effort endpoints' sending tasks: aborted when the run ends.
    _best_effort_tasks: JoinSet<()>,
}

/// Requests in flight, counted for the reader: a batch waiting for the files to be read to
/// their end leaves early only while none is, and the reader is told when the last one ends.
pub(super) struct Sending {
    pub count: Arc<AtomicUsize>,
    pub wake: Arc<Wake>,
}

impl Sending {
    fn start(&self) -> SendingGuard<'_> {
        self.count.fetch_add(1, Ordering::Relaxed);
        SendingGuard(self)
    }
}

/// One request in flight; counted off when dropped, however the request ended.
struct SendingGuard<'a>(&'a Sending);

impl Drop for SendingGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.wake.requests_ended();
        }
    }
}

pub(super) struct ShipContext {
    pub sender: Arc<Sender>,
    /// Additional endpoints every batch must also be accepted by, after the main one.
    reliable: Vec<Arc<Sender>>,
    /// Additional endpoints that get a copy when they keep up.
    best_effort: Vec<BestEffort>,
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    /// Uncompressed bodies go back to the reader for reuse.
    pub recycle: std::sync::mpsc::Sender<Vec<u8>>,
    pub signal: ShutdownSignal,
    sending: Sending,
    /// The compressor threads (`compression_threads`).
    compressors: Compressors,
    /// Sequence number of the next batch allowed to start sending: sends start in the order
    /// the batches were read, so with one request in flight each file arrives in order.
    turn_tx: watch::Sender<u64>,
    turn_rx: watch::Receiver<u64>,
}

impl Dispatcher {
    pub(super) fn new(
        endpoints: Endpoints,
        tracker: Arc<Tracker>,
        metrics: Arc<Metrics>,
        config: Config,
        recycle: std::sync::mpsc::Sender<Vec<u8>>,
        signal: ShutdownSignal,
        sending: Sending,
    ) -> std::io::Result<Dispatcher> {
        // One compressor per core, at most 2, and a spare one for gzip (see `compressors`).
        let compressors = config.datadog.compressors();
        let slow_codec = config.datadog.compresses_slowly();
        let concurrency = config
            .datadog
            .request_concurrency
            .max(config.datadog.request_concurrency_max);
        let (turn_tx, turn_rx) = watch::channel(0u64);
        let Endpoints { main, additional } = endpoints;
        Ok(Dispatcher {
            // Two per compressor may be compressing or compressed and waiting, so compression
            // never idles behind a slow send (measured: +8% throughput over one); a
            // compressed batch holds only its compressed body.
            window: Arc::new(Semaphore::new(concurrency + 2 * compressors)),
            // Letting all of the window hold uncompressed batches cost 9 MB of RSS on the
            // 1 GB run. With gzip, none waiting for a compressor cost 4% of throughput; zstd
            // compresses faster than the reader encodes, so a waiting batch would only sit in
            // memory (2.2 MB with 2 KB lines).
            compress_slots: Arc::new(Semaphore::new(compressors + usize::from(slow_codec))),
            tasks: JoinSet::new(),
            next_seq: 0,
            _best_effort_tasks: additional.tasks,
            ctx: Arc::new(ShipContext {
                sender: main,
                reliable: additional.reliable,
                best_effort: additional.best_effort,
                tracker,
                metrics,
                config,
                recycle,
                signal,
                sending,
                compressors: Compressors::start(compressors)?,
                turn_tx,
                turn_rx,
            }),
        })
    }

    /// Takes the reader's next batch once there is room for it and sends it on its way;
    /// meanwhile reports batches that finished. Cancel-safe: dropped while waiting, nothing
    /// is lost (the batch stays in the channel).
    pub(super) async fn take(&mut self, batches: &mut mpsc::Receiver<Batch>) -> Taken {
        loop {
            tokio::select! {
                admission = admit(&self.window, &self.compress_slots) => {
                    let Some(admission) = admission else {
                        return Taken::ReaderEnded;
                    };
                    let Some(batch) = batches.recv().await else {
                        return Taken::ReaderEnded;
                    };
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.tasks.spawn(ship_batch(self.ctx.clone(), batch, seq, admission));
                    return Taken::Dispatched;
                }
                Some(res) = self.tasks.join_next(), if !self.tasks.is_empty() => report_join(res),
            }
        }
    }

    /// Waits until every batch on its way was settled.
    pub(super) async fn settle_all(&mut self) {
        while let Some(res) = self.tasks.join_next().await {
            report_join(res);
        }
    }

    /// Batches still on their way.
    pub(super) fn in_flight(&mut self) -> usize {
        while let Some(res) = self.tasks.try_join_next() {
            report_join(res);
        }
        self.tasks.len()
    }

    /// Gives up every batch still on its way: they were not accepted (or not known to be)
    /// and are read again by the next start.
    pub(super) async fn abandon_all(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A place in the window of batches past the reader, and a compressor.
struct Admission {
    window: OwnedSemaphorePermit,
    compressor: OwnedSemaphorePermit,
}

async fn admit(window: &Arc<Semaphore>, compressors: &Arc<Semaphore>) -> Option<Admission> {
    let window = window.clone().acquire_owned().await.ok()?;
    let compressor = compressors.clone().acquire_owned().await.ok()?;
    Some(Admission { window, compressor })
}

/// Passes the turn to the next batch when dropped, whatever happened to this one.
struct Turn<'a> {
    ctx: &'a ShipContext,
    seq: u64,
    passed: bool,
}

impl Turn<'_> {
    fn pass(&mut self) {
        if !self.passed {
            self.passed = true;
            let next = self.seq + 1;
            self.ctx.turn_tx.send_modify(|t| *t = (*t).max(next));
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.pass();
    }
}

async fn ship_batch(ctx: Arc<ShipContext>, batch: Batch, seq: u64, admission: Admission) {
    let Admission { window, compressor } = admission;
    let mut turn = Turn {
        ctx: &ctx,
        seq,
        passed: false,
    };
    let Batch {
        body,
        events,
        marks,
        line_bytes,
    } = batch;
    let raw_len = body.len();
    let packs = compress_batch(&ctx, body).await;
    drop(compressor);
    let packs = match packs {
        Some(Ok(p)) => p,
        Some(Err(e)) => {
            tracing::error!(error = %e, events, "cannot compress batch; its events are dropped");
            ctx.metrics.events_dropped_unencodable.add(events as u64);
            ctx.tracker.ack(&marks, events as u64);
            return;
        }
        None => return,
    };
    for extra in &ctx.best_effort {
        extra.offer(packs.for_codec(extra.sender.codec()));
    }
    let mut turn_rx = ctx.turn_rx.clone();
    if turn_rx.wait_for(|t| *t >= seq).await.is_err() {
        return;
    }
    let Some(slot) = ctx.sender.slot().await else {
        return;
    };
    turn.pass();
    let in_flight = ctx.sending.start();
    let mut sent = deliver_batch(&ctx, &ctx.sender, packs.main.clone(), events, raw_len).await;
    for extra in &ctx.reliable {
        if sent.is_none() {
            break;
        }
        let packed = packs.for_codec(extra.codec());
        sent = deliver_batch(&ctx, extra, packed, events, raw_len).await;
    }
    drop(in_flight);
    drop(slot);
    if sent.is_some() {
        // Every event was accepted or, alone, refused for good: the lines are done with.
        ctx.tracker.ack(&marks, events as u64);
        ctx.metrics.line_bytes_sent.add(line_bytes);
        ctx.metrics
            .last_accepted_unix_ms
            .set(crate::clock::now_ms());
    }
    drop(window);
}

/// A batch compressed with every codec its endpoints want.
struct PerCodec {
    main: Compressed,
    /// For additional endpoints with another codec than the main one.
    others: Vec<Compressed>,
}

impl PerCodec {
    fn for_codec(&self, codec: Codec) -> Compressed {
        std::iter::once(&self.main)
            .chain(&self.others)
            .find(|p| p.codec == codec)
            .unwrap_or(&self.main)
            .clone()
    }
}

/// Compresses a batch on a compressor thread with the main endpoint's codec (and those of
/// additional endpoints that want another), then gives its uncompressed buffer back to the
/// reader. `None` when the compressors are gone (the batch is read again after a restart).
async fn compress_batch(ctx: &ShipContext, body: Vec<u8>) -> Option<std::io::Result<PerCodec>> {
    let main = ctx.sender.codec();
    let mut codecs = vec![main];
    let extra_codecs = ctx
        .reliable
        .iter()
        .chain(ctx.best_effort.iter().map(|b| &b.sender));
    for codec in extra_codecs.map(|s| s.codec()) {
        if !codecs.contains(&codec) {
            codecs.push(codec);
        }
    }
    let mut body = body;
    let mut packed = Vec::with_capacity(codecs.len());
    for codec in codecs {
        let Some((compressed, back)) = ctx.compressors.compress(codec, body).await else {
            tracing::error!("no compressor left; batch will be read again after restart");
            return None;
        };
        body = back;
        match compressed {
            Ok(c) => packed.push(Compressed {
                body: Bytes::from(c),
                codec,
            }),
            Err(e) => return Some(Err(e)),
        }
    }
    // The reader may be gone at shutdown; then the buffer is simply freed.
    let _ = ctx.recycle.send(body);
    let mut packed = packed.into_iter();
    let main = packed.next()?;
    Some(Ok(PerCodec {
        main,
        others: packed.collect(),
    }))
}

/// Delivers one batch; compresses it again when the receiver cannot decode its codec; on 400
/// or 413 splits it in halves until each part is accepted or is a single event the intake
/// refuses (dropped, logged and counted). `None` when abandoned at shutdown.
async fn deliver_batch(
    ctx: &ShipContext,
    to: &Sender,
    mut packed: Compressed,
    events: usize,
    raw_len: usize,
) -> Option<()> {
    let mut signal = ctx.signal.clone();
    let (status, detail) = loop {
        let compressed_len = packed.body.len();
        match to
            .deliver(packed.body.clone(), packed.codec, &mut signal)
            .await
        {
            Delivery::Accepted => {
                count_sent(ctx, to, events, raw_len, compressed_len);
                return Some(());
            }
            Delivery::Abandoned => return None,
            Delivery::Reencode => {
                let raw = recover_body(ctx, &packed).await?;
                packed = pack(ctx, to, raw).await?;
            }
            Delivery::Refused { status, detail } => break (status, detail),
        }
    };
    let raw = recover_body(ctx, &packed).await?;
    split_and_deliver(ctx, to, &raw, (status, detail), &mut signal).await
}

/// Sends a refused batch's events in halves, and halves of halves, until each part is
/// accepted or is one event refused on its own.
async fn split_and_deliver(
    ctx: &ShipContext,
    to: &Sender,
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

/// The uncompressed body went back to the reader long ago; refusals are rare, so get it back
/// from the compressed one rather than keep every batch twice.
async fn recover_body(ctx: &ShipContext, packed: &Compressed) -> Option<Vec<u8>> {
    let limit = ctx.config.batch.max_bytes + 1024;
    let (body, codec) = (packed.body.clone(), packed.codec);
    let raw = tokio::task::spawn_blocking(move || {
        compress::decompress(codec.content_encoding(), &body, limit)
    })
    .await;
    let error = match raw {
        Ok(Ok(raw)) => return Some(raw),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(error = %error, "cannot decode a refused batch to split it; it will be read again after restart");
    None
}

/// Compresses a body (part of a refused batch, or one to encode again) with the sender's
/// codec. `None` when that fails (the batch is read again after a restart).
async fn pack(ctx: &ShipContext, to: &Sender, body: Vec<u8>) -> Option<Compressed> {
    let codec = to.codec();
    let packed = ctx.compressors.compress(codec, body).await;
    let Some((Ok(packed), _)) = packed else {
        tracing::error!(
            "cannot compress a refused batch again; it will be read again after restart"
        );
        return None;
    };
    Some(Compressed {
        body: Bytes::from(packed),
        codec,
    })
}

/// Sends some events of a refused batch on their own. `Some(None)` when accepted,
/// `Some(Some(refusal))` when refused again, `None` when abandoned or not compressible.
async fn send_part(
    ctx: &ShipContext,
    to: &Sender,
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

/// Counts what the main endpoint accepted (an additional endpoint's copies are not more
/// events sent).
fn count_sent(ctx: &ShipContext, to: &Sender, events: usize, raw_len: usize, sent_len: usize) {
    if !std::ptr::eq(to, &*ctx.sender) {
        return;
    }
    let m = &ctx.metrics;
    m.batches_sent.inc();
    m.events_sent.add(events as u64);
    m.bytes_sent_uncompressed.add(raw_len as u64);
    m.bytes_sent_compressed.add(sent_len as u64);
}

/// The intake refused one event on its own: a logged, counted decision. The log names the
/// file and size, never the content (it may hold what the user masks elsewhere).
fn drop_refused(
    ctx: &ShipContext,
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

fn report_join(res: Result<(), tokio::task::JoinError>) {
    if let Err(e) = res
        && !e.is_cancelled()
    {
        tracing::error!(error = %e, "send task failed");
    }
}
