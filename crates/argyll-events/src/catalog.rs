//! The event catalog: every event type with its payload (`engine.md` §3.2–§3.3, `api.md` §1.4).
//!
//! Payload field names are the original's, so WebSocket clients written for it keep working.

use std::sync::Arc;

use argyll_model::{
    Args, ExecutionPlan, FlowId, FlowStatus, HealthStatus, Step, StepId, Timestamp, Token,
};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Operations shared by the engine and flow event enums, used by envelopes and the stored format.
pub trait EventKind: Sized {
    /// Every event type name of this aggregate kind.
    const TYPES: &'static [&'static str];

    /// The event's type name (`step_registered`, `work_succeeded`, ...).
    fn event_type(&self) -> &'static str;

    /// Serialises the payload alone (the `data` of the stored format and of envelopes).
    fn serialize_data<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error>;

    /// Rebuilds an event from its type name and payload JSON text.
    fn from_parts(event_type: &str, data: &str) -> Result<Self, PartsError>;
}

/// Why an event could not be rebuilt from its type and payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// The type name is not in the catalog of this aggregate kind.
    #[error("unknown event type: {0}")]
    UnknownType(String),
    /// The payload does not match the type's payload shape.
    #[error("invalid {event_type} payload: {reason}")]
    Payload {
        /// The event type.
        event_type: String,
        /// The decoder's explanation.
        reason: String,
    },
}

macro_rules! event_catalog {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($payload:ty) = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "data")]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $text)] $variant($payload), )+
        }

        impl EventKind for $name {
            const TYPES: &'static [&'static str] = &[$($text),+];

            fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $text, )+ }
            }

            fn serialize_data<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self { $( Self::$variant(payload) => payload.serialize(serializer), )+ }
            }

            fn from_parts(event_type: &str, data: &str) -> Result<Self, PartsError> {
                let payload_error = |error: serde_json::Error| PartsError::Payload {
                    event_type: event_type.to_owned(),
                    reason: error.to_string(),
                };
                match event_type {
                    $( $text => serde_json::from_str(data).map(Self::$variant).map_err(payload_error), )+
                    other => Err(PartsError::UnknownType(other.to_owned())),
                }
            }
        }

        $(
            impl From<$payload> for $name {
                fn from(payload: $payload) -> Self {
                    Self::$variant(payload)
                }
            }
        )+
    };
}

event_catalog! {
    /// Events of the engine aggregate (`["engine"]`): the step catalog, health and flow index.
    pub enum EngineEvent {
        /// A new step was registered.
        StepRegistered(StepRegistered) = "step_registered",
        /// A step was removed from the catalog.
        StepUnregistered(StepUnregistered) = "step_unregistered",
        /// A step's definition was replaced.
        StepUpdated(StepUpdated) = "step_updated",
        /// A step's health changed.
        StepHealthChanged(StepHealthChanged) = "step_health_changed",
        /// A flow started and joined the index.
        FlowActivated(FlowActivated) = "flow_activated",
        /// A terminal flow has no work left in flight.
        FlowDeactivated(FlowDeactivated) = "flow_deactivated",
        /// A flow's digest changed (it became terminal).
        FlowDigestUpdated(FlowDigestUpdated) = "flow_digest_updated",
        /// An archiver claimed a deactivated flow.
        FlowArchiving(FlowArchiving) = "flow_archiving",
        /// A flow was archived and left the index.
        FlowArchived(FlowArchived) = "flow_archived",
    }
}

event_catalog! {
    /// Events of one flow's aggregate (`["flow", id]`).
    pub enum FlowEvent {
        /// The flow was created with its plan and init values.
        FlowStarted(FlowStarted) = "flow_started",
        /// Every goal completed or was skipped.
        FlowCompleted(FlowCompleted) = "flow_completed",
        /// Some goal can no longer complete.
        FlowFailed(FlowFailed) = "flow_failed",
        /// A step started with its work items.
        StepStarted(StepStarted) = "step_started",
        /// A step finished with aggregated outputs.
        StepCompleted(StepCompleted) = "step_completed",
        /// A step failed.
        StepFailed(StepFailed) = "step_failed",
        /// A step was skipped.
        StepSkipped(StepSkipped) = "step_skipped",
        /// A flow attribute received its value.
        AttributeSet(AttributeSet) = "attribute_set",
        /// A work item was dispatched.
        WorkStarted(WorkStarted) = "work_started",
        /// A work item succeeded.
        WorkSucceeded(WorkSucceeded) = "work_succeeded",
        /// A work item failed for good.
        WorkFailed(WorkFailed) = "work_failed",
        /// A work item's attempt failed in a retryable way.
        WorkNotCompleted(WorkNotCompleted) = "work_not_completed",
        /// A retry of a work item was scheduled.
        RetryScheduled(RetryScheduled) = "retry_scheduled",
    }
}

