//! The admin endpoint (`metrics_listen`): Prometheus metrics, liveness, readiness, and the
//! per-file status `sidelog status` prints.
//!
//! It only reads what the stages already count ([`Metrics`]), what the checkpoint tracker
//! knows about each file, the run's [`DeliveryState`] and what [`Liveness`] says; it never
//! takes a lock the hot path holds for long.
//!
//! The probes answer for sidelog itself, never for what is outside it. `/readyz` is 200 once
//! sidelog runs its configuration: a sidecar's readiness is its Pod's, and a Pod that is not
//! ready leaves its Services, so an intake that is down or a key that is refused must not
//! take the app out of service. `/healthz` fails only when the reader or the sender stopped
//! turning ([`Liveness`]), which a restart of the container can cure. Why nothing ships is in
//! `/status`, the metrics and the log.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{FileProgress, Tracker};
use crate::clock::monotonic_ms;
use crate::delivery::DeliveryState;
use crate::health::{Liveness, Stuck};
use crate::metrics::{
    BUILD_INFO, CPU_SECONDS, DYNAMIC_FAMILIES, ENDPOINT_DROPPED, ENDPOINT_SENT, EndpointCounters,
    FILE_LAG, FILES_WATCHED, Family, Metrics, RESIDENT_MEMORY, RULE_MATCHES,
    SECONDS_SINCE_LAST_ACCEPTED,
};

/// What the admin endpoint reads from. It outlives a configuration reload: each run of the
/// shipper attaches its own view ([`RunView`]), which replaces the last run's whole.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    run: Arc<RwLock<RunView>>,
}

/// What one run of the shipper shows: its files, its intake, its liveness and its delivery
/// state. Before the first run, nothing: no files, and every delivery gauge at 0.
#[derive(Default)]
pub struct RunView {
    pub tracker: Option<Arc<Tracker>>,
    /// The intake's URL, without credentials.
    pub url: String,
    pub liveness: Option<Arc<Liveness>>,
    pub delivery: Arc<DeliveryState>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>) -> AdminState {
        AdminState {
            metrics,
            run: Arc::new(RwLock::new(RunView::default())),
        }
    }

    /// Shows this run from now on, and nothing of the one before.
    pub fn attach(&self, view: RunView) {
        let mut run = match self.run.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *run = view;
    }

    /// The delivery state of the run shown now.
    fn delivery(&self) -> Arc<DeliveryState> {
        let run = match self.run.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        run.delivery.clone()
    }

    /// The stage of this run that stopped turning, if one did.
    fn stuck(&self) -> Option<Stuck> {
        let run = match self.run.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        run.liveness.as_ref()?.stuck()
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
    /// Always true once sidelog answers: it runs its configuration (see the module's header).
    pub ready: bool,
    /// Set when the reader or the sender stopped turning (what fails `/healthz`).
    #[serde(default)]
    pub stuck: Option<String>,
    /// Why lines are not being shipped now, when they are not (the key, the intake).
    #[serde(default)]
    pub not_shipping_because: Option<String>,
    /// Set while checkpoints cannot be written (a full `data_dir`).
    #[serde(default)]
    pub checkpoints_unwritten: bool,
    pub seconds_since_last_accepted: Option<f64>,
    pub events_sent: u64,
    pub events_dropped: u64,
    pub retries: u64,
    pub request_concurrency: u64,
    pub files: Vec<FileProgress>,
}

/// Connections held at once: a new one beyond closes the one idle longest (Prometheus and the
/// kubelet need one or two each; idle connections must not take the descriptors the reader
/// needs, nor keep them out).
const MAX_CONNECTIONS: usize = 64;
/// A connection is closed once it has sent no request for this long (since it opened, or
/// since its last answer), and a request's headers must arrive within it.
const IDLE: Duration = Duration::from_secs(10);

/// Binds `addr` and serves until `stop`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        let conns = Arc::new(Connections::default());
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.cancelled() => return,
            };
            let conn = conns.admit();
            tokio::spawn(serve_connection(stream, state.clone(), conn, conns.clone()));
        }
    });
    Ok(bound)
}

/// One connection until it ends, goes idle for [`IDLE`], or is closed for a newer one.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    state: AdminState,
    conn: Arc<Connection>,
    conns: Arc<Connections>,
) {
    let c = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        let (state, c) = (state.clone(), c.clone());
        async move {
            c.busy.store(true, Ordering::Relaxed);
            let resp = answer(req, state).await;
            c.last.store(monotonic_ms(), Ordering::Relaxed);
            c.busy.store(false, Ordering::Relaxed);
            Ok::<_, Infallible>(resp)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(IDLE)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = served => {}
        _ = conn.close.cancelled() => {}
        _ = idle(&conn) => {}
    }
    conns.forget(conn.id);
}

/// Resolves once `conn` has been idle for [`IDLE`].
async fn idle(conn: &Connection) {
    loop {
        let since = monotonic_ms().saturating_sub(conn.last.load(Ordering::Relaxed));
        let left = (IDLE.as_millis() as u64).saturating_sub(since);
        if left == 0 && !conn.busy.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(left.max(100))).await;
    }
}

