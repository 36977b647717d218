//! Running commands against an aggregate: load its state (snapshot + tail), let the command
//! decide which events to raise, check them by applying them, and append them at the expected
//! sequence — retrying on a conflict with fresh state (`storage.md` §1.8, without the
//! original's silent drops: an event that does not apply is an error, not skipped).

use std::sync::Arc;

use argyll_events::{AggregateId, EngineEvent, Event, EventEnvelope, FlowEvent, Projection};
use argyll_model::{EngineState, FlowState, Timestamp};
use argyll_store::{Clock, EventLog, FlowIndexEntry, Sharded, StoreError};

use crate::engine::index_entry;

/// A projection stored as one aggregate kind.
pub(crate) trait AggregateState: Projection + Clone + Send + Sync + 'static {
    /// This aggregate's event inside the store's event type, if it is one.
    fn event_of(event: &Event) -> Option<&Self::Event>;
    /// Wraps this aggregate's event for the store.
    fn into_event(event: Self::Event) -> Event;
    /// Restores a snapshot.
    fn from_snapshot(json: &str) -> Result<Self, serde_json::Error>;
    /// The flow index entry written together with an aggregate's first events (a flow's
    /// start: `EventLog::append_first`); `None` for aggregates the index does not list.
    fn first_index_entry(&self) -> Option<FlowIndexEntry> {
        None
    }
}

/// About how many bytes a flow state holds: what the engine's cache of flow states is
/// budgeted in.
pub(crate) fn flow_state_bytes(state: &Option<FlowState>) -> u64 {
    state.as_ref().map_or(0, |state| state.size.bytes())
}

impl AggregateState for EngineState {
    fn event_of(event: &Event) -> Option<&EngineEvent> {
        match event {
            Event::Engine(event) => Some(event.as_ref()),
            Event::Flow(_) => None,
        }
    }

    fn into_event(event: EngineEvent) -> Event {
        Event::Engine(Box::new(event))
    }

    fn from_snapshot(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

impl AggregateState for Option<FlowState> {
    fn event_of(event: &Event) -> Option<&FlowEvent> {
        match event {
            Event::Flow(event) => Some(event),
            Event::Engine(_) => None,
        }
    }

    fn into_event(event: FlowEvent) -> Event {
        Event::Flow(event)
    }

    fn first_index_entry(&self) -> Option<FlowIndexEntry> {
        self.as_ref().map(index_entry)
    }

    fn from_snapshot(json: &str) -> Result<Self, serde_json::Error> {
        let mut state: Option<FlowState> = serde_json::from_str(json)?;
        // The size is counted as events apply; a state read from JSON is counted once here.
        if let Some(state) = state.as_mut() {
            state.recount_size();
        }
        Ok(state)
    }
}

/// Why a command could not be carried out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored log or snapshot does not replay.
    #[error("state of {aggregate} cannot be rebuilt: {reason}")]
    Corrupt {
        /// The aggregate.
        aggregate: AggregateId,
        /// Why.
        reason: String,
    },
    /// The command raised an event that does not apply to the state (an engine bug, caught
    /// before anything is written).
    #[error("command on {aggregate} raised an event that does not apply: {reason}")]
    InvalidEvent {
        /// The aggregate.
        aggregate: AggregateId,
        /// Why.
        reason: String,
    },
    /// Other writers kept winning.
    #[error("gave up on {aggregate} after {attempts} conflicting attempts")]
    TooManyConflicts {
        /// The aggregate.
        aggregate: AggregateId,
        /// Attempts made.
        attempts: u32,
    },
}

/// An aggregate's state and the sequence its next event gets.
#[derive(Clone, Debug, PartialEq)]
pub struct Current<T> {
    /// The projected state.
    pub state: T,
    /// The expected sequence of the next append.
    pub next_sequence: u64,
}

/// Loads an aggregate's state: the latest snapshot, then the events after it.
pub(crate) async fn load<S: EventLog, T: AggregateState>(
    store: &S,
    aggregate: &AggregateId,
) -> Result<Current<T>, AggregateError> {
    let loaded = store.load(aggregate).await?;
    let corrupt = |reason: String| AggregateError::Corrupt {
        aggregate: aggregate.clone(),
        reason,
    };
    let mut state = match &loaded.snapshot {
        Some(snapshot) => {
            T::from_snapshot(&snapshot.state_json).map_err(|e| corrupt(format!("snapshot: {e}")))?
        }
        None => T::default(),
    };
    for envelope in &loaded.tail {
        let event = T::event_of(&envelope.event).ok_or_else(|| {
            corrupt(format!(
                "event {} belongs to another aggregate kind",
                envelope.sequence
            ))
        })?;
        state
            .apply(event, envelope.timestamp)
            .map_err(|e| corrupt(format!("event {}: {e}", envelope.sequence)))?;
    }
    Ok(Current {
        state,
        next_sequence: loaded.next_sequence,
    })
}

/// Recently used aggregate states, so that a command reads only the events appended since
/// (usually none) instead of replaying the whole log.
///
/// Bounded by count and by bytes (as its weigher counts them), first in
/// first out: a flow that is evicted while still busy is simply loaded again. The state just
/// inserted is never the one evicted, so a single state larger than a shard's byte budget is
/// still cached (a large fan-out would otherwise replay its whole log at every command).
/// Sharded mutexes ([`Sharded`]) over plain maps, because every command reads and replaces an entry and a
/// general-purpose cache's bookkeeping cost more than the lookups (about a tenth of the
/// engine's CPU in the fan-out benchmark).
pub(crate) struct ProjectionCache<T> {
    shards: Sharded<CacheShard<T>>,
    per_shard: usize,
    bytes_per_shard: u64,
    weigh: fn(&T) -> u64,
    /// States with fewer events than this are not kept (see [`ProjectionCache::admitting_from`]).
    min_events: u64,
}

struct CacheShard<T> {
    entries: std::collections::HashMap<AggregateId, (Arc<Current<T>>, u64)>,
    /// Keys in insertion order; may hold keys removed since (they are skipped when popped).
    order: std::collections::VecDeque<AggregateId>,
    /// The weights of the entries, summed.
    bytes: u64,
}

const CACHE_SHARDS: usize = 16;

impl<T> ProjectionCache<T> {
    /// A cache of about `capacity` states (at least one per shard), without a byte budget.
    #[cfg(test)]
    pub(crate) fn new(capacity: u64) -> Self {
        Self::with_byte_budget(capacity, u64::MAX, |_| 0)
    }

