//! # argyll-store
//!
//! The storage the engine is written against, as traits, with an embedded in-memory
//! implementation and a conformance kit.
//!
//! **Owns**: the traits — per-aggregate event logs with optimistic append and snapshots
//! ([`EventLog`]), the flow index with filters, an id prefix and paging by id or by creation
//! time, newest or oldest first ([`FlowIndex`], [`FlowQuery`]), the feed of committed
//! events every instance subscribes to ([`EventFeed`]), leases on in-flight work ([`Leases`]) and
//! durable timers ([`Timers`]), together [`Store`]; the [`EmbeddedStore`]; and, behind the
//! `conformance` feature, the checks every adapter must pass (the Redis adapter runs the same
//! kit). Beside them small shared pieces: [`LeaseTable`] and [`TimerQueue`] (leases and timers
//! decided in process, by the embedded and the local store), [`Sharded`] (hash-sharded mutexes) and [`Clock`]
//! ([`SystemClock`], [`ManualClock`]), the time the engine and the archiver are given (stores
//! take the time from their callers).
//!
//! **Must not depend on**: the engine, runners, HTTP or configuration. It stores events and
//! index entries; deciding what they mean is the engine's job.
//!
//! ```
//! use argyll_events::{AggregateId, Event, FlowEvent, FlowStarted};
//! use argyll_model::{Args, ExecutionPlan, Timestamp};
//! use argyll_store::{EmbeddedStore, EventLog, StoreError};
//!
//! # tokio_test_block_on(async {
//! let store = EmbeddedStore::new();
//! let flow = AggregateId::Flow("f1".into());
//! let started = Event::Flow(FlowEvent::from(FlowStarted {
//!     plan: ExecutionPlan::default().into(),
//!     init: Args::new(),
//!     metadata: Default::default(),
//!     flow_id: "f1".into(),
//! }));
//! let at = Timestamp::from_unix_millis(1_000);
//! store.append(&flow, 0, vec![(at, started.clone())]).await?;
//! // A second writer that also expected an empty log loses.
//! let conflict = store.append(&flow, 0, vec![(at, started)]).await.unwrap_err();
//! assert!(matches!(conflict, StoreError::Conflict { actual: 1, .. }));
//! # Ok::<(), StoreError>(())
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod clock;
mod embedded;
mod error;
mod memory;
mod sharded;
mod traits;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use clock::{Clock, ManualClock, SystemClock, system_clock};
pub use embedded::{DEFAULT_FEED_CAPACITY, EmbeddedStore};
pub use error::{StoreError, check_events_belong};
pub use memory::{LeaseTable, TimerQueue};
pub use sharded::Sharded;
pub use traits::{
    EventFeed, EventLog, FlowIndex, FlowIndexEntry, FlowOrder, FlowOutcome, FlowPage, FlowPhase,
    FlowQuery, Lease, Leases, Loaded, MemoryUsage, Snapshot, Store, StoreInfo, TimeCursor, Timer,
    Timers, nanos_of, read_newer_by_reading,
};
