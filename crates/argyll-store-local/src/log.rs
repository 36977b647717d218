//! The event logs: optimistic appends numbered densely per aggregate, reads of a log's tail,
//! snapshots, deletion, and the in-process feed of appended events.

use std::collections::HashMap;
use std::sync::Arc;

use argyll_events::{AggregateId, Event, EventEnvelope};
use argyll_model::Timestamp;
use argyll_store::{
    EventFeed, EventLog, FlowIndexEntry, Loaded, MemoryUsage, Snapshot, StoreError, StoreInfo,
    check_events_belong, read_newer_by_reading,
};
use tokio::sync::broadcast;

use crate::error::unavailable;
use crate::keys::{aggregate_prefix, event_key, sequence_of};
use crate::records::{
    decode_event, decode_snapshot, encode_event, encode_snapshot, snapshot_sequence,
};
use crate::store::{Inner, LocalStore};

fn seq(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl Inner {
    /// The next sequence of the aggregate whose prefix is `prefix`, from the cache or from the
    /// log's last key; the caller holds the aggregate's shard of `sequences`.
    fn next_sequence(
        &self,
        cached: &HashMap<AggregateId, u64>,
        aggregate: &AggregateId,
        prefix: &[u8],
    ) -> Result<u64, StoreError> {
        if let Some(next) = cached.get(aggregate) {
            return Ok(*next);
        }
        self.next_sequence_on_disk(aggregate, prefix)
    }

    /// The next sequence from the log's last key: a seek through every level of the tree.
    fn next_sequence_on_disk(
        &self,
        aggregate: &AggregateId,
        prefix: &[u8],
    ) -> Result<u64, StoreError> {
        match self.spaces.events.prefix(prefix).next_back() {
            None => Ok(0),
            Some(last) => {
                let key = last.key().map_err(unavailable)?;
                let sequence = sequence_of(&key).ok_or_else(|| {
                    StoreError::Corrupt(format!("event key of {aggregate} without a sequence"))
                })?;
                Ok(sequence.saturating_add(1))
            }
        }
    }

    fn remember_sequence(
        &self,
        cached: &mut HashMap<AggregateId, u64>,
        aggregate: &AggregateId,
        next: u64,
    ) {
        if let Some(known) = cached.get_mut(aggregate) {
            *known = next;
            return;
        }
        if cached.len() >= self.sequences_per_shard
            && let Some(evicted) = cached.keys().next().cloned()
        {
            cached.remove(&evicted);
        }
        cached.insert(aggregate.clone(), next);
    }

    fn read_events(
        &self,
        aggregate: &AggregateId,
        prefix: &[u8],
        from: u64,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        let mut events = Vec::new();
        for pair in self
            .spaces
            .events
            .range(event_key(prefix, from)..=event_key(prefix, u64::MAX))
        {
            let (key, value) = pair.into_inner().map_err(unavailable)?;
            let sequence = sequence_of(&key).ok_or_else(|| {
                StoreError::Corrupt(format!("event key of {aggregate} without a sequence"))
            })?;
            let (timestamp, event) = decode_event(aggregate, &value)?;
            events.push(Arc::new(EventEnvelope {
                aggregate_id: aggregate.clone(),
                sequence,
                timestamp,
                event,
            }));
        }
        Ok(events)
    }
}

impl LocalStore {
    /// Appends `events` at `expected` and, in the same batch, inserts `entry` into the flow
    /// index unless the flow has an entry: one journal write and one sync for both.
    async fn append_with(
        &self,
        aggregate: &AggregateId,
        expected: u64,
        events: Vec<(Timestamp, Event)>,
        entry: Option<&FlowIndexEntry>,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        check_events_belong(aggregate, &events)?;
        let inner = &self.inner;
        let prefix = aggregate_prefix(aggregate);
        let appended = {
            let mut cached = inner.sequences.lock(aggregate);
            let actual = if expected == 0 && !cached.contains_key(aggregate) {
                // A new flow's first append, the most frequent one not in the cache: a log
                // is empty exactly when it has no event 0 (sequences are dense and deletion
                // removes whole logs), which a point lookup answers through the tables'
                // bloom filters instead of a seek for the log's last key.
                if inner
                    .spaces
                    .events
                    .contains_key(event_key(&prefix, 0))
                    .map_err(unavailable)?
                {
                    inner.next_sequence_on_disk(aggregate, &prefix)?
                } else {
                    0
                }
            } else {
                inner.next_sequence(&cached, aggregate, &prefix)?
            };
            if actual != expected {
                return Err(StoreError::Conflict {
                    aggregate: aggregate.clone(),
                    expected,
                    actual,
                });
            }
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let mut batch = inner.db.batch();
            let mut appended = Vec::with_capacity(events.len());
            for (offset, (timestamp, event)) in events.into_iter().enumerate() {
                let sequence = expected + seq(offset);
                batch.insert(
                    &inner.spaces.events,
                    event_key(&prefix, sequence),
                    encode_event(timestamp, &event)?,
                );
                appended.push(Arc::new(EventEnvelope {
                    aggregate_id: aggregate.clone(),
                    sequence,
                    timestamp,
                    event,
                }));
            }
            // Lock order: the aggregate's sequence shard, then the flow's index lock.
            let _indexing = entry.map(|entry| inner.index_locks.lock(entry.flow_id.as_str()));
            if let Some(entry) = entry
                && inner.entry(&entry.flow_id)?.is_none()
            {
                inner.add_entry(&mut batch, None, entry)?;
            }
            batch.commit().map_err(unavailable)?;
            inner.remember_sequence(&mut cached, aggregate, expected + seq(appended.len()));
            // Published under the shard lock, so the feed carries each aggregate's events in
            // order; before the sync, as every later write is behind it in the journal.
            for envelope in &appended {
                let _ = inner.feed.send(envelope.clone());
            }
            appended
        };
        inner.commit.durable().await?;
        Ok(appended)
    }
}

impl EventLog for LocalStore {
    async fn append(
        &self,
        aggregate: &AggregateId,
        expected: u64,
        events: Vec<(Timestamp, Event)>,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        self.append_with(aggregate, expected, events, None).await
    }

    async fn append_first(
        &self,
        flow: &AggregateId,
        events: Vec<(Timestamp, Event)>,
        entry: &FlowIndexEntry,
    ) -> Result<(Vec<Arc<EventEnvelope>>, bool), StoreError> {
        Ok((self.append_with(flow, 0, events, Some(entry)).await?, true))
    }

    async fn read(
        &self,
        aggregate: &AggregateId,
        from: u64,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        // The most frequent read asks whether a cached state is still the newest: answered
        // from memory when the log's length is known (reading past a log's end on the disk
        // costs a seek through every level of the tree).
        if self
            .inner
            .sequences
            .lock(aggregate)
            .get(aggregate)
            .is_some_and(|next| from >= *next)
        {
            return Ok(Vec::new());
        }
        self.inner
            .read_events(aggregate, &aggregate_prefix(aggregate), from)
    }

    async fn read_newer(
        &self,
        aggregate: &AggregateId,
        known: u64,
    ) -> Result<Option<Vec<Arc<EventEnvelope>>>, StoreError> {
        // Asked for every cached state a reader uses: answered from the log's length in
        // memory where it is known (the store owns its directory, so nothing it wrote is
        // lost behind its back), without a seek through every level of the tree.
        let length = self.inner.sequences.lock(aggregate).get(aggregate).copied();
        match length {
            Some(next) if next == known => Ok(Some(Vec::new())),
            Some(next) if next < known => Ok(None),
            Some(_) => self
                .inner
                .read_events(aggregate, &aggregate_prefix(aggregate), known)
                .map(Some),
            None => read_newer_by_reading(self, aggregate, known).await,
        }
    }

    async fn load(&self, aggregate: &AggregateId) -> Result<Loaded, StoreError> {
        let inner = &self.inner;
        let prefix = aggregate_prefix(aggregate);
        let snapshot = inner
            .spaces
            .snapshots
            .get(&prefix)
            .map_err(unavailable)?
            .map(|value| decode_snapshot(&value))
            .transpose()?;
        let from = snapshot.as_ref().map_or(0, |snapshot| snapshot.sequence);
        let tail = inner.read_events(aggregate, &prefix, from)?;
        let next_sequence = tail
            .last()
            .map_or(from, |last| last.sequence.saturating_add(1));
        Ok(Loaded {
            snapshot,
            tail,
            next_sequence,
        })
    }

    async fn delete(&self, aggregate: &AggregateId) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let prefix = aggregate_prefix(aggregate);
        let existed = {
            let mut cached = inner.sequences.lock(aggregate);
            let mut batch = inner.db.batch();
            let mut existed = false;
            for key in inner.spaces.events.prefix(&prefix) {
                batch.remove(&inner.spaces.events, key.key().map_err(unavailable)?);
                existed = true;
            }
            if inner
                .spaces
                .snapshots
                .contains_key(&prefix)
                .map_err(unavailable)?
            {
                batch.remove(&inner.spaces.snapshots, prefix.clone());
                existed = true;
            }
            if !existed {
                return Ok(false);
            }
            batch.commit().map_err(unavailable)?;
            cached.remove(aggregate);
            existed
        };
        inner.commit.durable().await?;
        Ok(existed)
    }

    async fn put_snapshot(
        &self,
        aggregate: &AggregateId,
        snapshot: Snapshot,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let prefix = aggregate_prefix(aggregate);
        // Under the aggregate's lock: the log's length cannot change meanwhile. A snapshot is
        // not waited for: it is recomputed from the events if a crash loses it.
        let cached = inner.sequences.lock(aggregate);
        let next_sequence = inner.next_sequence(&cached, aggregate, &prefix)?;
        if snapshot.sequence > next_sequence {
            return Err(StoreError::InvalidSnapshot {
                aggregate: aggregate.clone(),
                sequence: snapshot.sequence,
                next_sequence,
            });
        }
        let newer = match inner.spaces.snapshots.get(&prefix).map_err(unavailable)? {
            Some(current) => snapshot_sequence(&current)? < snapshot.sequence,
            None => true,
        };
        if newer {
            inner
                .spaces
                .snapshots
                .insert(prefix, encode_snapshot(&snapshot))
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

impl EventFeed for LocalStore {
    fn subscribe(&self) -> broadcast::Receiver<Arc<EventEnvelope>> {
        self.inner.feed.subscribe()
    }
}

impl StoreInfo for LocalStore {
    /// The local store has no memory budget: its memory is bounded by its cache settings.
    async fn memory_usage(&self) -> Result<Option<MemoryUsage>, StoreError> {
        Ok(None)
    }
}
