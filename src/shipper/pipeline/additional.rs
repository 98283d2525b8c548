//! Additional endpoints (dual shipping): every batch also goes to each of them, with its own
//! key and codec.
//!
//! A reliable endpoint is delivered to like the main one, after it, by the same batch task:
//! the batch's lines are acknowledged (the checkpoint may advance) only once every reliable
//! endpoint accepted them, so one that is down holds the pipeline back and catches up later.
//! A best-effort endpoint gets a copy through a short queue of its own, sent by a task of its
//! own; when it is behind or down the queue is full and the copy is dropped and counted: it
//! never holds back the others and never holds more than its queue in memory.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::compress::Compressed;
use crate::config::DatadogConfig;
use crate::metrics::EndpointCounters;
use crate::secret::KeySource;
use crate::ship::{Delivery, Reports, Sender};
use crate::shutdown::ShutdownSignal;

/// Copies a best-effort endpoint may have waiting; more are dropped. Each is one compressed
/// batch (about 70 KB with 256-byte lines).
const BEST_EFFORT_QUEUE: usize = 2;

/// Where batches go: the main endpoint and the additional ones.
pub(super) struct Endpoints {
    pub main: Arc<Sender>,
    pub additional: AdditionalEndpoints,
}

/// The additional endpoints of a run.
#[derive(Default)]
pub(super) struct AdditionalEndpoints {
    pub reliable: Vec<Arc<Sender>>,
    pub best_effort: Vec<BestEffort>,
    /// The best-effort endpoints' sending tasks.
    pub tasks: JoinSet<()>,
}

/// A best-effort endpoint's side of its queue.
pub(super) struct BestEffort {
    pub sender: Arc<Sender>,
    queue: mpsc::Sender<Compressed>,
    counters: Arc<EndpointCounters>,
}

impl BestEffort {
    /// Queues a copy, or drops it when the endpoint is behind.
    pub fn offer(&self, packed: Compressed) {
        if self.queue.try_send(packed).is_err() {
            if self.counters.dropped.get() == 0 {
                tracing::warn!(url = %self.sender.url(), "best-effort endpoint is behind or down: dropping its copies of batches (counted in sidelog_additional_endpoint_batches_dropped_total)");
            }
            self.counters.dropped.inc();
        }
    }
}

/// Builds the senders of `datadog.additional_endpoints`, and starts the sending task of each
/// best-effort one. A reliable endpoint without a readable key is an error (nothing could be
/// acknowledged); a best-effort one is left out with a warning. A reliable endpoint reports
/// like the main one (`reports`); a best-effort one reports nothing but its counters.
pub(super) fn start(
    main: &DatadogConfig,
    reports: &Reports,
    key_poll: Duration,
    helpers: &CancellationToken,
    signal: &ShutdownSignal,
) -> anyhow::Result<AdditionalEndpoints> {
    let mut additional = AdditionalEndpoints::default();
    for (i, extra) in main.additional_endpoints.iter().enumerate() {
        let keys = match KeySource::load(extra.api_key_file.as_deref(), extra.api_key.as_ref()) {
            Ok(keys) => keys,
            Err(e) if !extra.reliable => {
                tracing::warn!(error = %e, endpoint = i, "best-effort additional endpoint left out: no API key");
                continue;
            }
            Err(e) => {
                return Err(e).context(format!("datadog.additional_endpoints[{i}]"));
            }
        };
        keys.follow(key_poll, helpers.clone());
        // A best-effort endpoint's retries, outages and key must not look like the main
        // endpoint's, nor hold the reader: only its counters say what became of its copies.
        let sender_reports = extra.reliable.then(|| reports.clone());
        let sender = Sender::new(&extra.as_datadog(main), keys, sender_reports)
            .with_context(|| format!("datadog.additional_endpoints[{i}]"))?;
        let sender = Arc::new(sender);
        tracing::info!(url = %sender.url(), reliable = extra.reliable, "also shipping to additional endpoint");
        if extra.reliable {
            additional.reliable.push(sender);
            continue;
        }
        let (queue, rx) = mpsc::channel(BEST_EFFORT_QUEUE);
        let counters = reports.metrics.register_endpoint(sender.url());
        additional.tasks.spawn(send_best_effort(
            sender.clone(),
            rx,
            counters.clone(),
            signal.clone(),
        ));
        additional.best_effort.push(BestEffort {
            sender,
            queue,
            counters,
        });
    }
    Ok(additional)
}

/// Sends a best-effort endpoint's copies one at a time (retrying through the outage gate like
/// any request; meanwhile its queue fills and new copies are dropped). A copy it refuses is
/// dropped: there is no splitting for a best-effort copy.
async fn send_best_effort(
    sender: Arc<Sender>,
    mut queue: mpsc::Receiver<Compressed>,
    counters: Arc<EndpointCounters>,
    mut signal: ShutdownSignal,
) {
    while let Some(packed) = queue.recv().await {
        match sender.deliver(packed.body, packed.codec, &mut signal).await {
            Delivery::Accepted => counters.sent.inc(),
            Delivery::Abandoned => return,
            Delivery::Reencode | Delivery::Refused { .. } => counters.dropped.inc(),
        }
    }
}
