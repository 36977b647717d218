//! [`LocalStore`]: opening a data directory (lock, format, keyspaces, the leases and timers
//! kept in memory) and the parts every trait implementation shares.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use argyll_events::{AggregateId, EventEnvelope};
use argyll_store::{LeaseTable, Sharded, StoreError, TimerQueue};
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::commit::{GroupCommit, SyncMode};
use crate::error::{OpenError, unavailable};
use crate::keys::created_key_of;
use crate::records::{decode_entry, decode_lease, decode_timer};

/// The on-disk format this build writes and the newest it reads. Bump it when the layout of
/// `keys.rs` or `records.rs` changes meaning, and teach [`LocalStore::open`] to upgrade older
/// directories; `tests/fixtures` holds a directory written by each format.
///
/// * 1: events, snapshots, the index with its phase sets and deactivated flows by completion
///   time, leases, timers.
/// * 2: adds the `created` keyspace (every indexed flow by creation time). A format-1
///   directory is upgraded when it is opened: the keyspace is built from the index, synced,
///   and only then does `FORMAT` say 2 (an upgrade cut short is done again at the next open).
///   A build of format 1 refuses the upgraded directory rather than leave that keyspace stale.
pub const FORMAT_VERSION: u32 = 2;
/// The file naming the format of a data directory.
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "argyll-local-store ";
/// The lock file that keeps a second process out.
const LOCK_FILE: &str = "LOCK";
/// The storage engine's own directory inside the data directory.
const DB_DIR: &str = "db";

/// Shards of the per-aggregate and per-key maps (as the embedded store).
const SHARDS: usize = 64;

/// How a data directory is opened.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// The data directory (`ARGYLL_DATA_DIR`); created if missing.
    pub data_dir: PathBuf,
    /// When writes are synced (`LOCAL_STORE_SYNC`).
    pub sync: SyncMode,
    /// The storage engine's block cache in bytes (`LOCAL_STORE_CACHE_MB`).
    pub cache_bytes: u64,
    /// Largest in-memory write buffer of one keyspace, in bytes; with the cache it bounds the
    /// store's memory.
    pub memtable_bytes: u64,
    /// The same for the events keyspace, which takes most writes: a full write buffer is
    /// sealed and flushed by fjall's workers, and the smaller it is, the more often that runs
    /// (scenario a: 8 MiB → 32 MiB took the store from ~8,400 to ~10,500 flows/s).
    pub events_memtable_bytes: u64,
    /// Events a feed subscriber may fall behind.
    pub feed_capacity: usize,
    /// Aggregates whose next sequence is kept in memory (older ones are read from the disk
    /// when appended to again).
    pub sequence_cache_entries: usize,
    /// Group commit: under load, the least time from the end of one sync to the start of the
    /// next, so that the writes of that time share one sync (`SyncMode::Always` only).
    pub group_commit_window: Duration,
}

impl LocalConfig {
    /// The defaults for `data_dir`: synced writes, a 64 MiB cache.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        LocalConfig {
            data_dir: data_dir.into(),
            sync: SyncMode::Always,
            cache_bytes: 64 * 1024 * 1024,
            memtable_bytes: 4 * 1024 * 1024,
            events_memtable_bytes: 32 * 1024 * 1024,
            feed_capacity: argyll_store::DEFAULT_FEED_CAPACITY,
            sequence_cache_entries: 100_000,
            group_commit_window: Duration::from_millis(1),
        }
    }
}

/// The keyspaces of a data directory (see `keys.rs`).
pub(crate) struct Keyspaces {
    pub(crate) events: Keyspace,
    pub(crate) snapshots: Keyspace,
    pub(crate) index: Keyspace,
    pub(crate) phases: Keyspace,
    pub(crate) deactivated: Keyspace,
    pub(crate) created: Keyspace,
    pub(crate) leases: Keyspace,
    pub(crate) timers: Keyspace,
}

pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) db: Database,
    pub(crate) spaces: Keyspaces,
    pub(crate) commit: GroupCommit,
    /// Next sequence of recently appended aggregates; the shard lock also orders appends to one
    /// aggregate. Bounded: a shard over its share of `sequence_cache_entries` forgets one.
    pub(crate) sequences: Sharded<HashMap<AggregateId, u64>>,
    pub(crate) sequences_per_shard: usize,
    /// Orders the read-modify-write of one flow's index entry and its phase keys.
    pub(crate) index_locks: Sharded<()>,
    /// Every lease (in-flight work only, so bounded by it); written through to the disk.
    pub(crate) leases: LeaseTable,
    pub(crate) timers: Mutex<TimerQueue>,
    pub(crate) feed: broadcast::Sender<Arc<EventEnvelope>>,
    /// Held for the store's life: the directory's lock.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.commit.close();
    }
}

/// The durable local store: every store trait on fjall in one data directory, owned by one
/// process. Clones share the store.
#[derive(Clone)]
pub struct LocalStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.inner.dir)
            .field("commit", &self.inner.commit)
            .finish_non_exhaustive()
    }
}

impl LocalStore {
    /// Opens (creating if missing) the data directory of `config`: takes its lock, checks its
    /// format, recovers the storage engine's journal and loads leases and timers. It blocks
    /// while the journal is replayed (under a second for a million stored flows): in async
    /// code call it through `spawn_blocking`, as the binary does.
    pub fn open(config: &LocalConfig) -> Result<Self, OpenError> {
        let dir = config.data_dir.clone();
        let not_writable = |source| OpenError::NotWritable {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(not_writable)?;
        let lock = lock_dir(&dir)?;
        let found = check_format(&dir)?;
        let storage = |error: fjall::Error| match error {
            fjall::Error::Locked => OpenError::Locked { dir: dir.clone() },
            fjall::Error::JournalRecovery(damage) => OpenError::Storage {
                dir: dir.clone(),
                reason: format!(
                    "its journal is damaged ({damage:?}): the disk holds other bytes than were written, so the store refuses to guess what is lost; restore the directory from a backup, or move it aside to start empty"
                ),
            },
            other => OpenError::Storage {
                dir: dir.clone(),
                reason: other.to_string(),
            },
        };
        let db_dir = dir.join(DB_DIR);
        let db = Database::builder(&db_dir)
            .cache_size(config.cache_bytes)
            // With `Always`, the syncer hands the journal to the operating system once per
            // sync instead of fjall doing it per batch (see `commit`).
            .manual_journal_persist(config.sync == SyncMode::Always)
            .open()
            .map_err(storage)?;
        let memtable = config.memtable_bytes.max(1024 * 1024);
        let events_memtable = config.events_memtable_bytes.max(memtable);
        let keyspace = |name: &str| {
            let size = if name == "events" {
                events_memtable
            } else {
                memtable
            };
            db.keyspace(name, || {
                KeyspaceCreateOptions::default().max_memtable_size(size)
            })
            .map_err(storage)
        };
        let spaces = Keyspaces {
            events: keyspace("events")?,
            snapshots: keyspace("snapshots")?,
            index: keyspace("index")?,
            phases: keyspace("phases")?,
            deactivated: keyspace("deactivated")?,
            created: keyspace("created")?,
            leases: keyspace("leases")?,
            timers: keyspace("timers")?,
        };
        if found.is_some_and(|found| found < 2) {
            let upgrade_failed = |reason: String| OpenError::Storage {
                dir: dir.clone(),
                reason: format!("upgrading it from format 1 failed: {reason}"),
            };
            let flows =
                index_by_creation(&db, &spaces).map_err(|e| upgrade_failed(e.to_string()))?;
            db.persist(fjall::PersistMode::SyncAll)
                .map_err(|e| upgrade_failed(e.to_string()))?;
            tracing::info!(
                dir = %dir.display(),
                flows,
                "local store upgraded from format 1 to {FORMAT_VERSION}: flows indexed by creation time"
            );
        }
        write_format(&dir, found.is_some_and(|found| found != FORMAT_VERSION))?;
        let leases = LeaseTable::default();
        for pair in spaces.leases.iter() {
            let (key, value) = pair.into_inner().map_err(storage)?;
            let lease = decode_lease(&key, &value).map_err(|error| OpenError::Storage {
                dir: dir.clone(),
                reason: error.to_string(),
            })?;
            leases.insert(lease);
        }
        let mut timers = TimerQueue::default();
        for pair in spaces.timers.iter() {
            let (key, value) = pair.into_inner().map_err(storage)?;
            let timer = decode_timer(&key, &value).map_err(|error| OpenError::Storage {
                dir: dir.clone(),
                reason: error.to_string(),
            })?;
            timers.insert(timer);
        }
        let commit =
            GroupCommit::start(db.clone(), &db_dir, config.sync, config.group_commit_window)
                .map_err(not_writable)?;
        let (feed, _) = broadcast::channel(config.feed_capacity.max(1));
        Ok(LocalStore {
            inner: Arc::new(Inner {
                dir,
                db,
                spaces,
                commit,
                sequences: Sharded::new(SHARDS),
                sequences_per_shard: (config.sequence_cache_entries / SHARDS).max(1),
                index_locks: Sharded::new(SHARDS),
                leases,
                timers: Mutex::new(timers),
                feed,
                _lock: lock,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Syncs of the journal so far: with group commit, far fewer than durable writes.
    pub fn syncs(&self) -> u64 {
        self.inner.commit.syncs()
    }

    /// Writes that waited (or, without `SyncMode::Always`, would have waited) for a sync.
    pub fn durable_writes(&self) -> u64 {
        self.inner.commit.durable_writes()
    }

    /// Bytes the store uses on the disk (tables and journals).
    pub fn disk_bytes(&self) -> Result<u64, StoreError> {
        self.inner.db.disk_space().map_err(unavailable)
    }
}

fn lock_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| OpenError::NotWritable {
            dir: dir.to_owned(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked {
            dir: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(OpenError::NotWritable {
            dir: dir.to_owned(),
            source,
        }),
    }
}

/// Builds the `created` keyspace of a format-1 directory from its index (idempotent: an
/// upgrade cut short is simply done again). Returns how many flows it indexed.
fn index_by_creation(db: &Database, spaces: &Keyspaces) -> Result<u64, StoreError> {
    const BATCH: usize = 10_000;
    let mut batch = db.batch();
    let mut pending = 0;
    let mut flows = 0;
    for pair in spaces.index.iter() {
        let (key, value) = pair.into_inner().map_err(unavailable)?;
        let flow_id = std::str::from_utf8(&key)
            .map_err(|error| StoreError::Corrupt(format!("index key: {error}")))?;
        let entry = decode_entry(flow_id, &value)?;
        batch.insert(&spaces.created, created_key_of(&entry), []);
        pending += 1;
        flows += 1;
        if pending == BATCH {
            std::mem::replace(&mut batch, db.batch())
                .commit()
                .map_err(unavailable)?;
            pending = 0;
        }
    }
    batch.commit().map_err(unavailable)?;
    Ok(flows)
}

/// The format of the directory (`None` for a new one); refuses a directory of a newer format,
/// or one with storage but no format file.
fn check_format(dir: &Path) -> Result<Option<u32>, OpenError> {
    let not_a_store = |reason: String| OpenError::NotAStore {
        dir: dir.to_owned(),
        reason,
    };
    match std::fs::read_to_string(dir.join(FORMAT_FILE)) {
        Ok(text) => {
            let found = text
                .trim()
                .strip_prefix(FORMAT_PREFIX)
                .and_then(|version| version.parse::<u32>().ok())
                .ok_or_else(|| not_a_store(format!("{FORMAT_FILE} reads {:?}", text.trim())))?;
            if found > FORMAT_VERSION {
                return Err(OpenError::NewerFormat {
                    dir: dir.to_owned(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Ok(Some(found))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if dir.join(DB_DIR).exists() {
                Err(not_a_store(format!(
                    "it has a {DB_DIR} directory but no {FORMAT_FILE} file"
                )))
            } else {
                Ok(None)
            }
        }
        Err(source) => Err(OpenError::NotWritable {
            dir: dir.to_owned(),
            source,
        }),
    }
}

/// Writes the format file (atomically, synced) unless it is there, or over an older one after
/// an upgrade (`replace`).
fn write_format(dir: &Path, replace: bool) -> Result<(), OpenError> {
    let path = dir.join(FORMAT_FILE);
    if path.exists() && !replace {
        return Ok(());
    }
    let not_writable = |source| OpenError::NotWritable {
        dir: dir.to_owned(),
        source,
    };
    let temporary = dir.join(format!("{FORMAT_FILE}.tmp"));
    let mut file = File::create(&temporary).map_err(not_writable)?;
    writeln!(file, "{FORMAT_PREFIX}{FORMAT_VERSION}").map_err(not_writable)?;
    file.sync_all().map_err(not_writable)?;
    std::fs::rename(&temporary, &path).map_err(not_writable)?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(not_writable)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use argyll_model::Timestamp;
    use argyll_store::{FlowIndex, FlowIndexEntry, FlowOrder, FlowOutcome, FlowPhase, FlowQuery};

    use super::*;

    /// A format-1 directory (the `created` keyspace empty, `FORMAT` 1) with more flows than
    /// one upgrade batch is upgraded at open: every flow is listed in the time orders.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn opening_a_format_1_directory_indexes_every_flow_by_creation_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = LocalConfig {
            sync: SyncMode::Never,
            ..LocalConfig::new(dir.path())
        };
        let flows: i64 = 12_345;
        {
            let store = LocalStore::open(&config).unwrap();
            let inner = &store.inner;
            let mut batch = inner.db.batch();
            for n in 0..flows {
                let entry = FlowIndexEntry {
                    flow_id: format!("f{n:05}"),
                    goals: Vec::new(),
                    parent_flow_id: None,
                    outcome: FlowOutcome::Active,
                    phase: FlowPhase::Active,
                    // Creation times in the reverse order of the ids, a few shared.
                    created_at: Timestamp::from_unix_millis(1_000_000 - n / 2),
                    completed_at: None,
                    error: None,
                };
                inner.add_entry(&mut batch, None, &entry).unwrap();
            }
            batch.commit().unwrap();
            // What a format-1 build left: no by-creation keys.
            let mut clear = inner.db.batch();
            for guard in inner.spaces.created.iter() {
                clear.remove(&inner.spaces.created, guard.key().unwrap());
            }
            clear.commit().unwrap();
            assert_eq!(inner.spaces.created.iter().count(), 0);
        }
        std::fs::write(dir.path().join(FORMAT_FILE), "argyll-local-store 1\n").unwrap();
        let store = LocalStore::open(&config).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FORMAT_FILE)).unwrap(),
            format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n")
        );
        assert_eq!(
            store.inner.spaces.created.iter().count(),
            usize::try_from(flows).unwrap()
        );
        let page = |order| FlowQuery {
            order,
            limit: 3,
            ..FlowQuery::default()
        };
        let ids = |entries: Vec<FlowIndexEntry>| {
            entries.into_iter().map(|e| e.flow_id).collect::<Vec<_>>()
        };
        let newest = store
            .list_flows(&page(FlowOrder::NewestFirst))
            .await
            .unwrap();
        assert_eq!(ids(newest.entries), ["f00001", "f00000", "f00003"]);
        let oldest = store
            .list_flows(&page(FlowOrder::OldestFirst))
            .await
            .unwrap();
        assert_eq!(ids(oldest.entries), ["f12344", "f12342", "f12343"]);
    }
}
