//! The flow index: entries by flow id, one key set per phase (sorted by flow id, for paging a
//! phase without reading the others) and the deactivated flows by completion time (for
//! `recently_deactivated` without a scan).

use std::iter::Peekable;

use argyll_store::{FlowIndex, FlowIndexEntry, FlowPage, FlowPhase, FlowQuery, StoreError};

use crate::error::unavailable;
use crate::keys::{deactivated_key, flow_of_deactivated_key, phase_byte, phase_key, sortable_time};
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

    /// Every flow id after `after`, in order (the index itself).
    fn all_ids(&self, after: Option<&str>) -> Ids {
        let range = match after {
            Some(after) => {
                let mut start = after.as_bytes().to_vec();
                // The smallest key after the cursor.
                start.push(0);
                self.spaces.index.range(start..)
            }
            None => self.spaces.index.iter(),
        };
        Box::new(range.map(|guard| {
            let key = guard.key().map_err(unavailable)?;
            String::from_utf8(key.to_vec())
                .map_err(|error| StoreError::Corrupt(format!("index key: {error}")))
        }))
    }

    /// The flow ids of one phase set after `after`, in order.
    fn phase_ids(&self, phase: FlowPhase, after: Option<&str>) -> Ids {
        let start = match after {
            Some(after) => {
                let mut key = phase_key(phase, after);
                key.push(0);
                key
            }
            None => vec![phase_byte(phase)],
        };
        let end = vec![phase_byte(phase).saturating_add(1)];
        Box::new(self.spaces.phases.range(start..end).map(|guard| {
            let key = guard.key().map_err(unavailable)?;
            let id = key.get(1..).unwrap_or_default();
            String::from_utf8(id.to_vec())
                .map_err(|error| StoreError::Corrupt(format!("phase key: {error}")))
        }))
    }
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
        let inner = &self.inner;
        let limit = query.page_limit();
        let after = query.after.as_deref();
        let ids: Ids = if query.phases.is_empty() {
            inner.all_ids(after)
        } else {
            let mut phases = query.phases.clone();
            phases.sort_unstable();
            phases.dedup();
            Box::new(Merge {
                sources: phases
                    .into_iter()
                    .map(|phase| inner.phase_ids(phase, after).peekable())
                    .collect(),
            })
        };
        let mut entries = Vec::new();
        let mut more = false;
        for id in ids {
            let id = id?;
            // A phase key without its entry (removed meanwhile) is skipped.
            let Some(entry) = inner.entry(&id)? else {
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
            entries.last().map(|entry| entry.flow_id.clone())
        } else {
            None
        };
        Ok(FlowPage {
            entries,
            next_after,
        })
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
