//! Flow state: the projection of one flow's events (`engine.md` §2.2–§2.3).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::plan::ExecutionPlan;
use crate::time::Timestamp;
use crate::wire::{is_zero, nullable};
use crate::work_items::WorkItems;
use crate::{Args, AttributeName, StepId};

/// Status of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// Declared by the original but never produced.
    #[default]
    Pending,
    /// Running.
    Active,
    /// Every goal completed or was skipped.
    Completed,
    /// Some goal can no longer complete.
    Failed,
}

/// Status of one step of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// Started; work items exist.
    Active,
    /// All work items succeeded.
    Completed,
    /// Skipped by its predicate or because its outputs were no longer needed.
    Skipped,
    /// A work item failed, the predicate failed, or a required input became unreachable.
    Failed,
}

/// Status of one work item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkStatus {
    /// Waiting to be started (first time, or for a scheduled retry).
    Pending,
    /// Being executed.
    Active,
    /// Done with outputs.
    Succeeded,
    /// Failed for good.
    Failed,
    /// The last attempt failed in a retryable way; a retry decision follows.
    NotCompleted,
}

macro_rules! status_text {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_text!(FlowStatus { Pending => "pending", Active => "active", Completed => "completed", Failed => "failed" });
status_text!(StepStatus {
    Pending => "pending", Active => "active", Completed => "completed", Skipped => "skipped", Failed => "failed"
});
status_text!(WorkStatus {
    Pending => "pending", Active => "active", Succeeded => "succeeded", Failed => "failed",
    NotCompleted => "not_completed"
});

impl FlowStatus {
    /// Completed or failed: nothing moves the flow out of it.
    pub const fn is_terminal(self) -> bool {
        matches!(self, FlowStatus::Completed | FlowStatus::Failed)
    }
}

impl StepStatus {
    /// Completed, skipped or failed.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Completed | StepStatus::Skipped | StepStatus::Failed
        )
    }
}

impl WorkStatus {
    /// Succeeded or failed.
    pub const fn is_terminal(self) -> bool {
        matches!(self, WorkStatus::Succeeded | WorkStatus::Failed)
    }

    /// Whether a result reported from outside (executor or webhook) may move an item from
    /// `self` to `to`: pending→active; active→succeeded|failed|not_completed;
    /// not_completed→active|succeeded|failed.
    pub const fn allows_reported_transition(self, to: WorkStatus) -> bool {
        matches!(
            (self, to),
            (WorkStatus::Pending, WorkStatus::Active)
                | (
                    WorkStatus::Active,
                    WorkStatus::Succeeded | WorkStatus::Failed | WorkStatus::NotCompleted
                )
                | (
                    WorkStatus::NotCompleted,
                    WorkStatus::Active | WorkStatus::Succeeded | WorkStatus::Failed
                )
        )
    }

    /// Checks [`WorkStatus::allows_reported_transition`], with the original's error message.
    pub fn check_reported_transition(self, to: WorkStatus) -> Result<(), InvalidWorkTransition> {
        if self.allows_reported_transition(to) {
            Ok(())
        } else {
            Err(InvalidWorkTransition { from: self, to })
        }
    }
}

/// A reported work result that the item's current status does not allow (e.g. a second webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid work state transition: {from} -> {to}")]
pub struct InvalidWorkTransition {
    /// The item's status.
    pub from: WorkStatus,
    /// The status the result asked for.
    pub to: WorkStatus,
}

/// A flow attribute's value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeValue {
    /// The value.
    #[serde(default)]
    pub value: Value,
    /// The step that produced it; absent for init values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepId>,
}

/// One work item of a step execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkState {
    /// Status.
    pub status: WorkStatus,
    /// First start (kept across retries); zero until started.
    #[serde(default)]
    pub started_at: Timestamp,
    /// Last result time; zero until one arrives.
    #[serde(default)]
    pub completed_at: Timestamp,
    /// The item's inputs (one element per `for_each` attribute, and the other step inputs).
    /// Shared with the `step_started` event that created the item.
    #[serde(default, deserialize_with = "nullable")]
    pub inputs: Arc<Args>,
    /// Outputs of a successful run.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Map::is_empty"
    )]
    pub outputs: Args,
    /// Last error.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
    /// Retries scheduled so far.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub retry_count: i64,
    /// When the next retry is due; zero when none was ever scheduled.
    #[serde(default)]
    pub next_retry_at: Timestamp,
}

