//! Riding out a store outage: operations whose failure would lose a result, an index entry or a
//! timer are retried while the store is unreachable, for a bounded time.

use std::time::Duration;

use argyll_model::BackoffType;
use argyll_retry::RetryPolicy;
use argyll_store::Store;

use super::{Engine, EngineError};

/// How long work results, index updates and timers are retried while the store is away.
const STORE_OUTAGE_PATIENCE: Duration = Duration::from_secs(60);

/// The pauses between those attempts: 50 ms doubling up to 1 s (the deadline ends them).
const STORE_OUTAGE_BACKOFF: RetryPolicy = RetryPolicy {
    max_retries: -1,
    backoff_ms: 50,
    max_backoff_ms: 1_000,
    backoff_type: BackoffType::Exponential,
    jitter: 0.0,
};

impl<S: Store> Engine<S> {
    /// Runs `operation` again while it fails because the store is unavailable (a lost
    /// connection), with backoff, for up to [`STORE_OUTAGE_PATIENCE`].
    pub(super) async fn retrying_store<T, F, Fut>(&self, mut operation: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, EngineError>>,
    {
        let started = tokio::time::Instant::now();
        let mut retries = 0;
        loop {
            match operation().await {
                Err(error)
                    if error.is_unavailable() && started.elapsed() < STORE_OUTAGE_PATIENCE =>
                {
                    tracing::debug!(%error, "store unavailable; retrying");
                    let pause = STORE_OUTAGE_BACKOFF.delay_millis(retries);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    retries += 1;
                }
                other => return other,
            }
        }
    }
}
