//! The built-in Datadog-compatible logs intake: for the demo, for local use and for tests.
//!
//! It accepts `POST /api/v2/logs` (and the legacy `/v1/input`) with gzip, deflate, zstd or
//! identity bodies and answers like the real intake: 202 `{}` when accepted, 403 for a wrong
//! key (when a key file is given; it is re-read per request so key rotation can be tested),
//! 413 above 5,000,000 bytes uncompressed, 400 above 1,000 events or for malformed JSON. Tests
//! start it on `127.0.0.1:0`, read back what arrived, and can make it answer a fixed status.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::compress::{self, DecodeError};
use crate::config::{INTAKE_MAX_BODY_BYTES, INTAKE_MAX_EVENTS};
use crate::lock;
use crate::secret;

/// Compressed bodies above this are refused before decompression.
const MAX_WIRE_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, Default)]
pub struct IntakeOptions {
    pub listen: Option<SocketAddr>,
    /// When set, requests must carry the key in this file (re-read per request).
    pub api_key_file: Option<PathBuf>,
    /// Append each accepted event to this file as one JSON line.
    pub out: Option<PathBuf>,
    /// Keep every accepted event in memory (tests).
    pub keep_events: bool,
    /// Benchmark sink: check benchmark lines (see [`crate::sample`]) for loss, duplicates and
    /// latency, finding events by their start instead of parsing the JSON (so the sink takes
    /// little CPU from the shipper it measures). Events are neither kept nor written to `out`.
    pub verify: bool,
    /// Faults injected from the start (see [`Intake::set_faults`]).
    pub faults: Faults,
    /// Serve HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with this PEM certificate chain and key.
    pub tls: Option<TlsFiles>,
}

/// PEM files of a certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One request as the intake answered it, for tests that look at timing and protocol.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: std::time::Instant,
    pub status: u16,
    pub http2: bool,
    /// The `Host` header, or the authority of an absolute-form request (a proxy's).
    pub host: String,
}

/// Records kept of the most recent requests.
const REQUEST_LOG: usize = 4096;

fn tls_acceptor(files: &TlsFiles) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("{what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad("certificate", &files.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad("certificate", &files.cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad("key", &files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate", &files.cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Faults the intake injects, to test how a shipper copes with a bad day.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer every request with this status.
    pub status: Option<u16>,
    /// `Retry-After` (seconds) sent with 429 and 503 answers.
    pub retry_after_secs: Option<u64>,
    /// Fraction (0 to 1) of requests answered 500.
    pub error_rate: f64,
    /// Fraction (0 to 1) of requests whose connection is dropped without an answer.
    pub reset_rate: f64,
    /// Delay before every answer.
    pub latency: Duration,
    /// A batch holding an event that contains this text is answered 400.
    pub poison: Option<String>,
    /// Bodies above this many uncompressed bytes are answered 413 (the real limit is 5 MB).
    pub max_body_bytes: Option<usize>,
}

/// Counters and captured events; shared with the handlers.
#[derive(Default)]
pub struct IntakeState {
    pub requests: AtomicU64,
    pub accepted_requests: AtomicU64,
    pub events: AtomicU64,
    /// Uncompressed body bytes of accepted requests.
    pub bytes: AtomicU64,
    pub rejected: AtomicU64,
    kept: Mutex<Vec<serde_json::Value>>,
    encodings: Mutex<BTreeMap<String, u64>>,
    user_agents: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<Faults>,
    recent: Mutex<std::collections::VecDeque<RequestRecord>>,
    /// Requests dropped without an answer, answered with an injected status, or refused for
    /// a poisoned event or an oversized body.
    pub faults_injected: AtomicU64,
    /// Key headers seen, by whether they matched (the tests check rotation with it).
    pub key_rejections: AtomicU64,
    keep_events: bool,
    api_key_file: Option<PathBuf>,
    out: Option<Mutex<BufWriter<File>>>,
    verify: Option<Mutex<Verifier>>,
}

