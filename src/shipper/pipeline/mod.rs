//! The shipper: a [`Pipeline`] is started with a configuration, wires the stages together,
//! and is brought down through the phases of a [`Shutdown`].
//!
//! ```text
//! reader thread ──Batch──▶ dispatcher ──▶ task per batch: compress (compressor thread) → send → ack
//!      ▲  (channel of 1: a full channel stops the reader)                                     │
//!      └──────────────── body buffers come back for reuse ◀───────────────────────────────────┘
//! ```
//! Batches are compressed in parallel (`compression_threads`: by default one per core, at
//! most 2, plus a spare one for gzip and deflate) but start sending in the order they were
//! read, to every endpoint (the main one and `additional_endpoints`), at most
//! `request_concurrency` at a time (adaptive by default; with 1, each file's lines reach the
//! intake in order). Accepted positions are written as they are accepted: at most one write
//! per 50 ms while a batch's worth keeps being accepted, else every `checkpoint_interval_ms`
//! (see [`crate::checkpoint`]).
//!
//! The way out ([`crate::shutdown`]): on SIGTERM the reader keeps reading every file to its
//! end until all are quiet for `shutdown_quiet_ms` (a Pod's volume goes with the Pod), hands
//! over what it read, and everything is shipped until it is accepted or
//! `shutdown_timeout_ms` has passed; a reload (or `shutdown_drain = false`) stops reading at
//! once instead. Either way the checkpoints of what was accepted are written last, and what
//! was not accepted is logged and counted.

mod additional;
mod compressors;
mod destination;
mod dispatch;
mod refused;
mod sending;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminState, RunView};
use crate::checkpoint::{self, Tracker};
use crate::config::{Config, DatadogConfig};
/// Why a run did not start on its `data_dir` (the binary exits 3 for it).
pub use crate::data_dir::DataDirError;
use crate::delivery::DeliveryState;
use crate::encode::Batch;
use crate::health::Liveness;
use crate::metrics::Metrics;
use crate::podtags::PodTagsSource;
use crate::secret::KeySource;
use crate::ship::{Reports, Sender};
use crate::shutdown::{Phase, Shutdown, ShutdownSignal};
use crate::tail::{Tailer, TailerLinks, Wake};
use dispatch::{DispatchSettings, Dispatcher, Links, Taken};
use sending::Sending;

/// How often `exit_when_file` is looked for.
const EXIT_FILE_POLL: Duration = Duration::from_secs(1);

/// How often the key files are re-read: a rotated key is in use within this long of the
/// kubelet swapping the Secret's files.
const KEY_POLL: Duration = Duration::from_secs(2);

/// How often the Pod's labels and annotations files are re-read (only when configured).
const POD_FILES_POLL: Duration = Duration::from_secs(2);

/// Files named one by one when a shutdown leaves bytes unshipped; the rest are summed up.
const UNSHIPPED_FILES_LOGGED: usize = 20;

/// How a running pipeline is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Read every file to its end, ship all of it, then exit (a Pod's volume is about to go).
    Drain,
    /// Read nothing more; ship what was read (a reload, or files that outlive the process).
    Immediate,
}

/// A running shipper.
pub struct Pipeline {
    shutdown: Arc<Shutdown>,
    timeout: Duration,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Pipeline {
    /// Starts the shipper on the current runtime. Waiting for the key file, if configured,
    /// happens inside: a stop request ends that wait too.
    pub fn start(config: Config, metrics: Arc<Metrics>, admin: Option<AdminState>) -> Pipeline {
        let shutdown = Arc::new(Shutdown::new());
        let timeout = Duration::from_millis(config.shutdown_timeout_ms);
        let task = tokio::spawn(run(config, metrics, admin, shutdown.clone()));
        Pipeline {
            shutdown,
            timeout,
            task,
        }
    }

    /// Asks the shipper to end; `shutdown_timeout_ms` counts from the first request.
    pub fn stop(&self, mode: StopMode) {
        let phase = match mode {
            StopMode::Drain => Phase::Draining,
            StopMode::Immediate => Phase::Stopping,
        };
        self.shutdown.advance(phase, Some(self.timeout));
    }

    /// Ends at once: what is in flight is given up, the checkpoints are still written.
    pub fn abandon(&self) {
        self.shutdown.advance(Phase::Abandoning, None);
    }

    /// Whether it ended (on its own, or as asked).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the shipper to end. Cancel-safe.
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.task).await.context("shipper task failed")?
    }
}

