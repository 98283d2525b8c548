//! Request slots: how many requests may be in flight at once, fixed or adaptive.
//!
//! The adaptive mode is additive increase, multiplicative decrease: one slot more after each
//! round of quick answers, halved on congestion (throttling, errors, no answer) or on answers
//! much slower than usual, at most once per round trip. A slot is a guard: dropping it gives
//! it back (or retires it, when the limit was lowered meanwhile).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::RequestConcurrency;
use crate::lock;
use crate::metrics::Metrics;

/// What one attempt says about the intake's capacity.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    /// Answered (accepted or refused for its content) after this long.
    Success(Duration),
    /// Throttled, failing or unreachable.
    Congested,
}

pub(crate) struct Limiter {
    slots: Arc<Semaphore>,
    adaptive: Option<Arc<Mutex<Adaptive>>>,
    max: usize,
    /// Where the limit is shown (`request_concurrency_limit`); `None` for a best-effort
    /// endpoint, whose limit is not the intake's.
    metrics: Option<Arc<Metrics>>,
}

/// Leave to have one request in flight; given back when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    adaptive: Option<Arc<Mutex<Adaptive>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        if let Some(a) = &self.adaptive {
            let mut a = lock(a);
            if a.debt > 0 {
                // The limit was lowered while this slot was out: retire it.
                a.debt -= 1;
                permit.forget();
            }
        }
    }
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
    pub(crate) fn new(
        mode: RequestConcurrency,
        max: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> Limiter {
        let (start, adaptive) = match mode {
            RequestConcurrency::Fixed(n) => (n.max(1), None),
            RequestConcurrency::Adaptive => (
                1,
                Some(Arc::new(Mutex::new(Adaptive {
                    limit: 1,
                    debt: 0,
                    rtt: None,
                    quick: 0,
                    last_decrease: Instant::now(),
                }))),
            ),
        };
        if let Some(m) = &metrics {
            m.request_concurrency_limit.set(start as u64);
        }
        Limiter {
            slots: Arc::new(Semaphore::new(start)),
            adaptive,
            max: max.max(1),
            metrics,
        }
    }

    /// Waits for a slot. `None` only if the semaphore were closed, which it never is.
    pub(crate) async fn acquire(&self) -> Option<Slot> {
        let permit = self.slots.clone().acquire_owned().await.ok()?;
        Some(Slot {
            permit: Some(permit),
            adaptive: self.adaptive.clone(),
        })
    }

    pub(crate) fn observe(&self, outcome: Outcome) {
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
            if let Some(m) = &self.metrics {
                m.request_concurrency_limit.set(a.limit as u64);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_limit_grows_on_quick_answers_and_halves_on_congestion() {
        let metrics = Arc::new(Metrics::default());
        let l = Limiter::new(RequestConcurrency::Adaptive, 8, Some(metrics.clone()));
        let limit = || metrics.request_concurrency_limit.get();
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
            drop(held);
        });
        assert_eq!(l.slots.available_permits(), 4);
        let fixed = Limiter::new(RequestConcurrency::Fixed(3), 3, Some(metrics.clone()));
        fixed.observe(Outcome::Congested);
        assert_eq!(fixed.slots.available_permits(), 3);
    }
}
