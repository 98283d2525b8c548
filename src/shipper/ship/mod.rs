//! Delivery: posts compressed batches to the intake and decides, per answer, what happens next.
//!
//! A body is retried until the intake accepts it, except for answers that say the body itself
//! can never be accepted (400, 413): those go back to the caller, which splits the batch or
//! drops the single event at fault. Network errors, timeouts, 408, 429, 5xx and unexpected
//! statuses are retried through the outage [`gate`] (one probe at a time, honouring
//! `Retry-After`); 401 and 403 re-read the key and retry the same way, since the files on disk
//! keep the data. The request slots ([`limiter`]) are a fixed number, or adaptive.
//!
//! Redirects are never followed: a 3xx is a failed attempt, retried like a 5xx. Following one
//! would send the key and the lines to a host nobody configured (a POST turned into a GET by a
//! 302 even came back 200, and its batch was taken as delivered). Only a 2xx from the
//! configured URL acknowledges a batch.

mod codec_choice;
mod gate;
mod limiter;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use crate::compress::Codec;
use crate::config::DatadogConfig;
use crate::delivery::DeliveryState;
use crate::health::Liveness;
use crate::metrics::Metrics;
use crate::secret::{ApiKey, KeyChange, KeySource};
use crate::shutdown::ShutdownSignal;
use codec_choice::CodecChoice;
use gate::{Gate, Pass};
pub use limiter::Slot;
use limiter::{Limiter, Outcome};

pub const SIDELOG_USER_AGENT: &str = concat!("sidelog/", env!("CARGO_PKG_VERSION"));

static DD_API_KEY: reqwest::header::HeaderName =
    reqwest::header::HeaderName::from_static("dd-api-key");

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot build HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("datadog.ca_file {path}: {source}")]
    CaFileRead {
        path: String,
        source: std::io::Error,
    },
    #[error("datadog.ca_file {path}: not PEM certificates: {source}")]
    CaFileNotPem {
        path: String,
        source: reqwest::Error,
    },
    #[error("datadog.ca_file {path}: no certificate in the file")]
    CaFileEmpty { path: String },
    #[error("datadog.proxy {url:?}: {source}")]
    Proxy {
        /// Shown without its credentials.
        url: String,
        source: reqwest::Error,
    },
    #[error("the intake's URL {url:?}: {reason}")]
    Url { url: String, reason: String },
}

/// The certificate authorities of `datadog.ca_file`.
fn extra_roots(ca_file: &std::path::Path) -> Result<Vec<reqwest::Certificate>, ShipError> {
    let path = ca_file.display().to_string();
    let pem = std::fs::read(ca_file).map_err(|source| ShipError::CaFileRead {
        path: path.clone(),
        source,
    })?;
    let certs =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| ShipError::CaFileNotPem {
            path: path.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ShipError::CaFileEmpty { path });
    }
    Ok(certs)
}

/// What became of a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// The intake will never take this body as it is (400 or 413); the caller splits it or
    /// drops the one event it holds.
    Refused {
        status: u16,
        detail: String,
    },
    /// The receiver cannot decode the body's codec; compress it again with
    /// [`Sender::codec`], which has fallen back to one it can.
    Reencode,
    /// Shutdown came first; the batch was not accepted and will be read again after restart.
    Abandoned,
}

pub struct Sender {
    client: reqwest::Client,
    /// Parsed once: parsing it for every request (IDNA included) was a few percent of a
    /// quiet Pod's CPU.
    url: reqwest::Url,
    /// The URL as logs and errors show it: without credentials.
    shown_url: String,
    /// Whether the first redirect was logged (with its `Location`).
    redirect_logged: std::sync::atomic::AtomicBool,
    keys: Arc<KeySource>,
    encoding: CodecChoice,
    /// `None` for a best-effort endpoint, which holds nothing back and whose copies its own
    /// counters count.
    reports: Option<Reports>,
    limiter: Limiter,
    gate: Gate,
    /// Whether this endpoint rejects its key now (logged once per change).
    key_rejecting: std::sync::atomic::AtomicBool,
    /// Bodies accepted so far: what tells a refused event that is bad from an endpoint that
    /// refuses everything (see `pipeline::refused`).
    accepted: std::sync::atomic::AtomicU64,
}

/// Where an endpoint that holds the pipeline (the intake, a reliable additional endpoint)
/// reports: its retries to the metrics, its outage and its key to the run's delivery state,
/// every answer and wait to liveness (`/healthz`).
#[derive(Clone)]
pub struct Reports {
    pub metrics: Arc<Metrics>,
    pub delivery: Arc<DeliveryState>,
    pub liveness: Arc<Liveness>,
}

