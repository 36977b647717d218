//! Leases: decided in memory (the process owns the directory, so nobody else decides), written
//! through to the disk so that a restart finds the leases of parked work (async steps waiting
//! for their webhook) and of work that was running. A lease write is not waited for: a lease
//! lost in a crash only makes its work run again, which recovery allows.

use std::time::Duration;

use argyll_model::Timestamp;
use argyll_store::{Lease, Leases, StoreError};

use crate::error::unavailable;
use crate::records::encode_lease;
use crate::store::LocalStore;

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

impl LocalStore {
    fn write_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.inner
            .spaces
            .leases
            .insert(lease.key.as_str(), encode_lease(lease))
            .map_err(unavailable)
    }

    fn erase_lease(&self, key: &str) -> Result<(), StoreError> {
        self.inner.spaces.leases.remove(key).map_err(unavailable)
    }
}

impl Leases for LocalStore {
    async fn acquire(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut shard = self.inner.leases.lock(key);
        let free = shard
            .get(key)
            .is_none_or(|lease| lease.owner == owner || lease.expires_at <= now);
        if free {
            let lease = Lease {
                key: key.to_owned(),
                owner: owner.to_owned(),
                expires_at: now.plus_millis(ttl_millis(ttl)),
            };
            self.write_lease(&lease)?;
            shard.insert(key.to_owned(), lease);
        }
        Ok(free)
    }

    async fn renew(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut shard = self.inner.leases.lock(key);
        match shard.get_mut(key) {
            Some(lease) if lease.owner == owner => {
                let renewed = Lease {
                    expires_at: now.plus_millis(ttl_millis(ttl)),
                    ..lease.clone()
                };
                self.write_lease(&renewed)?;
                *lease = renewed;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        let mut shard = self.inner.leases.lock(key);
        if shard.get(key).is_some_and(|lease| lease.owner == owner) {
            self.erase_lease(key)?;
            shard.remove(key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn lapsed(
        &self,
        key_prefix: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Lease>, StoreError> {
        let mut lapsed = Vec::new();
        for shard in self.inner.leases.each() {
            lapsed.extend(
                shard
                    .values()
                    .filter(|lease| lease.expires_at < now && lease.key.starts_with(key_prefix))
                    .cloned(),
            );
        }
        lapsed.sort_by(|a, b| (a.expires_at, &a.key).cmp(&(b.expires_at, &b.key)));
        lapsed.truncate(limit);
        Ok(lapsed)
    }
}
