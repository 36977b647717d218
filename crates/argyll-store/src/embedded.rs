//! The embedded store: everything in memory, shared by every engine handle in the process.
//!
//! Logs, index entries and leases live in shards keyed by hash, so concurrent flows never wait
//! on one global lock; events are kept as shared envelopes and never re-serialised. Each index
//! shard keeps its entries by id and, beside them, their (creation time, id) keys in order, so
//! a page in any order reads about `limit` entries of each shard and merges them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use argyll_events::{AggregateId, Event, EventEnvelope};
use argyll_model::Timestamp;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::broadcast;

use crate::error::{StoreError, check_events_belong};
use crate::memory::{LeaseTable, TimerQueue};
use crate::sharded::Sharded;
use crate::traits::{
    EventFeed, EventLog, FlowIndex, FlowIndexEntry, FlowOrder, FlowPage, FlowPhase, FlowQuery,
    Lease, Leases, Loaded, MemoryUsage, Snapshot, StoreInfo, TimeCursor, Timer, Timers,
};

const SHARDS: usize = 64;
/// Events a feed subscriber may fall behind before it is told it lagged.
pub const DEFAULT_FEED_CAPACITY: usize = 65_536;

#[derive(Default)]
struct Log {
    events: Vec<Arc<EventEnvelope>>,
    snapshot: Option<Snapshot>,
}

/// One shard of the flow index: the entries by id, and their keys by creation time.
#[derive(Default)]
struct IndexShard {
    by_id: BTreeMap<String, FlowIndexEntry>,
    /// `(created_at in nanoseconds, id)` of every entry in `by_id`.
    by_created: BTreeSet<(i64, String)>,
}

impl IndexShard {
    fn insert(&mut self, entry: FlowIndexEntry) {
        let key = time_key(&entry);
        if let Some(old) = self.by_id.insert(entry.flow_id.clone(), entry) {
            self.by_created.remove(&time_key(&old));
        }
        self.by_created.insert(key);
    }

    fn remove(&mut self, flow_id: &str) -> bool {
        match self.by_id.remove(flow_id) {
            Some(old) => {
                self.by_created.remove(&time_key(&old));
                true
            }
            None => false,
        }
    }

    /// Up to `count` entries matching `query` after its cursor, in its order.
    fn page(
        &self,
        query: &FlowQuery,
        cursor: Option<&(i64, String)>,
        count: usize,
    ) -> Vec<FlowIndexEntry> {
        let matching = |id: &String| self.by_id.get(id).filter(|entry| query.matches(entry));
        match query.order {
            FlowOrder::ById => {
                let prefix = query.id_prefix();
                let start = query.id_start().map(str::to_owned);
                self.by_id
                    .range::<String, _>((start, Bound::Unbounded))
                    .take_while(|(id, _)| id.starts_with(prefix))
                    .map(|(_, entry)| entry)
                    .filter(|entry| query.matches(entry))
                    .take(count)
                    .cloned()
                    .collect()
            }
            FlowOrder::NewestFirst => {
                let end = cursor.map_or(Bound::Unbounded, Bound::Excluded);
                self.by_created
                    .range((Bound::Unbounded, end))
                    .rev()
                    .filter_map(|(_, id)| matching(id))
                    .take(count)
                    .cloned()
                    .collect()
            }
            FlowOrder::OldestFirst => {
                let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
                self.by_created
                    .range((start, Bound::Unbounded))
                    .filter_map(|(_, id)| matching(id))
                    .take(count)
                    .cloned()
                    .collect()
            }
        }
    }
}

/// An entry's key in the by-creation order.
fn time_key(entry: &FlowIndexEntry) -> (i64, String) {
    (crate::nanos_of(entry.created_at), entry.flow_id.clone())
}

struct Inner {
    logs: Sharded<HashMap<AggregateId, Log>>,
    index: Sharded<IndexShard>,
    leases: LeaseTable,
    timers: Mutex<TimerQueue>,
    feed: broadcast::Sender<Arc<EventEnvelope>>,
}

/// The in-memory store. Clones share the same data (hand one to a new engine to simulate a
/// restart on a persistent store).
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("subscribers", &self.inner.feed.receiver_count())
            .finish_non_exhaustive()
    }
}

impl Default for EmbeddedStore {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedStore {
    /// An empty store with the default feed capacity.
    pub fn new() -> Self {
        Self::with_feed_capacity(DEFAULT_FEED_CAPACITY)
    }

    /// An empty store whose feed keeps `capacity` events for slow subscribers.
    pub fn with_feed_capacity(capacity: usize) -> Self {
        let (feed, _) = broadcast::channel(capacity.max(1));
        EmbeddedStore {
            inner: Arc::new(Inner {
                logs: Sharded::new(SHARDS),
                index: Sharded::new(SHARDS),
                leases: LeaseTable::default(),
                timers: Mutex::new(TimerQueue::default()),
                feed,
            }),
        }
    }

    fn timers(&self) -> MutexGuard<'_, TimerQueue> {
        self.inner.timers.lock()
    }
}