/// The stages of one run, once started.
struct Stages {
    tracker: Arc<Tracker>,
    wake: Arc<Wake>,
    reader: std::thread::JoinHandle<()>,
    batches: mpsc::Receiver<Batch>,
    dispatcher: Dispatcher,
    /// Stops the helpers (key poll, exit-file poll, phase bridge, checkpoint writer).
    helpers: CancellationToken,
    writer: JoinHandle<()>,
}

async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    admin: Option<AdminState>,
    shutdown: Arc<Shutdown>,
) -> anyhow::Result<()> {
    // The gauges of files open describe this run (a reload starts a new one); the delivery
    // state is the run's own.
    metrics.files_open.set(0);
    let delivery = Arc::new(DeliveryState::default());
    match crate::data_dir::probe(&config.data_dir) {
        Ok(()) => {}
        Err(e) if e.is_full() => {
            tracing::warn!(error = %e, "shipping all the same: checkpoints are kept in memory and written once the disk allows (a restart meanwhile repeats what was shipped)");
            delivery.set_checkpoints_unwritten(true);
        }
        Err(e) => return Err(e.into()),
    }
    let tracker = Arc::new(Tracker::new());
    let liveness = Arc::new(Liveness::new(
        Duration::from_secs(config.liveness_timeout_secs),
        Duration::from_millis(config.datadog.request_timeout_ms),
        delivery.clone(),
    ));
    if let Some(admin) = &admin {
        let shown = crate::redact::url_text(&config.datadog.logs_url());
        admin.attach(RunView {
            tracker: Some(tracker.clone()),
            url: shown,
            liveness: Some(liveness.clone()),
            delivery: delivery.clone(),
        });
    }
    let mut signal = shutdown.signal();
    let Some(keys) = load_key(&config, &delivery, &mut signal).await? else {
        tracing::info!("stopped while waiting for the API key");
        return Ok(());
    };
    let run = RunLinks {
        tracker,
        delivery,
        liveness,
    };
    let mut stages = start_stages(&config, keys, run, &metrics, &shutdown)?;
    let ended = ship_until_done(&mut stages, &mut signal, &shutdown).await;
    let outcome = finish(stages, &config, &metrics, shutdown.drained()).await;
    if ended == Ended::ReaderFailed {
        anyhow::bail!("reader stopped unexpectedly");
    }
    outcome
}

/// Loads the API key, waiting for it if configured. `None` when asked to stop meanwhile.
async fn load_key(
    config: &Config,
    delivery: &DeliveryState,
    signal: &mut ShutdownSignal,
) -> anyhow::Result<Option<Arc<KeySource>>> {
    let wait = Duration::from_secs(config.datadog.api_key_wait_secs);
    let d = &config.datadog;
    let load = KeySource::load_waiting(
        d.api_key_file.as_deref(),
        d.api_key.as_ref(),
        wait,
        delivery,
    );
    tokio::pin!(load);
    loop {
        tokio::select! {
            keys = &mut load => {
                let keys = keys?;
                tracing::info!(origin = %keys.origin(), "API key loaded");
                return Ok(Some(keys));
            }
            _ = signal.changed() => {
                if signal.phase().leaving() {
                    return Ok(None);
                }
            }
        }
    }
}

/// What the stages of one run share besides the configuration and the metrics.
struct RunLinks {
    tracker: Arc<Tracker>,
    delivery: Arc<DeliveryState>,
    liveness: Arc<Liveness>,
}

