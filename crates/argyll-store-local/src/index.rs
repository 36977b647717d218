//! The flow index: entries by flow id, one key set per phase (sorted by flow id, for paging a
//! phase without reading the others), the deactivated flows by completion time (for
//! `recently_deactivated` without a scan) and every flow by creation time (for listings newest
//! or oldest first that read about a page of keys). All of a flow's keys change in the batch
//! of its entry.

use std::iter::Peekable;
use std::ops::Bound;

use argyll_store::{
    FlowIndex, FlowIndexEntry, FlowOrder, FlowPage, FlowPhase, FlowQuery, StoreError, TimeCursor,
};

use crate::error::unavailable;
use crate::keys::{
    created_key, created_key_of, deactivated_key, flow_of_created_key, flow_of_deactivated_key,
    phase_byte, phase_key, sortable_time,
};
use crate::records::{decode_entry, encode_entry};
use crate::store::{Inner, LocalStore};

/// When a deactivated entry counts as deactivated, for the by-completion order.
fn completion_of(entry: &FlowIndexEntry) -> argyll_model::Timestamp {
    entry.completed_at.unwrap_or(entry.created_at)
}

type Ids = Box<dyn Iterator<Item = Result<String, StoreError>> + Send>;

impl Inner {
    pub(crate) fn entry(&self, flow_id: &str) -> Result<Option<FlowIndexEntry>, StoreError> {
        self.spaces
            .index
            .get(flow_id)
            .map_err(unavailable)?
            .map(|value| decode_entry(flow_id, &value))
            .transpose()
    }

