//! Reconnect timing: exponential backoff with jitter and an attempt budget.

/// How signaling reconnects (`retry` in the session config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub initial_delay_ms: f64,
    pub max_delay_ms: f64,
    pub factor: f64,
    /// ±fraction of the delay, so that clients of a restarted server do not all come back at once.
    pub jitter: f64,
    /// Attempts per outage. A negative value means forever. The budget resets after every
    /// successful reconnect.
    pub max_attempts: i32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay_ms: 250.0,
            max_delay_ms: 10_000.0,
            factor: 2.0,
            jitter: 0.2,
            max_attempts: 20,
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt number `attempt` (0-based), with `random01` in [0, 1).
    pub fn delay_ms(&self, attempt: u32, random01: f64) -> f64 {
        let base = (self.initial_delay_ms * self.factor.max(1.0).powi(attempt.min(64) as i32))
            .min(self.max_delay_ms);
        let spread = self.jitter.clamp(0.0, 1.0);
        (base * (1.0 - spread + 2.0 * spread * random01.clamp(0.0, 1.0))).max(0.0)
    }

    /// True once `attempts` failed attempts use up the budget.
    pub fn exhausted(&self, attempts: u32) -> bool {
        self.max_attempts >= 0 && attempts >= self.max_attempts as u32
    }
}

/// Small deterministic PRNG (xorshift64*) for jitter: seeded by the shell from
/// `Math.random()`, by tests with a constant.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// Next value in [0, 1).
    pub fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let p = RetryPolicy {
            initial_delay_ms: 100.0,
            max_delay_ms: 1000.0,
            factor: 2.0,
            jitter: 0.2,
            max_attempts: 3,
        };
        assert_eq!(p.delay_ms(0, 0.5), 100.0);
        assert_eq!(p.delay_ms(1, 0.5), 200.0);
        assert_eq!(p.delay_ms(3, 0.5), 800.0);
        assert_eq!(p.delay_ms(4, 0.5), 1000.0);
        assert_eq!(p.delay_ms(40, 0.5), 1000.0);
        assert_eq!(p.delay_ms(0, 0.0), 80.0);
        assert!((p.delay_ms(0, 0.999_999) - 120.0).abs() < 0.01);
        assert!(!p.exhausted(2) && p.exhausted(3));
        assert!(!RetryPolicy {
            max_attempts: -1,
            ..p
        }
        .exhausted(u32::MAX));
    }

    #[test]
    fn jitter_is_uniform_enough_and_deterministic() {
        let mut j = Jitter::new(42);
        let values: Vec<f64> = (0..10_000).map(|_| j.next_unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_eq!(Jitter::new(42).next_unit(), values[0]);
    }
}