fn start_stages(
    config: &Config,
    keys: Arc<KeySource>,
    run: RunLinks,
    metrics: &Arc<Metrics>,
    shutdown: &Arc<Shutdown>,
) -> anyhow::Result<Stages> {
    let RunLinks {
        tracker,
        delivery,
        liveness,
    } = run;
    let helpers = CancellationToken::new();
    let resume = checkpoint::resume(&config.data_dir);
    let reports = Reports {
        metrics: metrics.clone(),
        delivery: delivery.clone(),
        liveness: liveness.clone(),
    };
    let endpoints = endpoints(&config.datadog, keys, &reports, &helpers, shutdown)?;

    let (batch_tx, batches) = mpsc::channel::<Batch>(1);
    // One body buffer waits for the reader at most (it keeps one spare): the others are
    // freed at once, rather than piling up while the reader waits for the sender.
    let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    let wake = Arc::new(Wake::default());
    let pod_tags = follow_pod_tags(config, &helpers);
    let tailer = Tailer::new(
        config,
        TailerLinks {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            wake: wake.clone(),
            out: batch_tx,
            recycled: recycle_rx,
            delivery: delivery.clone(),
            resume,
            pod_tags,
            liveness: liveness.clone(),
        },
    )?;
    let reader = std::thread::Builder::new()
        .name("sidelog-tail".into())
        .spawn(move || tailer.run())
        .context("cannot start reader thread")?;
    let writer = start_helpers(config, &tracker, &reports, shutdown, &wake, &helpers);
    let dispatcher = Dispatcher::new(
        endpoints,
        Links {
            tracker: tracker.clone(),
            metrics: metrics.clone(),
            settings: DispatchSettings::of(config),
            recycle: recycle_tx,
            signal: shutdown.signal(),
            sending: Sending {
                delivery,
                wake: wake.clone(),
            },
            liveness,
        },
    )
    .context("cannot start compressor threads")?;
    Ok(Stages {
        tracker,
        wake,
        reader,
        batches,
        dispatcher,
        helpers,
        writer,
    })
}

/// The tasks beside the stages, until `helpers` ends: the shutdown phases passed to the
/// reader, `exit_when_file`, and the checkpoint writer (returned).
fn start_helpers(
    config: &Config,
    tracker: &Arc<Tracker>,
    reports: &Reports,
    shutdown: &Arc<Shutdown>,
    wake: &Arc<Wake>,
    helpers: &CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(tell_reader(
        shutdown.signal(),
        wake.clone(),
        helpers.clone(),
    ));
    if let Some(path) = config.exit_when_file.clone() {
        tokio::spawn(watch_exit_file(path, shutdown.clone(), helpers.clone()));
    }
    tokio::spawn(checkpoint::write_as_accepted(
        config.data_dir.clone(),
        tracker.clone(),
        reports.metrics.clone(),
        reports.delivery.clone(),
        Duration::from_millis(config.checkpoint_interval_ms),
        helpers.clone(),
    ))
}

/// The main endpoint and the additional ones, their key files followed until `helpers` ends.
fn endpoints(
    datadog: &DatadogConfig,
    keys: Arc<KeySource>,
    reports: &Reports,
    helpers: &CancellationToken,
    shutdown: &Arc<Shutdown>,
) -> anyhow::Result<additional::Endpoints> {
    keys.follow(KEY_POLL, helpers.clone());
    let main = Arc::new(Sender::new(datadog, keys, Some(reports.clone()))?);
    tracing::info!(url = %main.url(), "shipping to intake");
    let additional = additional::start(datadog, reports, KEY_POLL, helpers, &shutdown.signal())?;
    Ok(additional::Endpoints { main, additional })
}

/// The Pod's tags from its Downward API files, re-read until `stop` (none configured: `None`).
fn follow_pod_tags(config: &Config, stop: &CancellationToken) -> Option<Arc<PodTagsSource>> {
    let source = PodTagsSource::load(&config.kubernetes)?;
    source.follow(POD_FILES_POLL, stop.clone());
    Some(source)
}