/// The open connections of the admin endpoint.
#[derive(Default)]
struct Connections {
    open: std::sync::Mutex<Vec<Arc<Connection>>>,
    next_id: AtomicU64,
}

/// One open connection: whether it is answering a request, and when it last did.
struct Connection {
    id: u64,
    busy: AtomicBool,
    /// When it opened or last answered ([`monotonic_ms`]).
    last: AtomicU64,
    close: CancellationToken,
}

impl Connections {
    /// A new connection; beyond [`MAX_CONNECTIONS`], the one idle longest is closed (one
    /// that never sent a request before one that did: a scraper's keep-alive is kept).
    fn admit(&self) -> Arc<Connection> {
        let conn = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicBool::new(false),
            last: AtomicU64::new(monotonic_ms()),
            close: CancellationToken::new(),
        });
        let mut open = crate::lock(&self.open);
        if open.len() >= MAX_CONNECTIONS
            && let Some(i) = open
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.busy.load(Ordering::Relaxed))
                .min_by_key(|(_, c)| c.last.load(Ordering::Relaxed))
                .map(|(i, _)| i)
        {
            open.swap_remove(i).close.cancel();
        }
        open.push(conn.clone());
        conn
    }

    fn forget(&self, id: u64) {
        crate::lock(&self.open).retain(|c| c.id != id);
    }
}

/// The answer to one request. `/metrics` and `/status` look at every file (a stat each): on a
/// blocking thread, so that thousands of files do not hold up the runtime that sends.
async fn answer(req: Request<hyper::body::Incoming>, state: AdminState) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/metrics" | "/status" => tokio::task::spawn_blocking(move || scrape(&path, &state))
            .await
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "scrape failed\n")),
        "/healthz" => match state.stuck() {
            None => text(StatusCode::OK, "ok\n"),
            Some(stuck) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("stuck: {stuck}\n"),
            ),
        },
        "/readyz" => text(StatusCode::OK, "ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: GET /metrics, /healthz, /readyz or /status\n",
        ),
    }
}

/// `/metrics` or `/status`.
fn scrape(path: &str, state: &AdminState) -> Response<Full<Bytes>> {
    let (body, content_type) = if path == "/metrics" {
        (prometheus(state), "text/plain; version=0.0.4")
    } else {
        let body = serde_json::to_string_pretty(&status(state)).unwrap_or_default();
        (body, "application/json")
    };
    let mut resp = text(StatusCode::OK, &body);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp
}

fn seconds_since_last_accepted(m: &Metrics) -> Option<f64> {
    let last = m.last_accepted_ms.get();
    (last > 0).then(|| crate::clock::monotonic_ms().saturating_sub(last) as f64 / 1000.0)
}