    /// A cache of about `capacity` states holding about `max_bytes` of them as `weigh` counts
    /// them (at least one state per shard).
    pub(crate) fn with_byte_budget(capacity: u64, max_bytes: u64, weigh: fn(&T) -> u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        ProjectionCache {
            shards: Sharded::new_with(CACHE_SHARDS, || CacheShard {
                entries: std::collections::HashMap::new(),
                order: std::collections::VecDeque::new(),
                bytes: 0,
            }),
            per_shard: capacity.div_ceil(CACHE_SHARDS).max(1),
            bytes_per_shard: (max_bytes / CACHE_SHARDS as u64).max(1),
            weigh,
            min_events: 0,
        }
    }

    /// Keeps only states of at least `events` events. On an in-process store, replaying a
    /// short log costs less than keeping and evicting a copy (one-step flows ran ~10% slower
    /// cached), while a long one — a large fan-out — must not be replayed at every command.
    pub(crate) fn admitting_from(mut self, events: u64) -> Self {
        self.min_events = events;
        self
    }

    fn shard(&self, aggregate: &AggregateId) -> parking_lot::MutexGuard<'_, CacheShard<T>> {
        self.shards.lock(aggregate)
    }

    /// The cached state of `aggregate`.
    pub(crate) fn get(&self, aggregate: &AggregateId) -> Option<Arc<Current<T>>> {
        self.shard(aggregate)
            .entries
            .get(aggregate)
            .map(|(current, _)| current.clone())
    }

    /// Forgets `aggregate`.
    pub(crate) fn invalidate(&self, aggregate: &AggregateId) {
        let mut shard = self.shard(aggregate);
        if let Some((_, weight)) = shard.entries.remove(aggregate) {
            shard.bytes = shard.bytes.saturating_sub(weight);
        }
    }

    /// States cached, and their weight in bytes (all shards).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, u64) {
        self.shards.each().fold((0, 0), |(count, bytes), shard| {
            (count + shard.entries.len(), bytes + shard.bytes)
        })
    }

    /// Caches `current` as the state of `aggregate`, evicting the oldest entries while the
    /// shard holds too many states or too many bytes.
    pub(crate) fn insert(&self, aggregate: AggregateId, current: Arc<Current<T>>) {
        if current.next_sequence < self.min_events {
            return;
        }
        let (per_shard, max_bytes) = (self.per_shard, self.bytes_per_shard);
        let weight = (self.weigh)(&current.state);
        let mut shard = self.shard(&aggregate);
        match shard.entries.insert(aggregate.clone(), (current, weight)) {
            Some((_, old)) => shard.bytes = shard.bytes.saturating_sub(old),
            None => shard.order.push_back(aggregate.clone()),
        }
        shard.bytes = shard.bytes.saturating_add(weight);
        while shard.order.len() > per_shard || (shard.bytes > max_bytes && shard.entries.len() > 1)
        {
            let Some(oldest) = shard.order.pop_front() else {
                break;
            };
            if oldest == aggregate {
                // The newest entry stays; look at it again last.
                shard.order.push_back(oldest);
                if shard.entries.len() == 1 {
                    break;
                }
                continue;
            }
            if let Some((_, old)) = shard.entries.remove(&oldest) {
                shard.bytes = shard.bytes.saturating_sub(old);
            }
        }
    }
}

