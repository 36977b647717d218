//! Group commit: many concurrent writes share one `fdatasync`.
//!
//! Every write is committed to fjall's journal at once. A writer that must be durable takes a
//! *ticket* after its batch is in the journal and waits until the syncer thread has synced a
//! ticket at least as new. The syncer syncs whatever is written when it wakes, so writes that
//! arrive while one sync runs share the next one.
//!
//! With `Always`, fjall keeps committed batches in its journal buffer (manual journal
//! persistence, set on the database) and the syncer hands the buffer to the operating system
//! right before each sync: one `write` per sync instead of one per batch, which was a tenth of
//! a small flow's CPU. A batch that is not waited for but must survive `kill -9` of the process
//! (taken timers) hands the buffer over itself ([`GroupCommit::written_through`]); single-key
//! writes (leases, timers, snapshots) are handed over by fjall as they commit (the setting of
//! their keyspaces). With `Interval` and `Never`, fjall hands over every batch as it commits,
//! so every acknowledged write survives `kill -9`.
//!
//! The syncer calls `fdatasync` on its own handle of the active journal file rather than
//! through `Database::persist`, which holds the journal's lock for the whole sync and would
//! stop every writer meanwhile. That is sound because fjall writes each batch through to the
//! file before the commit returns, and syncs a journal fully when it seals it (rotation); the
//! journal that is newest when the syncer looks, after reading the ticket it syncs up to,
//! holds every write not yet in a sealed journal.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use argyll_store::StoreError;
use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

/// When the store syncs its journal to the disk (`LOCAL_STORE_SYNC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// A write is acknowledged once it is synced (group commit): nothing acknowledged is lost,
    /// even when the machine loses power. The default.
    Always,
    /// The journal is synced every interval; writes are acknowledged before. A crash of the
    /// process loses nothing; a crash of the machine loses at most the last interval.
    Interval(Duration),
    /// The store never syncs; the operating system writes the journal out when it chooses. A
    /// crash of the process loses nothing; a crash of the machine may lose the last seconds.
    Never,
}

/// What the syncer has made durable, as writers wait for it.
#[derive(Clone, Debug, Default)]
struct Synced {
    /// The newest ticket synced.
    upto: u64,
    /// Set when a sync failed: the journal's state on the disk is unknown from then on, and
    /// every waiting and later durable write fails with it.
    failure: Option<Arc<str>>,
}

/// The shared state of the writers and the syncer thread.
struct Shared {
    mode: SyncMode,
    /// Under load, the least time between the end of one sync and the start of the next: the
    /// writes arriving meanwhile share the next sync (see [`GroupCommit::start`]).
    window: Duration,
    journal_dir: PathBuf,
    db: fjall::Database,
    /// Tickets handed out (the newest write in the journal that may wait for a sync).
    written: AtomicU64,
    synced: watch::Sender<Synced>,
    /// Whether a writer waits for the syncer (`Always`), under the syncer's condition.
    pending: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
    syncs: AtomicU64,
}

/// The group committer of one store: the writers' side and the syncer thread.
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    syncer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("mode", &self.shared.mode)
            .field("syncs", &self.syncs())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the syncer of `db`, whose journals are in `journal_dir`. With `SyncMode::Always`
    /// a sync starts at once when the previous one ended more than `window` ago (a lone write
    /// waits for one sync only); under load the syncer waits out the rest of `window`, so one
    /// sync covers the writes of that time instead of a sync running per few writes (each
    /// costs tens of µs of CPU, a virtual machine's disk more).
    pub(crate) fn start(
        db: fjall::Database,
        journal_dir: &Path,
        mode: SyncMode,
        window: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            mode,
            window,
            journal_dir: journal_dir.to_owned(),
            db,
            written: AtomicU64::new(0),
            synced: watch::Sender::new(Synced::default()),
            pending: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
        });
        let syncer = match mode {
            SyncMode::Never => None,
            SyncMode::Always | SyncMode::Interval(_) => {
                let shared = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("argyll-local-sync".into())
                        .spawn(move || shared.run())?,
                )
            }
        };
        Ok(GroupCommit {
            shared,
            syncer: Mutex::new(syncer),
        })
    }

    /// Waits until everything committed to the journal before this call is as durable as the
    /// sync mode makes it: synced (`Always`), or at once (`Interval`, `Never`).
    pub(crate) async fn durable(&self) -> Result<(), StoreError> {
        let shared = &self.shared;
        let ticket = shared.written.fetch_add(1, Ordering::SeqCst) + 1;
        if shared.mode != SyncMode::Always {
            return failure_of(&shared.synced.borrow());
        }
        let mut synced = shared.synced.subscribe();
        {
            let mut pending = shared.pending.lock();
            *pending = true;
            shared.wake.notify_one();
        }
        let reached = synced
            .wait_for(|synced| synced.upto >= ticket || synced.failure.is_some())
            .await
            .map_err(|_| StoreError::Unavailable("the local store is closed".into()))?;
        failure_of(&reached)
    }

    /// Makes what is committed so far survive `kill -9` of the process without waiting for a
    /// sync: hands fjall's journal buffer to the operating system where the syncer would
    /// otherwise do it (`Always`); nothing to do otherwise (fjall did it at the commit).
    pub(crate) fn written_through(&self) -> Result<(), StoreError> {
        if self.shared.mode != SyncMode::Always {
            return Ok(());
        }
        self.shared
            .db
            .persist(fjall::PersistMode::Buffer)
            .map_err(|error| StoreError::Unavailable(format!("local store: {error}")))
    }

    /// Syncs done so far (group commit at work: fewer syncs than durable writes).
    pub(crate) fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Writes that asked to be durable so far.
    pub(crate) fn durable_writes(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Stops the syncer and syncs what is left (closing the store).
    pub(crate) fn close(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _pending = self.shared.pending.lock();
            self.shared.wake.notify_one();
        }
        if let Some(syncer) = self.syncer.lock().take() {
            let _ = syncer.join();
        }
        match self.shared.db.persist(fjall::PersistMode::SyncAll) {
            Ok(()) => tracing::info!(
                syncs = self.syncs(),
                durable_writes = self.durable_writes(),
                "local store closed"
            ),
            Err(error) => {
                tracing::error!(%error, "the local store could not sync its journal on closing");
            }
        }
    }
}

