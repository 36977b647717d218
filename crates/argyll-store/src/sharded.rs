//! [`Sharded`]: a fixed number of mutexes, one chosen by the hash of a key, so that work on
//! different keys rarely waits on one lock. The embedded store keeps its logs, index and leases
//! in it; the engine's projection cache keeps flow states in it.

use std::hash::{DefaultHasher, Hash, Hasher};

use parking_lot::{Mutex, MutexGuard};

/// `N` mutexes over values of `T`, one chosen per key by its hash.
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Mutex<T>]>,
}

impl<T> Sharded<T> {
    /// `count` shards (at least one), each made by `make`.
    pub fn new_with(count: usize, mut make: impl FnMut() -> T) -> Self {
        Sharded {
            shards: (0..count.max(1)).map(|_| Mutex::new(make())).collect(),
        }
    }

    /// The shard of `key`, locked.
    pub fn lock<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, T> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let count = self.shards.len() as u64;
        let index = usize::try_from(hasher.finish() % count).unwrap_or(0);
        // `index < len` by construction (and `len >= 1`).
        #[allow(clippy::indexing_slicing)]
        self.shards[index].lock()
    }

    /// Every shard in turn, each locked while the caller holds it.
    pub fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.shards.iter().map(Mutex::lock)
    }
}

impl<T: Default> Sharded<T> {
    /// `count` shards (at least one) of `T::default()`.
    pub fn new(count: usize) -> Self {
        Self::new_with(count, T::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_finds_its_shard_and_each_visits_all() {
        let sharded: Sharded<Vec<u32>> = Sharded::new(8);
        for n in 0..100u32 {
            sharded.lock(&n).push(n);
        }
        for n in 0..100u32 {
            assert!(sharded.lock(&n).contains(&n));
        }
        let total: usize = sharded.each().map(|shard| shard.len()).sum();
        assert_eq!(total, 100);
        assert_eq!(
            Sharded::<u8>::new(0).each().count(),
            1,
            "at least one shard"
        );
    }
}
