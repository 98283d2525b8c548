//! How the intake answers a request: the control paths (`GET /stats`, `PUT /faults`), the
//! faults injected, the key check, the body's limits, and what is kept of accepted events.

use std::io::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::value::RawValue;

use super::{Faults, IntakeState, MAX_WIRE_BYTES, REQUEST_LOG, RequestRecord, verify};
use crate::lock;
use sidelog_shipper::compress::{self, DecodeError};
use sidelog_shipper::config::{INTAKE_MAX_BODY_BYTES, INTAKE_MAX_EVENTS};
use sidelog_shipper::secret;

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
pub(super) struct ConnectionDropped;

impl std::fmt::Display for ConnectionDropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for ConnectionDropped {}

/// Answers a request; `None` drops the connection without an answer.
pub(super) async fn handle(
    req: Request<Incoming>,
    state: &IntakeState,
) -> Option<Response<Full<Bytes>>> {
    // The control paths are not intake traffic: they are neither counted nor faulty.
    match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/stats") => {
            return Some(reply(StatusCode::OK, &state.stats().to_string()));
        }
        (&hyper::Method::GET, "/arrivals") => {
            return Some(reply(StatusCode::OK, &state.arrivals().to_string()));
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
        state.faults_injected.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(faults.latency).await;
    }
    if happens(faults.hang_rate) {
        state.faults_injected.fetch_add(1, Ordering::Relaxed);
        state.rejected.fetch_add(1, Ordering::Relaxed);
        // Holds the connection until the client gives up or the intake stops.
        std::future::pending::<()>().await;
    }
    if happens(faults.reset_rate) {
        state.faults_injected.fetch_add(1, Ordering::Relaxed);
        state.rejected.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let lose_answer = happens(faults.lose_answer_rate);
    let resp = process(req, state, &faults).await;
    if resp.status() != StatusCode::ACCEPTED {
        state.rejected.fetch_add(1, Ordering::Relaxed);
    } else if lose_answer {
        // The events are in; only the answer is lost.
        let events = resp.extensions().get::<EventsAccepted>().map_or(0, |e| e.0);
        state.faults_injected.fetch_add(1, Ordering::Relaxed);
        state.lost_answers.fetch_add(1, Ordering::Relaxed);
        state
            .lost_answer_events
            .fetch_add(events as u64, Ordering::Relaxed);
        return None;
    }
    Some(resp)
}

/// Whether a fault of this rate strikes this request.
fn happens(rate: f64) -> bool {
    rate > 0.0 && fastrand::f64() < rate
}

fn injected(state: &IntakeState, status: StatusCode, faults: &Faults) -> Response<Full<Bytes>> {
    state.faults_injected.fetch_add(1, Ordering::Relaxed);
    let mut resp = if faults.error_body_bytes > 0 {
        // A gateway's error page, as large as asked.
        let mut page = String::with_capacity(faults.error_body_bytes);
        while page.len() < faults.error_body_bytes {
            page.push_str("<p>an error page from a broken gateway</p>\n");
        }
        page.truncate(faults.error_body_bytes);
        let mut resp = Response::new(Full::new(Bytes::from(page)));
        *resp.status_mut() = status;
        resp
    } else {
        error(status, "fault injected")
    };
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
    if let Some(refused) = refuse_early(&req, state, faults) {
        return refused;
    }
    let encoding = header(&req, hyper::header::CONTENT_ENCODING).unwrap_or("identity");
    let encoding = encoding.to_string();
    if let Some(ua) = header(&req, hyper::header::USER_AGENT) {
        *lock(&state.user_agents).entry(ua.to_string()).or_default() += 1;
    }
    if let Some(deferred) = &state.deferred {
        return defer(req, encoding, state, faults, deferred).await;
    }
    let raw = match read_body(req, &encoding, state, faults).await {
        Ok(raw) => raw,
        Err(refusal) => return refusal.answer(state, faults),
    };
    *lock(&state.encodings).entry(encoding).or_default() += 1;
    if let Some(verify) = &state.verify {
        // Benchmark sink: a full JSON parse here would take CPU from the shipper under test on
        // the same cores. The tests run the intake without `verify` and parse every event.
        let events = lock(verify).record_body(&raw, sidelog_shipper::clock::now_us());
        return accepted(state, events, raw.len());
    }
    let events = match parse_events(&raw) {
        Ok(events) => events,
        Err(refusal) => return refusal.answer(state, faults),
    };
    if let Some(poison) = &faults.poison
        && events.iter().any(|e| e.get().contains(poison.as_str()))
    {
        return injected(state, StatusCode::BAD_REQUEST, faults);
    }
    if let Err(refusal) = store(state, &events) {
        return refusal.answer(state, faults);
    }
    accepted(state, events.len(), raw.len())
}

