//! The storage traits the engine is written against. Every method is async so that network
//! stores fit; the embedded store answers immediately.

use std::future::Future;
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use argyll_events::{AggregateId, Event, EventEnvelope};
use argyll_model::Timestamp;
use tokio::sync::broadcast;

use crate::error::StoreError;

/// Per-aggregate event logs with optimistic concurrency.
///
/// Sequences are 0-based and dense per aggregate; the next sequence of an aggregate is the
/// number of events ever appended to it.
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` if the aggregate's next sequence is `expected`, numbering them from
    /// there; otherwise nothing is written and the error is [`StoreError::Conflict`] with the
    /// actual next sequence. Appended events are published on the [`EventFeed`], in order.
    fn append(
        &self,
        aggregate: &AggregateId,
        expected: u64,
        events: Vec<(Timestamp, Event)>,
    ) -> impl Future<Output = Result<Vec<Arc<EventEnvelope>>, StoreError>> + Send;

    /// The events of `aggregate` from sequence `from` on (empty for an unknown aggregate).
    fn read(
        &self,
        aggregate: &AggregateId,
        from: u64,
    ) -> impl Future<Output = Result<Vec<Arc<EventEnvelope>>, StoreError>> + Send;

    /// Appends the first events of a flow's log (at sequence 0, as [`EventLog::append`]) and,
    /// where the store can, inserts the flow's index entry in the same durable write (unless
    /// the flow has an entry, as `FlowIndex::insert_flow`), so a started flow waits for one
    /// sync and is never stored without its entry. Returns the appended events and whether
    /// the entry was written; the default only appends, and the caller inserts the entry.
    fn append_first(
        &self,
        flow: &AggregateId,
        events: Vec<(Timestamp, Event)>,
        entry: &FlowIndexEntry,
    ) -> impl Future<Output = Result<(Vec<Arc<EventEnvelope>>, bool), StoreError>> + Send {
        let _ = entry;
        async move { Ok((self.append(flow, 0, events).await?, false)) }
    }

    /// What a reader holding `aggregate`'s log up to `known` (its next sequence) lacks: the
    /// events from `known` on, or `None` when the store no longer holds the event at
    /// `known - 1` (events the reader holds were lost, e.g. by a failover: it must load
    /// afresh). The default reads from `known - 1`; a store that knows a log's length in
    /// memory answers without reading ([`read_newer_by_reading`] is the default's body).
    fn read_newer(
        &self,
        aggregate: &AggregateId,
        known: u64,
    ) -> impl Future<Output = Result<Option<Vec<Arc<EventEnvelope>>>, StoreError>> + Send {
        read_newer_by_reading(self, aggregate, known)
    }

    /// The latest snapshot (if any) and the events after it: what a projection needs.
    fn load(
        &self,
        aggregate: &AggregateId,
    ) -> impl Future<Output = Result<Loaded, StoreError>> + Send;

    /// Deletes an aggregate's events and snapshot (archived flows); `false` if it had none.
    fn delete(
        &self,
        aggregate: &AggregateId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores a snapshot folding events `[0, snapshot.sequence)`; an older one than the stored
    /// snapshot is ignored, and one beyond the log is [`StoreError::InvalidSnapshot`].
    fn put_snapshot(
        &self,
        aggregate: &AggregateId,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// [`EventLog::read_newer`] answered by reading the log from `known - 1`: the event there
/// proves the reader's copy is still in the store.
pub async fn read_newer_by_reading<S: EventLog + ?Sized>(
    store: &S,
    aggregate: &AggregateId,
    known: u64,
) -> Result<Option<Vec<Arc<EventEnvelope>>>, StoreError> {
    let Some(last) = known.checked_sub(1) else {
        return store.read(aggregate, 0).await.map(Some);
    };
    let mut events = store.read(aggregate, last).await?;
    if events.first().map(|first| first.sequence) != Some(last) {
        return Ok(None);
    }
    events.remove(0);
    Ok(Some(events))
}

/// A projected state serialised by the engine, valid up to (excluding) `sequence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The next sequence of the state it captures.
    pub sequence: u64,
    /// The state as JSON text.
    pub state_json: Arc<str>,
}

