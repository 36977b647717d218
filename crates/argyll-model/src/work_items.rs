//! The work items of one step execution: a persistent sequence with the indexes the engine's
//! decisions need, so that a `for_each` over N elements costs O(N) in all, not O(N²).
//!
//! Why persistent: every flow command works on a copy of the flow's state (the cached state
//! stays valid until the append succeeds), and readers get copies too. A plain map of
//! 100,000 items made each of those copies — one per recorded batch of results — cost as much
//! as the whole fan-out. Here a copy shares every item with the original; changing one item
//! copies a path of a few small nodes.
//!
//! Why indexes: starting the next items, checking whether a step is done and whether a flow
//! has unfinished work used to scan every item after every result. The counts per status, the
//! position of the first item that never started, and the set of items waiting for a retry
//! answer those questions without a scan. They are derived data, rebuilt when items are
//! created (events, snapshots) and kept up to date by [`WorkItems::update`], the only way to
//! change an item.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Token;
use crate::flow::{WorkState, WorkStatus};
use crate::time::Timestamp;

/// Below this many items a token is found by comparing tokens; above, through a map built
/// once (tokens never change after the items are created).
const LINEAR_LOOKUP: usize = 16;

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    token: Token,
    state: WorkState,
}

/// Items per status, indexed by [`status_slot`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct StatusCounts([usize; 5]);

const fn status_slot(status: WorkStatus) -> usize {
    match status {
        WorkStatus::Pending => 0,
        WorkStatus::Active => 1,
        WorkStatus::Succeeded => 2,
        WorkStatus::Failed => 3,
        WorkStatus::NotCompleted => 4,
    }
}

impl StatusCounts {
    fn get(&self, status: WorkStatus) -> usize {
        self.0.get(status_slot(status)).copied().unwrap_or(0)
    }

    fn add(&mut self, status: WorkStatus) {
        if let Some(slot) = self.0.get_mut(status_slot(status)) {
            *slot += 1;
        }
    }

    fn remove(&mut self, status: WorkStatus) {
        if let Some(slot) = self.0.get_mut(status_slot(status)) {
            *slot = slot.saturating_sub(1);
        }
    }
}

/// A pending item that was never started, or whose retry is due at once (no timestamp).
fn is_fresh(state: &WorkState) -> bool {
    state.status == WorkStatus::Pending && state.next_retry_at.is_zero()
}

/// A pending item waiting for a scheduled retry: when it is due.
fn retry_due(state: &WorkState) -> Option<Timestamp> {
    (state.status == WorkStatus::Pending && !state.next_retry_at.is_zero())
        .then_some(state.next_retry_at)
}

/// The work items of a step execution by token, in creation order (the order of the
/// `for_each` expansion). Serialised as the original's `{token: WorkState}` object.
#[derive(Clone, Default)]
pub struct WorkItems {
    entries: imbl::Vector<Arc<Entry>>,
    /// Position by token, for executions of more than [`LINEAR_LOOKUP`] items.
    positions: Option<Arc<HashMap<Token, usize>>>,
    counts: StatusCounts,
    /// No item before this position is fresh (pending, never scheduled for a retry).
    fresh_from: usize,
    /// Pending items waiting for a scheduled retry, as (due, position).
    retrying: imbl::OrdSet<(Timestamp, usize)>,
}

impl WorkItems {
    /// No items.
    pub fn new() -> Self {
        WorkItems::default()
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Position of the item with `token`.
    pub fn position(&self, token: &str) -> Option<usize> {
        match &self.positions {
            Some(positions) => positions.get(token).copied(),
            None => self.entries.iter().position(|entry| entry.token == token),
        }
    }

    /// The item with `token`.
    pub fn get(&self, token: &str) -> Option<&WorkState> {
        let position = self.position(token)?;
        self.entries.get(position).map(|entry| &entry.state)
    }

    /// Whether an item has `token`.
    pub fn contains_key(&self, token: &str) -> bool {
        self.position(token).is_some()
    }

    /// The item at `position` and its token.
    pub fn at(&self, position: usize) -> Option<(&Token, &WorkState)> {
        self.entries
            .get(position)
            .map(|entry| (&entry.token, &entry.state))
    }

    /// Items and their tokens, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    /// Tokens, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Token> + Clone {
        self.entries.iter().map(|entry| &entry.token)
    }

