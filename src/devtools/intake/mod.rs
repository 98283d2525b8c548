//! The built-in Datadog-compatible logs intake: for the demo, for local use and for tests.
//!
//! It accepts `POST /api/v2/logs` (and the legacy `/v1/input`) with gzip, deflate, zstd or
//! identity bodies and answers like the real intake: 202 `{}` when accepted, 403 for a wrong
//! key (when a key file is given; it is re-read per request so key rotation can be tested),
//! 413 above 5,000,000 bytes uncompressed, 400 above 1,000 events or for malformed JSON. Tests
//! start it on `127.0.0.1:0`, read back what arrived, and can make it answer a fixed status.

mod answer;
mod cli;
mod verify;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::BufWriter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::lock;
use answer::{ConnectionDropped, handle};
pub use cli::{IntakeArgs, run_cli};
use verify::Verifier;

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
    /// Benchmark sink: check benchmark lines (see [`sidelog_sample`]) for loss, duplicates and
    /// latency, finding events by their start instead of parsing the JSON (so the sink takes
    /// little CPU from the shipper it measures). Events are neither kept nor written to `out`.
    pub verify: bool,
    /// With `verify`: answer every body at once and check it later, on a thread that only
    /// runs when a core is free (see `GET /stats`'s `pending_bodies` and `GET /arrivals`).
    pub verify_later: bool,
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
    /// Fraction (0 to 1) of requests read whole and their events kept, whose connection is
    /// then dropped without an answer: the shipper cannot know they arrived.
    pub lose_answer_rate: f64,
    /// Fraction (0 to 1) of requests never answered: the connection stays open and silent
    /// until the client gives up.
    pub hang_rate: f64,
    /// Delay before every answer.
    pub latency: Duration,
    /// A batch holding an event that contains this text is answered 400.
    pub poison: Option<String>,
    /// Bodies above this many uncompressed bytes are answered 413 (the real limit is 5 MB).
    pub max_body_bytes: Option<usize>,
    /// zstd bodies are answered 415, as by a receiver that cannot decode zstd.
    pub refuse_zstd: bool,
    /// Every request is answered with this redirect (a proxy or load balancer that redirects).
    pub redirect: Option<Redirect>,
    /// Error answers carry a body of this many bytes (a broken gateway's error page).
    pub error_body_bytes: usize,
}

/// A redirect the intake answers with.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    pub location: String,
}

/// Counters and captured events; shared with the handlers.
#[derive(Default)]
pub struct IntakeState {
    pub requests: AtomicU64,
    pub accepted_requests: AtomicU64,
    pub events: AtomicU64,
    /// Uncompressed body bytes of accepted requests.
    pub bytes: AtomicU64,
    /// Body bytes as they came over the wire (compressed), of every request read.
    pub wire_bytes: AtomicU64,
    pub rejected: AtomicU64,
    kept: Mutex<Vec<serde_json::Value>>,
    encodings: Mutex<BTreeMap<String, u64>>,
    user_agents: Mutex<BTreeMap<String, u64>>,
    faults: Mutex<Faults>,
    recent: Mutex<std::collections::VecDeque<RequestRecord>>,
    /// Requests delayed, dropped or left without an answer, answered with an injected
    /// status, or refused for a poisoned event or an oversized body.
    pub faults_injected: AtomicU64,
    /// Requests whose events were kept but whose answer was withheld (`lose_answer_rate`).
    pub lost_answers: AtomicU64,
    /// Events in those requests.
    pub lost_answer_events: AtomicU64,
    /// Key headers seen, by whether they matched (the tests check rotation with it).
    pub key_rejections: AtomicU64,
    keep_events: bool,
    api_key_file: Option<PathBuf>,
    out: Option<Mutex<BufWriter<File>>>,
    verify: Option<Mutex<Verifier>>,
    /// Bodies for the deferred verifier (`verify_later`).
    deferred: Option<std::sync::mpsc::Sender<verify::Received>>,
    /// Bodies accepted and not yet checked by the deferred verifier.
    pending_bodies: AtomicU64,
}

