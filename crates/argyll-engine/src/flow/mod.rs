//! The decisions of one flow: a pure function of the flow's state (and of the predicate, memo
//! and retry services it is handed) to the events it raises and the side effects to run once
//! they are committed.
//!
//! Semantics are `engine.md` §5 as amended by the contract: after every step transition the
//! flow is *advanced* to a fixpoint — steps whose outputs nobody needs are skipped, steps that
//! can no longer get a required input fail, ready steps start, and the terminal check runs
//! (decisions 1–3, 11, 12). Nothing here does I/O or reads the clock; `at` comes with the
//! transaction.
//!
//! `mod.rs` holds the transaction ([`FlowTx`]), the services it is handed and what it leaves
//! to do ([`Effect`]); `results` the commands on work items (results, retries, re-dispatch);
//! `advance` the fixpoint (skip, fail unreachable, start ready steps, terminal check).

mod advance;
mod results;

use std::collections::BTreeSet;
use std::sync::Arc;

use argyll_events::{ApplyError, FlowEvent, FlowStarted, Projection, WorkFailed};
use argyll_model::{
    Args, ExecutionPlan, FlowState, Step, StepStatus, Timestamp, WorkState, WorkStatus,
};
use argyll_retry::RetryPolicy;
use serde_json::{Map, Value};

/// Why a flow command was refused (a client-visible error; nothing is written).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowCommandError {
    /// No flow with that id.
    #[error("flow not found")]
    FlowNotFound,
    /// The step is not part of the flow's plan.
    #[error("step not in execution plan: {0}")]
    StepNotInPlan(String),
    /// The token is not a work item of the step.
    #[error("work item not found: {0}")]
    WorkItemNotFound(String),
    /// A result reported from outside (a webhook) for a step that is not async: its work
    /// items are finished by the engine's own call to the handler, never by a webhook.
    #[error("step {0} is not an async step: only work items of async steps accept webhook results")]
    NotAsync(String),
    /// The reported result does not fit the item's status.
    #[error(transparent)]
    InvalidTransition(#[from] argyll_model::InvalidWorkTransition),
}

/// A flow command failed: refused, or (an engine bug) it raised an event that does not apply.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum TxError {
    #[error(transparent)]
    Refused(#[from] FlowCommandError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// What a flow transaction needs from the engine besides the state.
pub(crate) trait FlowServices {
    /// Evaluates the step's predicate with step-level inputs within the quick budget: its
    /// verdict (the error is the step's failure message), or [`PredicateCheck::Deferred`] when
    /// it needs longer — then it is evaluated outside the transaction
    /// ([`Effect::EvaluatePredicate`]) and its verdict recorded by [`FlowTx::decide_predicate`].
    fn evaluate_predicate(&self, step: &Step, inputs: &Args) -> PredicateCheck;
    /// A cached result of a memoizable step for these inputs.
    fn memo_lookup(&self, step: &Step, inputs: &Args) -> Option<Args>;
    /// Remembers a memoizable step's result (the first stored value wins). Called inside the
    /// transaction, so the next item of the same step already sees it (decision 23).
    fn memo_store(&self, step: &Step, inputs: &Args, outputs: &Args);
    /// The step's retry policy.
    fn retry_policy(&self, step: &Step) -> RetryPolicy;
    /// A fresh work-item token.
    fn new_token(&self) -> String;
    /// The most work items one step may expand to (`MAX_WORK_ITEMS`).
    fn max_work_items(&self) -> usize;
    /// The shortest delay before a retry, whatever the step's policy computes.
    fn min_retry_delay_ms(&self) -> u64;
    /// The largest a flow's state may grow, in bytes of JSON (`FLOW_MAX_STATE_BYTES`).
    fn max_state_bytes(&self) -> u64;
    /// Runs a work item of a script step right here when it finishes within a small budget:
    /// its outputs or its error message. `None` when the step is not a script or needs longer;
    /// then it is dispatched as work like any other.
    fn run_script_quickly(&self, step: &Step, inputs: &Args) -> Option<Result<Args, String>>;
}

/// What a predicate check inside a transaction found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PredicateCheck {
    /// `Ok(holds)`, or the error that fails the step.
    Decided(Result<bool, String>),
    /// It needs more than the quick budget: decided later, outside the transaction.
    Deferred,
}

/// A work item that [`FlowTx::run_quick_work`] ran and that failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QuickFailure {
    pub(crate) step_id: String,
    pub(crate) token: String,
    pub(crate) error: String,
}

