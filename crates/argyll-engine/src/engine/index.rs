//! The flow index as the engine keeps it: an entry per flow written when it starts and when
//! it ends or settles, the digests the original listed, and `GET /engine`'s view of flows.

use argyll_model::{ActiveFlow, DeactivatedFlow, EngineState, FlowDigest, FlowState, FlowStatus};
use argyll_store::{FlowIndexEntry, FlowOutcome, FlowPhase, FlowQuery, Store};

use super::children::ParentLink;
use super::{Engine, EngineError};
use crate::flow::is_settled;

fn outcome_of(status: FlowStatus) -> FlowOutcome {
    match status {
        FlowStatus::Completed => FlowOutcome::Completed,
        FlowStatus::Failed => FlowOutcome::Failed,
        FlowStatus::Pending | FlowStatus::Active => FlowOutcome::Active,
    }
}

/// The index entry of a flow in `state`.
pub(crate) fn index_entry(state: &FlowState) -> FlowIndexEntry {
    let parent = ParentLink::parent_flow_id(&state.metadata);
    FlowIndexEntry {
        flow_id: state.id.clone(),
        goals: state.plan.goals.iter().map(ToString::to_string).collect(),
        parent_flow_id: parent,
        outcome: outcome_of(state.status),
        phase: if is_settled(state) {
            FlowPhase::Deactivated
        } else {
            FlowPhase::Active
        },
        created_at: state.created_at,
        completed_at: state.is_terminal().then_some(state.completed_at),
        error: (!state.error.is_empty()).then(|| state.error.clone()),
    }
}

impl<S: Store> Engine<S> {
    /// The engine state as the original's `GET /engine` shows it: the catalog plus the flow
    /// index — every active flow, flows being archived, and the most recently deactivated
    /// flows (`engine_state_max_flows` of them, oldest first as the original listed them),
    /// with their digests. The original listed every flow ever run, which grew without end.
    pub async fn engine_state(&self) -> Result<EngineState, EngineError> {
        let mut state = self.catalog().await?.state.clone();
        let store = &self.inner.store;
        let in_phase = |phase| FlowQuery {
            phases: vec![phase],
            ..FlowQuery::default()
        };
        let mut entries = store
            .list_flows(&in_phase(FlowPhase::Active))
            .await?
            .entries;
        entries.extend(
            store
                .list_flows(&in_phase(FlowPhase::Archiving))
                .await?
                .entries,
        );
        let mut finished = store
            .recently_deactivated(self.inner.config.engine_state_max_flows)
            .await?;
        finished.reverse();
        entries.extend(finished);
        for entry in entries {
            let parent = entry.parent_flow_id.clone().unwrap_or_default();
            match entry.phase {
                FlowPhase::Active => {
                    state.active.insert(
                        entry.flow_id.clone(),
                        ActiveFlow {
                            parent_flow_id: parent,
                            started_at: entry.created_at,
                            last_active: entry.created_at,
                        },
                    );
                }
                FlowPhase::Deactivated => state.deactivated.push(DeactivatedFlow {
                    flow_id: entry.flow_id.clone(),
                    parent_flow_id: parent,
                    deactivated_at: entry.completed_at.unwrap_or_default(),
                }),
                FlowPhase::Archiving => {
                    state.archiving.insert(
                        entry.flow_id.clone(),
                        entry.completed_at.unwrap_or_default(),
                    );
                }
                FlowPhase::Archived => continue,
            }
            state
                .flow_digests
                .insert(entry.flow_id.clone(), flow_digest(&entry));
        }
        Ok(state)
    }

    /// Writes the flow's index entry unless a later transaction already moved it further.
    pub(super) async fn update_index(&self, state: &FlowState) {
        let entry = index_entry(state);
        let store = &self.inner.store;
        if entry.phase == FlowPhase::Active
            && let Ok(Some(existing)) = store.get_flow(&state.id).await
            && existing.phase != FlowPhase::Active
        {
            return;
        }
        let written = self
            .retrying_store(|| async { Ok(store.put_flow(entry.clone()).await?) })
            .await;
        if let Err(error) = written {
            tracing::error!(flow_id = %state.id, %error, "flow index update failed");
        }
    }
}
/// The flow digest the original listed (`GET /engine/flow`), from an index entry.
pub fn flow_digest(entry: &FlowIndexEntry) -> FlowDigest {
    FlowDigest {
        status: match entry.outcome {
            FlowOutcome::Active => FlowStatus::Active,
            FlowOutcome::Completed => FlowStatus::Completed,
            FlowOutcome::Failed => FlowStatus::Failed,
        },
        created_at: entry.created_at,
        completed_at: entry.completed_at.unwrap_or_default(),
        error: entry.error.clone().unwrap_or_default(),
        goals: entry.goals.clone(),
    }
}