impl IntakeState {
    /// The verifier's arrival curve, as served on `GET /arrivals`: `[[received_us,
    /// distinct], ...]`.
    pub fn arrivals(&self) -> serde_json::Value {
        let arrivals = self.verify.as_ref().map(|v| lock(v).arrivals.clone());
        serde_json::json!({ "arrivals": arrivals.unwrap_or_default() })
    }

    /// Counters as served on `GET /stats`.
    pub fn stats(&self) -> serde_json::Value {
        let mut stats = serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "accepted_requests": self.accepted_requests.load(Ordering::Relaxed),
            "rejected_requests": self.rejected.load(Ordering::Relaxed),
            "events": self.events.load(Ordering::Relaxed),
            "bytes": self.bytes.load(Ordering::Relaxed),
            "wire_bytes": self.wire_bytes.load(Ordering::Relaxed),
        });
        if let Some(v) = &self.verify {
            let v = lock(v);
            stats["distinct"] = v.distinct.into();
            stats["duplicates"] = v.duplicates.into();
            stats["unrecognised"] = v.unrecognised.into();
            stats["latency_p50_ms"] = v.latency_quantile(0.5).into();
            stats["latency_p99_ms"] = v.latency_quantile(0.99).into();
            stats["latency_max_ms"] = v.latency_quantile(1.0).into();
            stats["last_new_us"] = v.last_new_us().into();
            let (gaps, gap_count) = v.gaps(20);
            stats["gaps"] = gap_count.into();
            stats["first_gaps"] = gaps.into();
            stats["pending_bodies"] = self.pending_bodies.load(Ordering::Relaxed).into();
        }
        stats
    }
}

/// A running intake.
pub struct Intake {
    pub addr: SocketAddr,
    pub state: Arc<IntakeState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    serving: Mutex<Serving>,
}

/// Whether the intake listens, and what keeps its port while it does not.
enum Serving {
    /// Accepting connections until the token is cancelled.
    Up {
        stop: CancellationToken,
        accepting: tokio::task::JoinHandle<()>,
    },
    /// Down: the port stays bound (so that nothing else takes it) but nothing listens on it,
    /// so connections are refused, as by a host whose intake is gone.
    Down(TcpSocket),
    /// Stopped for good (or a failed [`Intake::come_up`]).
    Stopped,
}

/// A socket bound to `addr` that can share it with the intake's listener (`SO_REUSEPORT`,
/// same user): the reservation is made before the listener closes, so the port is never
/// free for another process to take.
fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

impl Intake {
    /// Binds and starts serving on the current Tokio runtime.
    pub async fn start(opts: IntakeOptions) -> std::io::Result<Intake> {
        let listen = opts
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = bind_shared(listen)?.listen(1024)?;
        let addr = listener.local_addr()?;
        let out = match &opts.out {
            Some(path) => Some(Mutex::new(BufWriter::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            ))),
            None => None,
        };
        let tls = opts.tls.as_ref().map(tls_acceptor).transpose()?;
        let verify = opts.verify || opts.verify_later;
        let (deferred, bodies) = if opts.verify_later {
            let (tx, rx) = std::sync::mpsc::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let state = Arc::new(IntakeState {
            keep_events: opts.keep_events,
            api_key_file: opts.api_key_file.clone(),
            out,
            verify: verify.then(|| Mutex::new(Verifier::default())),
            deferred,
            faults: Mutex::new(opts.faults.clone()),
            ..IntakeState::default()
        });
        if let Some(bodies) = bodies {
            verify::spawn_deferred(Arc::downgrade(&state), bodies)?;
        }
        let serving = Serving::up(listener, tls.clone(), state.clone());
        Ok(Intake {
            addr,
            state,
            tls,
            serving: Mutex::new(serving),
        })
    }

