//! Delivery: posts compressed batches to the intake and decides, per answer, what happens next.
//!
//! A body is retried until the intake accepts it, except for answers that say the body itself
//! can never be accepted (400, 413): those go back to the caller, which splits the batch or
//! drops the single event at fault. Network errors, timeouts, 408, 429, 5xx and unexpected
//! statuses wait with exponential backoff and full jitter (honouring `Retry-After`); 401 and
//! 403 re-read the key and retry the same way, since the files on disk keep the data. This
//! module also owns the request slots: a fixed number, or adaptive.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, RequestConcurrency};
use crate::lock;
use crate::metrics::Metrics;
use crate::secret::KeySource;

pub const SIDELOG_USER_AGENT: &str = concat!("sidelog/", env!("CARGO_PKG_VERSION"));

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot build HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("datadog.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("datadog.proxy {url:?}: {reason}")]
    Proxy { url: String, reason: String },
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
    /// Shutdown came first; the batch was not accepted and will be read again after restart.
    Abandoned,
}

pub struct Sender {
    client: reqwest::Client,
    url: String,
    keys: Arc<KeySource>,
    encoding: HeaderValue,
    retry_initial: Duration,
    retry_max: Duration,
    metrics: Arc<Metrics>,
    limiter: Limiter,
}

