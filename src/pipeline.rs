//! The shipper: wires reader, compression, senders and checkpoints, and runs the shutdown.
//!
//! ```text
//! reader thread ──Batch──▶ dispatcher ──▶ task per batch: compress (blocking pool) → send → ack
//!      ▲  (channel of 1: a full channel stops the reader)                                 │
//!      └──────────────── body buffers come back for reuse ◀───────────────────────────────┘
//! ```
//! Batches are compressed in parallel (`compression_threads`: by default one more than
//! cores, at most 3) but start sending in the order they were read, at most
//! `request_concurrency` at a time (adaptive by default; with 1, each file's lines reach the
//! intake in order). At most `request_concurrency + 2 * compressors` batches are past the
//! reader. A batch leaves the reader only when a compressor is free or about to be, so
//! uncompressed buffers exist only for the batch being filled, the one in the channel, one
//! waiting for a compressor and the ones being compressed (each goes back to the reader right
//! after compression): memory is bounded by about `(compressors + 3) * batch.max_bytes` plus
//! the compressed bodies waiting or in flight.
//!
//! Shutdown is one token: the reader stops and hands over its open batch, in-flight batches
//! get until `shutdown_timeout_ms`, then the positions of everything accepted are written.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Tracker};
use crate::compress;
use crate::config::Config;
use crate::encode::{self, Batch};
use crate::metrics::Metrics;
use crate::secret::KeySource;
use crate::ship::{Delivery, Sender};
use crate::tail::{self, Tailer, TailerLinks, Wake};

/// How often `exit_when_file` is looked for.
const EXIT_FILE_POLL: Duration = Duration::from_secs(1);

/// How often the key file is re-read besides the watch on its directory: a rotated key is in
/// use within this long even where file events are lost (some network file systems).
const KEY_POLL: Duration = Duration::from_secs(2);