pub fn status(state: &AdminState) -> Status {
    let m = &state.metrics;
    let (files, url) = state.view();
    let delivery = state.delivery();
    Status {
        version: env!("CARGO_PKG_VERSION").into(),
        intake: url,
        ready: true,
        stuck: state.stuck().map(|s| s.to_string()),
        not_shipping_because: delivery.not_shipping_because().map(String::from),
        checkpoints_unwritten: delivery.checkpoints_unwritten(),
        seconds_since_last_accepted: seconds_since_last_accepted(m),
        events_sent: m.events_sent.get(),
        events_dropped: m.events_dropped_total(),
        retries: m.retries_total(),
        request_concurrency: m.request_concurrency_limit.get(),
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
        match (&s.stuck, &s.not_shipping_because) {
            (Some(stuck), _) => format!("STUCK ({stuck})"),
            (None, Some(why)) => format!("NOT SHIPPING ({why})"),
            (None, None) => "shipping".to_string(),
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
    if s.checkpoints_unwritten {
        let _ = writeln!(
            out,
            "CHECKPOINTS NOT WRITTEN (data_dir full): kept in memory; a restart now repeats lines"
        );
    }
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

/// The metrics in Prometheus' text format, from their declarations in [`crate::metrics`].
pub fn prometheus(state: &AdminState) -> String {
    let m = &state.metrics;
    let mut out = String::with_capacity(8192);
    BUILD_INFO.write_header(&mut out);
    BUILD_INFO.write_sample(
        &mut out,
        concat!("{version=\"", env!("CARGO_PKG_VERSION"), "\"}"),
        1,
    );
    let mut last_family = "";
    for (series, value) in m.series() {
        if series.family.name != last_family {
            series.family.write_header(&mut out);
            last_family = series.family.name;
        }
        let labels = series
            .label
            .map(|(name, value)| format!("{{{name}=\"{value}\"}}"))
            .unwrap_or_default();
        series.family.write_sample(&mut out, &labels, value);
    }
    for (family, value) in state.delivery().gauges() {
        family.write_header(&mut out);
        family.write_sample(&mut out, "", value);
    }
    RULE_MATCHES.write_header(&mut out);
    for r in &m.rule_counters() {
        let labels = format!(
            "{{input=\"{}\",rule=\"{}\",type=\"{}\"}}",
            r.input,
            escape_label(&r.name),
            r.kind
        );
        RULE_MATCHES.write_sample(&mut out, &labels, r.matches.get());
    }
    let (files, _) = state.view();
    FILES_WATCHED.write_header(&mut out);
    FILES_WATCHED.write_sample(&mut out, "", files.len());
    SECONDS_SINCE_LAST_ACCEPTED.write_header(&mut out);
    if let Some(secs) = seconds_since_last_accepted(m) {
        SECONDS_SINCE_LAST_ACCEPTED.write_sample(&mut out, "", format!("{secs:.3}"));
    }
    FILE_LAG.write_header(&mut out);
    // One line per file, thousands of them: one label buffer for all.
    let mut labels = String::new();
    for f in &files {
        labels.clear();
        labels.push_str("{path=\"");
        escape_label_into(&mut labels, &f.path);
        labels.push_str("\"}");
        FILE_LAG.write_sample(&mut out, &labels, f.lag());
    }
    let endpoints = m.endpoint_counters();
    for (family, count) in [
        (
            ENDPOINT_SENT,
            (|e| e.sent.get()) as fn(&EndpointCounters) -> u64,
        ),
        (ENDPOINT_DROPPED, |e| e.dropped.get()),
    ] {
        family.write_header(&mut out);
        for e in &endpoints {
            let labels = format!("{{endpoint=\"{}\"}}", escape_label(&e.endpoint));
            family.write_sample(&mut out, &labels, count(e));
        }
    }
    write_process_usage(&mut out);
    out
}

/// Every family `/metrics` serves, by name (for tests of dashboards and alerts).
pub fn exported_families() -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    for (series, _) in Metrics::default().series() {
        if !out.iter().any(|f| f.name == series.family.name) {
            out.push(series.family);
        }
    }
    out.extend_from_slice(crate::delivery::FAMILIES);
    out.extend_from_slice(DYNAMIC_FAMILIES);
    out
}

/// Memory and CPU of the process, read from `/proc` at scrape time (nothing is kept between
/// scrapes); absent where `/proc` is not there.
fn write_process_usage(out: &mut String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    RESIDENT_MEMORY.write_header(out);
    if let Some(kb) = rss_kb {
        RESIDENT_MEMORY.write_sample(out, "", kb * 1024);
    }
    CPU_SECONDS.write_header(out);
    if let Some(secs) = cpu_seconds(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
    {
        CPU_SECONDS.write_sample(out, "", format!("{secs:.2}"));
    }
}

/// User plus system time from `/proc/self/stat`, whose times are in USER_HZ (100 a second
/// on every architecture Linux exports them for).
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    escape_label_into(&mut out, v);
    out
}

/// A label value as Prometheus' text format writes it (backslash, quote and newline escaped).
fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exported_once() {
        let names: Vec<&str> = exported_families().iter().map(|f| f.name).collect();
        assert!(names.contains(&"retries_total") && names.contains(&"file_lag_bytes"));
        assert!(
            names.contains(&"intake_failing"),
            "the delivery state's gauges"
        );
        for name in &names {
            assert_eq!(names.iter().filter(|n| *n == name).count(), 1, "{name}");
        }
    }

    #[test]
    fn cpu_seconds_are_read_past_a_command_name_with_spaces() {
        let stat = "42 (sidelog (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(cpu_seconds(stat), Some(3.25));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn exposition_has_help_type_and_labels() {
        let state = AdminState::new(Arc::new(Metrics::default()));
        let tracker = Arc::new(Tracker::new());
        let liveness = Arc::new(Liveness::new(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(30),
            Arc::default(),
        ));
        let delivery = Arc::new(DeliveryState::default());
        state.attach(RunView {
            tracker: Some(tracker.clone()),
            url: "http://x".into(),
            liveness: Some(liveness),
            delivery: delivery.clone(),
        });
        state.metrics.retries_network.add(3);
        tracker.register(
            crate::position::StreamId(1),
            crate::position::DevIno { dev: 1, ino: 2 },
            crate::position::Fingerprint { len: 0, hash: 0 },
            std::path::Path::new("/var/log/a \"b\".log"),
            10,
        );
        tracker.observe(crate::position::StreamId(1), 40, 100, 0);
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
        assert_eq!(s.not_shipping_because, None);
        assert_eq!(s.files[0].lag(), 90);
        assert!(text.contains("sidelog_api_key_rejected 0"), "{text}");
        delivery.key_rejected_by(false);
        assert!(prometheus(&state).contains("sidelog_api_key_rejected 1"));
        let s = status(&state);
        assert!(s.ready, "the key is not sidelog's readiness");
        assert!(
            s.not_shipping_because
                .is_some_and(|why| why.contains("rejects the API key"))
        );
        // The next run's view replaces this one's whole: nothing of its state is left.
        state.attach(RunView::default());
        assert!(prometheus(&state).contains("sidelog_api_key_rejected 0"));
        assert_eq!(status(&state).not_shipping_because, None);
    }
}
