//! The work this process is running right now, by lease key.
//!
//! A lease in the store says which *instance* owns a work item, but an instance that asks the
//! store again gets "yes, it is yours" whether the item is still running here or was left
//! behind by an earlier run of the same instance id. Recovery needs to tell the two apart:
//! work in progress keeps its lease (it is renewed while the call runs) and is never
//! dispatched again by this process (decision 24); only work nobody here is running may be
//! taken over.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// Lease keys of the work items running in this process.
#[derive(Clone, Default)]
pub(crate) struct RunningWork {
    keys: Arc<Mutex<HashSet<String>>>,
}

impl RunningWork {
    /// Marks `key` running until the returned guard drops; `None` when it already runs here.
    pub(crate) fn claim(&self, key: &str) -> Option<RunningGuard> {
        let inserted = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned());
        inserted.then(|| RunningGuard {
            keys: self.keys.clone(),
            key: key.to_owned(),
        })
    }

    /// Whether the item of `key` is running in this process.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(key)
    }
}

/// Holds a running mark; dropping it (the result recorded, the item parked, or the task gone)
/// clears the mark.
pub(crate) struct RunningGuard {
    keys: Arc<Mutex<HashSet<String>>>,
    key: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_claimed_once_until_its_guard_drops() {
        let running = RunningWork::default();
        let guard = running.claim("work/a");
        assert!(guard.is_some());
        assert!(running.contains("work/a"));
        assert!(running.claim("work/a").is_none());
        drop(guard);
        assert!(!running.contains("work/a"));
        assert!(running.claim("work/a").is_some());
    }
}