impl WorkState {
    /// A new pending item with the given inputs.
    pub fn pending(inputs: Arc<Args>) -> Self {
        WorkState {
            status: WorkStatus::Pending,
            started_at: Timestamp::ZERO,
            completed_at: Timestamp::ZERO,
            inputs,
            outputs: Args::new(),
            error: String::new(),
            retry_count: 0,
            next_retry_at: Timestamp::ZERO,
        }
    }
}

/// The execution of one plan step within a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionState {
    /// Status.
    pub status: StepStatus,
    /// When the step started; zero while pending.
    #[serde(default)]
    pub started_at: Timestamp,
    /// When the step reached a terminal status; zero before.
    #[serde(default)]
    pub completed_at: Timestamp,
    /// Step-level inputs; `null` until started. Shared: copies of the state do not copy them
    /// (a `for_each` array can be large).
    #[serde(default)]
    pub inputs: Option<Arc<Args>>,
    /// Aggregated outputs of a completed step (shared like the inputs).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_empty_args"
    )]
    pub outputs: Arc<Args>,
    /// Failure message, or the skip reason.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
    /// Milliseconds from start to completion.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero"
    )]
    pub duration: i64,
    /// Work items by token, in creation order (the order of the `for_each` expansion).
    #[serde(default, skip_serializing_if = "WorkItems::is_empty")]
    pub work_items: WorkItems,
}

fn is_empty_args(args: &Arc<Args>) -> bool {
    args.is_empty()
}

/// The outputs of a step that has none yet: one shared empty map, so the executions of every
/// new flow state do not each allocate one (a step's outputs are replaced, never edited).
fn no_outputs() -> Arc<Args> {
    static NONE: std::sync::OnceLock<Arc<Args>> = std::sync::OnceLock::new();
    NONE.get_or_init(Arc::default).clone()
}

impl ExecutionState {
    /// A step that has not started.
    pub fn pending() -> Self {
        ExecutionState {
            status: StepStatus::Pending,
            started_at: Timestamp::ZERO,
            completed_at: Timestamp::ZERO,
            inputs: None,
            outputs: no_outputs(),
            error: String::new(),
            duration: 0,
            work_items: WorkItems::new(),
        }
    }
}

/// Everything known about one flow.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FlowState {
    /// Flow id.
    pub id: String,
    /// Status.
    pub status: FlowStatus,
    /// Why the flow failed (`step <id> failed: <message>`).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub error: String,
    /// When the flow started.
    #[serde(default)]
    pub created_at: Timestamp,
    /// When the flow became terminal; zero before.
    #[serde(default)]
    pub completed_at: Timestamp,
    /// Time of the last event.
    #[serde(default)]
    pub last_updated: Timestamp,
    /// The plan snapshot taken at start, shared with the `flow_started` event and with every
    /// flow started from the same plan (copies of a state do not copy it).
    #[serde(serialize_with = "crate::plan::serialize_shared_plan")]
    pub plan: Arc<ExecutionPlan>,
    /// Caller metadata (child flows carry their parent's ids here).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Map::is_empty"
    )]
    pub metadata: Map<String, Value>,
    /// Attributes by name. Shared: copies of the state do not copy the values; setting one
    /// copies the map once per transaction (`Arc::make_mut`).
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: Arc<BTreeMap<AttributeName, AttributeValue>>,
    /// One execution per plan step.
    #[serde(default, deserialize_with = "nullable")]
    pub executions: BTreeMap<StepId, ExecutionState>,
    /// About how many bytes of JSON the values in this state take (kept by the reducers; not
    /// serialised, not compared): what `FLOW_MAX_STATE_BYTES` and the cache's byte budget
    /// measure.
    #[serde(skip)]
    pub size: crate::size::StateSize,
}

impl FlowState {
    /// Whether the flow has reached completed or failed.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The current value of attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name).map(|attribute| &attribute.value)
    }

    /// Counts [`FlowState::size`] again from the values (a state read back from JSON).
    pub fn recount_size(&mut self) {
        use crate::size::{args_size, json_size};
        let mut bytes = args_size(&self.metadata);
        bytes += self
            .attributes
            .values()
            .map(|attribute| json_size(&attribute.value))
            .sum::<u64>();
        for execution in self.executions.values() {
            bytes += execution.inputs.as_deref().map_or(0, args_size);
            bytes += args_size(&execution.outputs);
            bytes += crate::size::len_of(&execution.error);
            for item in execution.work_items.values() {
                bytes += args_size(&item.inputs) + args_size(&item.outputs);
                bytes += crate::size::len_of(&item.error);
            }
        }
        self.size.set(bytes);
    }

    /// Whether any work item of any step is pending or active.
    pub fn has_unfinished_work(&self) -> bool {
        self.executions
            .values()
            .any(|execution| execution.work_items.has_unfinished())
    }
}
