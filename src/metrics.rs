//! Counters shared by every stage: one named field per internal event, so logs, the demo's
//! progress line and the Prometheus endpoint ([`crate::admin`]) all report the same numbers.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Process-wide counters; every field only ever grows unless documented as a gauge.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Matches of each processing rule, registered when inputs are set up.
            rules: std::sync::Mutex<Vec<RuleCounter>>,
        }

        impl Metrics {
            /// Name and value of every counter, for printing.
            pub fn values(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Lines framed (a long line cut in pieces counts once per piece).
    lines_read,
    /// File bytes consumed by the reader.
    bytes_read,
    /// Empty lines skipped.
    lines_skipped_empty,
    /// Lines with invalid UTF-8, shipped with U+FFFD replacements.
    lines_invalid_utf8,
    /// Extra events made by cutting lines too long for one event.
    lines_split,
    /// Files opened for reading.
    files_opened,
    /// Files closed after being read to their end.
    files_closed,
    /// Gauge: files currently open.
    files_open,
    /// Truncations detected (reading restarted at 0).
    files_truncated,
    /// Files read to their end closed to stay under `tail.max_open_files` (reopened on growth).
    files_evicted,
    /// Files that were renamed away or deleted while closed under `tail.max_open_files` and
    /// could not be found again: lines written after their last read may be lost.
    files_gone_while_closed,
    /// Files not read because they were older than `ignore_older_secs` when found.
    files_ignored_old,
    /// Rotated files deleted after every line was accepted (`delete_after_ship`).
    files_deleted,
    /// Unread bytes of rotated or deleted files given up at `tail.rotate_wait_ms`.
    rotated_bytes_given_up,
    /// Batches handed to the sender.
    batches_built,
    /// Batches and events the intake accepted.
    batches_sent,
    events_sent,
    /// Raw line bytes in accepted events.
    line_bytes_sent,
    /// Request bodies accepted, before and after compression.
    bytes_sent_uncompressed,
    bytes_sent_compressed,
    /// Failed attempts that will be retried, in all and by reason.
    retries,
    /// ... the request failed or timed out (no answer).
    retries_network,
    /// ... 408 or 429.
    retries_throttled,
    /// ... 5xx.
    retries_server_error,
    /// ... 401 or 403: the key was re-read.
    retries_key_rejected,
    /// ... any other status, kept on disk until the intake takes it.
    retries_unexpected_status,
    /// Batches split in halves after a 400 or 413.
    batches_split,
    /// Events dropped, in all and by reason.
    events_dropped,
    /// ... the intake answered 400 to the event alone.
    events_dropped_invalid,
    /// ... the intake answered 413 to the event alone.
    events_dropped_too_large,
    /// ... the batch could not be compressed.
    events_dropped_unencodable,
    /// Gauge: 1 while the intake rejects the API key (401/403).
    api_key_rejected,
    /// Gauge: 1 while the API key file is missing or empty (waiting for the Secret).
    api_key_missing,
    /// Gauge: requests allowed in flight now (moves in adaptive mode).
    request_concurrency_limit,
    /// Events dropped by `exclude_at_match` or `include_at_match` rules.
    events_excluded,
    /// Lines appended to a multi-line event (not counted as events of their own).
    lines_joined,
    /// Checkpoint writes that failed.
    checkpoint_write_errors,
    /// File bytes not accepted by the intake when a drain ended (at its deadline, or cut
    /// short by a second signal): lost once the Pod's volume is deleted.
    shutdown_unshipped_bytes,
    /// Unix milliseconds of the last accepted batch (gauge).
    last_accepted_unix_ms,
}

/// The match count of one processing rule.
#[derive(Debug, Clone)]
pub struct RuleCounter {
    pub input: usize,
    pub name: String,
    pub kind: &'static str,
    pub matches: std::sync::Arc<AtomicU64>,
}

impl Metrics {
    /// Adds a rule's counter; a rule of the same input and name (after a reload) replaces
    /// the old one but keeps its count, so the counter never goes backwards.
    pub fn register_rule(&self, counter: RuleCounter) {
        let mut rules = crate::lock(&self.rules);
        if let Some(old) = rules
            .iter_mut()
            .find(|r| r.input == counter.input && r.name == counter.name)
        {
            counter
                .matches
                .fetch_add(old.matches.load(Ordering::Relaxed), Ordering::Relaxed);
            *old = counter;
        } else {
            rules.push(counter);
        }
    }

    /// Every rule's counter, in registration order.
    pub fn rule_counters(&self) -> Vec<RuleCounter> {
        crate::lock(&self.rules).clone()
    }

    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