/// What [`EventLog::load`] returns.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The latest snapshot, if one was stored.
    pub snapshot: Option<Snapshot>,
    /// The events after the snapshot (all events without one).
    pub tail: Vec<Arc<EventEnvelope>>,
    /// The aggregate's next sequence (expected sequence of the next append).
    pub next_sequence: u64,
}

/// Where a flow is in its life, as the index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlowPhase {
    /// Started, not yet finished with all its work.
    Active,
    /// Terminal and without pending or running work.
    Deactivated,
    /// Being archived (leased by an archiver).
    Archiving,
    /// In the archive; readable from there.
    Archived,
}

/// Outcome of a flow as the index records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowOutcome {
    /// Still running.
    Active,
    /// Completed.
    Completed,
    /// Failed.
    Failed,
}

/// One flow in the index (the original's digest plus where the flow is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowIndexEntry {
    /// The flow id.
    pub flow_id: String,
    /// The parent flow of a child flow.
    pub parent_flow_id: Option<String>,
    /// Its outcome so far.
    pub outcome: FlowOutcome,
    /// Its phase.
    pub phase: FlowPhase,
    /// When it started.
    pub created_at: Timestamp,
    /// When it reached its outcome.
    pub completed_at: Option<Timestamp>,
    /// The failure message.
    pub error: Option<String>,
    /// The flow's goals (empty in entries written before they were recorded).
    pub goals: Vec<String>,
}

/// The order of a [`FlowQuery`]'s results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FlowOrder {
    /// By flow id, ascending; the cursor is the last id of the previous page.
    #[default]
    ById,
    /// By `created_at`, newest first, ties by flow id descending; the cursor is a
    /// [`TimeCursor`].
    NewestFirst,
    /// By `created_at`, oldest first, ties by flow id ascending; the cursor is a
    /// [`TimeCursor`].
    OldestFirst,
}

/// A page request over the flow index: results in [`FlowQuery::order`], after the cursor
/// `after`, filtered.
///
/// Paging holds while flows are added and changed: a page continues exactly after the last
/// entry of the previous one (its position, not an offset), so an entry that existed when the
/// first page was read is listed once, never repeated or skipped. An entry's `created_at`
/// never changes once it is indexed, so its place in the time orders is fixed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowQuery {
    /// Only flows with this outcome.
    pub outcome: Option<FlowOutcome>,
    /// Only flows in one of these phases (all phases when empty).
    pub phases: Vec<FlowPhase>,
    /// Only flows without a parent.
    pub top_level_only: bool,
    /// Only flows whose id starts with this (none when empty). By id this is a range of the
    /// index, not a scan of it.
    pub prefix: Option<String>,
    /// The order of the results.
    pub order: FlowOrder,
    /// The previous page's cursor (its `next_after`): only flows after it in `order`. By id,
    /// an id (any text); in a time order, a [`TimeCursor`] — anything else is
    /// [`StoreError::InvalidCursor`].
    pub after: Option<String>,
    /// At most this many (0 means no limit).
    pub limit: usize,
}

impl FlowQuery {
    /// Whether `entry` passes the query's filters (outcome, phases, top level, id prefix);
    /// paging aside.
    pub fn matches(&self, entry: &FlowIndexEntry) -> bool {
        self.outcome.is_none_or(|outcome| entry.outcome == outcome)
            && (self.phases.is_empty() || self.phases.contains(&entry.phase))
            && !(self.top_level_only && entry.parent_flow_id.is_some())
            && entry.flow_id.starts_with(self.id_prefix())
    }

    /// The id prefix every listed flow has (`""` without one).
    pub fn id_prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or_default()
    }

    /// The page size, with 0 meaning unlimited.
    pub fn page_limit(&self) -> usize {
        if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        }
    }

    /// The cursor of a time order, decoded (`None` on the first page).
    pub fn time_cursor(&self) -> Result<Option<TimeCursor>, StoreError> {
        self.after.as_deref().map(TimeCursor::decode).transpose()
    }

    /// Where a page by id starts: just after the cursor, but not before the prefix (the
    /// first id that can match).
    pub fn id_start(&self) -> Bound<&str> {
        let prefix = self.id_prefix();
        match self.after.as_deref() {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ if prefix.is_empty() => Bound::Unbounded,
            _ => Bound::Included(prefix),
        }
    }
}