/// Exactly-once and latency accounting for benchmark lines, which start with
/// `FF:SSSSSSSSSS:UUUUUUUUUUUUUUUU ` (file, sequence number, write time in Unix microseconds).
#[derive(Default)]
pub struct Verifier {
    seen: Vec<Vec<u64>>,
    pub distinct: u64,
    pub duplicates: u64,
    pub unrecognised: u64,
    /// Write-to-intake latency histogram in milliseconds (last bucket: 60 s and more).
    latency_ms: Vec<u64>,
}

/// Length of the benchmark line prefix.
const VERIFY_PREFIX_LEN: usize = crate::sample::PREFIX_LEN;

/// How every event sidelog encodes begins. A JSON string cannot hold an unescaped `"`, so
/// this sequence marks event starts exactly, without parsing the JSON.
const EVENT_START: &[u8] = br#"{"message":""#;

impl Verifier {
    /// Records every event of a body sidelog encoded; returns how many events it holds.
    fn record_body(&mut self, body: &[u8], now_us: u64) -> usize {
        let mut events = 0;
        for at in memchr::memmem::find_iter(body, EVENT_START) {
            events += 1;
            self.record(&body[at + EVENT_START.len()..], now_us);
        }
        events
    }

    fn record(&mut self, msg: &[u8], now_us: u64) {
        let Some((file, seq, written_us)) = parse_prefix(msg) else {
            self.unrecognised += 1;
            return;
        };
        if self.seen.len() <= file {
            self.seen.resize_with(file + 1, Vec::new);
        }
        let bits = &mut self.seen[file];
        let word = (seq / 64) as usize;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let mask = 1u64 << (seq % 64);
        if bits[word] & mask != 0 {
            self.duplicates += 1;
        } else {
            bits[word] |= mask;
            self.distinct += 1;
        }
        if written_us > 0 {
            if self.latency_ms.is_empty() {
                self.latency_ms = vec![0; 60_001];
            }
            let ms = (now_us.saturating_sub(written_us) / 1000).min(60_000) as usize;
            self.latency_ms[ms] += 1;
        }
    }

    /// The latency below which `q` (0..1) of the lines arrived, in milliseconds.
    pub fn latency_quantile(&self, q: f64) -> Option<u64> {
        let total: u64 = self.latency_ms.iter().sum();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (ms, n) in self.latency_ms.iter().enumerate() {
            acc += n;
            if acc >= target {
                return Some(ms as u64);
            }
        }
        None
    }
}

fn parse_prefix(msg: &[u8]) -> Option<(usize, u64, u64)> {
    if msg.len() < VERIFY_PREFIX_LEN || msg[2] != b':' || msg[13] != b':' {
        return None;
    }
    let num = |b: &[u8]| -> Option<u64> {
        b.iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u64)
        })
    };
    Some((
        num(&msg[..2])? as usize,
        num(&msg[3..13])?,
        num(&msg[14..30])?,
    ))
}

impl IntakeState {
    /// Counters as served on `GET /stats`.
    pub fn stats(&self) -> serde_json::Value {
        let mut stats = serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "accepted_requests": self.accepted_requests.load(Ordering::Relaxed),
            "rejected_requests": self.rejected.load(Ordering::Relaxed),
            "events": self.events.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
        });
        if let Some(v) = &self.verify {
            let v = lock(v);
            stats["distinct"] = v.distinct.into();
            stats["duplicates"] = v.duplicates.into();
            stats["unrecognised"] = v.unrecognised.into();
            stats["latency_p50_ms"] = v.latency_quantile(0.5).into();
            stats["latency_p99_ms"] = v.latency_quantile(0.99).into();
            stats["latency_max_ms"] = v.latency_quantile(1.0).into();
        }
        stats
    }
}

/// A running intake.
pub struct Intake {
    pub addr: SocketAddr,
    pub state: Arc<IntakeState>,
    tls: bool,
    stop: CancellationToken,
}

