//! # argyll-store-local
//!
//! The durable local store: every `argyll-store` trait on [fjall] (an embedded log-structured
//! storage engine) in one data directory, owned by one process. It is the default store of the
//! `argyll` binary: one process keeps its flows across restarts without any other server.
//!
//! **Owns**: the data directory — its lock (one process at a time), its format version
//! ([`FORMAT_VERSION`], in the `FORMAT` file; older formats are upgraded when opened), the
//! keyspaces and what their keys and values mean (`keys.rs`, `records.rs`): the flow index keeps
//! beside the entries their phase sets, the deactivated flows by completion time and every flow
//! by creation time, so each listing (by id from a prefix, newest or oldest first) and
//! `recently_deactivated` read about a page of keys — and group commit ([`SyncMode`]): writes acknowledged to a
//! caller (appends, index entries, timers) are synced to the disk first, many writers sharing
//! one sync. Leases and timers are decided in memory and written through; the next sequence of
//! recently appended logs is cached in memory (bounded), so an append reads nothing from the
//! disk. The choice of fjall over redb, with the figures, is in `docs/ARCHITECTURE.md` ("The
//! local store's engine"; `benches/engines.rs`).
//!
//! **Must not depend on**: the engine, runners, HTTP or configuration (like every store
//! adapter); it stores what it is given and decides nothing about flows.
//!
//! ```
//! use argyll_events::AggregateId;
//! use argyll_model::Timestamp;
//! use argyll_store::EventLog;
//! use argyll_store::conformance::started;
//! use argyll_store_local::{LocalConfig, LocalStore};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let flow = AggregateId::Flow("f1".into());
//! {
//!     let store = LocalStore::open(&LocalConfig::new(dir.path())).unwrap();
//!     let at = Timestamp::from_unix_millis(1_000);
//!     store.append(&flow, 0, vec![(at, started("f1"))]).await.unwrap();
//! }
//! // Closed and opened again: the event is still there.
//! let store = LocalStore::open(&LocalConfig::new(dir.path())).unwrap();
//! assert_eq!(store.load(&flow).await.unwrap().next_sequence, 1);
//! # });
//! ```

mod commit;
mod error;
mod index;
mod keys;
mod leases;
mod log;
mod records;
mod store;
mod timers;

pub use commit::SyncMode;
pub use error::OpenError;
pub use store::{FORMAT_VERSION, LocalConfig, LocalStore};
