//! The decisions of one flow: a pure function of the flow's state (and of the predicate, memo
//! and retry services it is handed) to the events it raises and the side effects to run once
//! they are committed.
//!
//! Semantics are `engine.md` §5 as amended by the contract: after every step transition the
//! flow is *advanced* to a fixpoint — steps whose outputs nobody needs are skipped, steps that
//! can no longer get a required input fail, ready steps start, and the terminal check runs
//! (decisions 1–3, 11, 12). Nothing here does I/O or reads the clock; `at` comes with the
//! transaction.

use std::collections::BTreeSet;
use std::sync::Arc;

use argyll_events::{
    ApplyError, AttributeSet, FlowCompleted, FlowEvent, FlowFailed, FlowStarted, Projection,
    RetryScheduled, StepCompleted, StepFailed, StepSkipped, StepStarted, WorkFailed,
    WorkNotCompleted, WorkStarted, WorkSucceeded,
};
use argyll_model::{
    Args, ExecutionPlan, FlowState, Step, StepStatus, Timestamp, WorkState, WorkStatus,
};
use argyll_retry::{RetryDecision, RetryPolicy};
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
    /// Evaluates the step's predicate with step-level inputs (`Ok(true)` without one). The
    /// error is the step's failure message.
    fn evaluate_predicate(&self, step: &Step, inputs: &Args) -> Result<bool, String>;
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

    // ------------------------------------------------------------------ reported results

    /// Refuses a result reported from outside (the webhook) unless the step is async: a sync
    /// or script step's item is finished by the engine's own call, and a webhook racing that
    /// call must not decide the item (a flow step's item is finished by its child flow).
    pub(crate) fn check_reported_from_outside(&self, step_id: &str) -> Result<(), TxError> {
        let step = self
            .plan_step(step_id)
            .ok_or_else(|| FlowCommandError::StepNotInPlan(step_id.to_owned()))?;
        if step.step_type == argyll_model::StepType::Async {
            Ok(())
        } else {
            Err(FlowCommandError::NotAsync(step_id.to_owned()).into())
        }
    }

    fn check_item(
        &self,
        step_id: &str,
        token: &str,
        to: WorkStatus,
    ) -> Result<WorkStatus, FlowCommandError> {
        let execution = self
            .state
            .executions
            .get(step_id)
            .ok_or_else(|| FlowCommandError::StepNotInPlan(step_id.to_owned()))?;
        let item = execution
            .work_items
            .get(token)
            .ok_or_else(|| FlowCommandError::WorkItemNotFound(token.to_owned()))?;
        item.status.check_reported_transition(to)?;
        Ok(item.status)
    }

    /// Whether adding `bytes` keeps the flow's state within its limit.
    fn fits(&self, bytes: u64) -> bool {
        self.state.size.bytes().saturating_add(bytes) <= self.services.max_state_bytes()
    }

    /// A work item finished with `outputs` (an item whose outputs would take the flow's state
    /// past its limit fails instead).
    pub(crate) fn complete_work(
        &mut self,
        step_id: &str,
        token: &str,
        outputs: Args,
    ) -> Result<(), TxError> {
        self.check_item(step_id, token, WorkStatus::Succeeded)?;
        let adding = argyll_model::args_size(&outputs);
        if !self.fits(adding) {
            let limit = self.services.max_state_bytes();
            let error = state_too_large("the work item's outputs", adding, limit);
            return self.fail_work(step_id, token, &error);
        }
        if let Some(step) = self.plan_step(step_id).filter(|step| step.memoizable)
            && let Some(item) = self.item(step_id, token)
        {
            self.services.memo_store(step, &item.inputs, &outputs);
        }
        self.raise(WorkSucceeded {
            flow_id: self.flow_id(),
            step_id: step_id.to_owned(),
            token: token.to_owned(),
            outputs,
        })?;
        self.after_item_result(step_id)
    }

    /// A work item failed for good.
    pub(crate) fn fail_work(
        &mut self,
        step_id: &str,
        token: &str,
        error: &str,
    ) -> Result<(), TxError> {
        self.check_item(step_id, token, WorkStatus::Failed)?;
        self.raise_work_failed(step_id, token, error)?;
        self.after_item_result(step_id)
    }

    /// A work item's attempt failed in a retryable way: retry under the step's policy, or
    /// fail the item when the retries are used up.
    pub(crate) fn not_complete_work(
        &mut self,
        step_id: &str,
        token: &str,
        error: &str,
    ) -> Result<(), TxError> {
        let from = self.check_item(step_id, token, WorkStatus::NotCompleted)?;
        if from == WorkStatus::Active {
            self.raise(WorkNotCompleted {
                flow_id: self.flow_id(),
                step_id: step_id.to_owned(),
                token: token.to_owned(),
                error: error.to_owned(),
            })?;
        }
        if self.state.is_terminal() {
            // Late attempt on a finished flow: recorded, never retried (not_completed does not
            // hold deactivation back).
            return Ok(());
        }
        let Some(step) = self.plan_step(step_id) else {
            return Err(FlowCommandError::StepNotInPlan(step_id.to_owned()).into());
        };
        let policy = self.services.retry_policy(step);
        let retries_so_far = self
            .item(step_id, token)
            .map_or(0, |item| u64::try_from(item.retry_count).unwrap_or(0));
        match policy.decide(retries_so_far) {
            RetryDecision::RetryAfterMillis(delay) => {
                let delay = delay.max(self.services.min_retry_delay_ms());
                let due = self.at.plus_millis(delay);
                self.raise(RetryScheduled {
                    flow_id: self.flow_id(),
                    step_id: step_id.to_owned(),
                    token: token.to_owned(),
                    retry_count: i64::try_from(retries_so_far.saturating_add(1))
                        .unwrap_or(i64::MAX),
                    next_retry_at: due,
                    error: error.to_owned(),
                })?;
                if delay > 0 {
                    self.effects.push(Effect::ScheduleRetry {
                        step_id: step_id.to_owned(),
                        token: token.to_owned(),
                        due,
                    });
                }
            }
            RetryDecision::GiveUp => self.raise_work_failed(step_id, token, error)?,
        }
        self.progress_step(step_id)?;
        self.advance()
    }

    fn after_item_result(&mut self, step_id: &str) -> Result<(), TxError> {
        if self.state.is_terminal() {
            // Recorded for the audit trail; nothing new starts.
            self.finish_step_if_done(step_id)?;
            return Ok(());
        }
        self.progress_step(step_id)?;
        self.advance()
    }

    /// A retry timer fired (or a step may have room for more work): start what is due.
    pub(crate) fn resume_step(&mut self, step_id: &str) -> Result<(), TxError> {
        if self.state.is_terminal() || self.status_of(step_id) != Some(StepStatus::Active) {
            return Ok(());
        }
        self.progress_step(step_id)?;
        self.advance()
    }

    /// Re-dispatches an item that was running when its executor was lost (recovery, or a
    /// lapsed lease): same token, at-least-once.
    pub(crate) fn redispatch(&mut self, step_id: &str, token: &str) -> Result<bool, TxError> {
        let Some(item) = self.item(step_id, token) else {
            return Ok(false);
        };
        if !matches!(item.status, WorkStatus::Active | WorkStatus::NotCompleted) {
            return Ok(false);
        }
        let inputs = Args::clone(&item.inputs);
        self.raise(WorkStarted {
            flow_id: self.flow_id(),
            step_id: step_id.to_owned(),
            token: token.to_owned(),
            inputs: inputs.clone(),
        })?;
        self.effects.push(Effect::Run {
            step_id: step_id.to_owned(),
            token: token.to_owned(),
            inputs,
        });
        Ok(true)
    }

    // ------------------------------------------------------------------ advancing the flow

    /// Runs the flow to a fixpoint: skip unneeded steps, fail unreachable ones, start ready
    /// ones, then check whether the flow is done. Called after every step transition.
    pub(crate) fn advance(&mut self) -> Result<(), TxError> {
        while !self.state.is_terminal() {
            let mut progressed = false;
            for step_id in self.pending_steps() {
                if !self.state.plan.is_goal(&step_id) && !self.outputs_needed(&step_id) {
                    self.raise(StepSkipped {
                        flow_id: self.flow_id(),
                        step_id,
                        reason: "outputs not needed".into(),
                    })?;
                    progressed = true;
                }
            }
            for step_id in self.pending_steps() {
                if !self.can_complete(&step_id, &mut BTreeSet::new()) {
                    self.raise(StepFailed {
                        flow_id: self.flow_id(),
                        step_id,
                        error: UNREACHABLE.into(),
                    })?;
                    progressed = true;
                }
            }
            for step_id in self.pending_steps() {
                if self.status_of(&step_id) == Some(StepStatus::Pending) && self.is_ready(&step_id)
                {
                    self.prepare(&step_id)?;
                    progressed = true;
                }
            }
            if self.check_terminal()? || !progressed {
                break;
            }
        }
        Ok(())
    }

    fn pending_steps(&self) -> Vec<String> {
        self.state
            .executions
            .iter()
            .filter(|(_, e)| e.status == StepStatus::Pending)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Some declared output is not yet an attribute and has a consumer still waiting.
    fn outputs_needed(&self, step_id: &str) -> bool {
        let Some(step) = self.plan_step(step_id) else {
            return false;
        };
        step.outputs().any(|name| {
            !self.has_attribute(name)
                && self
                    .state
                    .plan
                    .attributes
                    .consumers(name)
                    .iter()
                    .any(|consumer| self.status_of(consumer) == Some(StepStatus::Pending))
        })
    }

    /// Whether the step can still complete: done and completed, running, or pending with every
    /// required input present or still producible.
    fn can_complete(&self, step_id: &str, visiting: &mut BTreeSet<String>) -> bool {
        match self.status_of(step_id) {
            Some(StepStatus::Completed | StepStatus::Active) => true,
            Some(StepStatus::Pending) => {
                let Some(step) = self.plan_step(step_id) else {
                    return false;
                };
                if !visiting.insert(step_id.to_owned()) {
                    return false;
                }
                let inputs: Vec<String> = step.required_inputs().cloned().collect();
                let ok = inputs
                    .iter()
                    .all(|name| self.has_attribute(name) || self.has_live_provider(name, visiting));
                visiting.remove(step_id);
                ok
            }
            _ => false,
        }
    }

    /// Some planned provider of `name` may still produce it.
    fn has_live_provider(&self, name: &str, visiting: &mut BTreeSet<String>) -> bool {
        let providers: Vec<String> = self.state.plan.attributes.providers(name).to_vec();
        providers
            .iter()
            .any(|provider| match self.status_of(provider) {
                Some(StepStatus::Active) => true,
                Some(StepStatus::Pending) => self.can_complete(provider, visiting),
                _ => false,
            })
    }

    /// Required inputs present; optional inputs present or beyond every planned provider
    /// (decision 12); and the step's work is wanted.
    fn is_ready(&self, step_id: &str) -> bool {
        let Some(step) = self.plan_step(step_id) else {
            return false;
        };
        let inputs_ready = step.inputs().all(|(name, spec)| {
            if self.has_attribute(name) {
                true
            } else if spec.is_required() {
                false
            } else {
                !self.has_live_provider(name, &mut BTreeSet::from([step_id.to_owned()]))
            }
        });
        inputs_ready && (self.state.plan.is_goal(step_id) || self.outputs_needed(step_id))
    }

    /// Step-level inputs: const defaults, flow attributes, optional defaults.
    fn collect_inputs(&self, step: &Step) -> Args {
        let mut inputs = Args::new();
        for (name, spec) in step.runtime_inputs() {
            let value = if spec.role == argyll_model::AttributeRole::Const {
                spec.default_value()
            } else if let Some(value) = self.state.attribute(name) {
                Some(value.clone())
            } else if spec.is_required() {
                None
            } else {
                spec.default_value()
            };
            if let Some(value) = value {
                inputs.insert(name.clone(), value);
            }
        }
        inputs
    }

    /// Evaluates the predicate once (decision 11), expands `for_each`, and starts the step.
    fn prepare(&mut self, step_id: &str) -> Result<(), TxError> {
        // The plan is shared: holding it borrows the step without copying it.
        let plan = Arc::clone(&self.state.plan);
        let Some(step) = plan.steps.get(step_id) else {
            return Ok(());
        };
        let inputs = self.collect_inputs(step);
        if step.predicate.is_some() {
            match self.services.evaluate_predicate(step, &inputs) {
                Err(error) => {
                    return Ok(self.raise(StepFailed {
                        flow_id: self.flow_id(),
                        step_id: step_id.to_owned(),
                        error,
                    })?);
                }
                Ok(false) => {
                    return Ok(self.raise(StepSkipped {
                        flow_id: self.flow_id(),
                        step_id: step_id.to_owned(),
                        reason: "predicate returned false".into(),
                    })?);
                }
                Ok(true) => {}
            }
        }
        let count = work_item_count(step, &inputs);
        let limit = self.services.max_work_items();
        if count > limit {
            let error = format!(
                "too many work items: step {step_id} expands to {count}, the limit is {limit} (MAX_WORK_ITEMS)"
            );
            self.too_many_work_items
                .get_or_insert_with(|| error.clone());
            return Ok(self.raise(StepFailed {
                flow_id: self.flow_id(),
                step_id: step_id.to_owned(),
                error,
            })?);
        }
        let items = expand_work_items(step, &inputs);
        let adding = items
            .iter()
            .map(argyll_model::args_size)
            .fold(argyll_model::args_size(&inputs), u64::saturating_add);
        if !self.fits(adding) {
            let limit = self.services.max_state_bytes();
            return Ok(self.raise(StepFailed {
                flow_id: self.flow_id(),
                step_id: step_id.to_owned(),
                error: state_too_large("the step's work items", adding, limit),
            })?);
        }
        let work_items = items
            .into_iter()
            .map(|item| (self.services.new_token(), Arc::new(item)))
            .collect::<indexmap::IndexMap<_, _>>();
        let empty = work_items.is_empty();
        self.raise(StepStarted {
            inputs,
            flow_id: self.flow_id(),
            step_id: step_id.to_owned(),
            work_items,
        })?;
        if empty {
            // Decision 4: an empty for_each array completes the step with every output [].
            let outputs: Args = step
                .outputs()
                .map(|name| (name.clone(), Value::Array(Vec::new())))
                .collect();
            return Ok(self.complete_step(step, outputs)?);
        }
        self.progress_step(step_id)
    }

    /// Starts pending items up to the step's parallelism, then finishes the step if every
    /// item is done.
    fn progress_step(&mut self, step_id: &str) -> Result<(), TxError> {
        self.dispatch(step_id)?;
        self.finish_step_if_done(step_id)?;
        Ok(())
    }

    fn dispatch(&mut self, step_id: &str) -> Result<(), ApplyError> {
        // The plan is shared: holding it borrows the step without copying it.
        let plan = Arc::clone(&self.state.plan);
        let Some(step) = plan.steps.get(step_id) else {
            return Ok(());
        };
        let limit = step
            .work_config
            .as_ref()
            .map_or(1, argyll_model::WorkConfig::effective_parallelism);
        let Some(execution) = self.state.executions.get(step_id) else {
            return Ok(());
        };
        if execution.status != StepStatus::Active {
            return Ok(());
        }
        let work_items = &execution.work_items;
        let mut active = work_items.count(WorkStatus::Active);
        // Pending items that may start now, in item order: the indexes of `WorkItems` find
        // them without looking at the items that are running or done.
        let due: Vec<(String, Args)> = work_items
            .due(self.at, limit.saturating_sub(active))
            .into_iter()
            .filter_map(|position| work_items.at(position))
            .map(|(token, item)| (token.clone(), Args::clone(&item.inputs)))
            .collect();
        for (token, inputs) in due {
            if active >= limit {
                break;
            }
            if step.memoizable
                && let Some(outputs) = self.services.memo_lookup(step, &inputs)
            {
                self.raise(WorkSucceeded {
                    flow_id: self.flow_id(),
                    step_id: step_id.to_owned(),
                    token,
                    outputs,
                })?;
                continue;
            }
            self.raise(WorkStarted {
                flow_id: self.flow_id(),
                step_id: step_id.to_owned(),
                token: token.clone(),
                inputs: inputs.clone(),
            })?;
            self.effects.push(Effect::Run {
                step_id: step_id.to_owned(),
                token,
                inputs,
            });
            active += 1;
        }
        Ok(())
    }

    /// When every item of an active step is done: fail it (first failed item's error, in item
    /// order) or complete it with the aggregated outputs (decision 5).
    fn finish_step_if_done(&mut self, step_id: &str) -> Result<(), ApplyError> {
        let Some(execution) = self.state.executions.get(step_id) else {
            return Ok(());
        };
        if execution.status != StepStatus::Active || !execution.work_items.all_finished() {
            return Ok(());
        }
        let first_failure = (execution.work_items.count(WorkStatus::Failed) > 0)
            .then(|| {
                execution
                    .work_items
                    .values()
                    .find(|item| item.status == WorkStatus::Failed)
                    .map(|failed| failed.error.clone())
            })
            .flatten();
        if let Some(error) = first_failure {
            let error = if error.is_empty() {
                "work item failed".to_owned()
            } else {
                error
            };
            return self.raise(StepFailed {
                flow_id: self.flow_id(),
                step_id: step_id.to_owned(),
                error,
            });
        }
        // The plan is shared: holding it borrows the step without copying it.
        let plan = Arc::clone(&self.state.plan);
        let Some(step) = plan.steps.get(step_id) else {
            return Ok(());
        };
        let expanded: Vec<String> = step
            .for_each_attributes()
            .filter(|name| {
                execution
                    .inputs
                    .as_ref()
                    .is_some_and(|inputs| matches!(inputs.get(*name), Some(Value::Array(_))))
            })
            .cloned()
            .collect();
        let outputs = if expanded.is_empty() {
            execution
                .work_items
                .values()
                .next()
                .map(|item| item.outputs.clone())
                .unwrap_or_default()
        } else {
            aggregate(&expanded, execution.work_items.values())
        };
        self.complete_step(step, outputs)
    }

    fn complete_step(&mut self, step: &Step, outputs: Args) -> Result<(), ApplyError> {
        let declared: Vec<String> = step.outputs().cloned().collect();
        // The outputs are stored on the step and as attributes: both count.
        let adding = declared
            .iter()
            .filter_map(|name| outputs.get(name))
            .map(argyll_model::json_size)
            .fold(argyll_model::args_size(&outputs), u64::saturating_add);
        if !self.fits(adding) {
            let limit = self.services.max_state_bytes();
            return self.raise(StepFailed {
                flow_id: self.flow_id(),
                step_id: step.id.clone(),
                error: state_too_large("the step's aggregated outputs", adding, limit),
            });
        }
        for name in declared {
            if let Some(value) = outputs.get(&name)
                && !self.has_attribute(&name)
            {
                self.raise(AttributeSet {
                    value: value.clone(),
                    flow_id: self.flow_id(),
                    step_id: step.id.clone(),
                    key: name,
                })?;
            }
        }
        let started_at = self
            .state
            .executions
            .get(&step.id)
            .map_or(self.at, |e| e.started_at);
        self.raise(StepCompleted {
            outputs,
            flow_id: self.flow_id(),
            step_id: step.id.clone(),
            duration: self.at.millis_since(started_at).max(0),
        })
    }

    /// Decision 1: completed when every goal is completed or skipped; failed as soon as a
    /// goal failed (unreachable goals were failed by the sweep). Returns whether the flow is
    /// terminal.
    fn check_terminal(&mut self) -> Result<bool, ApplyError> {
        if self.state.is_terminal() {
            return Ok(true);
        }
        let goals = self.state.plan.goals.clone();
        let mut all_done = true;
        let mut failed_goal = None;
        for goal in &goals {
            match self.state.executions.get(goal).map(|e| e.status) {
                // A goal outside the plan had its outputs supplied by init.
                None | Some(StepStatus::Completed | StepStatus::Skipped) => {}
                Some(StepStatus::Failed) => {
                    failed_goal.get_or_insert(goal.clone());
                }
                Some(_) => all_done = false,
            }
        }
        if let Some(goal) = failed_goal {
            let error = self
                .state
                .executions
                .get(&goal)
                .map(|e| e.error.clone())
                .unwrap_or_default();
            self.raise(FlowFailed {
                flow_id: self.flow_id(),
                error: format!("step {goal} failed: {error}"),
            })?;
        } else if all_done {
            let mut result = Args::new();
            for goal in &goals {
                if let Some(execution) = self.state.executions.get(goal) {
                    result.extend(
                        execution
                            .outputs
                            .iter()
                            .map(|(name, value)| (name.clone(), value.clone())),
                    );
                }
            }
            self.raise(FlowCompleted {
                result,
                flow_id: self.flow_id(),
            })?;
        } else {
            return Ok(false);
        }
        self.cancel_queued_work()?;
        Ok(true)
    }

    /// Decision 1: queued work (held back by parallelism or waiting for a retry) never blocks
    /// a terminal flow's deactivation; it is cancelled.
    fn cancel_queued_work(&mut self) -> Result<(), ApplyError> {
        let status = self.state.status;
        let queued: Vec<(String, String, bool)> = self
            .state
            .executions
            .iter()
            .flat_map(|(step_id, e)| {
                e.work_items
                    .iter()
                    .filter(|(_, item)| item.status == WorkStatus::Pending)
                    .map(|(token, item)| {
                        (
                            step_id.clone(),
                            token.clone(),
                            !item.next_retry_at.is_zero(),
                        )
                    })
            })
            .collect();
        let mut steps = BTreeSet::new();
        for (step_id, token, had_timer) in queued {
            self.raise_work_failed(&step_id, &token, &format!("cancelled: flow {status}"))?;
            if had_timer {
                self.effects.push(Effect::CancelRetry {
                    step_id: step_id.clone(),
                    token,
                });
            }
            steps.insert(step_id);
        }
        for step_id in steps {
            self.finish_step_if_done(&step_id)?;
        }
        Ok(())
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
