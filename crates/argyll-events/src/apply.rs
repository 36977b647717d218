//! Pure reducers: how each event changes the engine and flow projections.
//!
//! Reducers are total. An event that does not fit the current state (an unknown step or work
//! item, a second `flow_started`, a transition the lifecycle does not allow) is returned as an
//! [`ApplyError`] and leaves the state exactly as it was; nothing here panics. Applying is
//! deterministic, so replaying a log rebuilds its projection exactly.

use argyll_model::{
    ActiveFlow, AttributeValue, DeactivatedFlow, EngineState, ExecutionState, FlowDigest,
    FlowState, FlowStatus, HealthState, StateSize, StepStatus, Timestamp, WorkItems, WorkState,
    WorkStatus, args_size, json_size, len_of,
};

use crate::catalog::{
    EngineEvent, EventKind, FlowEvent, RetryScheduled, WorkFailed, WorkNotCompleted, WorkStarted,
    WorkSucceeded,
};

/// An event that does not fit the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// A flow event other than `flow_started` arrived before the flow exists.
    #[error("{event_type} for a flow that has not started")]
    FlowNotStarted {
        /// The event type.
        event_type: &'static str,
    },
    /// A second `flow_started`.
    #[error("flow {flow_id} has already started")]
    FlowAlreadyStarted {
        /// The flow.
        flow_id: String,
    },
    /// The event names another flow than the aggregate's.
    #[error("{event_type} for flow {found} applied to flow {expected}")]
    FlowMismatch {
        /// The event type.
        event_type: &'static str,
        /// The aggregate's flow.
        expected: String,
        /// The flow the event names.
        found: String,
    },
    /// `flow_completed` or `flow_failed` on a terminal flow.
    #[error("flow {flow_id} is already {status}")]
    FlowAlreadyTerminal {
        /// The flow.
        flow_id: String,
        /// Its terminal status.
        status: FlowStatus,
    },
    /// The step is not in the flow's plan, or not in the catalog.
    #[error("step not in execution plan: {step_id}")]
    UnknownStep {
        /// The step.
        step_id: String,
    },
    /// The token is not a work item of the step.
    #[error("work item not found: {token} (step {step_id})")]
    UnknownWorkItem {
        /// The step.
        step_id: String,
        /// The token.
        token: String,
    },
    /// A step event the step's status does not allow.
    #[error("{event_type} not allowed for step {step_id} in status {from}")]
    StepTransition {
        /// The step.
        step_id: String,
        /// Its status.
        from: StepStatus,
        /// The event type.
        event_type: &'static str,
    },
    /// A work event the item's status does not allow.
    #[error("{event_type} not allowed for work item {token} of step {step_id} in status {from}")]
    WorkTransition {
        /// The step.
        step_id: String,
        /// The token.
        token: String,
        /// The item's status.
        from: WorkStatus,
        /// The event type.
        event_type: &'static str,
    },
    /// An attribute is set twice (the first value wins, so the engine never emits this).
    #[error("attribute already set: {key}")]
    AttributeAlreadySet {
        /// The attribute.
        key: String,
    },
    /// `step_registered` for an id already in the catalog.
    #[error("step exists: {step_id}")]
    StepAlreadyRegistered {
        /// The step.
        step_id: String,
    },
    /// `flow_activated` for a flow already in the index.
    #[error("flow {flow_id} is already in the flow index")]
    FlowAlreadyIndexed {
        /// The flow.
        flow_id: String,
    },
    /// A flow-index event for a flow in the wrong place of its lifecycle.
    #[error("{event_type} for flow {flow_id}, which is not {expected}")]
    FlowIndexTransition {
        /// The flow.
        flow_id: String,
        /// The event type.
        event_type: &'static str,
        /// Where the flow had to be (`active`, `deactivated`, `archiving`).
        expected: &'static str,
    },
}

