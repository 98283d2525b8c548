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

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::additional::{BestEffort, Endpoints};
use super::compressors::Compressors;
use super::destination::Destination;
use super::refused::{Refusal, Resend, split_and_deliver};
use super::sending::Sending;
use crate::checkpoint::Tracker;
use crate::compress::{self, Codec, Compressed};
use crate::config::Config;
use crate::encode::Batch;
use crate::health::Liveness;
use crate::metrics::Metrics;
use crate::ship::{Delivery, Sender};
use crate::shutdown::ShutdownSignal;

/// What the dispatcher's batch source did.
pub(super) enum Taken {
    /// A batch was handed to a task of its own, which compresses, sends and acknowledges it.
    Dispatched,
    /// The reader ended and handed over everything it had.
    ReaderEnded,
}

/// Owns the batches past the reader.
pub(super) struct Dispatcher<S: Destination = Sender> {
    ctx: Arc<ShipContext<S>>,
    /// Places for batches past the reader.
    window: Arc<Semaphore>,
    /// Compressors free or about to be (one batch may wait for one).
    compress_slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    next_seq: u64,
    /// The best-effort endpoints' sending tasks: aborted when the run ends.
    _best_effort_tasks: JoinSet<()>,
}

pub(super) struct ShipContext<S: Destination> {
    pub sender: Arc<S>,
    /// Additional endpoints every batch must also be accepted by, after the main one.
    reliable: Vec<Arc<S>>,
    /// Additional endpoints that get a copy when they keep up.
    best_effort: Vec<BestEffort>,
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    /// The largest uncompressed batch (`batch.max_bytes`): a refused body is decompressed
    /// up to it.
    max_batch_bytes: usize,
    /// Uncompressed bodies go back to the reader for reuse.
    pub recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
    pub signal: ShutdownSignal,
    sending: Sending,
    /// Told when the sender moves (`/healthz`).
    liveness: Arc<Liveness>,
    /// The compressor threads (`compression_threads`).
    compressors: Compressors,
    /// One refused batch at a time holds its decompressed body to split it (the others wait
    /// with their compressed one): a storm of refusals costs one batch more in memory.
    pub splitting: Arc<Semaphore>,
    /// Sequence number of the next batch allowed to start sending: sends start in the order
    /// the batches were read, so with one request in flight each file arrives in order.
    turn_tx: watch::Sender<u64>,
    turn_rx: watch::Receiver<u64>,
}

impl Dispatcher<Sender> {
    pub(super) fn new(endpoints: Endpoints, links: Links) -> std::io::Result<Dispatcher> {
        let Endpoints { main, additional } = endpoints;
        let mut dispatcher = Dispatcher::with_sinks(
            Destinations {
                main,
                reliable: additional.reliable,
                best_effort: additional.best_effort,
            },
            links,
        )?;
        dispatcher._best_effort_tasks = additional.tasks;
        Ok(dispatcher)
    }
}

/// Where the dispatcher delivers.
pub(super) struct Destinations<S: Destination> {
    pub main: Arc<S>,
    pub reliable: Vec<Arc<S>>,
    pub best_effort: Vec<BestEffort>,
}

/// The settings the dispatcher sizes itself by.
pub(super) struct DispatchSettings {
    /// Compressor threads (`DatadogConfig::compressors`).
    pub compressors: usize,
    /// The codec compresses slower than the reader encodes (gzip, deflate).
    pub slow_codec: bool,
    /// The most requests that may be in flight.
    pub concurrency: usize,
    pub max_batch_bytes: usize,
}

impl DispatchSettings {
    pub fn of(config: &Config) -> DispatchSettings {
        let d = &config.datadog;
        DispatchSettings {
            compressors: d.compressors(),
            slow_codec: d.compresses_slowly(),
            concurrency: d.request_concurrency.max(d.request_concurrency_max),
            max_batch_bytes: config.batch.max_bytes,
        }
    }
}

/// What the dispatcher reports to and works with.
pub(super) struct Links {
    pub tracker: Arc<Tracker>,
    pub metrics: Arc<Metrics>,
    pub settings: DispatchSettings,
    pub recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
    pub signal: ShutdownSignal,
    pub sending: Sending,
    pub liveness: Arc<Liveness>,
}

