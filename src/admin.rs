//! The admin endpoint (`metrics_listen`): Prometheus metrics, liveness, readiness, and the
//! per-file status `sidelog status` prints.
//!
//! It only reads what the stages already count ([`Metrics`]) and what the checkpoint tracker
//! knows about each file; it never takes a lock the hot path holds for long.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{FileProgress, Tracker};
use crate::metrics::Metrics;

/// What the admin endpoint reads from. It outlives a configuration reload: each run of the
/// shipper attaches its checkpoint tracker and intake URL.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    run: Arc<RwLock<RunView>>,
}

#[derive(Default)]
struct RunView {
    tracker: Option<Arc<Tracker>>,
    url: String,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> AdminState {
        AdminState {
            metrics,
            run: Arc::new(RwLock::new(RunView::default())),
        }
    }

    /// Shows this run's files and intake from now on.
    pub fn attach(&self, tracker: Arc<Tracker>, url: String) {
        let mut run = match self.run.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *run = RunView {
            tracker: Some(tracker),
            url,
        };
    }

    fn view(&self) -> (Vec<FileProgress>, String) {
        let run = match self.run.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        (
            run.tracker
                .as_ref()
                .map(|t| t.progress())
                .unwrap_or_default(),
            run.url.clone(),
        )
    }
}

/// The answer of `GET /status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub intake: String,
    pub ready: bool,
    /// Why not ready, when not.
    pub not_ready_because: Option<String>,
    pub seconds_since_last_accepted: Option<f64>,
    pub events_sent: u64,
    pub events_dropped: u64,
    pub retries: u64,
    pub request_concurrency: u64,
    pub files: Vec<FileProgress>,
}

/// Binds `addr` and serves until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => return,
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&req, &state)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn answer(req: &Request<hyper::body::Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            let mut resp = text(StatusCode::OK, &prometheus(state));
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            resp
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match not_ready(&state.metrics) {
            None => text(StatusCode::OK, "ready\n"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        "/status" => {
            let body = serde_json::to_string_pretty(&status(state)).unwrap_or_default();
            let mut resp = text(StatusCode::OK, &body);
            resp.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: GET /metrics, /healthz, /readyz or /status\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp
}

/// Why sidelog should not receive traffic... or rather, why it is not doing its job: the key
/// is missing or rejected. Kubernetes readiness only gates Services, so for a sidecar this is
/// a signal for people and alerts.
fn not_ready(m: &Metrics) -> Option<String> {
    if Metrics::get(&m.api_key_missing) != 0 {
        return Some("waiting for the API key file".into());
    }
    if Metrics::get(&m.api_key_rejected) != 0 {
        return Some("the intake rejects the API key (401/403)".into());
    }
    None
}

fn seconds_since_last_accepted(m: &Metrics) -> Option<f64> {
    let last = Metrics::get(&m.last_accepted_unix_ms);
    (last > 0).then(|| crate::tail::now_ms().saturating_sub(last) as f64 / 1000.0)
}

pub fn status(state: &AdminState) -> Status {
    let m = &state.metrics;
    let why = not_ready(m);
    let (files, url) = state.view();
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        intake: url,
        ready: why.is_none(),
        not_ready_because: why,
        seconds_since_last_accepted: seconds_since_last_accepted(m),
        events_sent: Metrics::get(&m.events_sent),
        events_dropped: Metrics::get(&m.events_dropped),
        retries: Metrics::get(&m.retries),
        request_concurrency: Metrics::get(&m.request_concurrency_limit),
        files,
    }
}

/// `sidelog status` as people read it.
pub fn render_status(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sidelog {} shipping to {}: {}",
        s.version,
        s.intake,
        match &s.not_ready_because {
            None => "ready".to_string(),
            Some(why) => format!("NOT READY ({why})"),
        }
    );
    let last = s
        .seconds_since_last_accepted
        .map_or("no batch accepted yet".to_string(), |secs| {
            format!("last batch accepted {secs:.1} s ago")
        });
    let _ = writeln!(
        out,
        "{last}; {} events sent, {} dropped, {} retries; {} requests allowed in flight",
        s.events_sent, s.events_dropped, s.retries, s.request_concurrency
    );
    let _ = writeln!(out);
    let width = s
        .files
        .iter()
        .map(|f| f.path.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}",
        "FILE", "SIZE", "READ", "ACCEPTED", "LAG"
    );
    for f in &s.files {
        let _ = writeln!(
            out,
            "{:<width$}  {:>12}  {:>12}  {:>12}  {:>12}",
            f.path,
            f.size,
            f.read,
            f.accepted,
            f.lag()
        );
    }
    out
}