/// A projection rebuilt from an aggregate's events.
pub trait Projection: Default {
    /// The events of this aggregate kind.
    type Event: EventKind;

    /// Applies one event raised at `at`; on error the projection is unchanged.
    fn apply(&mut self, event: &Self::Event, at: Timestamp) -> Result<(), ApplyError>;
}

/// A failure while replaying a log: which event did not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {index} does not apply: {error}")]
pub struct ReplayError {
    /// Position of the offending event in the replayed sequence.
    pub index: usize,
    /// Why it did not apply.
    pub error: ApplyError,
}

/// Folds events, in order, into a fresh projection.
pub fn replay<'a, P, I>(events: I) -> Result<P, ReplayError>
where
    P: Projection,
    P::Event: 'a,
    I: IntoIterator<Item = (Timestamp, &'a P::Event)>,
{
    let mut projection = P::default();
    for (index, (at, event)) in events.into_iter().enumerate() {
        projection
            .apply(event, at)
            .map_err(|error| ReplayError { index, error })?;
    }
    Ok(projection)
}

// ------------------------------------------------------------------ engine aggregate

impl Projection for EngineState {
    type Event = EngineEvent;

    fn apply(&mut self, event: &EngineEvent, at: Timestamp) -> Result<(), ApplyError> {
        let event_type = event.event_type();
        match event {
            EngineEvent::StepRegistered(payload) => {
                let step = &payload.step;
                if self.steps.contains_key(&step.id) {
                    return Err(ApplyError::StepAlreadyRegistered {
                        step_id: step.id.clone(),
                    });
                }
                self.attributes.replace_step(step);
                self.health.insert(step.id.clone(), HealthState::default());
                self.steps.insert(step.id.clone(), step.clone());
            }
            EngineEvent::StepUpdated(payload) => {
                let step = &payload.step;
                let Some(slot) = self.steps.get_mut(&step.id) else {
                    return Err(ApplyError::UnknownStep {
                        step_id: step.id.clone(),
                    });
                };
                *slot = step.clone();
                self.attributes.replace_step(step);
            }
            EngineEvent::StepUnregistered(payload) => {
                if self.steps.remove(&payload.step_id).is_none() {
                    return Err(ApplyError::UnknownStep {
                        step_id: payload.step_id.clone(),
                    });
                }
                self.attributes.remove_step(&payload.step_id);
                // The original kept the health of deleted steps forever; it goes with the step.
                self.health.remove(&payload.step_id);
            }
            EngineEvent::StepHealthChanged(payload) => {
                if !self.steps.contains_key(&payload.step_id) {
                    return Err(ApplyError::UnknownStep {
                        step_id: payload.step_id.clone(),
                    });
                }
                self.health.insert(
                    payload.step_id.clone(),
                    HealthState {
                        status: payload.status,
                        error: payload.error.clone(),
                    },
                );
            }
            EngineEvent::FlowActivated(payload) => {
                let flow_id = &payload.flow_id;
                if self.active.contains_key(flow_id) || self.flow_digests.contains_key(flow_id) {
                    return Err(ApplyError::FlowAlreadyIndexed {
                        flow_id: flow_id.clone(),
                    });
                }
                self.active.insert(
                    flow_id.clone(),
                    ActiveFlow {
                        parent_flow_id: payload.parent_flow_id.clone(),
                        started_at: at,
                        last_active: at,
                    },
                );
                self.flow_digests.insert(
                    flow_id.clone(),
                    FlowDigest {
                        status: FlowStatus::Active,
                        created_at: at,
                        completed_at: Timestamp::ZERO,
                        error: String::new(),
                        goals: Vec::new(),
                    },
                );
            }
            EngineEvent::FlowDeactivated(payload) => {
                let Some(active) = self.active.remove(&payload.flow_id) else {
                    return Err(ApplyError::FlowIndexTransition {
                        flow_id: payload.flow_id.clone(),
                        event_type,
                        expected: "active",
                    });
                };
                self.deactivated.push(DeactivatedFlow {
                    flow_id: payload.flow_id.clone(),
                    parent_flow_id: active.parent_flow_id,
                    deactivated_at: at,
                });
            }
            EngineEvent::FlowDigestUpdated(payload) => {
                let created_at = self
                    .flow_digests
                    .get(&payload.flow_id)
                    .map(|digest| digest.created_at)
                    .or_else(|| self.active.get(&payload.flow_id).map(|a| a.started_at))
                    .unwrap_or(Timestamp::ZERO);
                self.flow_digests.insert(
                    payload.flow_id.clone(),
                    FlowDigest {
                        status: payload.status,
                        created_at,
                        completed_at: payload.completed_at,
                        error: payload.error.clone(),
                        goals: Vec::new(),
                    },
                );
            }
            EngineEvent::FlowArchiving(payload) => {
                let position = self
                    .deactivated
                    .iter()
                    .position(|entry| entry.flow_id == payload.flow_id);
                match position {
                    Some(index) => {
                        self.deactivated.remove(index);
                    }
                    // An expired archiving lease is taken over by a new claim.
                    None if self.archiving.contains_key(&payload.flow_id) => {}
                    None => {
                        return Err(ApplyError::FlowIndexTransition {
                            flow_id: payload.flow_id.clone(),
                            event_type,
                            expected: "deactivated",
                        });
                    }
                }
                self.archiving.insert(payload.flow_id.clone(), at);
            }
            EngineEvent::FlowArchived(payload) => {
                if self.archiving.remove(&payload.flow_id).is_none() {
                    return Err(ApplyError::FlowIndexTransition {
                        flow_id: payload.flow_id.clone(),
                        event_type,
                        expected: "archiving",
                    });
                }
                self.flow_digests.remove(&payload.flow_id);
            }
        }
        self.last_updated = at;
        Ok(())
    }
}

// ------------------------------------------------------------------ flow aggregate

/// The projection of one flow: `None` until `flow_started`.
impl Projection for Option<FlowState> {
    type Event = FlowEvent;

    fn apply(&mut self, event: &FlowEvent, at: Timestamp) -> Result<(), ApplyError> {
        if let FlowEvent::FlowStarted(payload) = event {
            if let Some(existing) = self {
                return Err(ApplyError::FlowAlreadyStarted {
                    flow_id: existing.id.clone(),
                });
            }
            *self = Some(FlowState {
                id: payload.flow_id.clone(),
                status: FlowStatus::Active,
                error: String::new(),
                created_at: at,
                completed_at: Timestamp::ZERO,
                last_updated: at,
                plan: payload.plan.clone(),
                metadata: payload.metadata.clone(),
                attributes: std::sync::Arc::new(
                    payload
                        .init
                        .iter()
                        .map(|(name, value)| {
                            let attribute = AttributeValue {
                                value: value.clone(),
                                step: None,
                            };
                            (name.clone(), attribute)
                        })
                        .collect(),
                ),
                executions: payload
                    .plan
                    .steps
                    .keys()
                    .map(|step_id| (step_id.clone(), ExecutionState::pending()))
                    .collect(),
                size: StateSize::default(),
            });
            if let Some(flow) = self {
                flow.size
                    .add(args_size(&payload.init) + args_size(&payload.metadata));
            }
            return Ok(());
        }
        let Some(flow) = self else {
            let event_type = event.event_type();
            return Err(ApplyError::FlowNotStarted { event_type });
        };
        apply_to_started(flow, event, at)
    }
}

/// Applies `event` to a flow that has started, in place: what [`Projection::apply`] on
/// `Option<FlowState>` does for every event but `FlowStarted` (refused here). Lets a caller
/// holding a `FlowState` apply events without moving it out (and building a default state,
/// which allocates, in its place).
pub fn apply_to_started(
    flow: &mut FlowState,
    event: &FlowEvent,
    at: Timestamp,
) -> Result<(), ApplyError> {
    apply_to_flow(flow, event, at)?;
    flow.last_updated = at;
    Ok(())
}

fn apply_to_flow(flow: &mut FlowState, event: &FlowEvent, at: Timestamp) -> Result<(), ApplyError> {
    let event_type = event.event_type();
    let named = event.flow_id();
    if named != flow.id {
        return Err(ApplyError::FlowMismatch {
            event_type,
            expected: flow.id.clone(),
            found: named.to_owned(),
        });
    }
    match event {
        FlowEvent::FlowStarted(_) => {
            return Err(ApplyError::FlowAlreadyStarted {
                flow_id: flow.id.clone(),
            });
        }
        FlowEvent::FlowCompleted(_) | FlowEvent::FlowFailed(_) => {
            if flow.status.is_terminal() {
                return Err(ApplyError::FlowAlreadyTerminal {
                    flow_id: flow.id.clone(),
                    status: flow.status,
                });
            }
            flow.completed_at = at;
            match event {
                FlowEvent::FlowFailed(payload) => {
                    flow.status = FlowStatus::Failed;
                    flow.error = payload.error.clone();
                }
                _ => flow.status = FlowStatus::Completed,
            }
        }
        FlowEvent::StepStarted(payload) => {
            let execution = step_in(flow, &payload.step_id, event_type, &[StepStatus::Pending])?;
            let work_items = WorkItems::pending_from(&payload.work_items);
            let added = args_size(&payload.inputs)
                + payload
                    .work_items
                    .values()
                    .map(|inputs| args_size(inputs))
                    .sum::<u64>();
            *execution = ExecutionState {
                status: StepStatus::Active,
                started_at: at,
                inputs: Some(std::sync::Arc::new(payload.inputs.clone())),
                work_items,
                ..ExecutionState::pending()
            };
            flow.size.add(added);
        }
        FlowEvent::StepCompleted(payload) => {
            let execution = step_in(flow, &payload.step_id, event_type, &[StepStatus::Active])?;
            execution.status = StepStatus::Completed;
            execution.completed_at = at;
            execution.duration = payload.duration;
            execution.outputs = std::sync::Arc::new(payload.outputs.clone());
            flow.size.add(args_size(&payload.outputs));
        }
        FlowEvent::StepFailed(payload) => {
            let allowed = [StepStatus::Pending, StepStatus::Active];
            let execution = step_in(flow, &payload.step_id, event_type, &allowed)?;
            execution.status = StepStatus::Failed;
            execution.completed_at = at;
            execution.error = payload.error.clone();
            flow.size.add(len_of(&payload.error));
        }
        FlowEvent::StepSkipped(payload) => {
            let execution = step_in(flow, &payload.step_id, event_type, &[StepStatus::Pending])?;
            execution.status = StepStatus::Skipped;
            execution.completed_at = at;
            execution.error = payload.reason.clone();
        }
        FlowEvent::AttributeSet(payload) => {
            if flow.attributes.contains_key(&payload.key) {
                return Err(ApplyError::AttributeAlreadySet {
                    key: payload.key.clone(),
                });
            }
            let step = (!payload.step_id.is_empty()).then(|| payload.step_id.clone());
            flow.size.add(json_size(&payload.value));
            std::sync::Arc::make_mut(&mut flow.attributes).insert(
                payload.key.clone(),
                AttributeValue {
                    value: payload.value.clone(),
                    step,
                },
            );
        }
        FlowEvent::WorkStarted(payload) => {
            // Active → active is a re-dispatch after a lost lease.
            update_item(flow, payload, event_type, UNFINISHED_WORK, |item| {
                item.status = WorkStatus::Active;
                if item.started_at.is_zero() {
                    item.started_at = at;
                }
            })?;
        }
        FlowEvent::WorkSucceeded(payload) => {
            // Pending → succeeded is a memoization hit.
            update_item(flow, payload, event_type, UNFINISHED_WORK, |item| {
                item.status = WorkStatus::Succeeded;
                item.completed_at = at;
                item.outputs = payload.outputs.clone();
            })?;
            flow.size.add(args_size(&payload.outputs));
        }
        FlowEvent::WorkFailed(payload) => {
            // Pending → failed is the cancellation of queued work on a terminal flow.
            update_item(flow, payload, event_type, UNFINISHED_WORK, |item| {
                item.status = WorkStatus::Failed;
                item.completed_at = at;
                item.error = payload.error.clone();
            })?;
            flow.size.add(len_of(&payload.error));
        }
        FlowEvent::WorkNotCompleted(payload) => {
            update_item(flow, payload, event_type, &[WorkStatus::Active], |item| {
                item.status = WorkStatus::NotCompleted;
                item.completed_at = at;
                item.error = payload.error.clone();
            })?;
        }
        FlowEvent::RetryScheduled(payload) => {
            let retryable = [WorkStatus::Active, WorkStatus::NotCompleted];
            update_item(flow, payload, event_type, &retryable, |item| {
                item.status = WorkStatus::Pending;
                item.retry_count = payload.retry_count;
                item.next_retry_at = payload.next_retry_at;
                item.error = payload.error.clone();
            })?;
        }
    }
    Ok(())
}

/// Work statuses from which an item can still start, succeed or fail.
const UNFINISHED_WORK: &[WorkStatus] = &[
    WorkStatus::Pending,
    WorkStatus::Active,
    WorkStatus::NotCompleted,
];

fn execution_mut<'f>(
    flow: &'f mut FlowState,
    step_id: &str,
) -> Result<&'f mut ExecutionState, ApplyError> {
    flow.executions
        .get_mut(step_id)
        .ok_or_else(|| ApplyError::UnknownStep {
            step_id: step_id.to_owned(),
        })
}

