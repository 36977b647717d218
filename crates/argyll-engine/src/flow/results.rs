//! Commands on work items: results reported by runners or webhooks, retries coming due, and
//! re-dispatch of items whose runner is gone.

use argyll_events::{RetryScheduled, WorkNotCompleted, WorkStarted, WorkSucceeded};
use argyll_model::{Args, StepStatus, WorkStatus};
use argyll_retry::RetryDecision;

use super::{Effect, FlowCommandError, FlowTx, TxError, state_too_large};

impl FlowTx<'_> {
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
    pub(super) fn fits(&self, bytes: u64) -> bool {
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
}
