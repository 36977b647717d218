//! In-memory lease and timer bookkeeping shared by the stores that decide leases and timers in
//! their own process: the embedded store (memory only) and the local store (which writes each
//! change through to its disk). One place decides who holds a lease and which timers are due.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use argyll_model::Timestamp;

use crate::sharded::Sharded;
use crate::traits::{Lease, Timer};

const SHARDS: usize = 64;

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Leases by key, sharded. Each change is handed to a `write` callback under the key's lock
/// before it takes effect, so a store that persists leases writes them in the order they are
/// decided; a failed write leaves the table unchanged.
#[derive(Debug)]
pub struct LeaseTable {
    shards: Sharded<HashMap<String, Lease>>,
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable {
            shards: Sharded::new(SHARDS),
        }
    }
}

impl LeaseTable {
    /// Puts a lease as it is (loading stored leases).
    pub fn insert(&self, lease: Lease) {
        self.shards
            .lock(lease.key.as_str())
            .insert(lease.key.clone(), lease);
    }

    /// [`crate::Leases::acquire`]: takes `key` for `owner` if it is free, lapsed or `owner`'s,
    /// after `write` accepted the new lease.
    pub fn acquire<E>(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
        write: impl FnOnce(&Lease) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut shard = self.shards.lock(key);
        let free = shard
            .get(key)
            .is_none_or(|lease| lease.owner == owner || lease.expires_at <= now);
        if free {
            let lease = Lease {
                key: key.to_owned(),
                owner: owner.to_owned(),
                expires_at: now.plus_millis(ttl_millis(ttl)),
            };
            write(&lease)?;
            shard.insert(key.to_owned(), lease);
        }
        Ok(free)
    }

    /// [`crate::Leases::renew`]: extends `owner`'s lease after `write` accepted it.
    pub fn renew<E>(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
        write: impl FnOnce(&Lease) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut shard = self.shards.lock(key);
        match shard.get_mut(key) {
            Some(lease) if lease.owner == owner => {
                let renewed = Lease {
                    expires_at: now.plus_millis(ttl_millis(ttl)),
                    ..lease.clone()
                };
                write(&renewed)?;
                *lease = renewed;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// [`crate::Leases::release`]: gives `owner`'s lease up after `erase` removed it.
    pub fn release<E>(
        &self,
        key: &str,
        owner: &str,
        erase: impl FnOnce(&str) -> Result<(), E>,
    ) -> Result<bool, E> {
        let mut shard = self.shards.lock(key);
        if shard.get(key).is_some_and(|lease| lease.owner == owner) {
            erase(key)?;
            shard.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    /// [`crate::Leases::lapsed`]: leases under `key_prefix` lapsed before `now`, oldest first.
    pub fn lapsed(&self, key_prefix: &str, now: Timestamp, limit: usize) -> Vec<Lease> {
        let mut lapsed = Vec::new();
        for shard in self.shards.each() {
            lapsed.extend(
                shard
                    .values()
                    .filter(|lease| lease.expires_at < now && lease.key.starts_with(key_prefix))
                    .cloned(),
            );
        }
        lapsed.sort_by(|a, b| (a.expires_at, &a.key).cmp(&(b.expires_at, &b.key)));
        lapsed.truncate(limit);
        lapsed
    }
}

/// Timers by key and by due time.
#[derive(Debug, Default)]
pub struct TimerQueue {
    by_key: HashMap<String, Timer>,
    by_due: BTreeSet<(Timestamp, String)>,
}

impl TimerQueue {
    /// Schedules (or reschedules) `timer`.
    pub fn insert(&mut self, timer: Timer) {
        self.remove(&timer.key);
        self.by_due.insert((timer.due, timer.key.clone()));
        self.by_key.insert(timer.key.clone(), timer);
    }

    /// Removes a timer; `None` if there was none.
    pub fn remove(&mut self, key: &str) -> Option<Timer> {
        let timer = self.by_key.remove(key)?;
        self.by_due.remove(&(timer.due, timer.key.clone()));
        Some(timer)
    }

    /// Whether a timer has this key.
    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    /// The keys of timers due at or before `now`, earliest first, at most `limit` (still
    /// queued: take them with [`TimerQueue::remove`]).
    pub fn due_keys(&self, now: Timestamp, limit: usize) -> Vec<String> {
        self.by_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// When the earliest timer is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.by_due.first().map(|(at, _)| *at)
    }
}