fn step_in<'f>(
    flow: &'f mut FlowState,
    step_id: &str,
    event_type: &'static str,
    allowed: &[StepStatus],
) -> Result<&'f mut ExecutionState, ApplyError> {
    let execution = execution_mut(flow, step_id)?;
    if allowed.contains(&execution.status) {
        Ok(execution)
    } else {
        Err(ApplyError::StepTransition {
            step_id: step_id.to_owned(),
            from: execution.status,
            event_type,
        })
    }
}

/// The work item an event is about.
trait WorkItemEvent {
    fn step_id(&self) -> &str;
    fn token(&self) -> &str;
}

macro_rules! work_item_event {
    ($($payload:ty),+) => {$(
        impl WorkItemEvent for $payload {
            fn step_id(&self) -> &str {
                &self.step_id
            }
            fn token(&self) -> &str {
                &self.token
            }
        }
    )+};
}

work_item_event!(
    WorkStarted,
    WorkSucceeded,
    WorkFailed,
    WorkNotCompleted,
    RetryScheduled
);

/// Changes the work item an event is about, if its status allows the event.
fn update_item(
    flow: &mut FlowState,
    event: &impl WorkItemEvent,
    event_type: &'static str,
    allowed: &[WorkStatus],
    change: impl FnOnce(&mut WorkState),
) -> Result<(), ApplyError> {
    let (step_id, token) = (event.step_id(), event.token());
    let work_items = &mut execution_mut(flow, step_id)?.work_items;
    let unknown = || ApplyError::UnknownWorkItem {
        step_id: step_id.to_owned(),
        token: token.to_owned(),
    };
    let status = work_items.get(token).ok_or_else(unknown)?.status;
    if !allowed.contains(&status) {
        return Err(ApplyError::WorkTransition {
            step_id: step_id.to_owned(),
            token: token.to_owned(),
            from: status,
            event_type,
        });
    }
    if work_items.update(token, change) {
        Ok(())
    } else {
        Err(unknown())
    }
}