impl FlowEvent {
    /// The flow the event belongs to (every flow payload names it).
    pub fn flow_id(&self) -> &str {
        match self {
            FlowEvent::FlowStarted(p) => &p.flow_id,
            FlowEvent::FlowCompleted(p) => &p.flow_id,
            FlowEvent::FlowFailed(p) => &p.flow_id,
            FlowEvent::StepStarted(p) => &p.flow_id,
            FlowEvent::StepCompleted(p) => &p.flow_id,
            FlowEvent::StepFailed(p) => &p.flow_id,
            FlowEvent::StepSkipped(p) => &p.flow_id,
            FlowEvent::AttributeSet(p) => &p.flow_id,
            FlowEvent::WorkStarted(p) => &p.flow_id,
            FlowEvent::WorkSucceeded(p) => &p.flow_id,
            FlowEvent::WorkFailed(p) => &p.flow_id,
            FlowEvent::WorkNotCompleted(p) => &p.flow_id,
            FlowEvent::RetryScheduled(p) => &p.flow_id,
        }
    }
}

fn is_empty(text: &str) -> bool {
    text.is_empty()
}

// ------------------------------------------------------------------ engine payloads

/// Payload of `step_registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRegistered {
    /// The step as registered.
    pub step: Step,
}

/// Payload of `step_unregistered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepUnregistered {
    /// The removed step.
    pub step_id: StepId,
}

/// Payload of `step_updated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepUpdated {
    /// The new definition.
    pub step: Step,
}

/// Payload of `step_health_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepHealthChanged {
    /// The step.
    pub step_id: StepId,
    /// Its new health.
    pub status: HealthStatus,
    /// Why it is unhealthy.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub error: String,
}

/// Payload of `flow_activated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowActivated {
    /// The flow.
    pub flow_id: FlowId,
    /// The parent flow, for child flows.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub parent_flow_id: FlowId,
}

/// Payload of `flow_deactivated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowDeactivated {
    /// The flow.
    pub flow_id: FlowId,
}

/// Payload of `flow_digest_updated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowDigestUpdated {
    /// The flow.
    pub flow_id: FlowId,
    /// Its status.
    pub status: FlowStatus,
    /// When it became terminal.
    pub completed_at: Timestamp,
    /// Its failure message.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub error: String,
}

/// Payload of `flow_archiving`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowArchiving {
    /// The flow.
    pub flow_id: FlowId,
}

/// Payload of `flow_archived`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowArchived {
    /// The flow.
    pub flow_id: FlowId,
}

// ------------------------------------------------------------------ flow payloads

/// Payload of `flow_started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowStarted {
    /// The plan snapshot.
    #[serde(serialize_with = "argyll_model::serialize_shared_plan")]
    pub plan: Arc<ExecutionPlan>,
    /// Init values.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub init: Args,
    /// Caller metadata (child flows: parent ids).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
    /// The flow.
    pub flow_id: FlowId,
}

/// Payload of `flow_completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowCompleted {
    /// Outputs of the goal steps merged in goal order.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub result: Args,
    /// The flow.
    pub flow_id: FlowId,
}

/// Payload of `flow_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowFailed {
    /// The flow.
    pub flow_id: FlowId,
    /// Why (`step <id> failed: <message>`).
    pub error: String,
}

/// Payload of `step_started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStarted {
    /// Step-level inputs.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inputs: Args,
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// The work items (token → inputs) in expansion order. The inputs are shared with the
    /// flow state the event builds (a fan-out's items are stored once, not twice).
    #[serde(default)]
    pub work_items: IndexMap<Token, std::sync::Arc<Args>>,
}

/// Payload of `step_completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepCompleted {
    /// Aggregated outputs (undeclared keys included).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub outputs: Args,
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// Milliseconds since the step started.
    #[serde(default)]
    pub duration: i64,
}

/// Payload of `step_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFailed {
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// Why.
    pub error: String,
}

/// Payload of `step_skipped`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSkipped {
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// `predicate returned false` or `outputs not needed`.
    pub reason: String,
}

/// Payload of `attribute_set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeSet {
    /// The value.
    #[serde(default)]
    pub value: Value,
    /// The flow.
    pub flow_id: FlowId,
    /// The producing step.
    pub step_id: StepId,
    /// The attribute name.
    pub key: String,
}

/// Payload of `work_started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkStarted {
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// The work item.
    pub token: Token,
    /// The item's inputs (informational; state keeps those of `step_started`).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub inputs: Args,
}

/// Payload of `work_succeeded`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkSucceeded {
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// The work item.
    pub token: Token,
    /// The handler's outputs.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub outputs: Args,
}

/// Payload of `work_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkFailed {
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// The work item.
    pub token: Token,
    /// Why.
    pub error: String,
}

/// Payload of `work_not_completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkNotCompleted {
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// The work item.
    pub token: Token,
    /// Why the attempt failed.
    pub error: String,
}

/// Payload of `retry_scheduled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryScheduled {
    /// The flow.
    pub flow_id: FlowId,
    /// The step.
    pub step_id: StepId,
    /// The work item.
    pub token: Token,
    /// Retries scheduled so far, this one included.
    pub retry_count: i64,
    /// When the retry is due.
    pub next_retry_at: Timestamp,
    /// The error that caused it.
    pub error: String,
}

/// Go encodes a nil map as `null`; accept it as empty.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Args, D::Error> {
    Ok(Option::<Args>::deserialize(deserializer)?.unwrap_or_default())
}
