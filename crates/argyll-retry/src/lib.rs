//! # argyll-retry
//!
//! When a work item fails in a retryable way (network error, timeout, HTTP 5xx or 429, a webhook
//! asking for a retry), this crate decides whether to try again and how long to wait
//! (`engine.md` §5.14 with the contract's decision 8).
//!
//! **Owns**: the retry policy value, the retry/give-up decision and the backoff arithmetic for
//! `fixed`, `linear` and `exponential` delays, with an optional jitter.
//!
//! **Must not depend on**: anything but `argyll-model`; no clock, no timers, no randomness of its
//! own. Callers pass the retry count, and a random sample when they want jitter, and get a delay
//! back; scheduling the retry is the engine's business. The engine-wide default policy is a value
//! the caller passes in (from configuration), never a global.
//!
//! Arithmetic saturates: an unlimited policy (`max_retries < 0`) asked for retry 10⁶ returns the
//! cap (or `u64::MAX` ms without one) instead of overflowing.
//!
//! ```
//! use argyll_retry::{RetryDecision, RetryPolicy};
//! use argyll_model::BackoffType;
//!
//! let policy = RetryPolicy {
//!     max_retries: 3,
//!     backoff_ms: 100,
//!     max_backoff_ms: 5_000,
//!     backoff_type: BackoffType::Exponential,
//!     jitter: 0.0,
//! };
//! let delays: Vec<_> = (0..4).map(|n| policy.decide(n)).collect();
//! assert_eq!(
//!     delays,
//!     [
//!         RetryDecision::RetryAfterMillis(100),
//!         RetryDecision::RetryAfterMillis(200),
//!         RetryDecision::RetryAfterMillis(400),
//!         RetryDecision::GiveUp,
//!     ]
//! );
//! ```

use argyll_model::{BackoffType, WorkConfig};

/// How a step retries retryable failures.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt: 0 none, negative unlimited.
    pub max_retries: i64,
    /// Base delay in milliseconds (negative values count as 0).
    pub backoff_ms: i64,
    /// Upper bound of a delay in milliseconds; 0 (or negative) means no cap (decision 8).
    pub max_backoff_ms: i64,
    /// How delays grow; anything unrecognised (or unset) behaves as `fixed`.
    pub backoff_type: BackoffType,
    /// Jitter ratio in `[0, 1]`: a delay `d` becomes `d · (1 − jitter · sample)` for the caller's
    /// random `sample` in `[0, 1)`. 0 turns jitter off (the default).
    pub jitter: f64,
}

/// What to do after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this many milliseconds.
    RetryAfterMillis(u64),
    /// No retries left: the work item fails.
    GiveUp,
}