/// Runs the shipper until `shutdown` is cancelled, then shuts down in order.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    admin: Option<crate::admin::AdminState>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let tracker = Arc::new(Tracker::new());
    // Stops the key poll when the shipper ends, however it ends.
    let aux_stop = CancellationToken::new();
    let _aux_stop = aux_stop.clone().drop_guard();
    // Gauges describe this run (a reload starts a new one).
    metrics
        .files_open
        .store(0, std::sync::atomic::Ordering::Relaxed);
    metrics
        .api_key_rejected
        .store(0, std::sync::atomic::Ordering::Relaxed);
    if let Some(admin) = &admin {
        admin.attach(tracker.clone(), config.datadog.logs_url());
    }
    let keys = KeySource::load_waiting(
        &config.datadog.api_key_file,
        Duration::from_secs(config.datadog.api_key_wait_secs),
        &metrics,
    )
    .await?;
    tracing::info!(origin = %keys.origin(), "API key loaded");
    let _key_watch = keys.follow(KEY_POLL, aux_stop.clone());
    let resume = load_checkpoints(&config.data_dir);
    let sender = Arc::new(Sender::new(&config, keys, metrics.clone())?);
    tracing::info!(url = %sender.url(), "shipping to intake");

    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(1);
    let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let wake = Arc::new(Wake::default());
    let tailer = Tailer::new(
        &config,
        TailerLinks {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
            out: batch_tx,
            recycled: recycle_rx,
            resume,
        },
    )?;
    let reader = std::thread::Builder::new()
        .name("sidelog-tail".into())
        .spawn(move || tailer.run())
        .context("cannot start reader thread")?;
    // exit_when_file: once it exists, the reader reads everything to its end and stops.
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if !config.exit_when_file.as_os_str().is_empty() {
        let (path, wake, draining, stop) = (
            config.exit_when_file.clone(),
            wake.clone(),
            draining.clone(),
            aux_stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                if std::fs::exists(&path).unwrap_or(false) {
                    tracing::info!(path = %path.display(), "exit_when_file exists: shipping everything left, then exiting");
                    draining.store(true, std::sync::atomic::Ordering::SeqCst);
                    wake.drain();
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(EXIT_FILE_POLL) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(checkpoint_writer(
        config.data_dir.clone(),
        tracker.clone(),
        metrics.clone(),
        Duration::from_millis(config.checkpoint_interval_ms),
        writer_stop.clone(),
    ));

    // Cancelled at the shutdown deadline: abandons retries still in progress.
    let abandon = CancellationToken::new();
    // One compressor more than cores (by default): with the reader, the HTTP client and (in a
    // Pod) the app on the same cores, a compressor is often waiting for a wake-up; the spare
    // one keeps the cores busy (measured on 2 cores: 75-80% of the ceiling instead of 68-73%,
    // +2 MB RSS). At most 3 unless configured: memory grows with each.
    let compress_threads = config.datadog.compressors();
    let concurrency = config
        .datadog
        .request_concurrency
        .max(config.datadog.request_concurrency_max);
    // Batches past the reader: two per compressor may be compressing or compressed and waiting,
    // so compression never idles behind a slow send (measured: +8% throughput over one);
    // a compressed batch holds only its compressed body.
    let window = Arc::new(Semaphore::new(concurrency + 2 * compress_threads));
    // A batch leaves the reader only when a compressor is free or about to be (one may wait),
    // so uncompressed batches never pile up behind the compressors, however many compressed
    // ones wait to be sent (measured: letting all of the window hold uncompressed batches
    // cost 9 MB of RSS on the 1 GB run; none waiting cost 4% of throughput).
    let compress_slots = Arc::new(Semaphore::new(compress_threads + 1));
    let (turn_tx, turn_rx) = tokio::sync::watch::channel(0u64);
    let ctx = Arc::new(ShipContext {
        sender,
        tracker: tracker.clone(),
        metrics: metrics.clone(),
        config: config.clone(),
        recycle: recycle_tx,
        abandon: abandon.clone(),
        compressing: Semaphore::new(compress_threads),
        turn_tx,
        turn_rx,
    });
    let mut tasks = JoinSet::new();
    let mut next_seq = 0u64;

    // Running: take batches as the reader fills them.
    let mut reader_ended = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            permits = admit(&window, &compress_slots) => {
                let permits = permits.context("window closed")?;
                tokio::select! {
                    batch = batch_rx.recv() => match batch {
                        Some(batch) => {
                            tasks.spawn(ship_batch(ctx.clone(), batch, next_seq, permits));
                            next_seq += 1;
                        }
                        None => {
                            reader_ended = true;
                            break;
                        }
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
            Some(res) = tasks.join_next(), if !tasks.is_empty() => report_join(res),
        }
    }
    let drained = draining.load(std::sync::atomic::Ordering::SeqCst);
    if reader_ended && !drained && !shutdown.is_cancelled() {
        anyhow::bail!("reader stopped unexpectedly");
    }
    if reader_ended && drained {
        // Everything is read: wait as long as the intake needs to take it (SIGTERM still
        // ends this, with the usual deadline).
        tracing::info!("waiting for the intake to accept the rest");
        tokio::select! {
            _ = async {
                while let Some(res) = tasks.join_next().await {
                    report_join(res);
                }
            } => {}
            _ = shutdown.cancelled() => {}
        }
    }

    // Stopping: the reader hands over its open batch; everything gets until the deadline.
    tracing::info!("shutting down: flushing open batches");
    wake.stop();
    let timeout = Duration::from_millis(config.shutdown_timeout_ms);
    let drained = tokio::time::timeout(timeout, async {
        loop {
            let Ok(permits) = admit(&window, &compress_slots).await else {
                break;
            };
            let Some(batch) = batch_rx.recv().await else {
                break;
            };
            tasks.spawn(ship_batch(ctx.clone(), batch, next_seq, permits));
            next_seq += 1;
        }
        while let Some(res) = tasks.join_next().await {
            report_join(res);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            timeout_ms = config.shutdown_timeout_ms,
            "shutdown deadline reached with batches not accepted; they will be read again after restart"
        );
        abandon.cancel();
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    drop(batch_rx);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    writer_stop.cancel();
    let _ = writer.await;
    let entries = tracker.snapshot();
    let dir = config.data_dir.clone();
    match tokio::task::spawn_blocking(move || checkpoint::store(&dir, &entries)).await {
        Ok(Ok(())) => tracing::info!("checkpoints written; bye"),
        Ok(Err(e)) => {
            Metrics::add(&metrics.checkpoint_write_errors, 1);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Loads checkpoints; a corrupt file is moved aside with a warning, never a crash.
fn load_checkpoints(data_dir: &Path) -> Vec<checkpoint::Entry> {
    match checkpoint::load(data_dir) {
        Ok(entries) => {
            tracing::info!(files = entries.len(), "checkpoints loaded");
            entries
        }
        Err(e) => {
            match checkpoint::move_aside(data_dir) {
                Ok(to) => {
                    tracing::warn!(error = %e, moved_to = %to.display(), "ignoring unusable checkpoints; files start by read_from")
                }
                Err(mv) => {
                    tracing::warn!(error = %e, move_error = %mv, "ignoring unusable checkpoints; files start by read_from")
                }
            }
            Vec::new()
        }
    }
}

struct ShipContext {
    sender: Arc<Sender>,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    config: Config,
    recycle: std::sync::mpsc::Sender<Vec<u8>>,
    abandon: CancellationToken,
    /// Batches being compressed: `compression_threads`.
    compressing: Semaphore,
    /// Sequence number of the next batch allowed to start sending: sends start in the order
    /// the batches were read, so with one request in flight each file arrives in order.
    turn_tx: tokio::sync::watch::Sender<u64>,
    turn_rx: tokio::sync::watch::Receiver<u64>,
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

/// A place in the window of batches past the reader, and a compressor.
struct Admission {
    window: tokio::sync::OwnedSemaphorePermit,
    compressor: tokio::sync::OwnedSemaphorePermit,
}

async fn admit(
    window: &Arc<Semaphore>,
    compressors: &Arc<Semaphore>,
) -> Result<Admission, tokio::sync::AcquireError> {
    let window = window.clone().acquire_owned().await?;
    let compressor = compressors.clone().acquire_owned().await?;
    Ok(Admission { window, compressor })
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
    let codec = ctx.config.datadog.compression;
    let level = ctx.config.datadog.compression_level;
    let compressed = {
        let Ok(_running) = ctx.compressing.acquire().await else {
            return;
        };
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(raw_len / 4 + 1024);
            let res = compress::compress(codec, level, &body, &mut out);
            (res.map(|()| out), body)
        })
        .await
    };
    drop(compressor);
    let (compressed, body) = match compressed {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "compression task failed; batch will be read again after restart");
            return;
        }
    };
    // The reader may be gone at shutdown; then the buffer is simply freed.
    let _ = ctx.recycle.send(body);
    let compressed = match compressed {
        Ok(c) => Bytes::from(c),
        Err(e) => {
            tracing::error!(error = %e, events, "cannot compress batch; its events are dropped");
            let m = &ctx.metrics;
            Metrics::add(&m.events_dropped, events as u64);
            Metrics::add(&m.events_dropped_unencodable, events as u64);
            ctx.tracker.ack(&marks);
            return;
        }
    };
    let mut turn_rx = ctx.turn_rx.clone();
    if turn_rx.wait_for(|t| *t >= seq).await.is_err() {
        return;
    }
    let Some(slot) = ctx.sender.slot().await else {
        return;
    };
    turn.pass();
    let sent = deliver_batch(&ctx, compressed, events, raw_len).await;
    ctx.sender.release(slot);
    if sent.is_some() {
        // Every event was accepted or, alone, refused for good: the lines are done with.
        ctx.tracker.ack(&marks);
        Metrics::add(&ctx.metrics.line_bytes_sent, line_bytes);
        ctx.metrics
            .last_accepted_unix_ms
            .store(tail::now_ms(), std::sync::atomic::Ordering::Relaxed);
    }
    drop(window);
}

/// Delivers one batch; on 400 or 413 splits it in halves until each part is accepted or is a
/// single event the intake refuses (dropped, logged and counted). `None` when abandoned at
/// shutdown.
async fn deliver_batch(
    ctx: &ShipContext,
    compressed: Bytes,
    events: usize,
    raw_len: usize,
) -> Option<()> {
    let compressed_len = compressed.len();
    let (status, detail) = match ctx.sender.deliver(compressed.clone(), &ctx.abandon).await {
        Delivery::Accepted => {
            count_sent(&ctx.metrics, events, raw_len, compressed_len);
            return Some(());
        }
        Delivery::Abandoned => return None,
        Delivery::Refused { status, detail } => (status, detail),
    };
    // The uncompressed body went back to the reader long ago; refusals are rare, so get it
    // back from the compressed one rather than keep every batch twice.
    let codec = ctx.config.datadog.compression;
    let limit = ctx.config.batch.max_bytes + 1024;
    let raw = tokio::task::spawn_blocking(move || {
        compress::decompress(codec.content_encoding(), &compressed, limit)
    })
    .await;
    let raw = match raw {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot decode a refused batch to split it; it will be read again after restart");
            return None;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot decode a refused batch to split it; it will be read again after restart");
            return None;
        }
    };
    let ranges = encode::event_ranges(&raw);
    // Parts still to send, last first; the first is the whole batch, refused already.
    let mut parts = vec![(0..ranges.len(), Some((status, detail)))];
    while let Some((part, refusal)) = parts.pop() {
        let (status, detail) = match refusal {
            Some(r) => r,
            None => {
                let body = encode::join_events(&raw, &ranges[part.clone()]);
                let body_len = body.len();
                let level = ctx.config.datadog.compression_level;
                let packed = tokio::task::spawn_blocking(move || {
                    let mut out = Vec::new();
                    compress::compress(codec, level, &body, &mut out).map(|()| out)
                })
                .await;
                let Ok(Ok(packed)) = packed else {
                    tracing::error!(
                        "cannot compress part of a refused batch; it will be read again after restart"
                    );
                    return None;
                };
                let packed_len = packed.len();
                match ctx.sender.deliver(Bytes::from(packed), &ctx.abandon).await {
                    Delivery::Accepted => {
                        count_sent(&ctx.metrics, part.len(), body_len, packed_len);
                        continue;
                    }
                    Delivery::Abandoned => return None,
                    Delivery::Refused { status, detail } => (status, detail),
                }
            }
        };
        if part.len() <= 1 {
            drop_refused(ctx, &raw, ranges.get(part.start).cloned(), status, &detail);
            continue;
        }
        Metrics::add(&ctx.metrics.batches_split, 1);
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

fn count_sent(m: &Metrics, events: usize, raw_len: usize, sent_len: usize) {
    Metrics::add(&m.batches_sent, 1);
    Metrics::add(&m.events_sent, events as u64);
    Metrics::add(&m.bytes_sent_uncompressed, raw_len as u64);
    Metrics::add(&m.bytes_sent_compressed, sent_len as u64);
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
    Metrics::add(&m.events_dropped, 1);
    let reason = if status == 413 {
        Metrics::add(&m.events_dropped_too_large, 1);
        "too large"
    } else {
        Metrics::add(&m.events_dropped_invalid, 1);
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

async fn checkpoint_writer(
    dir: std::path::PathBuf,
    tracker: Arc<Tracker>,
    metrics: Arc<Metrics>,
    every: Duration,
    stop: CancellationToken,
) {
    // At most one write per `every`, but the first change after a quiet spell is written at
    // once: what a kill -9 makes us send again is then at most `every` of accepted lines.
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tracker.changed() => {}
            _ = stop.cancelled() => return,
        }
        if let Some(last) = last_write {
            tokio::select! {
                _ = tokio::time::sleep_until(last + every) => {}
                _ = stop.cancelled() => return,
            }
        }
        let Some(entries) = tracker.snapshot_if_dirty() else {
            continue;
        };
        last_write = Some(tokio::time::Instant::now());
        let dir = dir.clone();
        match tokio::task::spawn_blocking(move || checkpoint::store(&dir, &entries)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                Metrics::add(&metrics.checkpoint_write_errors, 1);
                tracker.mark_dirty();
                crate::warn_limited!(error = %e, "checkpoint write failed; will retry");
            }
            Err(e) => tracing::warn!(error = %e, "checkpoint write task failed"),
        }
    }
}
