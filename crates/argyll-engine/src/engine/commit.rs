//! Running a command on a flow's aggregate (decide, append, retry on conflict) and carrying
//! out what it committed: the flow index, retry timers, the work it started, and the parent of
//! a child flow that settled.

use std::sync::Arc;

use argyll_events::AggregateId;
use argyll_model::{FlowState, FlowStatus};
use argyll_store::Store;

use super::error::tx_error;
use super::index::index_entry;
use super::services::log_quick_failures;
use super::work_key::WorkKey;
use super::{Engine, EngineError};
use crate::aggregate::{Current, Uncached, execute_applied};
use crate::flow::{Effect, FlowCommandError, FlowTx, QuickFailure, TxError, is_settled};

/// Quick script items run in one flow transaction (the rest are dispatched).
pub(super) const QUICK_WORK_PER_COMMAND: usize = 256;

/// A committed flow command's state and what remains to be done about it.
pub(super) struct Committed {
    /// The flow after the command (its state is always there: a command needs a flow).
    current: Arc<Current<Option<FlowState>>>,
    milestones: Milestones,
    effects: Vec<Effect>,
    failures: Vec<QuickFailure>,
}

/// What a transaction changed about the flow as a whole (drives the index and the parent).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Milestones {
    pub(super) created: bool,
    /// The store wrote a created flow's index entry with its first events.
    pub(super) indexed: bool,
    pub(super) became_terminal: bool,
    pub(super) became_settled: bool,
}

impl<S: Store> Engine<S> {
    /// Runs a command on a flow and carries out its effects after the commit.
    pub(super) async fn flow_command(
        &self,
        flow_id: &str,
        command: impl FnMut(&mut FlowTx<'_>) -> Result<(), TxError> + Send,
    ) -> Result<(), EngineError> {
        if let Some(committed) = self.commit_flow_command(flow_id, command).await? {
            self.carry_out(committed, &[]).await;
        }
        Ok(())
    }

    /// The effects of a committed flow command. `releasing`: leases of finished work to give up in the same store call that leases the
    /// work the command started.
    pub(super) async fn carry_out(&self, committed: Committed, releasing: &[String]) {
        let Some(state) = committed.current.state.as_ref() else {
            return;
        };
        log_quick_failures(&state.id, &committed.failures);
        self.after_commit(state, committed.milestones, committed.effects, releasing)
            .await;
    }

    /// Runs a command on a flow; returns what its commit leaves to do.
    pub(super) async fn commit_flow_command(
        &self,
        flow_id: &str,
        mut command: impl FnMut(&mut FlowTx<'_>) -> Result<(), TxError> + Send,
    ) -> Result<Option<Committed>, EngineError> {
        let services = self.services();
        let aggregate = AggregateId::Flow(flow_id.to_owned());
        let executed = execute_applied(
            &self.inner.store,
            &*self.inner.clock,
            self.inner.flows.as_ref(),
            Uncached::Load,
            &aggregate,
            self.inner.config.command_attempts,
            |current: &Option<FlowState>, at| {
                let Some(state) = current else {
                    return Err(TxError::Refused(FlowCommandError::FlowNotFound));
                };
                let before = (state.is_terminal(), is_settled(state));
                let mut tx = FlowTx::new(state.clone(), at, &services);
                command(&mut tx)?;
                let failures = tx.run_quick_work(QUICK_WORK_PER_COMMAND)?;
                let milestones = Milestones {
                    created: false,
                    indexed: false,
                    became_terminal: !before.0 && tx.state.is_terminal(),
                    became_settled: !before.1 && is_settled(&tx.state),
                };
                Ok((
                    tx.events,
                    Some(tx.state),
                    (milestones, tx.effects, failures),
                ))
            },
        )
        .await?
        .map_err(|error| tx_error(flow_id, error))?;
        let (milestones, effects, failures) = executed.result;
        Ok(executed.current.state.is_some().then(|| Committed {
            current: executed.current.clone(),
            milestones,
            effects,
            failures,
        }))
    }

    /// Side effects of a committed flow transaction, in order: the flow index, timers, work.
    pub(super) async fn after_commit(
        &self,
        state: &FlowState,
        milestones: Milestones,
        effects: Vec<Effect>,
        releasing: &[String],
    ) {
        if milestones.created {
            // Most stores index a flow with its first events (`EventLog::append_first`).
            if !milestones.indexed {
                let inserted = self
                    .retrying_store(|| async {
                        Ok(self.inner.store.insert_flow(index_entry(state)).await?)
                    })
                    .await;
                if let Err(error) = inserted {
                    tracing::error!(flow_id = %state.id, %error, "flow index update failed");
                }
            }
        } else if milestones.became_terminal || milestones.became_settled {
            self.update_index(state).await;
        }
        if milestones.became_terminal {
            match state.status {
                FlowStatus::Failed => {
                    tracing::error!(flow_id = %state.id, error = %state.error, "flow failed");
                }
                _ => tracing::info!(flow_id = %state.id, "flow completed"),
            }
        }
        let mut runs = Vec::new();
        for effect in effects {
            match effect {
                Effect::Run {
                    step_id,
                    token,
                    inputs,
                } => runs.push((step_id, token, inputs)),
                Effect::ScheduleRetry {
                    step_id,
                    token,
                    due,
                } => {
                    let key = WorkKey::new(&state.id, &step_id, &token);
                    self.schedule_retry(&key, due).await;
                }
                Effect::EvaluatePredicate { step_id, inputs } => {
                    self.evaluate_predicate_later(state, step_id, inputs);
                }
                Effect::CancelRetry { step_id, token } => {
                    self.cancel_retry(&WorkKey::new(&state.id, &step_id, &token))
                        .await;
                }
            }
        }
        self.dispatch(state, runs, releasing).await;
        if milestones.became_settled {
            self.notify_parent(state).await;
        }
    }
}