impl Default for RetryPolicy {
    /// The original engine's defaults: 10 retries, 1 s base, 60 s cap, exponential, no jitter.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 10,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            backoff_type: BackoffType::Exponential,
            jitter: 0.0,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        RetryPolicy {
            max_retries: 0,
            backoff_ms: 0,
            max_backoff_ms: 0,
            backoff_type: BackoffType::Fixed,
            jitter: 0.0,
        }
    }

    /// The policy of a step: its own `work_config` when it has one (a work config that sets only
    /// `parallelism` therefore means no retries), else `engine_default`.
    ///
    /// Jitter is an engine setting, so it is taken from `engine_default` in both cases.
    pub fn for_step(work_config: Option<&WorkConfig>, engine_default: &RetryPolicy) -> Self {
        match work_config {
            None => engine_default.clone(),
            Some(config) => RetryPolicy {
                max_retries: config.max_retries,
                backoff_ms: config.backoff_ms,
                max_backoff_ms: config.max_backoff_ms,
                backoff_type: config.backoff_type.clone(),
                jitter: engine_default.jitter,
            },
        }
    }

    /// Whether another retry is allowed after `retries_so_far` retries.
    pub fn should_retry(&self, retries_so_far: u64) -> bool {
        match u64::try_from(self.max_retries) {
            Err(_) => true, // negative: unlimited
            Ok(max) => retries_so_far < max,
        }
    }

    /// The delay before retry number `retries_so_far` (0-based), without jitter.
    ///
    /// fixed: `b`; linear: `b · (n + 1)`; exponential: `b · 2ⁿ`; then capped by
    /// `max_backoff_ms` when it is positive. Saturates at `u64::MAX`.
    pub fn delay_millis(&self, retries_so_far: u64) -> u64 {
        let base = u64::try_from(self.backoff_ms).unwrap_or(0);
        let uncapped = match self.backoff_type {
            BackoffType::Linear => base.saturating_mul(retries_so_far.saturating_add(1)),
            BackoffType::Exponential => {
                let factor = u32::try_from(retries_so_far)
                    .ok()
                    .and_then(|n| 1u64.checked_shl(n))
                    .unwrap_or(u64::MAX);
                if base == 0 {
                    0
                } else {
                    base.saturating_mul(factor)
                }
            }
            BackoffType::Fixed | BackoffType::Unset | BackoffType::Unrecognized(_) => base,
        };
        match u64::try_from(self.max_backoff_ms) {
            Ok(cap) if cap > 0 => uncapped.min(cap),
            _ => uncapped,
        }
    }

    /// The delay with jitter applied for a caller-supplied random `sample` in `[0, 1)`.
    pub fn jittered_delay_millis(&self, retries_so_far: u64, sample: f64) -> u64 {
        let delay = self.delay_millis(retries_so_far);
        let ratio = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if ratio == 0.0 || delay == 0 {
            return delay;
        }
        // f64 keeps 53 bits, enough for any realistic delay; the cast saturates by definition.
        let scaled = (delay as f64) * (1.0 - ratio * sample);
        scaled.max(0.0) as u64
    }

    /// The decision after `retries_so_far` retries have already been scheduled.
    pub fn decide(&self, retries_so_far: u64) -> RetryDecision {
        self.decide_with_sample(retries_so_far, 0.0)
    }

    /// [`RetryPolicy::decide`] with jitter drawn from `sample` in `[0, 1)`.
    pub fn decide_with_sample(&self, retries_so_far: u64, sample: f64) -> RetryDecision {
        if self.should_retry(retries_so_far) {
            RetryDecision::RetryAfterMillis(self.jittered_delay_millis(retries_so_far, sample))
        } else {
            RetryDecision::GiveUp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff_type: BackoffType, backoff_ms: i64, max_backoff_ms: i64) -> RetryPolicy {
        RetryPolicy {
            max_retries: -1,
            backoff_ms,
            max_backoff_ms,
            backoff_type,
            jitter: 0.0,
        }
    }

    #[test]
    fn should_retry_table() {
        let default = RetryPolicy::default();
        assert!(RetryPolicy::for_step(None, &default).should_retry(0));
        let with = |max_retries| RetryPolicy {
            max_retries,
            ..RetryPolicy::never()
        };
        assert!(!with(0).should_retry(0));
        assert!(with(3).should_retry(2));
        assert!(!with(3).should_retry(3));
        assert!(with(-1).should_retry(100));
        assert!(with(-1).should_retry(u64::MAX));
    }

    #[test]
    fn delays_of_the_reference_table() {
        let fixed = policy(BackoffType::Fixed, 1000, 10_000);
        assert_eq!((fixed.delay_millis(0), fixed.delay_millis(5)), (1000, 1000));
        let linear = policy(BackoffType::Linear, 1000, 10_000);
        assert_eq!(
            (linear.delay_millis(0), linear.delay_millis(3)),
            (1000, 4000)
        );
        let exponential = policy(BackoffType::Exponential, 1000, 10_000);
        assert_eq!(exponential.delay_millis(0), 1000);
        assert_eq!(exponential.delay_millis(3), 8000);
        assert_eq!(exponential.delay_millis(10), 10_000);
        let unknown = policy(BackoffType::Unrecognized("zigzag".into()), 750, 1200);
        assert_eq!(unknown.delay_millis(5), 750);
    }

    #[test]
    fn configuration_guide_example() {
        let guide = RetryPolicy {
            max_retries: 3,
            ..policy(BackoffType::Exponential, 100, 5000)
        };
        let decisions: Vec<RetryDecision> = (0..5).map(|n| guide.decide(n)).collect();
        assert_eq!(
            decisions,
            [
                RetryDecision::RetryAfterMillis(100),
                RetryDecision::RetryAfterMillis(200),
                RetryDecision::RetryAfterMillis(400),
                RetryDecision::GiveUp,
                RetryDecision::GiveUp,
            ]
        );
    }

    #[test]
    fn zero_cap_means_no_cap() {
        // Decision 8: the original capped at 0 and retried immediately.
        let uncapped = policy(BackoffType::Exponential, 100, 0);
        assert_eq!(uncapped.delay_millis(4), 1600);
        assert_eq!(policy(BackoffType::Linear, 100, 0).delay_millis(9), 1000);
        assert_eq!(
            policy(BackoffType::Exponential, 100, -5).delay_millis(1),
            200
        );
    }

    #[test]
    fn arithmetic_saturates_at_huge_retry_counts() {
        let exponential = policy(BackoffType::Exponential, 1000, 0);
        assert_eq!(exponential.delay_millis(1_000_000), u64::MAX);
        assert_eq!(exponential.delay_millis(63), u64::MAX);
        assert_eq!(exponential.delay_millis(u64::MAX), u64::MAX);
        assert_eq!(
            policy(BackoffType::Linear, i64::MAX, 0).delay_millis(1_000_000),
            u64::MAX
        );
        let capped = policy(BackoffType::Exponential, 1000, 60_000);
        assert_eq!(capped.delay_millis(1_000_000), 60_000);
        assert_eq!(
            capped.decide(1_000_000),
            RetryDecision::RetryAfterMillis(60_000)
        );
        assert_eq!(
            policy(BackoffType::Exponential, 0, 0).delay_millis(1_000_000),
            0
        );
        assert_eq!(policy(BackoffType::Fixed, -10, 0).delay_millis(0), 0);
    }

    #[test]
    fn step_config_replaces_the_engine_default_entirely() {
        let default = RetryPolicy {
            jitter: 0.25,
            ..RetryPolicy::default()
        };
        assert_eq!(RetryPolicy::for_step(None, &default), default);
        let parallel_only = WorkConfig {
            parallelism: 4,
            ..WorkConfig::default()
        };
        let policy = RetryPolicy::for_step(Some(&parallel_only), &default);
        assert_eq!(
            policy.decide(0),
            RetryDecision::GiveUp,
            "parallelism alone means no retries"
        );
        assert_eq!(policy.jitter, 0.25, "jitter is an engine setting");
        let own = WorkConfig {
            max_retries: 2,
            backoff_ms: 50,
            backoff_type: BackoffType::Linear,
            ..WorkConfig::default()
        };
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::for_step(Some(&own), &default)
        };
        assert_eq!(policy.decide(1), RetryDecision::RetryAfterMillis(100));
        assert_eq!(policy.decide(2), RetryDecision::GiveUp);
    }

    #[test]
    fn jitter_is_off_by_default_and_bounded_when_on() {
        let plain = policy(BackoffType::Fixed, 1000, 0);
        assert_eq!(plain.jittered_delay_millis(0, 0.9), 1000);
        let jittery = RetryPolicy {
            jitter: 0.5,
            ..plain
        };
        assert_eq!(jittery.jittered_delay_millis(0, 0.0), 1000);
        assert_eq!(jittery.jittered_delay_millis(0, 0.5), 750);
        assert_eq!(jittery.jittered_delay_millis(0, 0.999_999), 500);
        assert_eq!(jittery.jittered_delay_millis(0, f64::NAN), 1000);
        let wild = RetryPolicy {
            jitter: 7.0,
            ..jittery
        };
        assert_eq!(
            wild.jittered_delay_millis(0, 0.5),
            500,
            "ratio is clamped to 1"
        );
        assert_eq!(
            wild.decide_with_sample(0, 0.5),
            RetryDecision::RetryAfterMillis(500)
        );
    }
}