impl Intake {
    /// Binds and starts serving on the current Tokio runtime.
    pub async fn start(opts: IntakeOptions) -> std::io::Result<Intake> {
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let out = match &opts.out {
            Some(path) => Some(Mutex::new(BufWriter::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            ))),
            None => None,
        };
        let tls = opts.tls.as_ref().map(tls_acceptor).transpose()?;
        let state = Arc::new(IntakeState {
            keep_events: opts.keep_events,
            api_key_file: opts.api_key_file.clone(),
            out,
            verify: opts.verify.then(|| Mutex::new(Verifier::default())),
            faults: Mutex::new(opts.faults.clone()),
            ..IntakeState::default()
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, tls, state.clone(), stop.clone()));
        Ok(Intake {
            addr,
            state,
            tls: opts.tls.is_some(),
            stop,
        })
    }

    /// Base URL for `datadog.endpoint`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The most recent requests, oldest first.
    pub fn recent_requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.recent).iter().cloned().collect()
    }

    /// Every accepted event so far (only with `keep_events`).
    pub fn events(&self) -> Vec<serde_json::Value> {
        lock(&self.state.kept).clone()
    }

    pub fn event_count(&self) -> u64 {
        self.state.events.load(Ordering::Relaxed)
    }

    /// Requests per `Content-Encoding` seen.
    pub fn encodings(&self) -> BTreeMap<String, u64> {
        lock(&self.state.encodings).clone()
    }

    pub fn user_agents(&self) -> BTreeMap<String, u64> {
        lock(&self.state.user_agents).clone()
    }

    /// Answers every request with `status` (fault injection); `None` returns to normal.
    pub fn force_status(&self, status: Option<u16>) {
        lock(&self.state.faults).status = status;
    }

    /// Replaces the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.state.faults) = faults;
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<IntakeState>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "intake accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let state = state.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move {
                    match handle(req, &state).await {
                        Some(resp) => Ok(resp),
                        // An error from the service makes hyper drop the connection unanswered.
                        None => Err(ConnectionDropped),
                    }
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        });
    }
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, detail: &str) -> Response<Full<Bytes>> {
    let body =
        serde_json::json!({"errors": [{"status": status.as_u16().to_string(), "detail": detail}]});
    reply(status, &body.to_string())
}

/// Returned to hyper to drop a connection without answering (fault injection).
#[derive(Debug)]
struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for ConnectionDropped {}

/// Answers a request; `None` drops the connection without an answer.
async fn handle(req: Request<Incoming>, state: &IntakeState) -> Option<Response<Full<Bytes>>> {
    // The control paths are not intake traffic: they are neither counted nor faulty.
    match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/stats") => {
            return Some(reply(StatusCode::OK, &state.stats().to_string()));
        }
        (&hyper::Method::PUT, "/faults") => return Some(set_faults(req, state).await),
        _ => {}
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    let http2 = req.version() == hyper::Version::HTTP_2;
    let host = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| {
            req.headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let resp = answer(req, state).await;
    let mut recent = lock(&state.recent);
    if recent.len() >= REQUEST_LOG {
        recent.pop_front();
    }
    recent.push_back(RequestRecord {
        at: std::time::Instant::now(),
        status: resp.as_ref().map_or(0, |r| r.status().as_u16()),
        http2,
        host,
    });
    resp
}