/// Accepts a body unchecked and queues it for the deferred verifier, which counts its
/// events and bytes when it gets to it.
async fn defer(
    req: Request<Incoming>,
    encoding: String,
    state: &IntakeState,
    faults: &Faults,
    deferred: &std::sync::mpsc::Sender<verify::Received>,
) -> Response<Full<Bytes>> {
    let body = match collect_body(req, state).await {
        Ok(body) => body,
        Err(refusal) => return refusal.answer(state, faults),
    };
    let received = verify::Received {
        encoding,
        body,
        at_us: sidelog_shipper::clock::now_us(),
    };
    state.pending_bodies.fetch_add(1, Ordering::Relaxed);
    if deferred.send(received).is_err() {
        state.pending_bodies.fetch_sub(1, Ordering::Relaxed);
        return error(StatusCode::SERVICE_UNAVAILABLE, "verifier stopped");
    }
    accepted(state, 0, 0)
}

fn header(req: &Request<Incoming>, name: hyper::header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// What is answered before the body is read: wrong path or method, injected faults, a key
/// that does not match.
fn refuse_early(
    req: &Request<Incoming>,
    state: &IntakeState,
    faults: &Faults,
) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    if path != "/api/v2/logs" && path != "/v1/input" && !path.starts_with("/v1/input/") {
        return Some(error(StatusCode::NOT_FOUND, "not found"));
    }
    if req.method() != hyper::Method::POST {
        return Some(error(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
    }
    if let Some(redirect) = &faults.redirect {
        let status = StatusCode::from_u16(redirect.status).unwrap_or(StatusCode::FOUND);
        let mut resp = injected(state, status, faults);
        if let Ok(location) = hyper::header::HeaderValue::from_str(&redirect.location) {
            resp.headers_mut().insert(hyper::header::LOCATION, location);
        }
        return Some(resp);
    }
    if let Some(forced) = faults.status {
        let status = StatusCode::from_u16(forced).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Some(injected(state, status, faults));
    }
    if happens(faults.error_rate) {
        return Some(injected(state, StatusCode::INTERNAL_SERVER_ERROR, faults));
    }
    let key_file = state.api_key_file.as_ref()?;
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
    if ok {
        return None;
    }
    state.key_rejections.fetch_add(1, Ordering::Relaxed);
    Some(error(StatusCode::FORBIDDEN, "Forbidden"))
}

/// Why a body was refused.
enum Refusal {
    /// Answered with this status and detail.
    Status(StatusCode, String),
    /// Over `max_body_bytes`: an injected 413.
    Injected(StatusCode),
}

impl Refusal {
    fn answer(self, state: &IntakeState, faults: &Faults) -> Response<Full<Bytes>> {
        match self {
            Refusal::Status(status, detail) => error(status, &detail),
            Refusal::Injected(status) => injected(state, status, faults),
        }
    }
}

/// Reads the body as it came over the wire, up to [`MAX_WIRE_BYTES`], and counts its bytes.
async fn collect_body(req: Request<Incoming>, state: &IntakeState) -> Result<Bytes, Refusal> {
    let body = Limited::new(req.into_body(), MAX_WIRE_BYTES)
        .collect()
        .await
        .map_err(|_| {
            Refusal::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large".into(),
            )
        })?;
    let body = body.to_bytes();
    state
        .wire_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    Ok(body)
}

/// Reads and decompresses the body within the intake's limits.
async fn read_body(
    req: Request<Incoming>,
    encoding: &str,
    state: &IntakeState,
    faults: &Faults,
) -> Result<Vec<u8>, Refusal> {
    let body = collect_body(req, state).await?;
    if encoding == "zstd" && faults.refuse_zstd {
        return Err(Refusal::Status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported encoding zstd".into(),
        ));
    }
    let raw = match compress::decompress(encoding, &body, INTAKE_MAX_BODY_BYTES) {
        Ok(raw) => raw,
        Err(DecodeError::TooLarge(_)) => {
            return Err(Refusal::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload larger than 5000000 bytes".into(),
            ));
        }
        Err(DecodeError::Unsupported(e)) => {
            return Err(Refusal::Status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported encoding {e}"),
            ));
        }
        Err(e) => return Err(Refusal::Status(StatusCode::BAD_REQUEST, e.to_string())),
    };
    if faults.max_body_bytes.is_some_and(|max| raw.len() > max) {
        return Err(Refusal::Injected(StatusCode::PAYLOAD_TOO_LARGE));
    }
    Ok(raw)
}

