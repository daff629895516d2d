//! Token buckets, keyed by whatever the caller chooses (a session, a client
//! address); the HTTP layer (`api::rate_limit`) decides which.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: f64) -> Self {
        RateLimiter {
            rate: rate_per_second.max(0.001),
            burst: burst.max(1.0),
            buckets: Arc::default(),
        }
    }

    /// Takes one token for `key`; on refusal returns how long until one is free.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() > 100_000 {
            // Full buckets carry no state worth keeping.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - bucket.tokens) / self.rate) * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_burst_and_names_the_wait() {
        let limiter = RateLimiter::new(1.0, 3.0);
        for _ in 0..3 {
            limiter.check("a").unwrap();
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(wait > 0 && wait <= 1000, "{wait}");
        limiter.check("b").unwrap();
    }
}