    /// Items, in order.
    pub fn values(&self) -> impl Iterator<Item = &WorkState> + Clone {
        self.entries.iter().map(|entry| &entry.state)
    }

    /// How many items have `status`.
    pub fn count(&self, status: WorkStatus) -> usize {
        self.counts.get(status)
    }

    /// Whether some item is pending or active.
    pub fn has_unfinished(&self) -> bool {
        self.count(WorkStatus::Pending) + self.count(WorkStatus::Active) > 0
    }

    /// Whether every item succeeded or failed (and there is at least one).
    pub fn all_finished(&self) -> bool {
        !self.is_empty()
            && self.count(WorkStatus::Succeeded) + self.count(WorkStatus::Failed) == self.len()
    }

    /// Positions of the pending items that may start at `at` — never started, or with their
    /// retry due — in item order, at most `limit` of them. Costs about `limit` plus the due
    /// retries, whatever the number of items.
    pub fn due(&self, at: Timestamp, limit: usize) -> Vec<usize> {
        if limit == 0 || self.count(WorkStatus::Pending) == 0 {
            return Vec::new();
        }
        let mut retries: Vec<usize> = self
            .retrying
            .range(..=(at, usize::MAX))
            .map(|(_, position)| *position)
            .collect();
        retries.sort_unstable();
        let mut retries = retries.into_iter().peekable();
        let mut fresh = (self.fresh_from..self.len()).filter(|position| {
            self.entries
                .get(*position)
                .is_some_and(|entry| is_fresh(&entry.state))
        });
        let mut next_fresh = fresh.next();
        let mut due = Vec::new();
        while due.len() < limit {
            let next = match (next_fresh, retries.peek().copied()) {
                (Some(f), Some(r)) if r < f => retries.next(),
                (Some(f), _) => {
                    next_fresh = fresh.next();
                    Some(f)
                }
                (None, Some(_)) => retries.next(),
                (None, None) => None,
            };
            match next {
                Some(position) => due.push(position),
                None => break,
            }
        }
        due
    }

    /// Changes the item with `token` through `change`; returns `false` (and changes nothing)
    /// when there is no such item. The indexes follow the item's new status.
    pub fn update(&mut self, token: &str, change: impl FnOnce(&mut WorkState)) -> bool {
        let Some(position) = self.position(token) else {
            return false;
        };
        let Some(entry) = self.entries.get(position) else {
            return false;
        };
        let (before_status, before_due) = (entry.state.status, retry_due(&entry.state));
        let mut after = entry.state.clone();
        change(&mut after);
        self.counts.remove(before_status);
        self.counts.add(after.status);
        if let Some(due) = before_due {
            self.retrying.remove(&(due, position));
        }
        if let Some(due) = retry_due(&after) {
            self.retrying.insert((due, position));
        }
        let entry = Arc::new(Entry {
            token: entry.token.clone(),
            state: after,
        });
        let now_fresh = is_fresh(&entry.state);
        self.entries.set(position, entry);
        if now_fresh {
            self.fresh_from = self.fresh_from.min(position);
        } else if position == self.fresh_from {
            self.skip_started();
        }
        true
    }

    /// Moves `fresh_from` past items that are no longer fresh (items start in order, so this
    /// walks each item about once over the life of the execution).
    fn skip_started(&mut self) {
        while self
            .entries
            .get(self.fresh_from)
            .is_some_and(|entry| !is_fresh(&entry.state))
        {
            self.fresh_from += 1;
        }
    }
}

