//! Metrics shared by every stage. Each metric is declared once, in [`metrics!`] below (field,
//! kind, Prometheus name, label, help), and that one declaration makes both the field the code
//! updates and the lines [`crate::admin`] serves; families whose series are only known at run
//! time (a rule's matches, a file's lag) are declared as [`Family`] constants here too, and
//! the gauges of the run's delivery state beside that state (`delivery.rs`). Nothing
//! here decides what a stage does. A [`Counter`] only grows ([`Counter::add`]); a [`Gauge`] is
//! set ([`Gauge::set`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A value that only grows.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that is set to what it is now.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn up(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub fn down(&self) {
        // Never below zero, whatever the order of updates.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A Prometheus metric family: every series of it shares name, kind and help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Without the `sidelog_` prefix.
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
}

impl Family {
    /// The `# HELP` and `# TYPE` lines.
    pub fn write_header(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP sidelog_{} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE sidelog_{} {}", self.name, self.kind);
    }

    /// One sample line; `labels` already formatted (`{a="b"}`) or empty.
    pub fn write_sample(&self, out: &mut String, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(out, "sidelog_{}{labels} {value}", self.name);
    }
}

/// One series of [`Metrics`], as declared.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub family: Family,
    /// `(name, value)` of its one label, if it has one.
    pub label: Option<(&'static str, &'static str)>,
}

const fn kind_name(counter: bool) -> &'static str {
    if counter { "counter" } else { "gauge" }
}

macro_rules! is_counter {
    (Counter) => {
        true
    };
    (Gauge) => {
        false
    };
}

macro_rules! metrics {
    ($(
        $(#[$doc:meta])*
        $field:ident: $kind:ident = $name:literal $({ $lname:literal = $lvalue:literal })?, $help:literal;
    )*) => {
        /// Process-wide metrics, one field per series.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[$doc])* pub $field: $kind,)*
            /// [`crate::clock::monotonic_ms`] of the last accepted batch (exported as
            /// seconds since): a wall clock set back or forth must not fake an outage.
            pub last_accepted_ms: Gauge,
            /// Matches of each processing rule, registered when inputs are set up.
            rules: std::sync::Mutex<Vec<RuleCounter>>,
            /// Batches of each best-effort additional endpoint, registered at start.
            endpoints: std::sync::Mutex<Vec<std::sync::Arc<EndpointCounters>>>,
        }

        impl Metrics {
            /// Every declared series with its value now, in declaration order.
            pub fn series(&self) -> Vec<(Series, u64)> {
                vec![$(
                    (
                        Series {
                            family: Family {
                                name: $name,
                                kind: kind_name(is_counter!($kind)),
                                help: $help,
                            },
                            label: None $(.or(Some(($lname, $lvalue))))?,
                        },
                        self.$field.get(),
                    ),
                )*]
            }
        }
    };
}