impl<S: Destination> Dispatcher<S> {
    pub(super) fn with_sinks(
        sinks: Destinations<S>,
        links: Links,
    ) -> std::io::Result<Dispatcher<S>> {
        let Links {
            tracker,
            metrics,
            settings,
            recycle,
            signal,
            sending,
            liveness,
        } = links;
        // One compressor per core, at most 2, and a spare one for gzip (see `compressors`).
        let DispatchSettings {
            compressors,
            slow_codec,
            concurrency,
            max_batch_bytes,
        } = settings;
        let (turn_tx, turn_rx) = watch::channel(0u64);
        Ok(Dispatcher {
            // Two per compressor may be compressing or compressed and waiting, so compression
            // never idles behind a slow send; a compressed batch holds only its compressed
            // body (docs/performance.md, "Measurements behind the code").
            window: Arc::new(Semaphore::new(concurrency + 2 * compressors)),
            // Uncompressed batches are what memory holds: with gzip one may wait for a
            // compressor so that none idles; zstd compresses faster than the reader encodes,
            // so a waiting batch would only sit in memory (docs/performance.md,
            // "Measurements behind the code").
            compress_slots: Arc::new(Semaphore::new(compressors + usize::from(slow_codec))),
            tasks: JoinSet::new(),
            next_seq: 0,
            _best_effort_tasks: JoinSet::new(),
            ctx: Arc::new(ShipContext {
                sender: sinks.main,
                reliable: sinks.reliable,
                best_effort: sinks.best_effort,
                tracker,
                metrics,
                max_batch_bytes,
                recycle,
                signal,
                sending,
                liveness,
                compressors: Compressors::start(compressors)?,
                splitting: Arc::new(Semaphore::new(1)),
                turn_tx,
                turn_rx,
            }),
        })
    }

    /// Takes the reader's next batch once there is room for it and sends it on its way;
    /// meanwhile reports batches that finished. Cancel-safe: dropped while waiting, nothing
    /// is lost (the batch stays in the channel).
    pub(super) async fn take(&mut self, batches: &mut mpsc::Receiver<Batch>) -> Taken {
        crate::failpoint::sender_turn().await;
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
                    self.ctx.liveness.sender_moved();
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
struct Turn<'a, S: Destination> {
    ctx: &'a ShipContext<S>,
    seq: u64,
    passed: bool,
}

impl<S: Destination> Turn<'_, S> {
    fn pass(&mut self) {
        if !self.passed {
            self.passed = true;
            let next = self.seq + 1;
            self.ctx.turn_tx.send_modify(|t| *t = (*t).max(next));
        }
    }
}

impl<S: Destination> Drop for Turn<'_, S> {
    fn drop(&mut self) {
        self.pass();
    }
}