fn failure_of(synced: &Synced) -> Result<(), StoreError> {
    match &synced.failure {
        Some(failure) => Err(StoreError::Unavailable(format!(
            "the local store could not sync its journal: {failure}"
        ))),
        None => Ok(()),
    }
}

impl Shared {
    fn run(&self) {
        let mut journal: Option<(u64, File)> = None;
        let mut last_sync_end: Option<std::time::Instant> = None;
        loop {
            match self.mode {
                SyncMode::Always => {
                    {
                        let mut pending = self.pending.lock();
                        while !*pending && !self.stop.load(Ordering::SeqCst) {
                            self.wake.wait(&mut pending);
                        }
                    }
                    if let Some(rest) = last_sync_end
                        .and_then(|end| self.window.checked_sub(end.elapsed()))
                        .filter(|rest| !rest.is_zero())
                    {
                        std::thread::sleep(rest);
                    }
                    *self.pending.lock() = false;
                }
                SyncMode::Interval(interval) => {
                    let mut pending = self.pending.lock();
                    if !self.stop.load(Ordering::SeqCst) {
                        let _ = self.wake.wait_for(&mut pending, interval);
                    }
                }
                SyncMode::Never => return,
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            // Read before syncing: every ticket up to here was taken after its write.
            let target = self.written.load(Ordering::SeqCst);
            if self.mode == SyncMode::Always && target <= self.synced.borrow().upto {
                continue;
            }
            let synced = self.sync(&mut journal);
            last_sync_end = Some(std::time::Instant::now());
            match synced {
                Ok(()) => {
                    self.syncs.fetch_add(1, Ordering::Relaxed);
                    self.synced.send_modify(|synced| synced.upto = target);
                }
                Err(error) => {
                    tracing::error!(%error, "the local store could not sync its journal; it refuses durable writes from now on");
                    self.synced
                        .send_modify(|synced| synced.failure = Some(error.to_string().into()));
                    return;
                }
            }
        }
    }

    /// Syncs the active journal through the syncer's own handle (see the module doc), or
    /// through fjall when no journal file is found.
    fn sync(&self, journal: &mut Option<(u64, File)>) -> Result<(), String> {
        if self.mode == SyncMode::Always {
            // The batches of every ticket read so far are in fjall's buffer or beyond it.
            self.db
                .persist(fjall::PersistMode::Buffer)
                .map_err(|error| error.to_string())?;
        }
        let Some((id, path)) = newest_journal(&self.journal_dir) else {
            return self
                .db
                .persist(fjall::PersistMode::SyncData)
                .map_err(|error| error.to_string());
        };
        let reopen = journal.as_ref().is_none_or(|(open, _)| *open != id);
        if reopen {
            let file = File::open(&path).map_err(|error| format!("{}: {error}", path.display()))?;
            *journal = Some((id, file));
        }
        match journal {
            Some((_, file)) => file
                .sync_data()
                .map_err(|error| format!("{}: {error}", path.display())),
            None => Ok(()),
        }
    }
}

/// The id and path of the newest journal (`<id>.jnl`) in `dir`.
fn newest_journal(dir: &Path) -> Option<(u64, PathBuf)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let id = name.to_str()?.strip_suffix(".jnl")?.parse::<u64>().ok()?;
            Some((id, entry.path()))
        })
        .max_by_key(|(id, _)| *id)
}
