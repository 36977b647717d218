//! # argyll-engine
//!
//! The orchestration engine: the step catalog, planning and running flows, retries,
//! memoization, child flows and recovery, over the `argyll-store` traits. Usable three ways:
//! composed by the server binary, embedded in another Rust service (with in-process
//! `local://` handlers), and in tests with a mock [`StepRunner`].
//!
//! * [`Engine`] (built by [`Engine::builder`]; `src/engine/`, one module per concern, listed
//!   in its module doc): register/update/unregister steps (validation, script compile check,
//!   type-conflict and cycle checks), plan, start flows (idempotent and atomic, decision 10),
//!   read and wait for flows, record webhook results, recovery on [`Engine::start`], graceful
//!   [`Engine::shutdown`].
//! * Flow semantics live in one pure module (`flow`): after every step transition a flow is
//!   advanced to a fixpoint — unneeded steps skipped, unreachable ones failed, ready ones
//!   started (predicate once, `for_each` expansion, parallelism, memo hits) — then checked for
//!   completion (the contract's decisions 1–5, 11, 12, 23). Work results and retries are
//!   commands on the flow's own aggregate: no global lock, no shared aggregate per flow start.
//! * Side effects run after the commit: work is executed under a lease in the store (decision
//!   22; the leases of one commit's work are taken in one call), retries wait on durable store
//!   timers, the flow index is updated, settled child flows complete their parent's work item.
//!   Results of one flow that arrive together are recorded in one command. Script items and
//!   predicates that finish within [`QUICK_SCRIPT_BUDGET`] run inside the transaction; a
//!   predicate that needs longer is evaluated on the blocking pool and its verdict recorded by a
//!   command of its own. Time comes from an injected clock ([`EngineBuilder::clock`]).
//! * Bounds (contract decision 25): `MAX_WORK_ITEMS` per step, `FLOW_MAX_STATE_BYTES` per
//!   flow (sizes counted by the reducers), `FLOW_MAX_DEPTH` of child flows and flow steps
//!   that reach themselves refused at registration, ids within `MAX_ID_LENGTH`, a retry
//!   floor, a flow cache bounded by count and bytes. Work running here keeps its lease
//!   (`engine::running`, decision 24); failed health checks are repeated sooner
//!   (`engine::probes`); a store that lost writes is noticed before a cached state is reused.
//! * The runner layer: [`StepRunner`] (object-safe: executes one [`WorkRequest`] and reports
//!   a [`WorkOutcome`]), [`HttpStepRunner`], [`ScriptStepRunner`], [`LocalHandlers`],
//!   [`RunnerSet`].
//! * `aggregate` (crate-private): the command loop over one aggregate (`execute`,
//!   `execute_applied`) — take the cached state (or load snapshot + tail), decide, append at the
//!   expected sequence, retry on a conflict; `load_current`: a reader's state, never older than
//!   the store's; the projection cache.
//!
//! **Must not depend on**: the server, configuration loading, or a concrete store.

mod aggregate;
mod catalog;
mod engine;
mod flow;
mod runner;

pub use aggregate::{AggregateError, Current};
pub use catalog::{CatalogError, Registration};
pub use engine::{
    Engine, EngineBuilder, EngineConfig, EngineError, FlowStart, QUICK_SCRIPT_BUDGET, StartFlow,
    WorkReport, flow_digest,
};
pub use flow::FlowCommandError;
pub use runner::{
    HandlerError, HttpStepRunner, LOCAL_SCHEME, LocalHandlers, RunnerSet, ScriptStepRunner,
    StepRunner, WorkFuture, WorkOutcome, WorkRequest, script_arg_names,
};