metrics! {
    lines_read: Counter = "lines_read_total", "Lines framed (a long line counts once per piece).";
    bytes_read: Counter = "bytes_read_total", "File bytes consumed by the reader.";
    lines_skipped_empty: Counter = "lines_skipped_empty_total", "Empty lines skipped.";
    lines_invalid_utf8: Counter = "lines_invalid_utf8_total", "Lines shipped with invalid UTF-8 replaced.";
    lines_split: Counter = "lines_split_total", "Extra events made by cutting lines too long for one event.";
    files_opened: Counter = "files_opened_total", "Files opened for reading.";
    files_closed: Counter = "files_closed_total", "Files closed after being read to their end.";
    files_truncated: Counter = "files_truncated_total", "Truncations detected (reading restarted at 0).";
    files_evicted: Counter = "files_evicted_total", "Files closed to stay under tail.max_open_files (reopened when they grow).";
    /// Lines written after their last read may be lost for these.
    files_gone_while_closed: Counter = "files_gone_while_closed_total", "Files renamed or deleted while closed under tail.max_open_files and not found again.";
    files_ignored_old: Counter = "files_ignored_old_total", "Files not read because of ignore_older_secs.";
    files_not_regular: Counter = "files_not_regular_total", "Names the globs match that were found not to be regular files (a directory where a log file was), each counted once while it stays so.";
    files_outside: Counter = "files_outside_total", "Names the globs match whose real path is outside the included directories (links out of the log volume), not read; each counted once while it stays so.";
    files_deleted: Counter = "files_deleted_total", "Rotated files deleted once fully accepted (delete_after_ship).";
    truncated_bytes_lost: Counter = "truncated_bytes_lost_total", "Bytes a file held beyond what was read when it was truncated, with no copy of them found in its directory (copytruncate with immediate compression).";
    rotated_bytes_given_up: Counter = "rotated_bytes_given_up_total", "Unread bytes of rotated or deleted files given up at tail.rotate_wait_ms.";
    events_excluded: Counter = "events_excluded_total", "Events dropped by exclude_at_match or include_at_match rules.";
    lines_joined: Counter = "lines_joined_total", "Lines appended to a multi-line event.";
    multiline_flushed_for_memory: Counter = "multiline_flushed_for_memory_total", "Multi-line events sent before they were complete because the events being assembled in all files held more than tail.multiline_pending_bytes.";
    batches_built: Counter = "batches_built_total", "Batches handed to the sender.";
    batches_sent: Counter = "batches_sent_total", "Requests the intake accepted.";
    batches_split: Counter = "batches_split_total", "Refused parts of batches split in halves after a 400 or 413.";
    events_sent: Counter = "events_sent_total", "Events the intake accepted.";
    line_bytes_sent: Counter = "line_bytes_sent_total", "Raw line bytes in accepted events.";
    bytes_sent_uncompressed: Counter = "bytes_sent_uncompressed_total", "Accepted request bodies before compression.";
    bytes_sent_compressed: Counter = "bytes_sent_compressed_total", "Accepted request bodies as sent.";
    checkpoint_write_errors: Counter = "checkpoint_write_errors_total", "Checkpoint writes that failed (retried).";
    /// Lost once the Pod's volume is deleted.
    shutdown_unshipped_bytes: Counter = "shutdown_unshipped_bytes_total", "File bytes not accepted when a shutdown drain ended at its deadline or at a second signal.";
    retries_network: Counter = "retries_total" { "reason" = "network" }, "Failed attempts that will be retried, by reason.";
    retries_throttled: Counter = "retries_total" { "reason" = "throttled" }, "Failed attempts that will be retried, by reason.";
    retries_server_error: Counter = "retries_total" { "reason" = "server_error" }, "Failed attempts that will be retried, by reason.";
    retries_key_rejected: Counter = "retries_total" { "reason" = "key_rejected" }, "Failed attempts that will be retried, by reason.";
    retries_unexpected_status: Counter = "retries_total" { "reason" = "unexpected_status" }, "Failed attempts that will be retried, by reason.";
    retries_redirect: Counter = "retries_total" { "reason" = "redirect" }, "Failed attempts that will be retried, by reason.";
    retries_refused: Counter = "retries_total" { "reason" = "refused" }, "Failed attempts that will be retried, by reason.";
    events_dropped_invalid: Counter = "events_dropped_total" { "reason" = "invalid" }, "Events dropped, by reason.";
    events_dropped_too_large: Counter = "events_dropped_total" { "reason" = "too_large" }, "Events dropped, by reason.";
    events_dropped_unencodable: Counter = "events_dropped_total" { "reason" = "unencodable" }, "Events dropped, by reason.";
    files_open: Gauge = "files_open", "Files open now.";
    request_concurrency_limit: Gauge = "request_concurrency_limit", "Requests allowed in flight now.";
}