/// A side effect of a committed flow transaction.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// Execute a work item whose `work_started` was committed.
    Run {
        step_id: String,
        token: String,
        inputs: Args,
    },
    /// A retry is due later: keep a durable timer.
    ScheduleRetry {
        step_id: String,
        token: String,
        due: Timestamp,
    },
    /// A queued retry was cancelled.
    CancelRetry { step_id: String, token: String },
    /// A predicate that needs more than the quick budget: evaluate it off the async workers
    /// and record the verdict with [`FlowTx::decide_predicate`] (the step waits, pending).
    EvaluatePredicate { step_id: String, inputs: Args },
}

/// One flow transaction in progress: the state with the events raised so far applied.
pub(crate) struct FlowTx<'s> {
    pub(crate) state: FlowState,
    pub(crate) at: Timestamp,
    pub(crate) events: Vec<FlowEvent>,
    pub(crate) effects: Vec<Effect>,
    /// Set when a step of this transaction would have had more work items than allowed (the
    /// step fails; a flow start that hits it is refused instead).
    pub(crate) too_many_work_items: Option<String>,
    /// Steps whose predicate is being evaluated outside this transaction: they stay pending
    /// and are not prepared again by it.
    awaiting_predicate: BTreeSet<String>,
    services: &'s dyn FlowServices,
}

const UNREACHABLE: &str = "required input no longer available";

/// The failure of what would take a flow's state past `FLOW_MAX_STATE_BYTES`.
pub(crate) fn state_too_large(what: &str, adding: u64, limit: u64) -> String {
    format!(
        "flow state too large: {what} ({adding} bytes) would take the flow's state past {limit} bytes (FLOW_MAX_STATE_BYTES)"
    )
}

impl<'s> FlowTx<'s> {
    pub(crate) fn new(state: FlowState, at: Timestamp, services: &'s dyn FlowServices) -> Self {
        FlowTx {
            state,
            at,
            events: Vec::new(),
            effects: Vec::new(),
            too_many_work_items: None,
            awaiting_predicate: BTreeSet::new(),
            services,
        }
    }

    /// Starts a new flow (the state must be the empty one) and runs it as far as it goes.
    pub(crate) fn start(
        services: &'s dyn FlowServices,
        at: Timestamp,
        flow_id: &str,
        plan: Arc<ExecutionPlan>,
        init: Args,
        metadata: Map<String, Value>,
    ) -> Result<Self, TxError> {
        let mut empty: Option<FlowState> = None;
        let started = FlowEvent::from(FlowStarted {
            plan,
            init,
            metadata,
            flow_id: flow_id.to_owned(),
        });
        empty.apply(&started, at)?;
        let state = empty.ok_or(TxError::Refused(FlowCommandError::FlowNotFound))?;
        let mut tx = FlowTx::new(state, at, services);
        tx.events.push(started);
        tx.advance()?;
        Ok(tx)
    }

    /// Runs the work this transaction started whose step is a quick script (see
    /// [`FlowServices::run_script_quickly`]) and records its result in the same transaction,
    /// repeatedly (a result can start more work), for at most `allowance` items. Running it
    /// here instead of dispatching it saves the lease and a second commit per item; scripts
    /// are pure, so a transaction that is re-run after a conflict just runs them again.
    /// Returns the items that failed, for the caller to log once the transaction commits.
    pub(crate) fn run_quick_work(
        &mut self,
        mut allowance: usize,
    ) -> Result<Vec<QuickFailure>, TxError> {
        let mut kept = Vec::new();
        let mut failures = Vec::new();
        while !self.effects.is_empty() {
            for effect in std::mem::take(&mut self.effects) {
                let Effect::Run {
                    step_id,
                    token,
                    inputs,
                } = effect
                else {
                    kept.push(effect);
                    continue;
                };
                let running = self
                    .item(&step_id, &token)
                    .is_some_and(|item| item.status == WorkStatus::Active);
                let outcome = if allowance > 0 && running {
                    self.plan_step(&step_id)
                        .and_then(|step| self.services.run_script_quickly(step, &inputs))
                } else {
                    None
                };
                match outcome {
                    None => kept.push(Effect::Run {
                        step_id,
                        token,
                        inputs,
                    }),
                    Some(Ok(outputs)) => {
                        allowance -= 1;
                        self.complete_work(&step_id, &token, outputs)?;
                    }
                    Some(Err(error)) => {
                        allowance -= 1;
                        self.fail_work(&step_id, &token, &error)?;
                        failures.push(QuickFailure {
                            step_id,
                            token,
                            error,
                        });
                    }
                }
            }
        }
        self.effects = kept;
        Ok(failures)
    }