impl FromIterator<(Token, WorkState)> for WorkItems {
    /// Items in the given order. A token given twice keeps its first position and its last
    /// state, as a map would.
    fn from_iter<I: IntoIterator<Item = (Token, WorkState)>>(items: I) -> Self {
        let mut unique: IndexMap<Token, WorkState> = IndexMap::new();
        for (token, state) in items {
            unique.insert(token, state);
        }
        WorkItems::from_unique(unique)
    }
}

impl WorkItems {
    /// New pending items with the given inputs, in the map's order (a `step_started` event's
    /// work items).
    pub fn pending_from(items: &IndexMap<Token, Arc<crate::Args>>) -> Self {
        WorkItems::from_unique(
            items
                .iter()
                .map(|(token, inputs)| (token.clone(), WorkState::pending(inputs.clone()))),
        )
    }

    /// Items whose tokens are known to be distinct.
    fn from_unique(items: impl IntoIterator<Item = (Token, WorkState)>) -> Self {
        let mut work = WorkItems::new();
        let mut fresh_from = None;
        for (position, (token, state)) in items.into_iter().enumerate() {
            work.counts.add(state.status);
            if let Some(due) = retry_due(&state) {
                work.retrying.insert((due, position));
            }
            if is_fresh(&state) {
                fresh_from.get_or_insert(position);
            }
            work.entries.push_back(Arc::new(Entry { token, state }));
        }
        work.fresh_from = fresh_from.unwrap_or(work.entries.len());
        if work.entries.len() > LINEAR_LOOKUP {
            work.positions = Some(Arc::new(
                work.entries
                    .iter()
                    .enumerate()
                    .map(|(position, entry)| (entry.token.clone(), position))
                    .collect(),
            ));
        }
        work
    }
}

/// The items of a [`WorkItems`] and their tokens, in order.
#[derive(Clone)]
pub struct Iter<'a>(imbl::vector::Iter<'a, Arc<Entry>, imbl::shared_ptr::DefaultSharedPtr>);

