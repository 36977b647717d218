//! # argyll-engine
//!
//! The orchestration engine: registering steps, planning and running flows, retries,
//! memoization, child flows and recovery, over the `argyll-store` traits. It is built up
//! increment by increment; **today it holds the runner layer** the orchestration core will
//! dispatch work through:
//!
//! * [`StepRunner`]: executes one work item ([`WorkRequest`]) and reports a [`WorkOutcome`]
//!   (completed, accepted by an async step, retryable, failed). Object-safe, so tests plug in
//!   mock runners and embedders their own.
//! * [`HttpStepRunner`] (sync and async HTTP steps via `argyll-http`), [`ScriptStepRunner`]
//!   (Ale and Lua via `argyll-script`, also evaluating predicates), [`LocalHandlers`]
//!   (in-process Rust handlers for steps whose endpoint is `local://NAME`), and [`RunnerSet`],
//!   which picks one by step type.
//!
//! * [`execute`]: the command loop over an aggregate of the store — load (snapshot + tail),
//!   decide, check the events by applying them, append at the expected sequence, retry on a
//!   conflict. Starting a flow is such a command, which is why racing starts of one flow id
//!   record exactly one `flow_started`.
//!
//! **Must not depend on**: the server, configuration loading, or a concrete store.

mod aggregate;
mod runner;

pub use aggregate::{AggregateError, AggregateState, Current, Executed, execute, load, now};

pub use runner::{
    HandlerError, HttpStepRunner, LOCAL_SCHEME, LocalHandlers, RunnerSet, ScriptStepRunner,
    StepRunner, WorkFuture, WorkOutcome, WorkRequest, script_arg_names,
};
