//! The engine: commands on the catalog and on flows, the side effects of committed flow
//! transactions (running work, retry timers, the flow index, child flows), and the background
//! loops (retry timers, lapsed leases, health checks).
//!
//! One concern per module; each adds its methods to [`Engine`] and owns the part of the
//! engine's state it needs (a field of [`Inner`]):
//!
//! | module | owns |
//! | --- | --- |
//! | `builder` | [`EngineBuilder`], the accessors |
//! | `config`, `error` | [`EngineConfig`] and its defaults; [`EngineError`] |
//! | `services` | the [`crate::flow::FlowServices`] the decision core calls (predicates, memo, quick scripts) |
//! | `predicates` | predicates that need more than the quick budget, evaluated off the workers |
//! | `catalog` | the catalog cache, step commands, shared plans |
//! | `start` | flow starts (idempotent, decision 10) |
//! | `reads` | reading a flow |
//! | `commit` | running a flow command and carrying out what it committed |
//! | `work_key` | [`WorkKey`]: the typed identity of a work item's lease and retry timer |
//! | `dispatch`, `running` | leasing and running work, parking async work |
//! | `results` | recording results (batched per flow) and webhook reports |
//! | `children` | child flows and the typed link to their parent |
//! | `index` | the flow index and `GET /engine` |
//! | `waiters` | long-poll waiters for a flow's end |
//! | `timers` | durable retry timers |
//! | `recovery` | start-up recovery, sweeps, lapsed-lease takeover |
//! | `retention` | deleting finished flows past `FLOW_RETENTION` |
//! | `health`, `probes` | step health checks and when to repeat them |
//! | `store_retry` | riding out a store outage |
//! | `lifecycle` | start, tracked tasks and graceful shutdown |

mod builder;
mod catalog;
mod children;
mod commit;
mod config;
mod dispatch;
mod error;
mod health;
mod index;
mod lifecycle;
mod predicates;
mod probes;
mod reads;
mod recovery;
mod results;
mod retention;
mod running;
mod services;
mod start;
mod store_retry;
mod timers;
mod waiters;
mod work_key;

use std::sync::Arc;

use argyll_model::{FlowState, Timestamp};
use argyll_store::Clock;

pub use builder::EngineBuilder;
pub use config::{EngineConfig, QUICK_SCRIPT_BUDGET};
pub use error::EngineError;
pub use index::flow_digest;
pub(crate) use index::index_entry;
pub use results::WorkReport;
pub use start::{FlowStart, StartFlow};

use crate::aggregate::ProjectionCache;
use crate::runner::{LocalHandlers, StepRunner};

/// The orchestration engine; cheap to clone (all clones share one engine).
pub struct Engine<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

impl<S> Engine<S> {
    /// The time by the engine's clock.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }
}

impl<S> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("instance_id", &self.inner.config.instance_id)
            .finish_non_exhaustive()
    }
}

/// What every clone of an [`Engine`] shares, one part per concern.
struct Inner<S> {
    store: S,
    config: EngineConfig,
    /// Where the time comes from (events, leases, timers, recovery's quiet check).
    clock: Arc<dyn Clock>,
    runner: Arc<dyn StepRunner>,
    local: LocalHandlers,
    /// Flow states kept between commands.
    flows: Option<ProjectionCache<Option<FlowState>>>,
    services: services::ServiceParts,
    slow_predicates: predicates::SlowPredicates,
    catalog: catalog::CatalogCache,
    waiters: waiters::Waiters,
    results: results::ResultQueues,
    /// Work items this process is running (their leases are renewed; recovery leaves them be).
    running: running::RunningWork,
    health: health::HealthChecks,
    timers: timers::TimerWakeup,
    lifecycle: lifecycle::Lifecycle,
}