/// The position of an entry in a time order ([`FlowOrder::NewestFirst`],
/// [`FlowOrder::OldestFirst`]): its creation time as the store sorts it and its flow id, which
/// breaks ties. Encoded as `<at>:<flow id>` with `at` a decimal integer; the unit of `at` is the
/// store's (nanoseconds since the epoch in the embedded and local stores, with the unset time
/// as `i64::MIN`; microseconds on Redis), so a cursor is only meaningful to the store that made
/// it — opaque to everyone else.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeCursor {
    /// The creation time in the store's unit.
    pub at: i64,
    /// The flow id.
    pub flow_id: String,
}

impl TimeCursor {
    /// The cursor of an entry in a store that sorts by nanoseconds.
    pub fn of_entry(entry: &FlowIndexEntry) -> Self {
        TimeCursor {
            at: nanos_of(entry.created_at),
            flow_id: entry.flow_id.clone(),
        }
    }

    /// The cursor's text (a page's `next_after`).
    pub fn encode(&self) -> String {
        format!("{}:{}", self.at, self.flow_id)
    }

    /// Reads a cursor made by [`TimeCursor::encode`]; anything else is
    /// [`StoreError::InvalidCursor`].
    pub fn decode(text: &str) -> Result<Self, StoreError> {
        let invalid = || {
            StoreError::InvalidCursor(format!(
                "{text:?} is not a cursor of a time order (expected <time>:<flow id>, as a \
                 page's next cursor gives it)"
            ))
        };
        let (at, flow_id) = text.split_once(':').ok_or_else(invalid)?;
        let at = at.parse::<i64>().map_err(|_| invalid())?;
        Ok(TimeCursor {
            at,
            flow_id: flow_id.to_owned(),
        })
    }
}

/// A timestamp as nanoseconds since the epoch, the unset time as `i64::MIN` (before every
/// instant, as [`Timestamp`] orders it).
pub fn nanos_of(at: Timestamp) -> i64 {
    at.unix_nanos().unwrap_or(i64::MIN)
}

/// A page of the flow index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowPage {
    /// The entries, in the query's order.
    pub entries: Vec<FlowIndexEntry>,
    /// The cursor of the next page, when there may be more.
    pub next_after: Option<String>,
}

