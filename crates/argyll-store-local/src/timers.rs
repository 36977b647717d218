//! Durable timers: kept in memory by due time (they are few: retries waiting for their
//! moment), written through to the disk and loaded on open. Scheduling waits for the write
//! to be durable, like an append.

use argyll_model::Timestamp;
use argyll_store::{StoreError, Timer, Timers};

use crate::error::unavailable;
use crate::records::encode_timer;
use crate::store::LocalStore;

impl Timers for LocalStore {
    async fn schedule(&self, timer: Timer) -> Result<(), StoreError> {
        let inner = &self.inner;
        {
            let mut queue = inner.timers.lock();
            inner
                .spaces
                .timers
                .insert(timer.key.as_str(), encode_timer(&timer))
                .map_err(unavailable)?;
            queue.insert(timer);
        }
        inner.commit.durable().await
    }

    async fn cancel(&self, key: &str) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let mut queue = inner.timers.lock();
        if queue.contains(key) {
            inner.spaces.timers.remove(key).map_err(unavailable)?;
            queue.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn take_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let inner = &self.inner;
        let mut queue = inner.timers.lock();
        let keys = queue.due_keys(now, limit);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Removed from the disk before they are handed out: a crash after this loses them,
        // as on Redis; recovery's sweep resumes the retries from the flows' own events.
        let mut batch = inner.db.batch();
        for key in &keys {
            batch.remove(&inner.spaces.timers, key.as_str());
        }
        batch.commit().map_err(unavailable)?;
        inner.commit.written_through()?;
        let due = keys.iter().filter_map(|key| queue.remove(key)).collect();
        Ok(due)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.inner.timers.lock().next_due())
    }
}