async fn ship_batch<S: Destination>(
    ctx: Arc<ShipContext<S>>,
    batch: Batch,
    seq: u64,
    admission: Admission,
) {
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
    let mut slot = Some(slot);
    turn.pass();
    let in_flight = ctx.sending.start();
    let main = packs.main.clone();
    let mut sent = deliver_batch(&ctx, &ctx.sender, main, events, raw_len, &mut slot).await;
    for extra in &ctx.reliable {
        if sent.is_none() {
            break;
        }
        let packed = packs.for_codec(extra.codec());
        sent = deliver_batch(&ctx, extra, packed, events, raw_len, &mut slot).await;
    }
    drop(slot);
    ctx.liveness.sender_moved();
    if sent.is_some() {
        // Every event was accepted or, alone, refused for good: the lines are done with.
        ctx.tracker.ack(&marks, events as u64);
        ctx.metrics.line_bytes_sent.add(line_bytes);
        ctx.metrics
            .last_accepted_ms
            .set(crate::clock::monotonic_ms());
    }
    // The last request to end wakes the reader, which then deletes the rotated files whose
    // lines are all accepted (`delete_after_ship`): so only once this batch is acknowledged.
    drop(in_flight);
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
async fn compress_batch<S: Destination>(
    ctx: &ShipContext<S>,
    body: Vec<u8>,
) -> Option<std::io::Result<PerCodec>> {
    let main = ctx.sender.codec();
    let mut codecs = vec![main];
    let extra_codecs = ctx
        .reliable
        .iter()
        .map(|s| s.codec())
        .chain(ctx.best_effort.iter().map(|b| b.sender.codec()));
    for codec in extra_codecs {
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
    // Back to the reader for the next batch; freed when one is waiting already, or when the
    // reader is gone.
    let _ = ctx.recycle.try_send(body);
    let mut packed = packed.into_iter();
    let main = packed.next()?;
    Some(Ok(PerCodec {
        main,
        others: packed.collect(),
    }))
}

/// Delivers one batch; compresses it again when the receiver cannot decode its codec; on 400
/// or 413 hands it to `refused` (its bad events dropped alone, or the whole held as in an
/// outage when the endpoint refuses everything). `None` when abandoned at shutdown. A refused
/// batch gives its request slot back before it waits its turn to be split: other batches may
/// show the endpoint accepts what it should.
async fn deliver_batch<S: Destination>(
    ctx: &ShipContext<S>,
    to: &S,
    mut packed: Compressed,
    events: usize,
    raw_len: usize,
    slot: &mut Option<S::Slot>,
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
                packed = pack(ctx, to, raw).await?.0;
            }
            Delivery::Refused { status, detail } => break (status, detail),
        }
    };
    let accepted_before = to.accepted();
    drop(slot.take());
    let _splitting = ctx.splitting.clone().acquire_owned().await.ok()?;
    let raw = recover_body(ctx, &packed).await?;
    drop(packed);
    let refusal = Refusal {
        status,
        detail,
        accepted_before,
    };
    split_and_deliver(&PartsTo { ctx, to }, &raw, refusal, &mut signal).await
}

/// The uncompressed body went back to the reader long ago; refusals are rare, so get it back
/// from the compressed one rather than keep every batch twice.
async fn recover_body<S: Destination>(
    ctx: &ShipContext<S>,
    packed: &Compressed,
) -> Option<Vec<u8>> {
    let limit = ctx.max_batch_bytes + 1024;
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
/// codec; gives the body back with it. `None` when that fails (the batch is read again
/// after a restart).
async fn pack<S: Destination>(
    ctx: &ShipContext<S>,
    to: &S,
    body: Vec<u8>,
) -> Option<(Compressed, Vec<u8>)> {
    let codec = to.codec();
    let packed = ctx.compressors.compress(codec, body).await;
    let Some((Ok(packed), back)) = packed else {
        tracing::error!(
            "cannot compress a refused batch again; it will be read again after restart"
        );
        return None;
    };
    let compressed = Compressed {
        body: Bytes::from(packed),
        codec,
    };
    Some((compressed, back))
}

/// Counts what the main endpoint accepted (an additional endpoint's copies are not more
/// events sent).
fn count_sent<S: Destination>(
    ctx: &ShipContext<S>,
    to: &S,
    events: usize,
    raw_len: usize,
    sent_len: usize,
) {
    if !std::ptr::eq(to, &*ctx.sender) {
        return;
    }
    let m = &ctx.metrics;
    m.batches_sent.inc();
    m.events_sent.add(events as u64);
    m.bytes_sent_uncompressed.add(raw_len as u64);
    m.bytes_sent_compressed.add(sent_len as u64);
}

/// A refused batch's endpoint, for `refused` to send it parts.
struct PartsTo<'a, S: Destination> {
    ctx: &'a ShipContext<S>,
    to: &'a S,
}

impl<S: Destination> Resend for PartsTo<'_, S> {
    async fn send(
        &self,
        body: Vec<u8>,
        events: usize,
        signal: &mut ShutdownSignal,
    ) -> Option<(Delivery, Vec<u8>)> {
        let raw_len = body.len();
        let (packed, back) = pack(self.ctx, self.to, body).await?;
        let sent_len = packed.body.len();
        let delivery = self.to.deliver(packed.body, packed.codec, signal).await;
        if matches!(delivery, Delivery::Accepted) {
            count_sent(self.ctx, self.to, events, raw_len, sent_len);
        }
        Some((delivery, back))
    }

    fn accepted(&self) -> u64 {
        self.to.accepted()
    }

    fn refuses_everything(&self, status: u16) {
        self.to.refuses_everything(status)
    }

    fn metrics(&self) -> &Metrics {
        &self.ctx.metrics
    }
}

