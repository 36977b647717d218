//! Leases: decided in memory (the process owns the directory, so nobody else decides; the
//! decisions are `argyll_store::LeaseTable`'s, shared with the embedded store), written through
//! to the disk so that a restart finds the leases of parked work (async steps waiting for their
//! webhook) and of work that was running. A lease write is not waited for: a lease lost in a
//! crash of the machine only makes its work run again, which recovery allows. It survives
//! `kill -9` of the process: single-key writes of a keyspace are handed to the operating system
//! as they commit (only batches wait for the syncer, see `commit`).

use std::time::Duration;

use argyll_model::Timestamp;
use argyll_store::{Lease, Leases, StoreError};

use crate::error::unavailable;
use crate::records::encode_lease;
use crate::store::LocalStore;

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
        self.inner
            .leases
            .acquire(key, owner, ttl, now, |lease| self.write_lease(lease))
    }

    async fn renew(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .leases
            .renew(key, owner, ttl, now, |lease| self.write_lease(lease))
    }

    async fn release(&self, key: &str, owner: &str) -> Result<bool, StoreError> {
        self.inner
            .leases
            .release(key, owner, |key| self.erase_lease(key))
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
