//! The work this process is running right now.
//!
//! A lease in the store says which *instance* owns a work item, but an instance that asks the
//! store again gets "yes, it is yours" whether the item is still running here or was left
//! behind by an earlier run of the same instance id. Recovery needs to tell the two apart:
//! work in progress keeps its lease (it is renewed while the call runs) and is never
//! dispatched again by this process (decision 24); only work nobody here is running may be
//! taken over.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use super::work_key::WorkKey;

/// The work items running in this process.
#[derive(Clone, Default)]
pub(super) struct RunningWork {
    items: Arc<Mutex<HashSet<WorkKey>>>,
}

impl RunningWork {
    /// Marks `item` running until the returned guard drops; `None` when it already runs here.
    pub(super) fn claim(&self, item: WorkKey) -> Option<RunningGuard> {
        let inserted = self.items.lock().insert(item.clone());
        inserted.then(|| RunningGuard {
            items: self.items.clone(),
            item,
        })
    }

    /// Whether `item` is running in this process.
    pub(super) fn contains(&self, item: &WorkKey) -> bool {
        self.items.lock().contains(item)
    }
}

/// Removes its item from [`RunningWork`] when the run ends (however it ends).
pub(super) struct RunningGuard {
    items: Arc<Mutex<HashSet<WorkKey>>>,
    item: WorkKey,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.items.lock().remove(&self.item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_runs_once_until_its_guard_drops() {
        let running = RunningWork::default();
        let item = WorkKey::new("f", "s", "t");
        let guard = running.claim(item.clone());
        assert!(guard.is_some());
        assert!(running.contains(&item));
        assert!(running.claim(item.clone()).is_none());
        drop(guard);
        assert!(!running.contains(&item));
        assert!(running.claim(item).is_some());
    }
}
