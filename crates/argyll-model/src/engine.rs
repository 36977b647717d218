//! Engine state: the catalog of steps, their health and the flow index (`engine.md` §2.1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::AttributeGraph;
use crate::step::Step;
use crate::time::Timestamp;
use crate::wire::nullable;
use crate::{FlowId, StepId};

/// Health of a step's handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Checks pass (script steps are healthy once registered).
    Healthy,
    /// The last check failed.
    Unhealthy,
    /// Never checked.
    #[default]
    Unknown,
}

impl HealthStatus {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        }
    }
}

/// Health of one step.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthState {
    /// Status.
    pub status: HealthStatus,
    /// Why the step is unhealthy.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
}

/// A flow that is running or still has work in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveFlow {
    /// The parent flow of a child flow.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub parent_flow_id: FlowId,
    /// Activation time.
    pub started_at: Timestamp,
    /// Activation time (the original never updates it).
    pub last_active: Timestamp,
}

/// A terminal flow with no work in flight, waiting for the archiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeactivatedFlow {
    /// The flow.
    pub flow_id: FlowId,
    /// Its parent, for child flows.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub parent_flow_id: FlowId,
    /// Deactivation time.
    pub deactivated_at: Timestamp,
}

/// The summary of a flow kept in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowDigest {
    /// Flow status.
    pub status: crate::flow::FlowStatus,
    /// Start time.
    pub created_at: Timestamp,
    /// Terminal time; zero while active.
    pub completed_at: Timestamp,
    /// Failure message.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
    /// The flow's goals (an addition: flow listings show them; absent when not known).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub goals: Vec<String>,
}

/// The engine aggregate's projection.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineState {
    /// Time of the last event.
    #[serde(default)]
    pub last_updated: Timestamp,
    /// Registered steps.
    #[serde(default, deserialize_with = "nullable")]
    pub steps: BTreeMap<StepId, Step>,
    /// Health by step (entries outlive unregistration, as in the original).
    #[serde(default, deserialize_with = "nullable")]
    pub health: BTreeMap<StepId, HealthState>,
    /// Flows running or with work in flight.
    #[serde(default, deserialize_with = "nullable")]
    pub active: BTreeMap<FlowId, ActiveFlow>,
    /// Finished flows waiting to be archived, oldest first.
    #[serde(default, deserialize_with = "nullable")]
    pub deactivated: Vec<DeactivatedFlow>,
    /// Flows being archived, with the claim time.
    #[serde(default, deserialize_with = "nullable")]
    pub archiving: BTreeMap<FlowId, Timestamp>,
    /// Digests of flows not yet archived.
    #[serde(default, deserialize_with = "nullable")]
    pub flow_digests: BTreeMap<FlowId, FlowDigest>,
    /// The attribute graph over all registered steps (registration order).
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: AttributeGraph,
}
