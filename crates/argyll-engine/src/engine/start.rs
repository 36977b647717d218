//! Starting flows: bounds, plan, init validation and the first transaction, in one command on
//! the flow's aggregate. Idempotent (decision 10): the same start again answers from the
//! existing flow.

use std::collections::BTreeMap;
use std::sync::Arc;

use argyll_events::AggregateId;
use argyll_model::{Args, ExecutionPlan, FlowState};
use argyll_store::Store;
use serde_json::{Map, Value};

use super::commit::{Milestones, QUICK_WORK_PER_COMMAND};
use super::error::tx_error;
use super::index::index_entry;
use super::services::{is_large_value, log_quick_failures, offload_if};
use super::{Engine, EngineError};
use crate::aggregate::{Current, Uncached, execute_applied};
use crate::flow::{FlowTx, TxError, is_settled};

/// A flow start request (the id already sanitised by the caller).
#[derive(Clone, Debug, Default)]
pub struct StartFlow {
    /// The flow id.
    pub flow_id: String,
    /// Goal step ids.
    pub goals: Vec<String>,
    /// Init values.
    pub init: Args,
    /// Metadata handed to HTTP steps.
    pub metadata: Map<String, Value>,
}

/// Result of a flow start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStart {
    /// The flow id.
    pub flow_id: String,
    /// `false` when the identical flow already existed (decision 10).
    pub created: bool,
}

/// Why a start's transaction was refused.
enum StartError {
    Engine(EngineError),
    Tx(TxError),
}

/// What a start does when its flow id already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WhenExists {
    /// A client's start: other goals or init are [`EngineError::FlowExists`] (decision 10).
    RequireSameStart,
    /// A child flow's start, repeated when its parent's item is re-dispatched: the existing
    /// child is the one.
    Accept,
}

impl<S: Store> Engine<S> {
    /// Starts a flow: plans it, validates init (required inputs, types — decision 13) and
    /// records it atomically. Starting the same id again with the same goals and init returns
    /// `created: false`; with other goals or init it is [`EngineError::FlowExists`].
    pub async fn start_flow(&self, request: StartFlow) -> Result<FlowStart, EngineError> {
        self.check_start_bounds(&request)?;
        let adding = argyll_model::args_size(&request.init)
            .saturating_add(argyll_model::args_size(&request.metadata));
        let limit = self.inner.config.max_state_bytes;
        if adding > limit {
            return Err(EngineError::StateTooLarge(crate::flow::state_too_large(
                "the init values and metadata",
                adding,
                limit,
            )));
        }
        let plan = self.shared_plan(&request.goals, &request.init).await?;
        let (started, _) = self
            .create_flow(&request, plan, WhenExists::RequireSameStart)
            .await?;
        Ok(started)
    }

    /// Flow ids and goals within `MAX_ID_LENGTH` and without control characters.
    fn check_start_bounds(&self, request: &StartFlow) -> Result<(), EngineError> {
        let limit = self.inner.config.max_id_length;
        let check = |field: &'static str, text: &str| {
            argyll_model::check_text(field, text, limit)
                .map_err(|error| EngineError::InvalidRequest(error.to_string()))
        };
        check("flow ID", &request.flow_id)?;
        for goal in &request.goals {
            check("goal step ID", goal)?;
        }
        Ok(())
    }

    /// Creates the flow in one command on its aggregate: an existing flow is answered from
    /// its state (under [`WhenExists::RequireSameStart`], other goals or init are
    /// [`EngineError::FlowExists`]) before the init values are validated, so a duplicate id is
    /// 409 before a bad init is 400. Returns the flow's state after the command.
    pub(super) async fn create_flow(
        &self,
        request: &StartFlow,
        plan: Arc<ExecutionPlan>,
        when_exists: WhenExists,
    ) -> Result<(FlowStart, Arc<Current<Option<FlowState>>>), EngineError> {
        let services = self.services();
        let aggregate = AggregateId::Flow(request.flow_id.clone());
        let large_init = request.init.values().any(is_large_value);
        let executed = execute_applied(
            &self.inner.store,
            &*self.inner.clock,
            self.inner.flows.as_ref(),
            Uncached::PresumeNew,
            &aggregate,
            self.inner.config.command_attempts,
            |current: &Option<FlowState>, at| {
                if let Some(existing) = current {
                    if when_exists == WhenExists::RequireSameStart {
                        same_start(existing, request).map_err(StartError::Engine)?;
                    }
                    return Ok((Vec::new(), current.clone(), None));
                }
                argyll_plan::validate_init(&plan, &request.init)
                    .map_err(|e| StartError::Engine(e.into()))?;
                // A start over a large array fans out right here (work items, events): let the
                // worker's other tasks move to another thread meanwhile.
                offload_if(large_init, || {
                    let mut tx = FlowTx::start(
                        &services,
                        at,
                        &request.flow_id,
                        plan.clone(),
                        request.init.clone(),
                        request.metadata.clone(),
                    )
                    .map_err(StartError::Tx)?;
                    if let Some(error) = tx.too_many_work_items.take() {
                        return Err(StartError::Engine(EngineError::TooManyWorkItems(error)));
                    }
                    let failures = tx
                        .run_quick_work(QUICK_WORK_PER_COMMAND)
                        .map_err(StartError::Tx)?;
                    Ok((tx.events, Some(tx.state), Some((tx.effects, failures))))
                })
            },
        )
        .await?;
        let executed = match executed {
            Ok(executed) => executed,
            Err(StartError::Engine(error)) => return Err(error),
            Err(StartError::Tx(error)) => return Err(tx_error(&request.flow_id, error)),
        };
        let current = executed.current;
        let indexed = executed.indexed;
        let created = executed.result.is_some();
        match (executed.result, &current.state) {
            (Some((effects, failures)), Some(state)) => {
                log_quick_failures(&state.id, &failures);
                let milestones = Milestones {
                    created: true,
                    indexed,
                    became_terminal: state.is_terminal(),
                    became_settled: is_settled(state),
                };
                self.after_commit(state, milestones, effects, &[]).await;
            }
            (None, Some(existing)) => {
                // A start whose reply was lost (the store went away after committing) is
                // retried by its client: make sure the flow is indexed, so the sweep finishes
                // whatever that first start left undone.
                let _ = self.inner.store.insert_flow(index_entry(existing)).await;
            }
            _ => {}
        }
        let started = FlowStart {
            flow_id: request.flow_id.clone(),
            created,
        };
        Ok((started, current))
    }
}
fn same_start(existing: &FlowState, request: &StartFlow) -> Result<(), EngineError> {
    let init: BTreeMap<&String, &Value> = existing
        .attributes
        .iter()
        .filter(|(_, attribute)| attribute.step.is_none())
        .map(|(name, attribute)| (name, &attribute.value))
        .collect();
    let requested: BTreeMap<&String, &Value> = request.init.iter().collect();
    if existing.plan.goals == request.goals && init == requested {
        Ok(())
    } else {
        Err(EngineError::FlowExists(request.flow_id.clone()))
    }
}
