//! Retention (`FLOW_RETENTION`): finished flows older than the retention are deleted from the
//! store — their events, snapshot and index entry — so a long-running server keeps a bounded
//! number of flows on every store, the in-memory one included. Flows are found oldest first by
//! the index ([`argyll_store::FlowIndex::deactivated_before`]), a batch at a time, so a round
//! costs about its batch whatever the number of stored flows.
//!
//! With archiving configured the binary does not turn this on: the archiver takes finished
//! flows out of the store (to the bucket) instead, so nothing unarchived is deleted.

use std::time::Duration;

use argyll_events::AggregateId;
use argyll_model::Timestamp;
use argyll_store::Store;

use super::{Engine, EngineError};

/// Flows deleted per round; a full round is followed by another at once.
const RETENTION_BATCH: usize = 500;

/// How often a retention of `retention` is applied: a tenth of it, between 100 ms and a minute
/// (a flow outlives its retention by at most that much).
pub(super) fn retention_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60))
}

impl<S: Store> Engine<S> {
    /// Deletes up to one batch of flows that finished more than `retention` ago, oldest
    /// first; returns how many were deleted. Events go before the index entry, so a crash in
    /// between leaves an entry that the next round deletes again, never events nobody finds.
    pub async fn delete_expired_flows(&self, retention: Duration) -> Result<usize, EngineError> {
        let store = &self.inner.store;
        let millis = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = Timestamp::from_unix_millis(
            self.now().unix_millis().unwrap_or(0).saturating_sub(millis),
        );
        let expired = store.deactivated_before(cutoff, RETENTION_BATCH).await?;
        for entry in &expired {
            let aggregate = AggregateId::Flow(entry.flow_id.clone());
            store.delete(&aggregate).await?;
            if let Some(flows) = &self.inner.flows {
                flows.invalidate(&aggregate);
            }
            store.remove_flow(&entry.flow_id).await?;
        }
        Ok(expired.len())
    }

    /// Applies [`EngineConfig::flow_retention`](super::EngineConfig::flow_retention) until
    /// shutdown.
    pub(super) async fn retention_loop(&self) {
        let Some(retention) = self.inner.config.flow_retention else {
            return;
        };
        let interval = retention_interval(retention);
        loop {
            match self.delete_expired_flows(retention).await {
                Ok(deleted) if deleted > 0 => {
                    tracing::info!(
                        deleted,
                        retention_secs = retention.as_secs(),
                        "deleted finished flows past their retention"
                    );
                    if deleted >= RETENTION_BATCH {
                        tokio::task::yield_now().await;
                        continue;
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention round failed; trying again later"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(
            retention_interval(Duration::from_secs(7 * 86_400)),
            Duration::from_secs(60)
        );
        assert_eq!(
            retention_interval(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(
            retention_interval(Duration::from_millis(200)),
            Duration::from_millis(100)
        );
    }
}
