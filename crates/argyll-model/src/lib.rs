//! # argyll-model
//!
//! The vocabulary every other Argyll crate speaks: step definitions and their validation, the
//! attribute graph, execution plans, flow and engine state, flow-id sanitising and the
//! functional hashes used for memoization.
//!
//! **Owns**: the JSON wire shapes of steps, plans and state, kept compatible with the original
//! Go engine (field names, omission rules, status strings, validation messages), and the pure
//! rules that belong to the data itself (validation and the bounds beyond the original's
//! rules, hashing, transition tables); the representation that keeps copies of a large flow
//! state cheap (`WorkItems`, shared inputs, outputs and attributes) and the approximate size
//! of values and states (`json_size`, `StateSize`).
//!
//! **Must not depend on**: any other Argyll crate, an async runtime, the network, the file
//! system or the clock. Everything here is a pure function of its arguments, so it can be used
//! from the engine, the store adapters, clients and tests alike. Planning lives in
//! `argyll-plan`, events and reducers in `argyll-events`, retry arithmetic in `argyll-retry`.
//!
//! ```
//! use argyll_model::{AttributeSpec, AttributeType, ScriptLanguage, Step};
//!
//! let step = Step::script("hello-script", ScriptLanguage::Ale, "{:greeting name}")
//!     .with_attribute("name", AttributeSpec::required(AttributeType::String))
//!     .with_attribute("greeting", AttributeSpec::output(AttributeType::String));
//! assert!(step.validate().is_ok());
//! assert_eq!(step.required_inputs().collect::<Vec<_>>(), ["name"]);
//! ```

mod engine;
mod flow;
mod flow_id;
mod graph;
mod hash;
mod plan;
mod size;
mod step;
mod time;
mod validate;
mod wire;
mod work_items;

pub use engine::{ActiveFlow, DeactivatedFlow, EngineState, FlowDigest, HealthState, HealthStatus};
pub use flow::{
    AttributeValue, ExecutionState, FlowState, FlowStatus, InvalidWorkTransition, StepStatus,
    WorkState, WorkStatus,
};
pub use flow_id::{InvalidFlowId, child_flow_id, sanitize_flow_id};
pub use graph::{AttributeEdges, AttributeGraph};
pub use hash::{args_hash, canonical_json, memo_key};
pub use plan::{ExcludedSteps, ExecutionPlan, serialize_shared_plan};
pub use size::{StateSize, args_size, json_size, len_of};
pub use step::{
    AttributeRole, AttributeSpec, AttributeType, BackoffType, FlowConfig, HttpConfig, ScriptConfig,
    ScriptLanguage, Step, StepDocument, StepType, WorkConfig, json_type_name,
};
pub use time::{Timestamp, TimestampError, ZERO_TIMESTAMP_TEXT};
pub use validate::{
    AttributeValidationError, DEFAULT_MAX_ID_LENGTH, DefaultValueProblem, MAX_BACKOFF_MS,
    MAX_RETRIES, StepLimits, StepValidationError, check_text,
};
pub use work_items::WorkItems;

/// A step id (unique key of the step registry).
pub type StepId = String;
/// A flow id (sanitised when supplied over the API; child flows are `parent:step:token`).
pub type FlowId = String;
/// The name of a flow attribute.
pub type AttributeName = String;
/// A work-item token (a UUID string), also sent to handlers as `receipt_token`.
pub type Token = String;
/// Named JSON values: step inputs and outputs, init values.
pub type Args = serde_json::Map<String, serde_json::Value>;