/// The events of a body: a JSON array of objects (or one object), at most 1,000.
fn parse_events(raw: &[u8]) -> Result<Vec<&RawValue>, Refusal> {
    let events: Vec<&RawValue> = match serde_json::from_slice::<Vec<&RawValue>>(raw) {
        Ok(v) => v,
        Err(array_err) => match serde_json::from_slice::<&RawValue>(raw) {
            Ok(single) if single.get().starts_with('{') => vec![single],
            _ => {
                return Err(Refusal::Status(
                    StatusCode::BAD_REQUEST,
                    format!("malformed JSON: {array_err}"),
                ));
            }
        },
    };
    if events.len() > INTAKE_MAX_EVENTS {
        return Err(Refusal::Status(
            StatusCode::BAD_REQUEST,
            format!(
                "{} entries; at most {INTAKE_MAX_EVENTS} allowed",
                events.len()
            ),
        ));
    }
    if let Some(bad) = events.iter().position(|e| !e.get().starts_with('{')) {
        return Err(Refusal::Status(
            StatusCode::BAD_REQUEST,
            format!("entry {bad} is not an object"),
        ));
    }
    Ok(events)
}

/// Keeps the events (tests) and appends them to `--out`.
fn store(state: &IntakeState, events: &[&RawValue]) -> Result<(), Refusal> {
    if state.keep_events {
        let mut kept = lock(&state.kept);
        for e in events {
            match serde_json::from_str(e.get()) {
                Ok(v) => kept.push(v),
                Err(err) => return Err(Refusal::Status(StatusCode::BAD_REQUEST, err.to_string())),
            }
        }
    }
    let Some(out) = &state.out else {
        return Ok(());
    };
    let mut out = lock(out);
    for e in events {
        let written = out
            .write_all(e.get().as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        if let Err(err) = written {
            tracing::error!(error = %err, "intake cannot write --out file");
            return Err(Refusal::Status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot store events".into(),
            ));
        }
    }
    if let Err(err) = out.flush() {
        tracing::error!(error = %err, "intake cannot write --out file");
    }
    Ok(())
}

/// `PUT /faults` with `{"status": 503, "retry_after_secs": 2}` (or `{}` to heal): how a
/// benchmark turns an outage on and off in an intake running as another process.
async fn set_faults(req: Request<Incoming>, state: &IntakeState) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FaultBody {
        status: Option<u16>,
        retry_after_secs: Option<u64>,
        #[serde(default)]
        error_rate: f64,
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
                error_rate: f.error_rate,
                ..Faults::default()
            };
            reply(StatusCode::OK, "{}")
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// How many events an accepted answer stands for (for the faults that withhold it).
#[derive(Clone, Copy)]
struct EventsAccepted(usize);

fn accepted(state: &IntakeState, events: usize, bytes: usize) -> Response<Full<Bytes>> {
    state.events.fetch_add(events as u64, Ordering::Relaxed);
    state.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    state.accepted_requests.fetch_add(1, Ordering::Relaxed);
    let mut resp = reply(StatusCode::ACCEPTED, "{}");
    resp.extensions_mut().insert(EventsAccepted(events));
    resp
}