/// The index of flows by id: the engine keeps it beside the flow logs, so listing flows never
/// goes through one shared aggregate.
pub trait FlowIndex: Send + Sync + 'static {
    /// Inserts or replaces the entry of `entry.flow_id`.
    fn put_flow(
        &self,
        entry: FlowIndexEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts `entry` only if the flow has no entry yet; `false` when it had one.
    fn insert_flow(
        &self,
        entry: FlowIndexEntry,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The entry of one flow.
    fn get_flow(
        &self,
        flow_id: &str,
    ) -> impl Future<Output = Result<Option<FlowIndexEntry>, StoreError>> + Send;

    /// A page of entries matching `query`, in its order. A page costs about `limit` entries
    /// (plus those its filters skip), not the whole index: by id with a prefix it starts at the
    /// prefix; the time orders read an index by creation time.
    fn list_flows(
        &self,
        query: &FlowQuery,
    ) -> impl Future<Output = Result<FlowPage, StoreError>> + Send;

    /// Removes a flow's entry; `false` when there was none.
    fn remove_flow(&self, flow_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The `limit` most recently deactivated flows, newest first (by `completed_at`, then id).
    /// Costs about `limit` whatever the number of stored flows: `GET /engine` shows these
    /// instead of every flow ever run.
    fn recently_deactivated(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FlowIndexEntry>, StoreError>> + Send;

    /// Deactivated flows that finished (`completed_at`, else `created_at`) before `before`,
    /// oldest first (then by id), at most `limit`: what retention deletes and the archiver's
    /// age sweep archives, without reading every finished flow.
    fn deactivated_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<FlowIndexEntry>, StoreError>> + Send;
}

/// The feed of committed events: every subscriber sees every appended event, from any writer.
pub trait EventFeed: Send + Sync + 'static {
    /// A new subscription starting with the next appended event. A subscriber that falls more
    /// than the feed's capacity behind gets `RecvError::Lagged` and must reload state.
    fn subscribe(&self) -> broadcast::Receiver<Arc<EventEnvelope>>;
}

/// Who holds a lease, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// What is leased (e.g. a work item: `work:<flow>:<step>:<token>`).
    pub key: String,
    /// The instance holding it.
    pub owner: String,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

/// Leases on in-flight work (decision 22): an instance owns what it runs; when it dies, its
/// leases lapse and another instance takes the work over.
pub trait Leases: Send + Sync + 'static {
    /// Takes `key` for `owner` until `now + ttl` if it is free, lapsed, or already `owner`'s.
    fn acquire(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends `owner`'s lease; `false` if `owner` no longer holds it (it lapsed and was taken).
    fn renew(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives the lease up; `false` if `owner` did not hold it.
    fn release(
        &self,
        key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// [`Leases::acquire`] for several keys at once (one round trip on a remote store): whether
    /// each was taken, in order. Each key is decided on its own, as by `acquire`.
    fn acquire_many(
        &self,
        keys: &[String],
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send {
        async move {
            let mut taken = Vec::with_capacity(keys.len());
            for key in keys {
                taken.push(self.acquire(key, owner, ttl, now).await?);
            }
            Ok(taken)
        }
    }

    /// [`Leases::release`] for several keys at once: whether `owner` held each, in order.
    fn release_many(
        &self,
        keys: &[String],
        owner: &str,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send {
        async move {
            let mut released = Vec::with_capacity(keys.len());
            for key in keys {
                released.push(self.release(key, owner).await?);
            }
            Ok(released)
        }
    }

    /// Releases `release` and then acquires `acquire` for `owner`, in one call on a remote
    /// store (finished work hands over to the work it started): whether each of `acquire` was
    /// taken, in order.
    fn exchange(
        &self,
        release: &[String],
        acquire: &[String],
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send {
        async move {
            self.release_many(release, owner).await?;
            self.acquire_many(acquire, owner, ttl, now).await
        }
    }

    /// Leases whose key starts with `key_prefix` that lapsed before `now`, oldest first, at
    /// most `limit` (work and archive jobs keep separate key spaces).
    fn lapsed(
        &self,
        key_prefix: &str,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Lease>, StoreError>> + Send;
}

/// A durable timer (a retry that is due later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer {
    /// Identity: scheduling the same key again replaces the timer.
    pub key: String,
    /// When it fires.
    pub due: Timestamp,
    /// What to do, as JSON text (the engine's business).
    pub payload: Arc<str>,
}

/// Durable timers: scheduled retries survive restarts and are fired by whichever instance
/// claims them.
pub trait Timers: Send + Sync + 'static {
    /// Schedules (or reschedules) `timer`.
    fn schedule(&self, timer: Timer) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Cancels a timer; `false` if there was none.
    fn cancel(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes and returns timers due at or before `now`, earliest first, at most `limit`. A
    /// timer is returned to one caller only.
    fn take_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Timer>, StoreError>> + Send;

    /// When the earliest timer is due.
    fn next_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;
}

/// Memory use of a store that has a limit (Redis `used_memory` / `maxmemory`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes in use.
    pub used_bytes: u64,
    /// The configured limit; 0 means none.
    pub max_bytes: u64,
}

/// What a store can tell about itself.
pub trait StoreInfo: Send + Sync + 'static {
    /// Memory use, for stores that have a memory budget (`None` for the embedded store).
    fn memory_usage(&self) -> impl Future<Output = Result<Option<MemoryUsage>, StoreError>> + Send;
}

/// Everything the engine needs from a store.
pub trait Store: EventLog + FlowIndex + EventFeed + Leases + Timers + StoreInfo {}

impl<T: EventLog + FlowIndex + EventFeed + Leases + Timers + StoreInfo> Store for T {}