/// Passes each phase to the reader thread, which sleeps on its doorbell rather than on the
/// runtime.
async fn tell_reader(mut signal: ShutdownSignal, wake: Arc<Wake>, stop: CancellationToken) {
    loop {
        match signal.phase() {
            Phase::Running => {}
            Phase::Draining => wake.drain(),
            Phase::Stopping => wake.stop(),
            Phase::Abandoning => {
                wake.abandon();
                return;
            }
        }
        tokio::select! {
            _ = signal.changed() => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// `exit_when_file`: once it exists, drain as at SIGTERM, but with no deadline (a Job's app
/// is done; its logs are shipped however long the intake needs).
async fn watch_exit_file(
    path: std::path::PathBuf,
    shutdown: Arc<Shutdown>,
    stop: CancellationToken,
) {
    loop {
        if std::fs::exists(&path).unwrap_or(false) {
            tracing::info!(path = %path.display(), "exit_when_file exists: shipping everything left, then exiting");
            shutdown.advance(Phase::Draining, None);
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(EXIT_FILE_POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Everything read was settled (accepted, or refused alone and dropped).
    Settled,
    /// The deadline passed or a second signal came first.
    Abandoned,
    /// The reader ended without being asked to.
    ReaderFailed,
}

/// Ships batches until the reader has handed over everything and all of it was settled, or
/// Why a shutdown gives up what is not yet accepted.
enum GaveUp {
    /// A second SIGTERM or SIGINT.
    AskedAgain,
    /// `shutdown_timeout_ms` passed.
    Deadline,
}

/// Says why the rest is given up (one wording whichever way it is noticed).
fn give_up(why: GaveUp) -> Ended {
    match why {
        GaveUp::AskedAgain => {
            tracing::warn!("asked again to stop: giving up what is not yet accepted")
        }
        GaveUp::Deadline => tracing::warn!(
            "shutdown deadline (shutdown_timeout_ms) reached before everything was accepted"
        ),
    }
    Ended::Abandoned
}

/// until the shutdown abandons what is left.
async fn ship_until_done(
    stages: &mut Stages,
    signal: &mut ShutdownSignal,
    shutdown: &Shutdown,
) -> Ended {
    let mut deadline = signal.clone();
    let shipped = async {
        while let Taken::Dispatched = stages.dispatcher.take(&mut stages.batches).await {}
        if !signal.phase().leaving() {
            return Ended::ReaderFailed;
        }
        if stages.dispatcher.in_flight() > 0 {
            tracing::info!(
                batches = stages.dispatcher.in_flight(),
                "everything read; waiting for the intake to accept the rest"
            );
        }
        stages.dispatcher.settle_all().await;
        Ended::Settled
    };
    let mut abandon = signal.clone();
    // Abandonment first: tasks that gave up make `shipped` complete in the same moment.
    tokio::select! {
        biased;
        _ = abandon.abandoned() => give_up(GaveUp::AskedAgain),
        _ = deadline.deadline_passed() => {
            shutdown.advance(Phase::Abandoning, None);
            give_up(GaveUp::Deadline)
        }
        // Requests that gave up because of an abandonment may be seen to end before the
        // abandonment itself is: name it all the same.
        ended = shipped => match ended {
            Ended::Settled if shutdown.signal().abandoning() => {
                let passed = shutdown.signal().deadline();
                if passed.is_some_and(|at| at <= tokio::time::Instant::now()) {
                    give_up(GaveUp::Deadline)
                } else {
                    give_up(GaveUp::AskedAgain)
                }
            }
            ended => ended,
        },
    }
}

/// Gives up what is still in flight, stops the reader and the helpers, writes the
/// checkpoints (durably), and accounts for what was not shipped.
async fn finish(
    mut stages: Stages,
    config: &Config,
    metrics: &Arc<Metrics>,
    drained: bool,
) -> anyhow::Result<()> {
    stages.dispatcher.abandon_all().await;
    // A reader blocked on a full channel gets an error and ends.
    stages.wake.abandon();
    drop(stages.batches);
    let reader = stages.reader;
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    stages.helpers.cancel();
    let _ = stages.writer.await;
    let entries = stages.tracker.snapshot();
    let dir = config.data_dir.clone();
    let stored = tokio::task::spawn_blocking(move || checkpoint::store(&dir, &entries, true)).await;
    report_unshipped(&stages.tracker, metrics, drained);
    match stored {
        Ok(Ok(())) => {
            tracing::info!("checkpoints written; bye");
            Ok(())
        }
        Ok(Err(e)) if e.is_full() => {
            // Not a failure of the run (a reload must go on): the next start repeats lines.
            metrics.checkpoint_write_errors.inc();
            tracing::error!(error = %e, "the last checkpoints cannot be written (data_dir is full): the next start in this Pod repeats what was shipped since the last write");
            Ok(())
        }
        Ok(Err(e)) => {
            metrics.checkpoint_write_errors.inc();
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Says how many bytes of which files were not accepted when the shipper ended. After a
/// drain that is loss once the Pod's volume is gone: a warning and a counter. After an
/// immediate stop the files stay and the next start ships the rest.
fn report_unshipped(tracker: &Tracker, metrics: &Metrics, drained: bool) {
    let mut left: Vec<_> = tracker
        .progress()
        .into_iter()
        .filter(|p| p.lag() > 0)
        .collect();
    if left.is_empty() {
        return;
    }
    left.sort_by_key(|p| std::cmp::Reverse(p.lag()));
    let total: u64 = left.iter().map(|p| p.lag()).sum();
    if !drained {
        tracing::info!(
            files = left.len(),
            bytes = total,
            "stopping with bytes not yet shipped; the next start ships them"
        );
        return;
    }
    metrics.shutdown_unshipped_bytes.add(total);
    for p in left.iter().take(UNSHIPPED_FILES_LOGGED) {
        tracing::warn!(path = %p.path, unshipped_bytes = p.lag(), "left unshipped at shutdown");
    }
    tracing::warn!(
        files = left.len(),
        unshipped_bytes = total,
        "shutdown left bytes unshipped: a restart in the same Pod ships them; if the Pod is deleted they are lost (raise shutdown_timeout_ms and terminationGracePeriodSeconds)"
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::position::{DevIno, Fingerprint, Mark, StreamId};

    fn tracker_with_lag() -> Tracker {
        let t = Tracker::new();
        let fp = Fingerprint { len: 4, hash: 1 };
        t.register(
            StreamId(1),
            DevIno { dev: 1, ino: 1 },
            fp,
            Path::new("/logs/a.log"),
            0,
        );
        t.register(
            StreamId(2),
            DevIno { dev: 1, ino: 2 },
            fp,
            Path::new("/logs/b.log"),
            0,
        );
        t.observe(StreamId(1), 300, 300, 0);
        t.observe(StreamId(2), 50, 500, 0);
        t.ack(
            &[
                Mark {
                    stream: StreamId(1),
                    start: 0,
                    end: 100,
                },
                Mark {
                    stream: StreamId(2),
                    start: 0,
                    end: 500,
                },
            ],
            2,
        );
        t
    }

    #[test]
    fn a_drain_cut_short_counts_what_was_not_accepted() {
        let metrics = Metrics::default();
        report_unshipped(&tracker_with_lag(), &metrics, true);
        assert_eq!(metrics.shutdown_unshipped_bytes.get(), 200);
    }

    #[test]
    fn an_immediate_stop_leaves_the_rest_for_the_next_start_uncounted() {
        let metrics = Metrics::default();
        report_unshipped(&tracker_with_lag(), &metrics, false);
        assert_eq!(metrics.shutdown_unshipped_bytes.get(), 0);
    }
}
