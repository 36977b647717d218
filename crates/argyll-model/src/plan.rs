//! Execution plans: the steps a flow runs and how their attributes connect (`engine.md` §4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::graph::AttributeGraph;
use crate::step::Step;
use crate::wire::nullable;
use crate::{AttributeName, StepId};

/// The plan of a flow: an immutable snapshot of the steps it runs, taken at start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecutionPlan {
    /// Goal step ids, as requested.
    #[serde(default, deserialize_with = "nullable")]
    pub goals: Vec<StepId>,
    /// Attribute names that must be supplied as init values, sorted.
    #[serde(default, deserialize_with = "nullable")]
    pub required: Vec<AttributeName>,
    /// The included steps with their full definitions.
    #[serde(default, deserialize_with = "nullable")]
    pub steps: BTreeMap<StepId, Step>,
    /// The graph restricted to the included steps (lists sorted by step id).
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: AttributeGraph,
    /// Steps visited while planning but left out, and why.
    #[serde(default, deserialize_with = "nullable")]
    pub excluded: ExcludedSteps,
}

impl ExecutionPlan {
    /// Whether `step_id` is one of the goals.
    pub fn is_goal(&self, step_id: &str) -> bool {
        self.goals.iter().any(|goal| goal == step_id)
    }
}

/// Steps the planner looked at and did not include.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExcludedSteps {
    /// Steps whose outputs the init values already provide: step → those output names.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub satisfied: BTreeMap<StepId, Vec<AttributeName>>,
    /// Providers that cannot run: step → its required inputs that nothing can provide.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub missing: BTreeMap<StepId, Vec<AttributeName>>,
}