impl std::fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").finish_non_exhaustive()
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Token, &'a WorkState);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|entry| (&entry.token, &entry.state))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a> IntoIterator for &'a WorkItems {
    type Item = (&'a Token, &'a WorkState);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for WorkItems {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl fmt::Debug for WorkItems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for WorkItems {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for WorkItems {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Option::<IndexMap<Token, WorkState>>::deserialize(deserializer)?;
        Ok(items.unwrap_or_default().into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::Args;

    fn items(n: usize) -> WorkItems {
        (0..n)
            .map(|i| (format!("t{i}"), WorkState::pending(Arc::new(Args::new()))))
            .collect()
    }

    fn ts(millis: i64) -> Timestamp {
        Timestamp::from_unix_nanos(millis * 1_000_000)
    }

    fn set(items: &mut WorkItems, token: &str, status: WorkStatus) {
        assert!(items.update(token, |item| item.status = status));
    }

    /// The indexes agree with a scan of the items after any sequence of changes.
    fn assert_consistent(items: &WorkItems) {
        for status in [
            WorkStatus::Pending,
            WorkStatus::Active,
            WorkStatus::Succeeded,
            WorkStatus::Failed,
            WorkStatus::NotCompleted,
        ] {
            let scanned = items.values().filter(|item| item.status == status).count();
            assert_eq!(items.count(status), scanned, "{status}");
        }
        let far = ts(i64::MAX / 2_000_000);
        let scanned: Vec<usize> = items
            .values()
            .enumerate()
            .filter(|(_, item)| item.status == WorkStatus::Pending)
            .map(|(position, _)| position)
            .collect();
        assert_eq!(items.due(far, usize::MAX), scanned);
    }

    #[test]
    fn due_items_start_in_order_and_skip_running_ones() {
        for n in [3, 40] {
            let mut work = items(n);
            assert_eq!(work.due(ts(1), 2), vec![0, 1]);
            set(&mut work, "t0", WorkStatus::Active);
            set(&mut work, "t1", WorkStatus::Active);
            assert_eq!(
                work.due(ts(1), 2),
                if n == 3 { vec![2] } else { vec![2, 3] }
            );
            assert_eq!(work.count(WorkStatus::Active), 2);
            set(&mut work, "t0", WorkStatus::Succeeded);
            assert!(work.has_unfinished());
            assert!(!work.all_finished());
            assert_consistent(&work);
        }
    }

    #[test]
    fn retries_are_due_at_their_time_and_merge_in_item_order() {
        let mut work = items(5);
        for token in ["t0", "t1", "t2"] {
            set(&mut work, token, WorkStatus::Active);
        }
        assert!(work.update("t1", |item| {
            item.status = WorkStatus::Pending;
            item.next_retry_at = ts(100);
        }));
        assert!(work.update("t0", |item| {
            item.status = WorkStatus::Pending;
            item.next_retry_at = ts(50);
        }));
        assert_eq!(work.due(ts(10), 10), vec![3, 4]);
        assert_eq!(work.due(ts(50), 10), vec![0, 3, 4]);
        assert_eq!(work.due(ts(100), 2), vec![0, 1]);
        set(&mut work, "t0", WorkStatus::Active);
        assert_eq!(work.due(ts(100), 10), vec![1, 3, 4]);
        assert_consistent(&work);
    }

    #[test]
    fn a_copy_shares_items_and_changes_independently() {
        let mut work = items(1000);
        let copy = work.clone();
        set(&mut work, "t999", WorkStatus::Active);
        assert_eq!(copy.get("t999").unwrap().status, WorkStatus::Pending);
        assert_eq!(work.get("t999").unwrap().status, WorkStatus::Active);
        assert_eq!(copy.count(WorkStatus::Active), 0);
        assert_consistent(&work);
        assert_consistent(&copy);
    }

    #[test]
    fn unknown_tokens_change_nothing() {
        let mut work = items(2);
        let before = work.clone();
        assert!(!work.update("nope", |item| item.status = WorkStatus::Failed));
        assert_eq!(work, before);
        assert!(work.get("nope").is_none());
    }

    #[test]
    fn serialises_as_an_ordered_object_and_round_trips() {
        let mut work = items(20);
        set(&mut work, "t3", WorkStatus::Active);
        let text = serde_json::to_string(&work).unwrap();
        let at = |token: &str| text.find(&format!("\"{token}\":")).unwrap();
        assert!(at("t0") < at("t1") && at("t2") < at("t10") && at("t10") < at("t19"));
        let back: WorkItems = serde_json::from_str(&text).unwrap();
        assert_eq!(back, work);
        assert_consistent(&back);
        let null: WorkItems = serde_json::from_value(serde_json::Value::Null).unwrap();
        assert!(null.is_empty());
    }

    proptest::proptest! {
        /// Random changes keep every index equal to what a scan of the items says.
        #[test]
        fn indexes_match_a_scan(
            n in 1usize..40,
            changes in proptest::collection::vec((0usize..40, 0u8..6, 0i64..5), 0..120),
        ) {
            let mut work = items(n);
            for (index, kind, due) in changes {
                let token = format!("t{}", index % n);
                work.update(&token, |item| match kind {
                    0 => item.status = WorkStatus::Active,
                    1 => item.status = WorkStatus::Succeeded,
                    2 => item.status = WorkStatus::Failed,
                    3 => item.status = WorkStatus::NotCompleted,
                    4 => {
                        item.status = WorkStatus::Pending;
                        item.next_retry_at = ts(due + 1);
                    }
                    _ => {
                        item.status = WorkStatus::Pending;
                        item.next_retry_at = Timestamp::ZERO;
                    }
                });
                assert_consistent(&work);
            }
        }
    }
}