/// Families whose series are known only at run time, rendered by [`crate::admin`].
pub const BUILD_INFO: Family = Family {
    name: "build_info",
    kind: "gauge",
    help: "Always 1; the version is a label.",
};
pub const RULE_MATCHES: Family = Family {
    name: "processing_rule_matches_total",
    kind: "counter",
    help: "Matches of each processing rule.",
};
pub const FILES_WATCHED: Family = Family {
    name: "files_watched",
    kind: "gauge",
    help: "Files being tailed.",
};
pub const SECONDS_SINCE_LAST_ACCEPTED: Family = Family {
    name: "seconds_since_last_accepted",
    kind: "gauge",
    help: "Seconds since the intake last accepted a batch (absent before the first).",
};
pub const FILE_LAG: Family = Family {
    name: "file_lag_bytes",
    kind: "gauge",
    help: "Bytes of a file not yet accepted by the intake.",
};
pub const ENDPOINT_SENT: Family = Family {
    name: "additional_endpoint_batches_sent_total",
    kind: "counter",
    help: "Batches a best-effort additional endpoint accepted.",
};
pub const ENDPOINT_DROPPED: Family = Family {
    name: "additional_endpoint_batches_dropped_total",
    kind: "counter",
    help: "Copies of batches a best-effort additional endpoint did not get (behind, refused).",
};
pub const RESIDENT_MEMORY: Family = Family {
    name: "resident_memory_bytes",
    kind: "gauge",
    help: "Resident memory of the process (VmRSS).",
};
pub const CPU_SECONDS: Family = Family {
    name: "cpu_seconds_total",
    kind: "counter",
    help: "CPU time of the process, user and system.",
};
/// The run-time families, in the order they are served.
pub const DYNAMIC_FAMILIES: &[Family] = &[
    BUILD_INFO,
    RULE_MATCHES,
    FILES_WATCHED,
    SECONDS_SINCE_LAST_ACCEPTED,
    FILE_LAG,
    ENDPOINT_SENT,
    ENDPOINT_DROPPED,
    RESIDENT_MEMORY,
    CPU_SECONDS,
];

/// What became of a best-effort additional endpoint's copies of the batches.
#[derive(Debug)]
pub struct EndpointCounters {
    pub endpoint: String,
    pub sent: Counter,
    /// Copies given up: the endpoint was behind (its queue full), refused them, or could not
    /// decode them.
    pub dropped: Counter,
}

/// The match count of one processing rule.
#[derive(Debug, Clone)]
pub struct RuleCounter {
    pub input: usize,
    pub name: String,
    pub kind: &'static str,
    pub matches: std::sync::Arc<Counter>,
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
            counter.matches.add(old.matches.get());
            *old = counter;
        } else {
            rules.push(counter);
        }
    }

    /// The counters of a best-effort additional endpoint (named by its URL); the same
    /// endpoint after a reload keeps its counts.
    pub fn register_endpoint(&self, endpoint: &str) -> std::sync::Arc<EndpointCounters> {
        let mut endpoints = crate::lock(&self.endpoints);
        if let Some(known) = endpoints.iter().find(|e| e.endpoint == endpoint) {
            return known.clone();
        }
        let counters = std::sync::Arc::new(EndpointCounters {
            endpoint: endpoint.to_string(),
            sent: Counter::default(),
            dropped: Counter::default(),
        });
        endpoints.push(counters.clone());
        counters
    }

    /// Every best-effort endpoint's counters, in registration order.
    pub fn endpoint_counters(&self) -> Vec<std::sync::Arc<EndpointCounters>> {
        crate::lock(&self.endpoints).clone()
    }

    /// Every rule's counter, in registration order.
    pub fn rule_counters(&self) -> Vec<RuleCounter> {
        crate::lock(&self.rules).clone()
    }

    /// Failed attempts that will be retried, all reasons together.
    pub fn retries_total(&self) -> u64 {
        self.family_total("retries_total")
    }

    /// Events dropped, all reasons together.
    pub fn events_dropped_total(&self) -> u64 {
        self.family_total("events_dropped_total")
    }

    /// The sum of a labelled family's series, from their one declaration (a reason added
    /// there is counted here too).
    fn family_total(&self, name: &str) -> u64 {
        self.series()
            .iter()
            .filter(|(series, _)| series.family.name == name)
            .map(|(_, value)| value)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_one_family_agree_on_kind_and_help() {
        let series = Metrics::default().series();
        for (a, _) in &series {
            for (b, _) in &series {
                if a.family.name == b.family.name {
                    assert_eq!(a.family, b.family, "{}", a.family.name);
                    assert_eq!(a.label.is_some(), b.label.is_some(), "{}", a.family.name);
                }
            }
            let counter = a.family.kind == "counter";
            assert_eq!(
                counter,
                a.family.name.ends_with("_total"),
                "{}",
                a.family.name
            );
        }
    }

    #[test]
    fn gauges_never_go_below_zero_and_counters_add() {
        let m = Metrics::default();
        m.files_open.down();
        assert_eq!(m.files_open.get(), 0);
        m.files_open.up();
        assert_eq!(m.files_open.get(), 1);
        m.retries_network.inc();
        m.retries_throttled.add(2);
        assert_eq!(m.retries_total(), 3);
    }
}
