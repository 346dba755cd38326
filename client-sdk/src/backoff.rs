//! Reconnect delays: exponential, capped, with jitter so that a street's worth of phones coming
//! out of the same basement do not all knock at once. Pure arithmetic over an injected random
//! source, so it is tested without clocks.

use std::time::Duration;

use rand::Rng;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay before the first retry.
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

/// The delays of one run of failures.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// After a success: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt: a random point in the upper half of
    /// `min(max, initial * 2^attempt)`.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let ceiling = self
            .config
            .initial
            .saturating_mul(factor)
            .min(self.config.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter = rng.random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_grow_are_capped_and_reset() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let config = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut backoff = Backoff::new(config);
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay(&mut rng)).collect();
        for (i, d) in delays.iter().enumerate() {
            let ceiling = (config.initial * (1 << i)).min(config.max);
            assert!(*d >= ceiling / 2 && *d <= ceiling, "attempt {i}: {d:?}");
        }
        assert!(delays[9] >= Duration::from_secs(1), "capped, not zero");
        backoff.reset();
        assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_devices() {
        let config = BackoffConfig::default();
        let firsts: std::collections::BTreeSet<Duration> = (0..20)
            .map(|seed| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let mut b = Backoff::new(config);
                b.next_delay(&mut rng);
                b.next_delay(&mut rng)
            })
            .collect();
        assert!(firsts.len() > 10, "devices retry at different moments");
    }
}