    fn raise(&mut self, event: impl Into<FlowEvent>) -> Result<(), ApplyError> {
        let event = event.into();
        argyll_events::apply_to_started(&mut self.state, &event, self.at)?;
        self.events.push(event);
        Ok(())
    }

    fn flow_id(&self) -> String {
        self.state.id.clone()
    }

    fn plan_step(&self, step_id: &str) -> Option<&Step> {
        self.state.plan.steps.get(step_id)
    }

    fn status_of(&self, step_id: &str) -> Option<StepStatus> {
        self.state.executions.get(step_id).map(|e| e.status)
    }

    fn item(&self, step_id: &str, token: &str) -> Option<&WorkState> {
        self.state
            .executions
            .get(step_id)
            .and_then(|e| e.work_items.get(token))
    }

    fn raise_work_failed(
        &mut self,
        step_id: &str,
        token: &str,
        error: &str,
    ) -> Result<(), ApplyError> {
        self.raise(WorkFailed {
            flow_id: self.flow_id(),
            step_id: step_id.to_owned(),
            token: token.to_owned(),
            error: error.to_owned(),
        })
    }

    fn has_attribute(&self, name: &str) -> bool {
        self.state.attributes.contains_key(name)
    }
}

/// Whether the flow is terminal with nothing pending or running (it can be deactivated).
pub(crate) fn is_settled(state: &FlowState) -> bool {
    state.is_terminal() && !state.has_unfinished_work()
}

/// Work items of a step: one per element of the Cartesian product of its `for_each` inputs
/// that hold arrays (first attribute by name varying slowest), or one with the step inputs.
pub(crate) fn expand_work_items(step: &Step, inputs: &Args) -> Vec<Args> {
    let dimensions = expansion_dimensions(step, inputs);
    if dimensions.is_empty() {
        return vec![inputs.clone()];
    }
    // Each item is the step inputs without the expanded arrays, plus one element of each: the
    // arrays are left out of the copies (copying them into every item made a fan-out of N
    // elements cost N² element copies).
    let mut base = inputs.clone();
    for (name, _) in &dimensions {
        base.remove(*name);
    }
    let mut items = vec![base];
    for (name, values) in dimensions {
        let mut next = Vec::with_capacity(items.len().saturating_mul(values.len()));
        for item in &items {
            for value in values {
                let mut expanded = item.clone();
                expanded.insert(name.clone(), value.clone());
                next.push(expanded);
            }
        }
        items = next;
    }
    items
}

/// The `for_each` attributes whose input is an array, with their elements.
fn expansion_dimensions<'a>(step: &'a Step, inputs: &'a Args) -> Vec<(&'a String, &'a Vec<Value>)> {
    step.for_each_attributes()
        .filter_map(|name| match inputs.get(name) {
            Some(Value::Array(values)) => Some((name, values)),
            _ => None,
        })
        .collect()
}

/// How many work items [`expand_work_items`] would make (saturating), without making them.
pub(crate) fn work_item_count(step: &Step, inputs: &Args) -> usize {
    expansion_dimensions(step, inputs)
        .iter()
        .fold(1usize, |count, (_, values)| {
            count.saturating_mul(values.len())
        })
}

/// Decision 5: per output name (first appearance order), the list of
/// `{<for_each attr>: element, <output>: value}` in item order.
fn aggregate<'a>(expanded: &[String], items: impl Iterator<Item = &'a WorkState> + Clone) -> Args {
    let mut names: Vec<&String> = Vec::new();
    for item in items.clone() {
        for name in item.outputs.keys() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut outputs = Args::new();
    for name in names {
        let list = items
            .clone()
            .filter_map(|item| {
                let value = item.outputs.get(name)?;
                let mut entry = Map::new();
                for attribute in expanded {
                    if let Some(element) = item.inputs.get(attribute) {
                        entry.insert(attribute.clone(), element.clone());
                    }
                }
                entry.insert(name.clone(), value.clone());
                Some(Value::Object(entry))
            })
            .collect();
        outputs.insert(name.clone(), Value::Array(list));
    }
    outputs
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests;
