//! The per-user rate limit of the HTTP API: a keyed GCRA limiter (`governor`) by user ID,
//! checked by the `Authenticated` extractor once the token's signature is verified and before
//! the registry is read, so a flood costs one signature check per request and nothing else.
//! A user's devices share one budget; other users are unaffected. Over the limit the answer is
//! 429 with `Retry-After` (see `ApiError::TooManyRequests`).
//!
//! Keys are user IDs from verified tokens, so there are at most as many as users holding a
//! valid token; entries that are back to a full burst are dropped now and then. This module
//! knows nothing of HTTP.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many checks between two sweeps of entries that no longer hold anything back.
const SWEEP_EVERY: u64 = 10_000;

/// Requests per user per second, with a burst. Cheap to share (`Arc` in `AppState`).
pub struct UserRateLimit {
    /// `None` when the limit is off (`limits.http_requests_per_second = 0`).
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for UserRateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRateLimit")
            .field("on", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

impl UserRateLimit {
    /// `per_second` sustained requests per user with bursts of `burst` (at least one);
    /// `per_second = 0` turns the limit off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Counts one request of `user`; `Err` with how long to wait when it is over the limit.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter
            .check_key(&user.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_over_the_burst_waits_and_others_do_not() {
        let limit = UserRateLimit::new(1, 3);
        for _ in 0..3 {
            assert!(limit.check("zhao").is_ok());
        }
        let wait = limit.check("zhao").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limit.check("qian").is_ok(),
            "another user has a budget of their own"
        );
    }

    #[test]
    fn zero_turns_it_off() {
        let limit = UserRateLimit::new(0, 0);
        for _ in 0..10_000 {
            assert!(limit.check("zhao").is_ok());
        }
    }
}