fn seq(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

impl EventLog for EmbeddedStore {
    async fn append(
        &self,
        aggregate: &AggregateId,
        expected: u64,
        events: Vec<(Timestamp, Event)>,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        check_events_belong(aggregate, &events)?;
        let mut logs = self.inner.logs.lock(aggregate);
        let actual = logs.get(aggregate).map_or(0, |log| seq(log.events.len()));
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
        let log = logs.entry(aggregate.clone()).or_default();
        let mut appended = Vec::with_capacity(events.len());
        for (offset, (timestamp, event)) in events.into_iter().enumerate() {
            let envelope = Arc::new(EventEnvelope {
                aggregate_id: aggregate.clone(),
                sequence: expected + seq(offset),
                timestamp,
                event,
            });
            log.events.push(envelope.clone());
            appended.push(envelope);
        }
        // Published under the shard lock, so the feed carries each aggregate's events in order.
        for envelope in &appended {
            let _ = self.inner.feed.send(envelope.clone());
        }
        Ok(appended)
    }

    async fn read(
        &self,
        aggregate: &AggregateId,
        from: u64,
    ) -> Result<Vec<Arc<EventEnvelope>>, StoreError> {
        let logs = self.inner.logs.lock(aggregate);
        let start = usize::try_from(from).unwrap_or(usize::MAX);
        Ok(logs
            .get(aggregate)
            .and_then(|log| log.events.get(start..))
            .map(<[_]>::to_vec)
            .unwrap_or_default())
    }

    async fn load(&self, aggregate: &AggregateId) -> Result<Loaded, StoreError> {
        let logs = self.inner.logs.lock(aggregate);
        let Some(log) = logs.get(aggregate) else {
            return Ok(Loaded::default());
        };
        let from = log
            .snapshot
            .as_ref()
            .map_or(0, |s| usize::try_from(s.sequence).unwrap_or(usize::MAX));
        Ok(Loaded {
            snapshot: log.snapshot.clone(),
            tail: log
                .events
                .get(from..)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            next_sequence: seq(log.events.len()),
        })
    }

    async fn put_snapshot(
        &self,
        aggregate: &AggregateId,
        snapshot: Snapshot,
    ) -> Result<(), StoreError> {
        let mut logs = self.inner.logs.lock(aggregate);
        let next_sequence = logs.get(aggregate).map_or(0, |log| seq(log.events.len()));
        if snapshot.sequence > next_sequence {
            return Err(StoreError::InvalidSnapshot {
                aggregate: aggregate.clone(),
                sequence: snapshot.sequence,
                next_sequence,
            });
        }
        let log = logs.entry(aggregate.clone()).or_default();
        if log
            .snapshot
            .as_ref()
            .is_none_or(|current| current.sequence < snapshot.sequence)
        {
            log.snapshot = Some(snapshot);
        }
        Ok(())
    }

    async fn delete(&self, aggregate: &AggregateId) -> Result<bool, StoreError> {
        let mut logs = self.inner.logs.lock(aggregate);
        Ok(logs.remove(aggregate).is_some())
    }
}

impl StoreInfo for EmbeddedStore {
    /// The embedded store has no memory budget of its own.
    async fn memory_usage(&self) -> Result<Option<MemoryUsage>, StoreError> {
        Ok(None)
    }
}

impl FlowIndex for EmbeddedStore {
    async fn put_flow(&self, entry: FlowIndexEntry) -> Result<(), StoreError> {
        let mut shard = self.inner.index.lock(entry.flow_id.as_str());
        shard.insert(entry);
        Ok(())
    }

    async fn insert_flow(&self, entry: FlowIndexEntry) -> Result<bool, StoreError> {
        let mut shard = self.inner.index.lock(entry.flow_id.as_str());
        if shard.by_id.contains_key(&entry.flow_id) {
            return Ok(false);
        }
        shard.insert(entry);
        Ok(true)
    }

    async fn get_flow(&self, flow_id: &str) -> Result<Option<FlowIndexEntry>, StoreError> {
        Ok(self.inner.index.lock(flow_id).by_id.get(flow_id).cloned())
    }

    async fn list_flows(&self, query: &FlowQuery) -> Result<FlowPage, StoreError> {
        let limit = query.page_limit();
        let cursor = match query.order {
            FlowOrder::ById => None,
            FlowOrder::NewestFirst | FlowOrder::OldestFirst => query
                .time_cursor()?
                .map(|cursor| (cursor.at, cursor.flow_id)),
        };
        // Each shard is sorted; take up to `limit + 1` from each after the cursor, then merge.
        let mut candidates = Vec::new();
        for shard in self.inner.index.each() {
            candidates.extend(shard.page(query, cursor.as_ref(), limit.saturating_add(1)));
        }
        match query.order {
            FlowOrder::ById => candidates.sort_by(|a, b| a.flow_id.cmp(&b.flow_id)),
            FlowOrder::OldestFirst => candidates.sort_by_cached_key(time_key),
            FlowOrder::NewestFirst => {
                candidates.sort_by_cached_key(|entry| std::cmp::Reverse(time_key(entry)));
            }
        }
        let more = candidates.len() > limit;
        candidates.truncate(limit);
        let next_after = match candidates.last() {
            Some(last) if more => Some(match query.order {
                FlowOrder::ById => last.flow_id.clone(),
                FlowOrder::NewestFirst | FlowOrder::OldestFirst => {
                    TimeCursor::of_entry(last).encode()
                }
            }),
            _ => None,
        };
        Ok(FlowPage {
            entries: candidates,
            next_after,
        })
    }

    async fn remove_flow(&self, flow_id: &str) -> Result<bool, StoreError> {
        Ok(self.inner.index.lock(flow_id).remove(flow_id))
    }

    /// A scan of the index keeping the newest `limit`: in process a scan is cheap (a few ms
    /// for a million flows), and keeping a second ordered index would cost every flow a
    /// global lock.
    async fn recently_deactivated(&self, limit: usize) -> Result<Vec<FlowIndexEntry>, StoreError> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The newest `limit` seen so far, oldest on top.
        let mut newest: BinaryHeap<Reverse<(Timestamp, String)>> = BinaryHeap::new();
        let mut entries: HashMap<String, FlowIndexEntry> = HashMap::new();
        for shard in self.inner.index.each() {
            for entry in shard.by_id.values() {
                if entry.phase != FlowPhase::Deactivated {
                    continue;
                }
                let key = (
                    entry.completed_at.unwrap_or(entry.created_at),
                    entry.flow_id.clone(),
                );
                if newest.len() < limit {
                    newest.push(Reverse(key));
                } else if newest.peek().is_some_and(|Reverse(oldest)| *oldest < key) {
                    if let Some(Reverse((_, dropped))) = newest.pop() {
                        entries.remove(&dropped);
                    }
                    newest.push(Reverse(key));
                } else {
                    continue;
                }
                entries.insert(entry.flow_id.clone(), entry.clone());
            }
        }
        let mut keys: Vec<(Timestamp, String)> =
            newest.into_iter().map(|Reverse(key)| key).collect();
        keys.sort_unstable_by(|a, b| b.cmp(a));
        Ok(keys
            .into_iter()
            .filter_map(|(_, flow_id)| entries.remove(&flow_id))
            .collect())
    }

    async fn deactivated_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<FlowIndexEntry>, StoreError> {
        Ok(self.oldest_deactivated(before, limit))
    }
}