    /// Writes `entry` over `old` (if any) with its phase and completion keys, in one batch;
    /// the caller holds the flow's index lock.
    fn write_entry(
        &self,
        old: Option<&FlowIndexEntry>,
        entry: &FlowIndexEntry,
    ) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        self.add_entry(&mut batch, old, entry)?;
        batch.commit().map_err(unavailable)
    }

    /// Adds the writes of `entry` over `old` (if any), with its phase and completion keys, to
    /// `batch`; the caller holds the flow's index lock until the batch is committed.
    pub(crate) fn add_entry(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        old: Option<&FlowIndexEntry>,
        entry: &FlowIndexEntry,
    ) -> Result<(), StoreError> {
        let spaces = &self.spaces;
        batch.insert(&spaces.index, entry.flow_id.as_str(), encode_entry(entry)?);
        // A flow's creation time does not change once indexed; should a writer change it
        // anyway, its key moves.
        if old.is_none_or(|old| old.created_at != entry.created_at) {
            if let Some(old) = old {
                batch.remove(&spaces.created, created_key_of(old));
            }
            batch.insert(&spaces.created, created_key_of(entry), []);
        }
        if let Some(old) = old {
            if old.phase != entry.phase {
                batch.remove(&spaces.phases, phase_key(old.phase, &old.flow_id));
            }
            if old.phase == FlowPhase::Deactivated {
                batch.remove(
                    &spaces.deactivated,
                    deactivated_key(completion_of(old), &old.flow_id),
                );
            }
        }
        if old.is_none_or(|old| old.phase != entry.phase) {
            batch.insert(&spaces.phases, phase_key(entry.phase, &entry.flow_id), []);
        }
        if entry.phase == FlowPhase::Deactivated {
            batch.insert(
                &spaces.deactivated,
                deactivated_key(completion_of(entry), &entry.flow_id),
                [],
            );
        }
        Ok(())
    }

    /// The entries of the flows named by `keys` (by-completion keys, in the order wanted) that
    /// are still deactivated, at most `limit`.
    fn still_deactivated(
        &self,
        keys: impl Iterator<Item = fjall::Guard>,
        limit: usize,
    ) -> Result<Vec<FlowIndexEntry>, StoreError> {
        let mut found = Vec::with_capacity(limit.min(1024));
        if limit == 0 {
            return Ok(found);
        }
        for guard in keys {
            let key = guard.key().map_err(unavailable)?;
            let Some(flow_id) = flow_of_deactivated_key(&key) else {
                return Err(StoreError::Corrupt(
                    "a deactivated key without a flow id".into(),
                ));
            };
            if let Some(entry) = self.entry(flow_id)?
                && entry.phase == FlowPhase::Deactivated
            {
                found.push(entry);
                if found.len() == limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Every flow id from `start` on, in order (the index itself).
    fn all_ids(&self, start: Bound<&str>) -> Ids {
        let range = match start {
            Bound::Unbounded => self.spaces.index.iter(),
            Bound::Included(first) => self.spaces.index.range(first.as_bytes().to_vec()..),
            Bound::Excluded(after) => self.spaces.index.range(just_after(after.as_bytes())..),
        };
        Box::new(range.map(|guard| {
            let key = guard.key().map_err(unavailable)?;
            String::from_utf8(key.to_vec())
                .map_err(|error| StoreError::Corrupt(format!("index key: {error}")))
        }))
    }

    /// The flow ids of one phase set from `start` on, in order.
    fn phase_ids(&self, phase: FlowPhase, start: Bound<&str>) -> Ids {
        let start = match start {
            Bound::Unbounded => vec![phase_byte(phase)],
            Bound::Included(first) => phase_key(phase, first),
            Bound::Excluded(after) => just_after(&phase_key(phase, after)),
        };
        let end = vec![phase_byte(phase).saturating_add(1)];
        Box::new(self.spaces.phases.range(start..end).map(|guard| {
            let key = guard.key().map_err(unavailable)?;
            let id = key.get(1..).unwrap_or_default();
            String::from_utf8(id.to_vec())
                .map_err(|error| StoreError::Corrupt(format!("phase key: {error}")))
        }))
    }

    /// A page by id: the index (or the merged phase sets of the query) from the cursor or the
    /// prefix on, up to the first id past the prefix.
    fn page_by_id(&self, query: &FlowQuery) -> Result<FlowPage, StoreError> {
        let start = query.id_start();
        let ids: Ids = if query.phases.is_empty() {
            self.all_ids(start)
        } else {
            let mut phases = query.phases.clone();
            phases.sort_unstable();
            phases.dedup();
            Box::new(Merge {
                sources: phases
                    .into_iter()
                    .map(|phase| self.phase_ids(phase, start).peekable())
                    .collect(),
            })
        };
        let prefix = query.id_prefix();
        let ids = ids.take_while(|id| id.as_ref().map_or(true, |id| id.starts_with(prefix)));
        self.page_of(query, ids, |entry| entry.flow_id.clone())
    }

    /// A page in a time order: the by-creation keys after the cursor, forwards or backwards.
    fn page_by_time(&self, query: &FlowQuery, newest_first: bool) -> Result<FlowPage, StoreError> {
        let created = &self.spaces.created;
        let cursor = query
            .time_cursor()?
            .map(|cursor| created_key(cursor.at, &cursor.flow_id));
        let keys: Box<dyn Iterator<Item = fjall::Guard> + Send> = match (cursor, newest_first) {
            (None, true) => Box::new(created.iter().rev()),
            (None, false) => Box::new(created.iter()),
            (Some(cursor), true) => Box::new(created.range(..cursor).rev()),
            (Some(cursor), false) => Box::new(created.range(just_after(&cursor)..)),
        };
        let ids = keys.map(|guard| {
            let key = guard.key().map_err(unavailable)?;
            flow_of_created_key(&key)
                .map(str::to_owned)
                .ok_or_else(|| StoreError::Corrupt("a by-creation key without a flow id".into()))
        });
        self.page_of(query, ids, |entry| TimeCursor::of_entry(entry).encode())
    }

    /// The entries of `ids` (in the page's order) that match `query`, up to its limit, and the
    /// cursor (`cursor` of the last) when more match.
    fn page_of(
        &self,
        query: &FlowQuery,
        ids: impl Iterator<Item = Result<String, StoreError>>,
        cursor: impl Fn(&FlowIndexEntry) -> String,
    ) -> Result<FlowPage, StoreError> {
        let limit = query.page_limit();
        let mut entries = Vec::new();
        let mut more = false;
        for id in ids {
            let id = id?;
            // A key without its entry (removed meanwhile) is skipped.
            let Some(entry) = self.entry(&id)? else {
                continue;
            };
            if !query.matches(&entry) {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(entry);
        }
        let next_after = if more {
            entries.last().map(cursor)
        } else {
            None
        };
        Ok(FlowPage {
            entries,
            next_after,
        })
    }
}

/// The smallest key after `key`.
fn just_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// A merge of sorted id streams (the phase sets of a query), in id order.
struct Merge {
    sources: Vec<Peekable<Ids>>,
}

impl Iterator for Merge {
    type Item = Result<String, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, &str)> = None;
        let mut failed = None;
        for (position, source) in self.sources.iter_mut().enumerate() {
            match source.peek() {
                None => {}
                // An error goes first: the caller stops there.
                Some(Err(_)) => {
                    failed = Some(position);
                    break;
                }
                Some(Ok(id)) if best.is_none_or(|(_, best_id)| id.as_str() < best_id) => {
                    best = Some((position, id.as_str()));
                }
                Some(Ok(_)) => {}
            }
        }
        let chosen = failed.or(best.map(|(position, _)| position))?;
        self.sources.get_mut(chosen)?.next()
    }
}

impl FlowIndex for LocalStore {
    async fn put_flow(&self, entry: FlowIndexEntry) -> Result<(), StoreError> {
        let inner = &self.inner;
        {
            let _flow = inner.index_locks.lock(entry.flow_id.as_str());
            let old = inner.entry(&entry.flow_id)?;
            inner.write_entry(old.as_ref(), &entry)?;
        }
        inner.commit.durable().await
    }

    async fn insert_flow(&self, entry: FlowIndexEntry) -> Result<bool, StoreError> {
        let inner = &self.inner;
        {
            let _flow = inner.index_locks.lock(entry.flow_id.as_str());
            if inner.entry(&entry.flow_id)?.is_some() {
                return Ok(false);
            }
            inner.write_entry(None, &entry)?;
        }
        inner.commit.durable().await?;
        Ok(true)
    }

    async fn get_flow(&self, flow_id: &str) -> Result<Option<FlowIndexEntry>, StoreError> {
        self.inner.entry(flow_id)
    }

    async fn list_flows(&self, query: &FlowQuery) -> Result<FlowPage, StoreError> {
        match query.order {
            FlowOrder::ById => self.inner.page_by_id(query),
            FlowOrder::NewestFirst => self.inner.page_by_time(query, true),
            FlowOrder::OldestFirst => self.inner.page_by_time(query, false),
        }
    }

    async fn remove_flow(&self, flow_id: &str) -> Result<bool, StoreError> {
        let inner = &self.inner;
        {
            let _flow = inner.index_locks.lock(flow_id);
            let Some(old) = inner.entry(flow_id)? else {
                return Ok(false);
            };
            let spaces = &inner.spaces;
            let mut batch = inner.db.batch();
            batch.remove(&spaces.index, flow_id);
            batch.remove(&spaces.phases, phase_key(old.phase, flow_id));
            batch.remove(&spaces.created, created_key_of(&old));
            if old.phase == FlowPhase::Deactivated {
                batch.remove(
                    &spaces.deactivated,
                    deactivated_key(completion_of(&old), flow_id),
                );
            }
            batch.commit().map_err(unavailable)?;
        }
        inner.commit.durable().await?;
        Ok(true)
    }

    /// Reads the by-completion keys from the newest: costs about `limit` reads.
    async fn recently_deactivated(&self, limit: usize) -> Result<Vec<FlowIndexEntry>, StoreError> {
        let keys = self.inner.spaces.deactivated.iter().rev();
        self.inner.still_deactivated(keys, limit)
    }

    /// Reads the by-completion keys from the oldest: costs about `limit` reads.
    async fn deactivated_before(
        &self,
        before: argyll_model::Timestamp,
        limit: usize,
    ) -> Result<Vec<FlowIndexEntry>, StoreError> {
        let keys = self
            .inner
            .spaces
            .deactivated
            .range(..sortable_time(before).to_vec());
        self.inner.still_deactivated(keys, limit)
    }
}
