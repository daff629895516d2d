//! Token-bucket rate limiting per session or per client address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::extract::{access_token, authenticate, CheckedToken};
use crate::state::AppState;

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

/// The layer in front of every route. A bucket is chosen by who is asking,
/// and only a checked token says that: a valid one spends its session's
/// bucket, anything else the client address's, so an unknown token buys no
/// fresh bucket. A wrong token is also a guess at a credential and spends
/// the address's failed-login bucket too.
pub async fn limit_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.config.rate_limit.enabled || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let address = format!(
        "ip:{}",
        crate::api::client_ip(&parts, &state.config.trusted_proxies)
    );
    let verdict = match access_token(&parts) {
        None => state.limiter.check(&address),
        Some(token) => {
            let checked = match authenticate(&state, &token).await {
                Ok(checked) => checked,
                Err(err) => return err.into_response(),
            };
            let verdict = match &checked {
                // User ids hold no space, so no two sessions share a key.
                Some(auth) => state
                    .limiter
                    .check(&format!("session:{} {}", auth.user_id, auth.device_id)),
                None => state
                    .limiter
                    .check(&address)
                    .and_then(|()| state.login_limiter.check(&format!("token:{address}"))),
            };
            parts.extensions.insert(CheckedToken(checked));
            verdict
        }
    };
    if let Err(wait) = verdict {
        return ApiError::limit_exceeded(wait).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
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