async fn answer(req: Request<Incoming>, state: &IntakeState) -> Option<Response<Full<Bytes>>> {
    let faults = lock(&state.faults).clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.reset_rate > 0.0 && fastrand::f64() < faults.reset_rate {
        state.faults_injected.fetch_add(1, Ordering::Relaxed);
        state.rejected.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let resp = process(req, state, &faults).await;
    if resp.status() != StatusCode::ACCEPTED {
        state.rejected.fetch_add(1, Ordering::Relaxed);
    }
    Some(resp)
}

fn injected(state: &IntakeState, status: StatusCode, faults: &Faults) -> Response<Full<Bytes>> {
    state.faults_injected.fetch_add(1, Ordering::Relaxed);
    let mut resp = error(status, "fault injected");
    if let Some(secs) = faults.retry_after_secs
        && (status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE)
    {
        resp.headers_mut()
            .insert(hyper::header::RETRY_AFTER, secs.into());
    }
    resp
}

async fn process(
    req: Request<Incoming>,
    state: &IntakeState,
    faults: &Faults,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if path != "/api/v2/logs" && path != "/v1/input" && !path.starts_with("/v1/input/") {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != hyper::Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    if let Some(forced) = faults.status {
        let status = StatusCode::from_u16(forced).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return injected(state, status, faults);
    }
    if faults.error_rate > 0.0 && fastrand::f64() < faults.error_rate {
        return injected(state, StatusCode::INTERNAL_SERVER_ERROR, faults);
    }
    if let Some(key_file) = &state.api_key_file {
        let presented = req
            .headers()
            .get("dd-api-key")
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        let ok = match secret::read_key_file(key_file) {
            Ok(key) => key.matches(&presented),
            Err(e) => {
                tracing::warn!(error = %e, "intake cannot read its key file; refusing requests");
                false
            }
        };
        if !ok {
            state.key_rejections.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::FORBIDDEN, "Forbidden");
        }
    }
    let encoding = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_string();
    if let Some(ua) = req
        .headers()
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        *lock(&state.user_agents).entry(ua.to_string()).or_default() += 1;
    }
    let body = match Limited::new(req.into_body(), MAX_WIRE_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let raw = match compress::decompress(&encoding, &body, INTAKE_MAX_BODY_BYTES) {
        Ok(raw) => raw,
        Err(DecodeError::TooLarge(_)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload larger than 5000000 bytes",
            );
        }
        Err(DecodeError::Unsupported(e)) => {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("unsupported encoding {e}"),
            );
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if let Some(max) = faults.max_body_bytes
        && raw.len() > max
    {
        return injected(state, StatusCode::PAYLOAD_TOO_LARGE, faults);
    }
    *lock(&state.encodings).entry(encoding).or_default() += 1;
    if let Some(verify) = &state.verify {
        // Benchmark sink: a full JSON parse here would take CPU from the shipper under test on
        // the same cores. The tests run the intake without `verify` and parse every event.
        let now_us = crate::clock::now_us();
        let events = lock(verify).record_body(&raw, now_us);
        return accepted(state, events, raw.len());
    }
    let events: Vec<&RawValue> = match serde_json::from_slice::<Vec<&RawValue>>(&raw) {
        Ok(v) => v,
        Err(array_err) => match serde_json::from_slice::<&RawValue>(&raw) {
            Ok(single) if single.get().starts_with('{') => vec![single],
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("malformed JSON: {array_err}"),
                );
            }
        },
    };
    if events.len() > INTAKE_MAX_EVENTS {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "{} entries; at most {INTAKE_MAX_EVENTS} allowed",
                events.len()
            ),
        );
    }
    if let Some(bad) = events.iter().position(|e| !e.get().starts_with('{')) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("entry {bad} is not an object"),
        );
    }
    if let Some(poison) = &faults.poison
        && events.iter().any(|e| e.get().contains(poison.as_str()))
    {
        return injected(state, StatusCode::BAD_REQUEST, faults);
    }
    if state.keep_events {
        let mut kept = lock(&state.kept);
        for e in &events {
            match serde_json::from_str(e.get()) {
                Ok(v) => kept.push(v),
                Err(err) => return error(StatusCode::BAD_REQUEST, &err.to_string()),
            }
        }
    }
    if let Some(out) = &state.out {
        let mut out = lock(out);
        for e in &events {
            let line = e.get().as_bytes();
            let written = out.write_all(line).and_then(|()| out.write_all(b"\n"));
            if let Err(err) = written {
                tracing::error!(error = %err, "intake cannot write --out file");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot store events");
            }
        }
        if let Err(err) = out.flush() {
            tracing::error!(error = %err, "intake cannot write --out file");
        }
    }
    accepted(state, events.len(), raw.len())
}

