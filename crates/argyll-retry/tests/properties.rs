//! Retry arithmetic over arbitrary policies and retry counts (proptest).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_model::BackoffType;
use argyll_retry::{RetryDecision, RetryPolicy};
use proptest::prelude::*;

fn backoff_type() -> impl Strategy<Value = BackoffType> {
    prop_oneof![
        Just(BackoffType::Fixed),
        Just(BackoffType::Linear),
        Just(BackoffType::Exponential),
        Just(BackoffType::Unset),
    ]
}

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        backoff_type(),
        0.0f64..=1.0,
    )
        .prop_map(
            |(max_retries, backoff_ms, max_backoff_ms, backoff_type, jitter)| RetryPolicy {
                max_retries,
                backoff_ms,
                max_backoff_ms,
                backoff_type,
                jitter,
            },
        )
}

proptest! {
    #[test]
    fn delays_never_panic_respect_the_cap_and_never_shrink(
        policy in policy(), n in any::<u64>(), sample in 0.0f64..1.0
    ) {
        let delay = policy.delay_millis(n);
        if policy.max_backoff_ms > 0 {
            prop_assert!(delay <= policy.max_backoff_ms as u64);
        }
        if n < u64::MAX {
            prop_assert!(policy.delay_millis(n + 1) >= delay, "delays grow monotonically");
        }
        let jittered = policy.jittered_delay_millis(n, sample);
        prop_assert!(jittered <= delay);
        match policy.decide_with_sample(n, sample) {
            RetryDecision::RetryAfterMillis(ms) => {
                prop_assert!(policy.should_retry(n));
                prop_assert_eq!(ms, jittered);
            }
            RetryDecision::GiveUp => prop_assert!(!policy.should_retry(n)),
        }
    }

    #[test]
    fn attempts_are_one_plus_max_retries(max_retries in 0i64..50) {
        let policy = RetryPolicy { max_retries, ..RetryPolicy::default() };
        let retries = (0..100u64).take_while(|n| policy.should_retry(*n)).count();
        prop_assert_eq!(retries as i64, max_retries);
    }
}