    /// An outage: closes every connection and stops listening, keeping the port bound so
    /// that connections are refused and [`Intake::come_up`] gets the same port back.
    pub async fn go_down(&self) -> std::io::Result<()> {
        let reserved = bind_shared(self.addr)?;
        let previous = std::mem::replace(&mut *lock(&self.serving), Serving::Down(reserved));
        if let Serving::Up { stop, accepting } = previous {
            stop.cancel();
            // The listener is closed when the accept loop has returned.
            let _ = accepting.await;
        }
        Ok(())
    }

    /// Listens again on the same port after [`Intake::go_down`].
    pub fn come_up(&self) -> std::io::Result<()> {
        let mut serving = lock(&self.serving);
        *serving = match std::mem::replace(&mut *serving, Serving::Stopped) {
            Serving::Down(reserved) => {
                Serving::up(reserved.listen(1024)?, self.tls.clone(), self.state.clone())
            }
            other => other,
        };
        Ok(())
    }

    /// Base URL for `datadog.endpoint`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
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

    /// Stops accepting connections and closes the open ones, for good.
    pub fn stop(&self) {
        if let Serving::Up { stop, .. } = &*lock(&self.serving) {
            stop.cancel();
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Serving {
    fn up(
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        state: Arc<IntakeState>,
    ) -> Serving {
        let stop = CancellationToken::new();
        let accepting = tokio::spawn(accept_loop(listener, tls, state, stop.clone()));
        Serving::Up { stop, accepting }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_splits_events_without_parsing_and_counts_duplicates() {
        // The second message quotes an event start; escaped, it cannot be mistaken for one.
        let body = br#"[{"message":"0000:0000000001:0000000000000000 a {\"message\":\"x","status":"info"},{"message":"0000:0000000002:0000000000000000 b","status":"info"},{"message":"0000:0000000001:0000000000000000 a","status":"info"},{"message":"not a bench line","status":"info"}]"#;
        let mut v = Verifier::default();
        assert_eq!(v.record_body(body, 0), 4);
        assert_eq!(v.distinct, 2);
        assert_eq!(v.duplicates, 1);
        assert_eq!(v.unrecognised, 1);
    }

    /// A body of sample lines `seqs` of file 0, as the shipper encodes and compresses them.
    fn sample_body(seqs: std::ops::Range<u64>) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(1);
        let events: Vec<String> = seqs
            .map(|seq| {
                let mut line = Vec::new();
                sidelog_sample::line(&mut line, &mut rng, 0, seq, 120, 0);
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                serde_json::json!({ "message": text, "status": "info" }).to_string()
            })
            .collect();
        let json = format!("[{}]", events.join(","));
        let mut out = Vec::new();
        let codec = sidelog_shipper::compress::CodecKind::Gzip.at(None);
        sidelog_shipper::compress::compress(codec, json.as_bytes(), &mut out).expect("gzip");
        out
    }

    #[tokio::test]
    async fn deferred_verifier_checks_every_body_after_answering() {
        let intake = Intake::start(IntakeOptions {
            verify_later: true,
            ..IntakeOptions::default()
        })
        .await
        .expect("intake starts");
        let client = reqwest::Client::new();
        let url = format!("{}/api/v2/logs", intake.endpoint());
        // The second body repeats line 9: one duplicate, and no new line from it.
        for body in [sample_body(0..10), sample_body(9..10), sample_body(10..15)] {
            let resp = client
                .post(&url)
                .header("content-encoding", "gzip")
                .body(body)
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status().as_u16(), 202);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while intake.state.pending_bodies.load(Ordering::Relaxed) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "bodies still unchecked"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = intake.state.stats();
        assert_eq!(stats["distinct"], 15);
        assert_eq!(stats["duplicates"], 1);
        assert_eq!(stats["unrecognised"], 0);
        assert_eq!(intake.event_count(), 16);
        let arrivals = intake.state.arrivals();
        let points = arrivals["arrivals"].as_array().expect("a curve");
        let counts: Vec<u64> = points.iter().filter_map(|p| p[1].as_u64()).collect();
        assert_eq!(
            counts,
            [10, 15],
            "one point per body that brought new lines"
        );
        assert_eq!(stats["last_new_us"], points[1][0]);
    }
}