/// The store's log is shorter than the state this instance saw committed (Redis restarted
/// from an older snapshot, a failover that lost writes): forget the cached state and say what
/// was lost. The caller goes on with the store's state, which is the truth from now on. A log
/// that is gone altogether (an archived flow, or one lost entirely) is only forgotten here;
/// the sweep reports flows the index still lists.
fn forget_lost_events<T>(
    cache: &ProjectionCache<T>,
    aggregate: &AggregateId,
    cached_next: u64,
    store_next: u64,
) {
    cache.invalidate(aggregate);
    if store_next > 0 && store_next < cached_next {
        tracing::error!(
            %aggregate,
            lost_events = cached_next - store_next,
            store_events = store_next,
            "store lost committed events; continuing from the store's state"
        );
    }
}

/// Applies `events` that follow `current` in its log; `false` (and `current` partly updated)
/// when they do not continue it, so only a full load is right.
pub(crate) fn apply_newer<T: AggregateState>(
    current: &mut Current<T>,
    events: &[Arc<EventEnvelope>],
    aggregate: &AggregateId,
) -> Result<bool, AggregateError> {
    for envelope in events {
        let event = T::event_of(&envelope.event).ok_or_else(|| AggregateError::Corrupt {
            aggregate: aggregate.clone(),
            reason: format!(
                "event {} belongs to another aggregate kind",
                envelope.sequence
            ),
        })?;
        if envelope.sequence != current.next_sequence {
            return Ok(false);
        }
        current
            .state
            .apply(event, envelope.timestamp)
            .map_err(|e| AggregateError::Corrupt {
                aggregate: aggregate.clone(),
                reason: format!("event {}: {e}", envelope.sequence),
            })?;
        current.next_sequence += 1;
    }
    Ok(true)
}

/// The current state for a reader, never older than the store's: a cached state is used when
/// the store's log still holds the cached state's last event (read together with any events
/// after it, usually none), so a log deleted or rewritten since is noticed; otherwise a full
/// load. A state brought up to date is put back in the cache.
pub(crate) async fn load_current<S: EventLog, T: AggregateState>(
    store: &S,
    cache: Option<&ProjectionCache<T>>,
    aggregate: &AggregateId,
) -> Result<Current<T>, AggregateError> {
    let Some((cache, cached)) = cache.and_then(|cache| Some((cache, cache.get(aggregate)?))) else {
        return load(store, aggregate).await;
    };
    if cached.next_sequence == 0 {
        return load(store, aggregate).await;
    }
    let Some(newer) = store.read_newer(aggregate, cached.next_sequence).await? else {
        let loaded = load(store, aggregate).await?;
        forget_lost_events(cache, aggregate, cached.next_sequence, loaded.next_sequence);
        return Ok(loaded);
    };
    if newer.is_empty() {
        return Ok((*cached).clone());
    }
    let mut current = (*cached).clone();
    if !apply_newer(&mut current, &newer, aggregate)? {
        return load(store, aggregate).await;
    }
    cache.insert(aggregate.clone(), Arc::new(current.clone()));
    Ok(current)
}

/// What [`execute`] did.
#[derive(Clone, Debug)]
pub(crate) struct Executed<T, R> {
    /// The command's own result.
    pub result: R,
    /// The state after the command's events (shared with the cache, if there is one).
    pub current: Arc<Current<T>>,
    /// The events appended (none when the command raised none).
    pub appended: Vec<Arc<EventEnvelope>>,
    /// Whether the store wrote the flow's index entry with its first events
    /// (`EventLog::append_first`).
    pub indexed: bool,
}

/// Runs `command` on the current state of `aggregate` and appends the events it raises,
/// re-running it on fresh state after a conflict, at most `max_attempts` times. The command
/// must be a pure decision on the state it is given.
pub(crate) async fn execute<S, T, R, E>(
    store: &S,
    clock: &dyn Clock,
    aggregate: &AggregateId,
    max_attempts: u32,
    mut command: impl FnMut(&T) -> Result<(Vec<T::Event>, R), E>,
) -> Result<Result<Executed<T, R>, E>, AggregateError>
where
    S: EventLog,
    T: AggregateState,
{
    let mut invalid = None;
    let outcome = execute_applied(
        store,
        clock,
        None,
        Uncached::Load,
        aggregate,
        max_attempts,
        |current: &T, at| {
            let (events, result) = command(current)?;
            let mut state = current.clone();
            for event in &events {
                if let Err(error) = state.apply(event, at) {
                    invalid = Some(error.to_string());
                    return Ok((Vec::new(), state, None));
                }
            }
            Ok((events, state, Some(result)))
        },
    )
    .await?;
    let executed = match outcome {
        Ok(executed) => executed,
        Err(rejected) => return Ok(Err(rejected)),
    };
    match (executed.result, invalid) {
        (Some(result), None) => Ok(Ok(Executed {
            result,
            current: executed.current,
            appended: executed.appended,
            indexed: executed.indexed,
        })),
        (_, reason) => Err(AggregateError::InvalidEvent {
            aggregate: aggregate.clone(),
            reason: reason.unwrap_or_default(),
        }),
    }
}

