//! Advancing a flow to a fixpoint after every step transition: unneeded steps skipped,
//! unreachable ones failed, ready ones started (predicate once, `for_each` expansion,
//! parallelism, memo hits), finished steps completed or failed, then the terminal check
//! (decisions 1–3, 11, 12).

use std::collections::BTreeSet;
use std::sync::Arc;

use argyll_events::{
    ApplyError, AttributeSet, FlowCompleted, FlowFailed, StepCompleted, StepFailed, StepSkipped,
    StepStarted, WorkStarted, WorkSucceeded,
};
use argyll_model::{Args, Step, StepStatus, WorkStatus};
use serde_json::Value;

use super::{
    Effect, FlowTx, PredicateCheck, TxError, UNREACHABLE, aggregate, expand_work_items,
    state_too_large, work_item_count,
};

impl FlowTx<'_> {
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
                if self.status_of(&step_id) == Some(StepStatus::Pending)
                    && !self.awaiting_predicate.contains(&step_id)
                    && self.is_ready(&step_id)
                {
                    self.prepare(&step_id)?;
                    // A step left pending waits for its predicate: not progress.
                    progressed |= self.status_of(&step_id) != Some(StepStatus::Pending);
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
                PredicateCheck::Deferred => {
                    self.awaiting_predicate.insert(step_id.to_owned());
                    self.effects.push(Effect::EvaluatePredicate {
                        step_id: step_id.to_owned(),
                        inputs,
                    });
                    return Ok(());
                }
                PredicateCheck::Decided(verdict) => {
                    if !self.apply_predicate_verdict(step_id, verdict)? {
                        return Ok(());
                    }
                }
            }
        }
        self.start_step(step, inputs)
    }

    /// A predicate evaluated outside the transaction that found the step ready: records its
    /// verdict and advances the flow. A verdict for a step that is no longer pending (skipped
    /// meanwhile, or decided by another instance) changes nothing.
    pub(crate) fn decide_predicate(
        &mut self,
        step_id: &str,
        verdict: Result<bool, String>,
    ) -> Result<(), TxError> {
        if self.state.is_terminal()
            || self.status_of(step_id) != Some(StepStatus::Pending)
            || !self.is_ready(step_id)
        {
            return Ok(());
        }
        let plan = Arc::clone(&self.state.plan);
        let Some(step) = plan.steps.get(step_id) else {
            return Ok(());
        };
        if self.apply_predicate_verdict(step_id, verdict)? {
            let inputs = self.collect_inputs(step);
            self.start_step(step, inputs)?;
        }
        self.advance()
    }

    /// Fails or skips the step for a failed or false predicate; whether the step goes on.
    fn apply_predicate_verdict(
        &mut self,
        step_id: &str,
        verdict: Result<bool, String>,
    ) -> Result<bool, ApplyError> {
        match verdict {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.raise(StepSkipped {
                    flow_id: self.flow_id(),
                    step_id: step_id.to_owned(),
                    reason: "predicate returned false".into(),
                })?;
                Ok(false)
            }
            Err(error) => {
                self.raise(StepFailed {
                    flow_id: self.flow_id(),
                    step_id: step_id.to_owned(),
                    error,
                })?;
                Ok(false)
            }
        }
    }

    /// Expands `for_each` and starts the step whose predicate (if any) held.
    fn start_step(&mut self, step: &Step, inputs: Args) -> Result<(), TxError> {
        let step_id = step.id.as_str();
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
    pub(super) fn progress_step(&mut self, step_id: &str) -> Result<(), TxError> {
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
        // Memo hits finish items without taking a place, so the places left are filled again
        // until they are taken or nothing is due: a hit must never leave the next item
        // waiting with nothing running (decisions 1 and 23).
        loop {
            let Some(execution) = self.state.executions.get(step_id) else {
                return Ok(());
            };
            if execution.status != StepStatus::Active {
                return Ok(());
            }
            let work_items = &execution.work_items;
            let active = work_items.count(WorkStatus::Active);
            // Pending items that may start now, in item order: the indexes of `WorkItems` find
            // them without looking at the items that are running or done.
            let due: Vec<(String, Args)> = work_items
                .due(self.at, limit.saturating_sub(active))
                .into_iter()
                .filter_map(|position| work_items.at(position))
                .map(|(token, item)| (token.clone(), Args::clone(&item.inputs)))
                .collect();
            if due.is_empty() {
                return Ok(());
            }
            let mut served_from_memo = false;
            for (token, inputs) in due {
                if step.memoizable
                    && let Some(outputs) = self.services.memo_lookup(step, &inputs)
                {
                    self.raise(WorkSucceeded {
                        flow_id: self.flow_id(),
                        step_id: step_id.to_owned(),
                        token,
                        outputs,
                    })?;
                    served_from_memo = true;
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
            }
            if !served_from_memo {
                return Ok(());
            }
        }
    }

    /// When every item of an active step is done: fail it (first failed item's error, in item
    /// order) or complete it with the aggregated outputs (decision 5).
    pub(super) fn finish_step_if_done(&mut self, step_id: &str) -> Result<(), ApplyError> {
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