fn report_join(res: Result<(), tokio::task::JoinError>) {
    if let Err(e) = res
        && !e.is_cancelled()
    {
        tracing::error!(error = %e, "send task failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::checkpoint::Tracker;
    use crate::delivery::DeliveryState;
    use crate::encode::{BatchBuilder, EventFields, EventRange, EventTemplate, LinePiece};
    use crate::position::{DevIno, Fingerprint, StreamId};
    use crate::shutdown::{Phase, Shutdown};
    use crate::tail::Wake;

    /// An intake as a test scripts it: it takes its time (on tokio's simulated clock), keeps
    /// the messages of every body in the order the sends began, refuses everything (400) for
    /// its first `refuse_all` requests, bodies of more than `max_events` events (400), and one
    /// event holding `too_large` even alone (413).
    struct Scripted {
        requests: Arc<Semaphore>,
        began: Mutex<Vec<Vec<String>>>,
        accepted: Mutex<Vec<String>>,
        bodies_accepted: std::sync::atomic::AtomicU64,
        answer_after: fn(usize) -> Duration,
        refuse_all: usize,
        max_events: usize,
        too_large: &'static str,
        /// Times the dispatcher held a batch for an endpoint that refuses everything.
        held: std::sync::atomic::AtomicU64,
    }

    impl Scripted {
        fn new(concurrency: usize, answer_after: fn(usize) -> Duration) -> Scripted {
            Scripted {
                requests: Arc::new(Semaphore::new(concurrency)),
                began: Mutex::new(Vec::new()),
                accepted: Mutex::new(Vec::new()),
                bodies_accepted: Default::default(),
                answer_after,
                refuse_all: 0,
                max_events: usize::MAX,
                too_large: "\u{0}",
                held: Default::default(),
            }
        }
    }

    fn messages(body: &[u8]) -> Vec<String> {
        let events: Vec<serde_json::Value> = serde_json::from_slice(body).expect("JSON");
        events
            .iter()
            .map(|e| e["message"].as_str().expect("message").to_string())
            .collect()
    }

    impl Destination for Scripted {
        type Slot = tokio::sync::OwnedSemaphorePermit;

        async fn slot(&self) -> Option<Self::Slot> {
            self.requests.clone().acquire_owned().await.ok()
        }

        fn codec(&self) -> Codec {
            compress::CodecKind::Zstd.at(None)
        }

        async fn deliver(
            &self,
            body: Bytes,
            codec: Codec,
            signal: &mut ShutdownSignal,
        ) -> Delivery {
            let raw = compress::decompress(codec.content_encoding(), &body, 10 << 20)
                .expect("a body the intake can decode");
            let messages = messages(&raw);
            let n = {
                let mut began = crate::lock(&self.began);
                began.push(messages.clone());
                began.len()
            };
            tokio::select! {
                _ = tokio::time::sleep((self.answer_after)(n)) => {}
                _ = signal.abandoned() => return Delivery::Abandoned,
            }
            if n <= self.refuse_all {
                return Delivery::Refused {
                    status: 400,
                    detail: "a gateway refuses everything".into(),
                };
            }
            if messages.len() > self.max_events {
                return Delivery::Refused {
                    status: 400,
                    detail: "too many".into(),
                };
            }
            if messages.iter().any(|m| m.contains(self.too_large)) {
                return Delivery::Refused {
                    status: 413,
                    detail: "too large".into(),
                };
            }
            crate::lock(&self.accepted).extend(messages);
            self.bodies_accepted.fetch_add(1, Ordering::SeqCst);
            Delivery::Accepted
        }

        fn accepted(&self) -> u64 {
            self.bodies_accepted.load(Ordering::SeqCst)
        }

        fn refuses_everything(&self, _status: u16) {
            self.held.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Batches of `per_batch` lines each, from one file (stream 1), numbered from 0.
    fn batches(lines: usize, per_batch: usize, tracker: &Tracker) -> Vec<Batch> {
        let fields = EventFields {
            status: "info",
            hostname: "h",
            service: "s",
            source: "test",
            tags: "",
        };
        let template = EventTemplate::new(&fields);
        tracker.register(
            StreamId(1),
            DevIno { dev: 1, ino: 1 },
            Fingerprint { len: 0, hash: 0 },
            std::path::Path::new("/logs/a.log"),
            0,
        );
        let mut builder = BatchBuilder::new(per_batch, 1 << 20);
        let mut out = Vec::new();
        let mut pos = 0;
        for i in 0..lines {
            let text = format!("line {i:03}");
            let end = pos + text.len() as u64 + 1;
            let range = EventRange {
                stream: StreamId(1),
                start: pos,
                text_offset: pos,
                end,
            };
            let piece = LinePiece {
                text: text.as_bytes(),
                valid_utf8: true,
                cut_before: false,
                cut_after: false,
                status: None,
            };
            builder.append_line(&template, 0, range, piece, &mut |b| out.push(b));
            pos = end;
        }
        out.extend(builder.take());
        out
    }

    struct Run {
        sink: Arc<Scripted>,
        tracker: Arc<Tracker>,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        dispatcher: Dispatcher<Scripted>,
        to_dispatcher: mpsc::Sender<Batch>,
        batches: mpsc::Receiver<Batch>,
    }

    fn run_with(sink: Scripted) -> Run {
        let sink = Arc::new(sink);
        let tracker = Arc::new(Tracker::new());
        let metrics = Arc::new(Metrics::default());
        let shutdown = Shutdown::new();
        let (recycle, _) = std::sync::mpsc::sync_channel(1);
        let mut config = Config::default();
        config.datadog.request_concurrency = crate::config::RequestConcurrency::Fixed(4);
        let delivery = Arc::new(DeliveryState::default());
        let dispatcher = Dispatcher::with_sinks(
            Destinations {
                main: sink.clone(),
                reliable: Vec::new(),
                best_effort: Vec::new(),
            },
            Links {
                tracker: tracker.clone(),
                metrics: metrics.clone(),
                settings: DispatchSettings::of(&config),
                recycle,
                signal: shutdown.signal(),
                sending: Sending {
                    delivery: delivery.clone(),
                    wake: Arc::new(Wake::default()),
                },
                liveness: Arc::new(Liveness::new(
                    Duration::from_secs(60),
                    Duration::from_secs(30),
                    delivery,
                )),
            },
        )
        .expect("compressors");
        let (to_dispatcher, batches) = mpsc::channel(64);
        Run {
            sink,
            tracker,
            metrics,
            shutdown,
            dispatcher,
            to_dispatcher,
            batches,
        }
    }

    impl Run {
        /// Where the file's checkpoint stands: everything before it was accepted.
        fn checkpoint(&self) -> Option<u64> {
            self.tracker.snapshot().first().map(|e| e.offset)
        }

        /// Hands `batches` over as the reader would, and dispatches them all.
        async fn dispatch(&mut self, batches: Vec<Batch>) {
            let n = batches.len();
            for b in batches {
                self.to_dispatcher.send(b).await.expect("open");
            }
            for _ in 0..n {
                assert!(matches!(
                    self.dispatcher.take(&mut self.batches).await,
                    Taken::Dispatched
                ));
            }
        }
    }

    fn numbered(from: usize, to: usize) -> Vec<String> {
        (from..to).map(|i| format!("line {i:03}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn sends_begin_in_the_order_read_and_every_batch_is_acknowledged() {
        // Later requests answer sooner: four in flight, finishing out of order.
        let mut run = run_with(Scripted::new(4, |n| Duration::from_millis(1000 / n as u64)));
        let batches = batches(60, 5, &run.tracker);
        run.dispatch(batches).await;
        run.dispatcher.settle_all().await;
        let began: Vec<String> = crate::lock(&run.sink.began).concat();
        assert_eq!(began, numbered(0, 60), "sends began in the order read");
        let mut accepted = crate::lock(&run.sink.accepted).clone();
        accepted.sort();
        assert_eq!(accepted, numbered(0, 60));
        assert_eq!(run.metrics.events_sent.get(), 60);
        assert_eq!(run.checkpoint(), Some(60 * 9), "acknowledged to the end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_batch_is_split_until_each_part_is_accepted_or_alone() {
        let mut sink = Scripted::new(1, |_| Duration::from_millis(10));
        sink.max_events = 2;
        sink.too_large = "line 005";
        let mut run = run_with(sink);
        let batches = batches(8, 8, &run.tracker);
        run.dispatch(batches).await;
        run.dispatcher.settle_all().await;
        let accepted = crate::lock(&run.sink.accepted).clone();
        let mut expected = numbered(0, 8);
        expected.retain(|m| m != "line 005");
        assert_eq!(accepted, expected, "every other event once, in order");
        // 8 refused, then 4 + 4 refused, then pairs; the pair with line 5 refused for size,
        // then line 5 alone.
        // 8 refused; then parts of 1, 1, 2 (accepted) and 4 (refused); its first half holds
        // line 5 and is refused for size, so lines 4 and 5 alone; then its second half: in
        // the order read.
        let sizes: Vec<usize> = crate::lock(&run.sink.began).iter().map(Vec::len).collect();
        assert_eq!(sizes, [8, 1, 1, 2, 4, 2, 1, 1, 2]);
        assert_eq!(run.metrics.events_dropped_too_large.get(), 1);
        assert_eq!(run.metrics.batches_split.get(), 2);
        assert_eq!(run.sink.held.load(Ordering::SeqCst), 0, "not an outage");
        assert_eq!(run.checkpoint(), Some(8 * 9), "the batch is done with");
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_that_refuses_everything_is_an_outage_not_poison() {
        // Every request refused for a while (a gateway in the way), then all accepted.
        let mut sink = Scripted::new(1, |_| Duration::from_millis(10));
        sink.refuse_all = 40;
        let mut run = run_with(sink);
        let batches = batches(300, 100, &run.tracker);
        run.dispatch(batches).await;
        run.dispatcher.settle_all().await;
        let mut accepted = crate::lock(&run.sink.accepted).clone();
        accepted.sort();
        assert_eq!(accepted, numbered(0, 300), "nothing dropped, nothing twice");
        assert_eq!(run.metrics.events_dropped_total(), 0);
        assert!(
            run.sink.held.load(Ordering::SeqCst) >= 1,
            "held as an outage"
        );
        assert_eq!(run.checkpoint(), Some(300 * 9));
        // The first batch whole, then one part per request: about log2(events) before it
        // holds; the other batches wait their turn to be split.
        let began = crate::lock(&run.sink.began).clone();
        let first: Vec<usize> = began
            .iter()
            .filter(|body| body[0].as_str() < "line 100")
            .take(9)
            .map(Vec::len)
            .collect();
        assert_eq!(first, [100, 1, 1, 2, 4, 8, 16, 32, 36]);
        let sizes: Vec<usize> = began.iter().map(Vec::len).collect();
        assert!(
            began.len() <= 60,
            "{} requests for 3 batches: {sizes:?}",
            began.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_of_one_bad_event_is_dropped_once_others_are_accepted() {
        let mut sink = Scripted::new(1, |_| Duration::from_millis(10));
        sink.too_large = "line 000";
        let mut run = run_with(sink);
        // The bad line alone in a batch, then good lines each in one: nothing in its own
        // batch tells the bad line from a refusing endpoint, the others do.
        let batches = batches(6, 1, &run.tracker);
        run.dispatch(batches).await;
        run.dispatcher.settle_all().await;
        let mut accepted = crate::lock(&run.sink.accepted).clone();
        accepted.sort();
        assert_eq!(accepted, numbered(1, 6));
        assert_eq!(run.metrics.events_dropped_too_large.get(), 1);
        assert_eq!(run.checkpoint(), Some(6 * 9));
    }

    #[tokio::test(start_paused = true)]
    async fn what_is_in_flight_at_abandon_is_not_acknowledged() {
        let mut run = run_with(Scripted::new(4, |_| Duration::from_secs(3600)));
        let batches = batches(10, 5, &run.tracker);
        run.dispatch(batches).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(crate::lock(&run.sink.began).len(), 2, "both on their way");
        run.shutdown.advance(Phase::Abandoning, None);
        run.dispatcher.settle_all().await;
        assert!(crate::lock(&run.sink.accepted).is_empty());
        assert_eq!(
            run.checkpoint(),
            Some(0),
            "read again from the start at the next run"
        );
    }
}
