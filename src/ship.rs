//! Delivery: posts compressed batches to the intake and decides, per answer, what happens next.
//!
//! A batch is retried until the intake accepts it, except for answers that say the payload
//! itself can never be accepted; those are logged and counted. Network errors, timeouts, 408,
//! 429 and 5xx wait with exponential backoff and full jitter (honouring `Retry-After`); 401
//! and 403 re-read the key and retry the same way, since the files on disk keep the data.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::secret::KeySource;

pub const SIDELOG_USER_AGENT: &str = concat!("sidelog/", env!("CARGO_PKG_VERSION"));

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("cannot build HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// The intake refused the payload for good (status given); the events are dropped.
    Rejected(u16),
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
}

impl Sender {
    pub fn new(
        config: &Config,
        keys: Arc<KeySource>,
        metrics: Arc<Metrics>,
    ) -> Result<Sender, ShipError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.datadog.request_timeout_ms))
            .connect_timeout(Duration::from_millis(
                config.datadog.request_timeout_ms.min(10_000),
            ))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()?;
        Ok(Sender {
            client,
            url: config.datadog.logs_url(),
            keys,
            encoding: HeaderValue::from_static(config.datadog.compression.content_encoding()),
            retry_initial: Duration::from_millis(config.datadog.retry_initial_ms),
            retry_max: Duration::from_millis(config.datadog.retry_max_ms),
            metrics,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `body` until it is accepted, refused for good, or `shutdown` is cancelled.
    pub async fn deliver(&self, body: Bytes, shutdown: &CancellationToken) -> Delivery {
        let mut attempt: u32 = 0;
        loop {
            let result = self
                .client
                .post(&self.url)
                .header("DD-API-KEY", self.keys.current().header_value())
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, self.encoding.clone())
                .header(USER_AGENT, SIDELOG_USER_AGENT)
                .body(body.clone())
                .send()
                .await;
            let mut retry_after = None;
            let reason = match result {
                Ok(resp) if resp.status().is_success() => return Delivery::Accepted,
                Ok(resp) => {
                    let status = resp.status();
                    retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match classify(status) {
                        Answer::Retry => format!("intake answered {status}"),
                        Answer::KeyRejected => {
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
                            tracing::error!(%status, body = %truncate(&text, 300), "intake refused a batch; its events are dropped");
                            return Delivery::Rejected(status.as_u16());
                        }
                    }
                }
                Err(e) => format!("request failed: {}", error_chain(&e)),
            };
            attempt = attempt.saturating_add(1);
            Metrics::add(&self.metrics.retries, 1);
            let delay = retry_after
                .map(|d| d.min(self.retry_max))
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

enum Answer {
    Retry,
    KeyRejected,
    Refused,
}

fn classify(status: StatusCode) -> Answer {
    match status.as_u16() {
        401 | 403 => Answer::KeyRejected,
        408 | 429 => Answer::Retry,
        s if s >= 500 => Answer::Retry,
        _ => Answer::Refused,
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
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE),
            Answer::Retry
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS),
            Answer::Retry
        ));
        assert!(matches!(
            classify(StatusCode::REQUEST_TIMEOUT),
            Answer::Retry
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN),
            Answer::KeyRejected
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED),
            Answer::KeyRejected
        ));
        assert!(matches!(classify(StatusCode::BAD_REQUEST), Answer::Refused));
    }
}