impl Sender {
    pub fn new(
        config: &Config,
        keys: Arc<KeySource>,
        metrics: Arc<Metrics>,
    ) -> Result<Sender, ShipError> {
        let d = &config.datadog;
        // Environment proxies (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) apply unless
        // datadog.proxy names one. TLS certificates are always verified.
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(d.request_timeout_ms))
            .connect_timeout(Duration::from_millis(d.request_timeout_ms.min(10_000)))
            .pool_idle_timeout(Duration::from_secs(50))
            .user_agent(SIDELOG_USER_AGENT);
        if !d.proxy.is_empty() {
            let proxy = reqwest::Proxy::all(&d.proxy).map_err(|e| ShipError::Proxy {
                url: d.proxy.clone(),
                reason: e.to_string(),
            })?;
            builder = builder.proxy(proxy);
        }
        if !d.ca_file.as_os_str().is_empty() {
            let ca_err = |reason: String| ShipError::CaFile {
                path: d.ca_file.display().to_string(),
                reason,
            };
            let pem = std::fs::read(&d.ca_file).map_err(|e| ca_err(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_err(format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ca_err("no certificate in the file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let limiter = Limiter::new(
            d.request_concurrency,
            d.request_concurrency.max(d.request_concurrency_max),
            metrics.clone(),
        );
        Ok(Sender {
            client: builder.build()?,
            url: d.logs_url(),
            keys,
            encoding: HeaderValue::from_static(d.compression.content_encoding()),
            retry_initial: Duration::from_millis(d.retry_initial_ms),
            retry_max: Duration::from_millis(d.retry_max_ms),
            metrics,
            limiter,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits for a request slot (`datadog.request_concurrency`).
    pub async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.limiter.acquire().await
    }

    /// Gives a request slot back.
    pub fn release(&self, slot: tokio::sync::OwnedSemaphorePermit) {
        self.limiter.release(slot);
    }

    /// Sends `body` until it is accepted, refused for good (400, 413), or `shutdown` is
    /// cancelled. Every other answer is retried: the files on disk keep the data meanwhile.
    pub async fn deliver(&self, body: Bytes, shutdown: &CancellationToken) -> Delivery {
        let mut attempt: u32 = 0;
        let m = &self.metrics;
        loop {
            let sent_at = Instant::now();
            let result = self
                .client
                .post(&self.url)
                .header("DD-API-KEY", self.keys.current().header_value())
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, self.encoding.clone())
                .body(body.clone())
                .send()
                .await;
            let mut retry_after = None;
            let reason = match result {
                Ok(resp) if resp.status().is_success() => {
                    self.limiter.observe(Outcome::Success(sent_at.elapsed()));
                    if m.api_key_rejected
                        .swap(0, std::sync::atomic::Ordering::Relaxed)
                        != 0
                    {
                        tracing::info!(origin = %self.keys.origin(), "the intake accepts the API key again");
                    }
                    return Delivery::Accepted;
                }
                Ok(resp) => {
                    let status = resp.status();
                    retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    match classify(status) {
                        Answer::Throttled | Answer::ServerError => {
                            self.limiter.observe(Outcome::Congested);
                            if matches!(classify(status), Answer::Throttled) {
                                Metrics::add(&m.retries_throttled, 1);
                            } else {
                                Metrics::add(&m.retries_server_error, 1);
                            }
                            format!("intake answered {status}")
                        }
                        Answer::KeyRejected => {
                            Metrics::add(&m.retries_key_rejected, 1);
                            if m.api_key_rejected
                                .swap(1, std::sync::atomic::Ordering::Relaxed)
                                == 0
                            {
                                tracing::error!(origin = %self.keys.origin(), %status, "the intake rejects the API key; keeping the data on disk and retrying (not ready)");
                            }
                            match self.keys.reload() {
                                Ok(true) => {
                                    tracing::info!(origin = %self.keys.origin(), "API key re-read after rejection; retrying with the new key")
                                }
                                Ok(false) => {}
                                Err(e) => tracing::warn!(error = %e, "cannot re-read API key"),
                            }
                            format!(
                                "intake rejected the API key from {} ({status})",
                                self.keys.origin()
                            )
                        }
                        Answer::Refused => {
                            let text = resp.text().await.unwrap_or_default();
                            self.limiter.observe(Outcome::Success(sent_at.elapsed()));
                            return Delivery::Refused {
                                status: status.as_u16(),
                                detail: truncate(&text, 300).to_string(),
                            };
                        }
                        Answer::Unexpected => {
                            Metrics::add(&m.retries_unexpected_status, 1);
                            let text = resp.text().await.unwrap_or_default();
                            if attempt.is_power_of_two() || attempt == 0 {
                                tracing::error!(%status, body = %truncate(&text, 300), url = %self.url, "unexpected answer from the intake; keeping the data on disk and retrying (check datadog.endpoint)");
                            }
                            format!("intake answered {status}")
                        }
                    }
                }
                Err(e) => {
                    self.limiter.observe(Outcome::Congested);
                    Metrics::add(&m.retries_network, 1);
                    format!("request failed: {}", error_chain(&e))
                }
            };
            attempt = attempt.saturating_add(1);
            Metrics::add(&m.retries, 1);
            // The intake's own wait is honoured even beyond retry_max_ms (retrying earlier
            // only earns more refusals), up to a bound against nonsense values.
            let delay = retry_after
                .map(|d| d.min(MAX_RETRY_AFTER))
                .unwrap_or_else(|| backoff(attempt, self.retry_initial, self.retry_max));
            if attempt.is_power_of_two() {
                tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, url = %self.url, "{reason}; retrying");
            } else {
                tracing::debug!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "{reason}; retrying"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Delivery::Abandoned,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Throttled,
    ServerError,
    KeyRejected,
    Refused,
    Unexpected,
}

fn classify(status: StatusCode) -> Answer {
    match status.as_u16() {
        400 | 413 => Answer::Refused,
        401 | 403 => Answer::KeyRejected,
        408 | 429 => Answer::Throttled,
        s if s >= 500 => Answer::ServerError,
        _ => Answer::Unexpected,
    }
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

/// What one attempt says about the intake's capacity.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// Answered (accepted or refused for its content) after this long.
    Success(Duration),
    /// Throttled, failing or unreachable.
    Congested,
}

/// Request slots: a fixed number, or adaptive (additive increase while answers come back
/// quickly, halving on congestion or answers much slower than usual, at most once per
/// round trip).
struct Limiter {
    slots: Arc<Semaphore>,
    adaptive: Option<Mutex<Adaptive>>,
    max: usize,
    metrics: Arc<Metrics>,
}

struct Adaptive {
    limit: usize,
    /// Slots to take away as they are given back, after a decrease.
    debt: usize,
    /// Moving average of quick round trips, in seconds.
    rtt: Option<f64>,
    /// Answers since the last change; one round of `limit` quick answers earns a slot.
    quick: usize,
    last_decrease: Instant,
}

impl Limiter {
    fn new(mode: RequestConcurrency, max: usize, metrics: Arc<Metrics>) -> Limiter {
        let (start, adaptive) = match mode {
            RequestConcurrency::Fixed(n) => (n.max(1), None),
            RequestConcurrency::Adaptive => (
                1,
                Some(Mutex::new(Adaptive {
                    limit: 1,
                    debt: 0,
                    rtt: None,
                    quick: 0,
                    last_decrease: Instant::now(),
                })),
            ),
        };
        metrics
            .request_concurrency_limit
            .store(start as u64, std::sync::atomic::Ordering::Relaxed);
        Limiter {
            slots: Arc::new(Semaphore::new(start)),
            adaptive,
            max: max.max(1),
            metrics,
        }
    }

    async fn acquire(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    fn release(&self, slot: tokio::sync::OwnedSemaphorePermit) {
        if let Some(a) = &self.adaptive {
            let mut a = lock(a);
            if a.debt > 0 {
                a.debt -= 1;
                slot.forget();
            }
        }
    }

    fn observe(&self, outcome: Outcome) {
        let Some(a) = &self.adaptive else {
            return;
        };
        let mut a = lock(a);
        let before = a.limit;
        match outcome {
            Outcome::Success(rtt) => {
                let secs = rtt.as_secs_f64();
                let slow = a.rtt.is_some_and(|avg| secs > 2.0 * avg + 0.05);
                // Every answer moves the average, so a lasting change of latency (a farther
                // intake) stops counting as slow after a few answers.
                a.rtt = Some(a.rtt.map_or(secs, |avg| 0.8 * avg + 0.2 * secs));
                if slow {
                    a.decrease();
                } else {
                    a.quick += 1;
                    if a.quick >= a.limit && a.limit < self.max {
                        a.quick = 0;
                        a.limit += 1;
                        if a.debt > 0 {
                            a.debt -= 1;
                        } else {
                            self.slots.add_permits(1);
                        }
                    }
                }
            }
            Outcome::Congested => a.decrease(),
        }
        if a.limit != before {
            tracing::debug!(from = before, to = a.limit, "adaptive request concurrency");
            self.metrics
                .request_concurrency_limit
                .store(a.limit as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Adaptive {
    fn decrease(&mut self) {
        let window = Duration::from_secs_f64(self.rtt.unwrap_or(0.1).max(0.05));
        if self.limit <= 1 || self.last_decrease.elapsed() < window {
            return;
        }
        let new = self.limit / 2;
        self.debt += self.limit - new;
        self.limit = new;
        self.quick = 0;
        self.last_decrease = Instant::now();
    }
}

/// Full jitter: a uniform delay in `[0, min(max, initial * 2^(attempt-1))]`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = initial.saturating_mul(1u32 << exp).min(max);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(fastrand::u64(0..=ms))
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
    fn backoff_stays_within_its_ceiling() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for attempt in 1..40 {
            let d = backoff(attempt, initial, max);
            let ceiling = (100u64 << (attempt - 1).min(30)).min(1000);
            assert!(d.as_millis() as u64 <= ceiling, "attempt {attempt}: {d:?}");
        }
    }

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

    #[test]
    fn adaptive_limit_grows_on_quick_answers_and_halves_on_congestion() {
        let metrics = Arc::new(Metrics::default());
        let l = Limiter::new(RequestConcurrency::Adaptive, 8, metrics.clone());
        let limit = || Metrics::get(&metrics.request_concurrency_limit);
        assert_eq!(limit(), 1);
        for _ in 0..100 {
            l.observe(Outcome::Success(Duration::from_millis(10)));
        }
        assert_eq!(limit(), 8, "capped at the maximum");
        assert_eq!(l.slots.available_permits(), 8);
        if let Some(a) = &l.adaptive {
            lock(a).last_decrease = Instant::now() - Duration::from_secs(1);
        }
        l.observe(Outcome::Congested);
        assert_eq!(limit(), 4);
        // Once per round trip: a second error at once changes nothing.
        l.observe(Outcome::Congested);
        assert_eq!(limit(), 4);
        // Slots are taken back as they come back.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut held = Vec::new();
            for _ in 0..8 {
                held.push(l.acquire().await.expect("slot"));
            }
            for slot in held {
                l.release(slot);
            }
        });
        assert_eq!(l.slots.available_permits(), 4);
        let fixed = Limiter::new(RequestConcurrency::Fixed(3), 3, metrics.clone());
        fixed.observe(Outcome::Congested);
        assert_eq!(fixed.slots.available_permits(), 3);
    }
}