/// `PUT /faults` with `{"status": 503, "retry_after_secs": 2}` (or `{}` to heal): how a
/// benchmark turns an outage on and off in an intake running as another process.
async fn set_faults(req: Request<Incoming>, state: &IntakeState) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FaultBody {
        status: Option<u16>,
        retry_after_secs: Option<u64>,
    }
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::BAD_REQUEST, "unreadable body"),
    };
    match serde_json::from_slice::<FaultBody>(&body) {
        Ok(f) => {
            *lock(&state.faults) = Faults {
                status: f.status,
                retry_after_secs: f.retry_after_secs,
                ..Faults::default()
            };
            reply(StatusCode::OK, "{}")
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn accepted(state: &IntakeState, events: usize, bytes: usize) -> Response<Full<Bytes>> {
    state.events.fetch_add(events as u64, Ordering::Relaxed);
    state.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    state.accepted_requests.fetch_add(1, Ordering::Relaxed);
    reply(StatusCode::ACCEPTED, "{}")
}

/// `sidelog intake`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct IntakeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Require this API key (the file is re-read for every request).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Append every accepted event to this file, one JSON object per line.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Benchmark sink: check benchmark lines for loss, duplicates and latency (see
    /// `GET /stats`) without parsing the JSON; events are not written to --out.
    #[arg(long)]
    verify: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    faults: FaultArgs,
}

/// Faults the built-in intake injects, to see how a shipper copes.
#[derive(Debug, Clone, clap::Args)]
struct FaultArgs {
    /// Answer every request with this status (e.g. 503).
    #[arg(long, value_name = "STATUS")]
    fail_status: Option<u16>,
    /// Send `Retry-After: SECONDS` with 429 and 503 answers.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<u64>,
    /// Answer this fraction of requests (0 to 1) with 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Drop this fraction of connections (0 to 1) without an answer.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Wait this long before every answer.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    latency_ms: u64,
    /// Answer 400 to a batch holding an event that contains this text.
    #[arg(long, value_name = "TEXT")]
    poison: Option<String>,
    /// Answer 413 to bodies above this many uncompressed bytes.
    #[arg(long, value_name = "BYTES")]
    max_body_bytes: Option<usize>,
}

impl IntakeArgs {
    pub fn into_options(self) -> IntakeOptions {
        let f = self.faults;
        IntakeOptions {
            listen: Some(self.listen),
            api_key_file: self.api_key_file,
            out: self.out,
            keep_events: false,
            verify: self.verify,
            faults: Faults {
                status: f.fail_status,
                retry_after_secs: f.retry_after,
                error_rate: f.error_rate.clamp(0.0, 1.0),
                reset_rate: f.reset_rate.clamp(0.0, 1.0),
                latency: Duration::from_millis(f.latency_ms),
                poison: f.poison,
                max_body_bytes: f.max_body_bytes,
            },
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
        }
    }
}

/// Runs the intake as a command: prints a running count each second until Ctrl-C / SIGTERM.
pub async fn run_cli(opts: IntakeOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let intake = Intake::start(opts.clone()).await?;
    // On stdout, so scripts (and `sidelog bench`) can read the address of port 0.
    println!("listening on http://{}", intake.addr);
    eprintln!(
        "sidelog intake listening on http://{} (POST /api/v2/logs, GET /stats, PUT /faults){}",
        intake.addr,
        if opts.api_key_file.is_some() {
            ", checking DD-API-KEY"
        } else {
            ""
        }
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let s = &intake.state;
        let now = (
            s.events.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
        );
        if now != last {
            eprintln!(
                "intake: {} events, {:.1} MB received (+{} events/s), {} requests refused",
                now.0,
                now.1 as f64 / 1e6,
                now.0 - last.0,
                s.rejected.load(Ordering::Relaxed)
            );
            last = now;
        }
    }
    intake.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_splits_events_without_parsing_and_counts_duplicates() {
        // The second message quotes an event start; escaped, it cannot be mistaken for one.
        let body = br#"[{"message":"00:0000000001:0000000000000000 a {\"message\":\"x","status":"info"},{"message":"00:0000000002:0000000000000000 b","status":"info"},{"message":"00:0000000001:0000000000000000 a","status":"info"},{"message":"not a bench line","status":"info"}]"#;
        let mut v = Verifier::default();
        assert_eq!(v.record_body(body, 0), 4);
        assert_eq!(v.distinct, 2);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.unrecognised, 1);
    }
}