/// What [`execute_applied`] takes as the state of an aggregate that is not in the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Uncached {
    /// Load it from the store.
    Load,
    /// Presume it does not exist yet (a start): the append at sequence 0 checks.
    PresumeNew,
}

/// Like [`execute`], for commands that apply their events as they raise them (so later
/// decisions of the same command see them): the command gets the state and the timestamp its
/// events will carry, and returns the events together with the state after them, which is
/// trusted as is.
///
/// With a `cache`, the first attempt runs on the cached state *without asking the store*: the
/// append's expected sequence is the check (a stale entry conflicts, and the next attempt
/// reads the events it missed), which saves a round trip per command on a remote store. With
/// [`Uncached::PresumeNew`], an aggregate that is not cached is presumed not to exist yet (a
/// start), and the append at sequence 0 is the check. A command that writes nothing on such an unchecked
/// state (it refused, or had nothing to do) is run again on the store's state before its
/// answer is trusted. The state after a successful append is put in the cache.
pub(crate) async fn execute_applied<S, T, R, E>(
    store: &S,
    clock: &dyn Clock,
    cache: Option<&ProjectionCache<T>>,
    uncached: Uncached,
    aggregate: &AggregateId,
    max_attempts: u32,
    mut command: impl FnMut(&T, Timestamp) -> Result<(Vec<T::Event>, T, R), E>,
) -> Result<Result<Executed<T, R>, E>, AggregateError>
where
    S: EventLog,
    T: AggregateState,
{
    // The command reads the state through a shared reference: a cached state is not copied.
    let cached = cache.and_then(|cache| cache.get(aggregate));
    let (mut current, mut checked) = match cached {
        Some(cached) => (cached, false),
        None if uncached == Uncached::PresumeNew => (
            Arc::new(Current {
                state: T::default(),
                next_sequence: 0,
            }),
            false,
        ),
        None => (Arc::new(load(store, aggregate).await?), true),
    };
    let mut conflicts = 0;
    while conflicts < max_attempts.max(1) {
        let at = clock.now();
        let decided = command(&current.state, at);
        let writes = matches!(&decided, Ok((events, _, _)) if !events.is_empty());
        if !writes && !checked {
            current = Arc::new(load_current(store, cache, aggregate).await?);
            checked = true;
            continue;
        }
        let (events, state, result) = match decided {
            Ok(decided) => decided,
            Err(rejected) => return Ok(Err(rejected)),
        };
        if events.is_empty() {
            return Ok(Ok(Executed {
                result,
                current,
                appended: Vec::new(),
                indexed: false,
            }));
        }
        let batch = events
            .into_iter()
            .map(|event| (at, T::into_event(event)))
            .collect();
        // A flow's first events carry its index entry: one durable write for both.
        let first_entry = (current.next_sequence == 0)
            .then(|| state.first_index_entry())
            .flatten();
        let appended = match &first_entry {
            Some(entry) => store.append_first(aggregate, batch, entry).await,
            None => store
                .append(aggregate, current.next_sequence, batch)
                .await
                .map(|appended| (appended, false)),
        };
        match appended {
            Ok((appended, indexed)) => {
                let next_sequence =
                    current.next_sequence + u64::try_from(appended.len()).unwrap_or(0);
                let current = Arc::new(Current {
                    state,
                    next_sequence,
                });
                if let Some(cache) = cache {
                    cache.insert(aggregate.clone(), current.clone());
                }
                return Ok(Ok(Executed {
                    result,
                    current,
                    appended,
                    indexed,
                }));
            }
            Err(StoreError::Conflict { actual, .. }) => {
                // Someone else appended (the next attempt reads their events), or the log was
                // deleted or rewritten under the cache: then only a full load is right.
                if let Some(cache) = cache
                    && actual < current.next_sequence
                {
                    forget_lost_events(cache, aggregate, current.next_sequence, actual);
                }
                conflicts += 1;
                current = Arc::new(load_current(store, cache, aggregate).await?);
                checked = true;
            }
            Err(other) => return Err(other.into()),
        }
    }
    Err(AggregateError::TooManyConflicts {
        aggregate: aggregate.clone(),
        attempts: max_attempts.max(1),
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests;
