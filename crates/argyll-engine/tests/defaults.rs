//! One source of truth for defaults: an engine built with `EngineConfig::default()` (embedded
//! use) behaves as the server does with no setting given — its defaults are the documented
//! ones of `argyll-config`'s sections.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use argyll_config::Settings;
use argyll_engine::EngineConfig;
use argyll_retry::RetryPolicy;

fn bytes(n: usize) -> u64 {
    u64::try_from(n).unwrap()
}

#[test]
fn the_engine_defaults_are_the_documented_settings() {
    let engine = EngineConfig::default();
    let Settings {
        engine: documented,
        retry,
        ..
    } = Settings::default();
    assert_eq!(
        engine.lease_ttl, documented.work_lease_timeout,
        "WORK_LEASE_TIMEOUT"
    );
    assert_eq!(engine.step_timeout, documented.step_timeout, "STEP_TIMEOUT");
    assert_eq!(
        engine.step_max_response_bytes, documented.step_max_response_bytes,
        "STEP_MAX_RESPONSE_BYTES"
    );
    assert_eq!(
        engine.max_state_bytes,
        bytes(documented.flow_max_state_bytes),
        "FLOW_MAX_STATE_BYTES"
    );
    assert_eq!(
        engine.memo_cache_size,
        bytes(documented.memo_cache_size),
        "MEMO_CACHE_SIZE"
    );
    assert_eq!(
        engine.flow_cache_size,
        bytes(documented.flow_cache_size),
        "FLOW_CACHE_SIZE"
    );
    assert_eq!(
        engine.flow_cache_bytes,
        bytes(documented.flow_cache_max_bytes),
        "FLOW_CACHE_MAX_BYTES"
    );
    assert_eq!(
        engine.script_limits.memory_bytes, documented.script_memory_bytes,
        "SCRIPT_MEMORY_LIMIT_MB"
    );
    assert_eq!(
        engine.script_limits.steps, documented.script_step_limit,
        "SCRIPT_STEP_LIMIT"
    );
    assert_eq!(
        engine.script_limits.timeout, documented.script_timeout,
        "SCRIPT_TIMEOUT"
    );
    assert_eq!(
        engine.max_id_length, documented.max_id_length,
        "MAX_ID_LENGTH"
    );
    assert_eq!(
        engine.flow_max_depth, documented.flow_max_depth,
        "FLOW_MAX_DEPTH"
    );
    assert_eq!(
        engine.engine_state_max_flows, documented.engine_state_max_flows,
        "ENGINE_STATE_MAX_FLOWS"
    );
    assert_eq!(
        engine.max_work_items, documented.max_work_items,
        "MAX_WORK_ITEMS"
    );
    assert_eq!(
        engine.min_retry_delay.as_millis(),
        u128::from(retry.min_backoff_ms),
        "RETRY_MIN_BACKOFF_MS"
    );
    assert_eq!(
        engine.flow_retention, documented.flow_retention,
        "FLOW_RETENTION"
    );
    assert_eq!(
        engine.retry,
        RetryPolicy {
            max_retries: retry.max_retries,
            backoff_ms: i64::try_from(retry.backoff_ms).unwrap(),
            max_backoff_ms: i64::try_from(retry.max_backoff_ms).unwrap(),
            backoff_type: retry.backoff_type,
            jitter: 0.0,
        },
        "RETRY_*"
    );
}