impl EmbeddedStore {
    /// A scan keeping the `limit` oldest deactivated before `before` (as
    /// `recently_deactivated`, a scan is cheap in process).
    fn oldest_deactivated(&self, before: Timestamp, limit: usize) -> Vec<FlowIndexEntry> {
        use std::collections::BinaryHeap;
        if limit == 0 {
            return Vec::new();
        }
        // The oldest `limit` seen so far, newest on top.
        let mut oldest: BinaryHeap<(Timestamp, String)> = BinaryHeap::new();
        let mut entries: HashMap<String, FlowIndexEntry> = HashMap::new();
        for shard in self.inner.index.each() {
            for entry in shard.by_id.values() {
                let finished = entry.completed_at.unwrap_or(entry.created_at);
                if entry.phase != FlowPhase::Deactivated || finished >= before {
                    continue;
                }
                let key = (finished, entry.flow_id.clone());
                if oldest.len() < limit {
                    oldest.push(key);
                } else if oldest.peek().is_some_and(|newest| *newest > key) {
                    if let Some((_, dropped)) = oldest.pop() {
                        entries.remove(&dropped);
                    }
                    oldest.push(key);
                } else {
                    continue;
                }
                entries.insert(entry.flow_id.clone(), entry.clone());
            }
        }
        oldest
            .into_sorted_vec()
            .into_iter()
            .filter_map(|(_, flow_id)| entries.remove(&flow_id))
            .collect()
    }
}

impl EventFeed for EmbeddedStore {
    fn subscribe(&self) -> broadcast::Receiver<Arc<EventEnvelope>> {
        self.inner.feed.subscribe()
    }
}

/// Nothing to persist: the table is the store.
fn in_memory(_: &Lease) -> Result<(), StoreError> {
    Ok(())
}

impl Leases for EmbeddedStore {
    async fn acquire(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.leases.acquire(key, owner, ttl, now, in_memory)
    }

    async fn renew(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.leases.renew(key, owner, ttl, now, in_memory)
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        self.inner.leases.release(key, owner, |_| Ok(()))
    }

    async fn lapsed(
        &self,
        key_prefix: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        Ok(self.inner.leases.lapsed(key_prefix, now, limit))
    }
}

impl Timers for EmbeddedStore {
    async fn schedule(&self, timer: Timer) -> Result<(), StoreError> {
        self.timers().insert(timer);
        Ok(())
    }

    async fn cancel(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.timers().remove(key).is_some())
    }

    async fn take_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let mut queue = self.timers();
        let keys = queue.due_keys(now, limit);
        Ok(keys.iter().filter_map(|key| queue.remove(key)).collect())
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.timers().next_due())
    }
}