impl Sender {
    /// A sender for the endpoint `d` describes; `reports` is `None` for a best-effort one.
    pub fn new(
        d: &DatadogConfig,
        keys: Arc<KeySource>,
        reports: Option<Reports>,
    ) -> Result<Sender, ShipError> {
        // Environment proxies (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) apply unless
        // datadog.proxy names one. TLS certificates are always verified.
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(d.request_timeout_ms))
            .connect_timeout(Duration::from_millis(d.request_timeout_ms.min(10_000)))
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(SIDELOG_USER_AGENT);
        if let Some(url) = &d.proxy {
            let proxy = reqwest::Proxy::all(url.clone()).map_err(|source| ShipError::Proxy {
                url: crate::redact::url(url),
                source: source.without_url(),
            })?;
            builder = builder.proxy(proxy);
        }
        if let Some(ca_file) = &d.ca_file {
            for cert in extra_roots(ca_file)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let limiter = Limiter::new(
            d.request_concurrency,
            d.request_concurrency.max(d.request_concurrency_max),
            reports.as_ref().map(|r| r.metrics.clone()),
        );
        let url = d.logs_url();
        let url = reqwest::Url::parse(&url).map_err(|e| ShipError::Url {
            reason: e.to_string(),
            url: crate::redact::url_text(&url),
        })?;
        Ok(Sender {
            client: builder.build()?,
            shown_url: crate::redact::url(&url),
            redirect_logged: std::sync::atomic::AtomicBool::new(false),
            url,
            keys,
            encoding: CodecChoice::new(
                d.compression.codec(d.compression_level),
                d.compression.fallback(),
            ),
            reports,
            limiter,
            gate: Gate::new(
                Duration::from_millis(d.retry_initial_ms),
                Duration::from_millis(d.retry_max_ms),
            ),
            key_rejecting: std::sync::atomic::AtomicBool::new(false),
            accepted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Bodies this endpoint accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every part of a batch was refused, each event alone included, and nothing was accepted
    /// meanwhile: the endpoint refuses everything (a misconfigured proxy, a gateway that
    /// refuses the content type), which is an outage, not bad events. The gate closes (or
    /// stays closed) and the batch is retried behind it, nothing dropped.
    pub fn refuses_everything(&self, status: u16) {
        let failed = self.gate.fail();
        self.count(|m| m.retries_refused.inc());
        if failed.closed {
            self.report(|r| r.delivery.endpoint_failing());
            tracing::error!(status, url = %self.shown_url, "the intake refuses every part of a batch, each event alone included, and accepts nothing else: holding it as in an outage (nothing is dropped) and retrying; check what is in front of the intake (a proxy, a gateway)");
        }
        self.report(|r| r.liveness.sender_waits(failed.wait));
    }

    /// Tells what holds the pipeline, if this endpoint does.
    fn report(&self, f: impl FnOnce(&Reports)) {
        if let Some(r) = &self.reports {
            f(r);
        }
    }

    /// Counts into the metrics, if this endpoint holds the pipeline.
    fn count(&self, f: impl FnOnce(&Metrics)) {
        self.report(|r| f(&r.metrics));
    }

    /// The URL batches go to, as logs show it (without credentials).
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Waits for a request slot (`datadog.request_concurrency`); dropping it gives it back.
    pub async fn slot(&self) -> Option<Slot> {
        self.limiter.acquire().await
    }

    /// The codec to compress the next batch with.
    pub fn codec(&self) -> Codec {
        self.encoding.current()
    }

    /// Sends `body`, compressed with `codec`, until it is accepted, refused for good (400,
    /// 413), refused for its encoding, or the shutdown abandons it. Every other answer is
    /// retried through the outage gate: the files on disk keep the data meanwhile.
    pub async fn deliver(
        &self,
        body: Bytes,
        codec: Codec,
        signal: &mut ShutdownSignal,
    ) -> Delivery {
        let mut failures: u32 = 0;
        loop {
            let Some(pass) = self.gate.pass(signal).await else {
                return Delivery::Abandoned;
            };
            let sent_at = Instant::now();
            let answer = tokio::select! {
                answer = self.post_once(body.clone(), codec, failures) => answer,
                _ = signal.abandoned() => return Delivery::Abandoned,
            };
            self.report(|r| r.liveness.sender_moved());
            let (reason, retry_after) = match answer {
                Posted::Accepted => {
                    self.limiter.observe(Outcome::Success(sent_at.elapsed()));
                    self.accepted
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.intake_answered(pass);
                    self.key_accepted();
                    return Delivery::Accepted;
                }
                Posted::Refused { status, detail } => {
                    self.limiter.observe(Outcome::Success(sent_at.elapsed()));
                    if let Some(failed) = pass.refused() {
                        // A probe refused: the gate stays closed (see `Pass::refused`).
                        self.count(|m| m.retries_refused.inc());
                        self.report(|r| r.liveness.sender_waits(failed.wait));
                    }
                    return Delivery::Refused { status, detail };
                }
                Posted::Unsupported => {
                    self.intake_answered(pass);
                    return Delivery::Reencode;
                }
                Posted::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            failures = failures.saturating_add(1);
            // The intake's own wait is honoured even beyond retry_max_ms (retrying earlier
            // only earns more refusals), up to a bound against nonsense values.
            let failed = pass.failed(retry_after.map(|d| d.min(MAX_RETRY_AFTER)));
            if failed.closed {
                self.report(|r| r.delivery.endpoint_failing());
            }
            let wait = failed.wait;
            self.report(|r| r.liveness.sender_waits(wait));
            if failures.is_power_of_two() {
                tracing::warn!(failures, wait_ms = wait.as_millis() as u64, url = %self.shown_url, "{reason}; holding requests, one probe retrying after the wait");
            } else {
                tracing::debug!(
                    failures,
                    wait_ms = wait.as_millis() as u64,
                    "{reason}; retrying"
                );
            }
        }
    }

    /// An answer showed the intake up; says so when it had been failing.
    fn intake_answered(&self, pass: Pass<'_>) {
        if let Some(r) = pass.answered() {
            self.report(|r| r.delivery.endpoint_recovered());
            tracing::info!(
                after_ms = r.closed_for.as_millis() as u64,
                failed_attempts = r.failures,
                "the intake answers again; sending everything held back"
            );
        }
    }

    fn key_accepted(&self) {
        let was_rejecting = self.key_rejecting.swap(false, Ordering::Relaxed);
        self.report(|r| r.delivery.key_accepted_by(was_rejecting));
        if was_rejecting {
            tracing::info!(origin = %self.keys.origin(), "the intake accepts the API key again");
        }
    }

    /// One POST of `body`, and what its answer means.
    async fn post_once(&self, body: Bytes, codec: Codec, failures: u32) -> Posted {
        let key = self.keys.current();
        let result = self
            .client
            .post(self.url.clone())
            .header(DD_API_KEY.clone(), key.header_value())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, codec.content_encoding())
            .body(body)
            .send()
            .await;
        let resp = match result {
            Ok(resp) if resp.status().is_success() => {
                self.keys.accepted(&key);
                return Posted::Accepted;
            }
            Ok(resp) => resp,
            Err(e) => {
                self.limiter.observe(Outcome::Congested);
                self.count(|m| m.retries_network.inc());
                // The URL is in the log line, without its credentials; not in the error.
                let e = e.without_url();
                return Posted::retry(format!("request failed: {}", error_chain(&e)), None);
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if status == StatusCode::UNSUPPORTED_MEDIA_TYPE && self.encoding.refused(codec) {
            return Posted::Unsupported;
        }
        match classify(status) {
            Answer::Redirect => {
                self.count(|m| m.retries_redirect.inc());
                self.redirected(&resp);
                Posted::retry(
                    format!("intake answered {status}, a redirect (not followed)"),
                    retry_after,
                )
            }
            Answer::Throttled | Answer::ServerError => {
                self.limiter.observe(Outcome::Congested);
                if classify(status) == Answer::Throttled {
                    self.count(|m| m.retries_throttled.inc());
                } else {
                    self.count(|m| m.retries_server_error.inc());
                }
                Posted::retry(format!("intake answered {status}"), retry_after)
            }
            Answer::KeyRejected => {
                self.count(|m| m.retries_key_rejected.inc());
                self.key_rejected(status, &key);
                Posted::retry(
                    format!(
                        "intake rejected the API key from {} ({status})",
                        self.keys.origin()
                    ),
                    retry_after,
                )
            }
            Answer::Refused => {
                let text = error_text(resp).await;
                Posted::Refused {
                    status: status.as_u16(),
                    detail: truncate(&text, 300).to_string(),
                }
            }
            Answer::Unexpected => {
                self.count(|m| m.retries_unexpected_status.inc());
                self.unexpected(resp, codec, failures).await;
                Posted::retry(format!("intake answered {status}"), retry_after)
            }
        }
    }

    /// An answer sidelog has no rule for: logged (when the failures so far are 0 or a power
    /// of two) with the start of its body; retried by the caller.
    async fn unexpected(&self, resp: reqwest::Response, codec: Codec, failures: u32) {
        let status = resp.status();
        let text = error_text(resp).await;
        let loud = failures == 0 || failures.is_power_of_two();
        if loud && status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            tracing::error!(%status, encoding = codec.content_encoding(), body = %truncate(&text, 300), "the intake cannot decode this encoding, and datadog.compression asks for it explicitly; keeping the data on disk and retrying (set compression = \"auto\" to fall back to gzip)");
        } else if loud {
            tracing::error!(%status, body = %truncate(&text, 300), url = %self.shown_url, "unexpected answer from the intake; keeping the data on disk and retrying (check datadog.endpoint)");
        }
    }

    /// A 3xx: said once per run, with where it points (without credentials), since only the
    /// configuration can fix it.
    fn redirected(&self, resp: &reqwest::Response) {
        if self
            .redirect_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(crate::redact::url_text)
            .unwrap_or_else(|| "(none)".into());
        tracing::error!(status = %resp.status(), url = %self.shown_url, %location, "the intake answers with a redirect; sidelog does not follow redirects (the key and the lines go only to the configured endpoint): keeping the data on disk and retrying; point datadog.endpoint at the final URL");
    }

    /// 401/403 to a request carrying `used`: takes a rotated key from the file, or goes
    /// back to the last key accepted; with neither, says once that the key is rejected.
    fn key_rejected(&self, status: StatusCode, used: &ApiKey) {
        match self.keys.rejected(used) {
            KeyChange::FromFile => {
                tracing::info!(origin = %self.keys.origin(), "API key changed (re-read after the intake rejected the old one); retrying with the new key")
            }
            KeyChange::BackToAccepted => {
                tracing::warn!(origin = %self.keys.origin(), %status, "the intake rejects the key now in the key file (half-written, or not valid yet?); going back to the last key it accepted until the file changes");
            }
            KeyChange::None => {
                let was_rejecting = self.key_rejecting.swap(true, Ordering::Relaxed);
                if let Some(r) = &self.reports {
                    r.delivery.key_rejected_by(was_rejecting);
                }
                if !was_rejecting {
                    tracing::error!(origin = %self.keys.origin(), %status, "the intake rejects the API key; keeping the data on disk and retrying");
                }
            }
        }
    }
}

/// What the answer to one POST means.
enum Posted {
    Accepted,
    /// 415 to a codec there is a fallback for: compress again with it.
    Unsupported,
    Refused {
        status: u16,
        detail: String,
    },
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Posted {
    fn retry(reason: String, retry_after: Option<Duration>) -> Posted {
        Posted::Retry {
            reason,
            retry_after,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Redirect,
    Throttled,
    ServerError,
    KeyRejected,
    Refused,
    Unexpected,
}

fn classify(status: StatusCode) -> Answer {
    match status.as_u16() {
        300..=399 => Answer::Redirect,
        400 | 413 => Answer::Refused,
        401 | 403 => Answer::KeyRejected,
        408 | 429 => Answer::Throttled,
        s if s >= 500 => Answer::ServerError,
        _ => Answer::Unexpected,
    }
}

/// The most of an error answer's body that is read: enough for the intake's message, and a
/// gateway's 50 MB error page costs no more.
const ERROR_BODY_READ: usize = 4096;

/// The start of an error answer's body (at most [`ERROR_BODY_READ`] bytes), as text; the rest
/// is not read (the connection is then closed rather than reused).
async fn error_text(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_READ {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = ERROR_BODY_READ - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        for (status, answer) in [
            (503, Answer::ServerError),
            (500, Answer::ServerError),
            (429, Answer::Throttled),
            (408, Answer::Throttled),
            (401, Answer::KeyRejected),
            (403, Answer::KeyRejected),
            (400, Answer::Refused),
            (413, Answer::Refused),
            (404, Answer::Unexpected),
            (422, Answer::Unexpected),
            (301, Answer::Redirect),
            (302, Answer::Redirect),
            (303, Answer::Redirect),
            (307, Answer::Redirect),
            (308, Answer::Redirect),
        ] {
            let code = StatusCode::from_u16(status).expect("status");
            assert_eq!(classify(code), answer, "{status}");
        }
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).expect("date");
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