/// The metrics in Prometheus' text format.
pub fn prometheus(state: &AdminState) -> String {
    let m = &state.metrics;
    let mut out = String::with_capacity(8192);
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP sidelog_{name} {help}");
        let _ = writeln!(out, "# TYPE sidelog_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "sidelog_{name}{labels} {value}");
        }
    };
    family(
        "build_info",
        "gauge",
        "Always 1; the version is a label.",
        &[(concat!("{version=\"", env!("CARGO_PKG_VERSION"), "\"}"), 1)],
    );
    for (name, help, counter) in [
        (
            "lines_read_total",
            "Lines framed (a long line counts once per piece).",
            &m.lines_read,
        ),
        (
            "bytes_read_total",
            "File bytes consumed by the reader.",
            &m.bytes_read,
        ),
        (
            "lines_skipped_empty_total",
            "Empty lines skipped.",
            &m.lines_skipped_empty,
        ),
        (
            "lines_invalid_utf8_total",
            "Lines shipped with invalid UTF-8 replaced.",
            &m.lines_invalid_utf8,
        ),
        (
            "lines_split_total",
            "Extra events made by cutting lines too long for one event.",
            &m.lines_split,
        ),
        (
            "files_opened_total",
            "Files opened for reading.",
            &m.files_opened,
        ),
        (
            "files_closed_total",
            "Files closed after being read to their end.",
            &m.files_closed,
        ),
        (
            "files_truncated_total",
            "Truncations detected.",
            &m.files_truncated,
        ),
        (
            "files_evicted_total",
            "Files closed to stay under tail.max_open_files.",
            &m.files_evicted,
        ),
        (
            "files_gone_while_closed_total",
            "Files renamed or deleted while closed and not found again.",
            &m.files_gone_while_closed,
        ),
        (
            "files_ignored_old_total",
            "Files not read because of ignore_older_secs.",
            &m.files_ignored_old,
        ),
        (
            "events_excluded_total",
            "Events dropped by exclude_at_match or include_at_match rules.",
            &m.events_excluded,
        ),
        (
            "lines_joined_total",
            "Lines appended to a multi-line event.",
            &m.lines_joined,
        ),
        (
            "files_deleted_total",
            "Rotated files deleted once fully accepted (delete_after_ship).",
            &m.files_deleted,
        ),
        (
            "rotated_bytes_given_up_total",
            "Unread bytes of rotated or deleted files given up at tail.rotate_wait_ms.",
            &m.rotated_bytes_given_up,
        ),
        (
            "batches_built_total",
            "Batches handed to the sender.",
            &m.batches_built,
        ),
        (
            "batches_sent_total",
            "Requests the intake accepted.",
            &m.batches_sent,
        ),
        (
            "batches_split_total",
            "Batches split in halves after a 400 or 413.",
            &m.batches_split,
        ),
        (
            "events_sent_total",
            "Events the intake accepted.",
            &m.events_sent,
        ),
        (
            "line_bytes_sent_total",
            "Raw line bytes in accepted events.",
            &m.line_bytes_sent,
        ),
        (
            "bytes_sent_uncompressed_total",
            "Accepted request bodies before compression.",
            &m.bytes_sent_uncompressed,
        ),
        (
            "bytes_sent_compressed_total",
            "Accepted request bodies as sent.",
            &m.bytes_sent_compressed,
        ),
        (
            "checkpoint_write_errors_total",
            "Checkpoint writes that failed.",
            &m.checkpoint_write_errors,
        ),
        (
            "shutdown_unshipped_bytes_total",
            "File bytes not accepted when a shutdown drain ended at its deadline.",
            &m.shutdown_unshipped_bytes,
        ),
    ] {
        family(name, "counter", help, &[("", get(counter))]);
    }
    family(
        "retries_total",
        "counter",
        "Failed attempts that will be retried, by reason.",
        &[
            ("{reason=\"network\"}", get(&m.retries_network)),
            ("{reason=\"throttled\"}", get(&m.retries_throttled)),
            ("{reason=\"server_error\"}", get(&m.retries_server_error)),
            ("{reason=\"key_rejected\"}", get(&m.retries_key_rejected)),
            (
                "{reason=\"unexpected_status\"}",
                get(&m.retries_unexpected_status),
            ),
        ],
    );
    family(
        "events_dropped_total",
        "counter",
        "Events dropped, by reason.",
        &[
            ("{reason=\"invalid\"}", get(&m.events_dropped_invalid)),
            ("{reason=\"too_large\"}", get(&m.events_dropped_too_large)),
            (
                "{reason=\"unencodable\"}",
                get(&m.events_dropped_unencodable),
            ),
        ],
    );
    for (name, help, gauge) in [
        ("files_open", "Files open now.", &m.files_open),
        (
            "api_key_rejected",
            "1 while the intake rejects the API key.",
            &m.api_key_rejected,
        ),
        (
            "api_key_missing",
            "1 while the API key file is missing or empty.",
            &m.api_key_missing,
        ),
        (
            "request_concurrency_limit",
            "Requests allowed in flight now.",
            &m.request_concurrency_limit,
        ),
    ] {
        family(name, "gauge", help, &[("", get(gauge))]);
    }
    let rules = m.rule_counters();
    let _ = writeln!(
        out,
        "# HELP sidelog_processing_rule_matches_total Matches of each processing rule."
    );
    let _ = writeln!(out, "# TYPE sidelog_processing_rule_matches_total counter");
    for r in &rules {
        let _ = writeln!(
            out,
            "sidelog_processing_rule_matches_total{{input=\"{}\",rule=\"{}\",type=\"{}\"}} {}",
            r.input,
            escape_label(&r.name),
            r.kind,
            r.matches.load(Ordering::Relaxed)
        );
    }
    let (files, _) = state.view();
    let _ = writeln!(out, "# HELP sidelog_files_watched Files being tailed.");
    let _ = writeln!(out, "# TYPE sidelog_files_watched gauge");
    let _ = writeln!(out, "sidelog_files_watched {}", files.len());
    let _ = writeln!(
        out,
        "# HELP sidelog_seconds_since_last_accepted Seconds since the intake last accepted a batch (absent before the first)."
    );
    let _ = writeln!(out, "# TYPE sidelog_seconds_since_last_accepted gauge");
    if let Some(secs) = seconds_since_last_accepted(m) {
        let _ = writeln!(out, "sidelog_seconds_since_last_accepted {secs:.3}");
    }
    let _ = writeln!(
        out,
        "# HELP sidelog_file_lag_bytes Bytes of a file not yet accepted by the intake."
    );
    let _ = writeln!(out, "# TYPE sidelog_file_lag_bytes gauge");
    for f in &files {
        let _ = writeln!(
            out,
            "sidelog_file_lag_bytes{{path=\"{}\"}} {}",
            escape_label(&f.path),
            f.lag()
        );
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_help_type_and_labels() {
        let state = AdminState::new(Arc::new(Metrics::default()));
        let tracker = Arc::new(Tracker::new());
        state.attach(tracker.clone(), "http://x".into());
        Metrics::add(&state.metrics.retries_network, 3);
        tracker.register(
            1,
            crate::tail::identity::DevIno { dev: 1, ino: 2 },
            crate::tail::identity::Fingerprint { len: 0, hash: 0 },
            std::path::Path::new("/var/log/a \"b\".log"),
            10,
        );
        tracker.observe(1, 40, 100, 0);
        let text = prometheus(&state);
        assert!(
            text.contains("sidelog_retries_total{reason=\"network\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE sidelog_events_sent_total counter"),
            "{text}"
        );
        assert!(
            text.contains("sidelog_file_lag_bytes{path=\"/var/log/a \\\"b\\\".log\"} 90"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap_or("");
            assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
        }
        let s = status(&state);
        assert!(s.ready);
        assert_eq!(s.files[0].lag(), 90);
        Metrics::add(&state.metrics.api_key_rejected, 1);
        assert!(!status(&state).ready);
    }
}
