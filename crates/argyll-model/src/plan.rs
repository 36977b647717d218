//! Execution plans: the steps a flow runs and how their attributes connect (`engine.md` §4).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

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

/// How many plans' JSON each thread keeps (see [`serialize_shared_plan`]).
const RECENT_PLAN_TEXTS: usize = 4;

thread_local! {
    /// Plans serialised lately on this thread, with their JSON text. Each entry holds its
    /// plan, so no other plan can be allocated at the same address while it is here.
    static RECENT_PLANS: RefCell<Vec<(Arc<ExecutionPlan>, Box<RawValue>)>> =
        const { RefCell::new(Vec::new()) };
}

/// Serialises a shared plan (a `serialize_with` for `Arc<ExecutionPlan>` fields), reusing its
/// JSON text when the same plan was serialised lately on this thread. Flows started from one
/// cached plan share it, and each of them writes it in its `flow_started` event and in every
/// read of its state: for small flows the plan was most of the text escaped per flow.
/// The text is what `ExecutionPlan`'s own serialisation writes, so the output is the same.
pub fn serialize_shared_plan<S: Serializer>(
    plan: &Arc<ExecutionPlan>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut serializer = Some(serializer);
    let reused = RECENT_PLANS.with(|recent| {
        let recent = recent.try_borrow().ok()?;
        let (_, text) = recent.iter().find(|(known, _)| Arc::ptr_eq(known, plan))?;
        serializer
            .take()
            .map(|serializer| text.serialize(serializer))
    });
    if let Some(written) = reused {
        return written;
    }
    let text = serde_json::value::to_raw_value(&**plan).map_err(serde::ser::Error::custom)?;
    let written = match serializer {
        Some(serializer) => text.serialize(serializer),
        None => Err(serde::ser::Error::custom("plan serialiser already used")),
    };
    RECENT_PLANS.with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut() {
            if recent.len() >= RECENT_PLAN_TEXTS {
                recent.remove(0);
            }
            recent.push((plan.clone(), text));
        }
    });
    written
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Holder {
        #[serde(serialize_with = "serialize_shared_plan")]
        plan: Arc<ExecutionPlan>,
    }

    fn plan(goal: &str) -> Arc<ExecutionPlan> {
        Arc::new(ExecutionPlan {
            goals: vec![goal.into()],
            required: vec!["needs \"quotes\"".into()],
            ..ExecutionPlan::default()
        })
    }

    fn plainly(plan: &ExecutionPlan) -> String {
        format!(r#"{{"plan":{}}}"#, serde_json::to_string(plan).unwrap())
    }

    #[test]
    fn a_shared_plan_is_written_as_the_plan_itself_every_time() {
        let a = plan("a");
        let first = serde_json::to_string(&Holder { plan: a.clone() }).unwrap();
        let again = serde_json::to_string(&Holder { plan: a.clone() }).unwrap();
        assert_eq!(first, plainly(&a));
        assert_eq!(again, first, "the remembered text is the same text");
        let value = serde_json::to_value(Holder { plan: a.clone() }).unwrap();
        assert_eq!(
            value["plan"]["goals"][0], "a",
            "values see the plan, not its text"
        );
    }

    #[test]
    fn plans_with_other_contents_are_never_given_anothers_text() {
        // More plans than are remembered, each dropped after use: a new plan may take a freed
        // one's address only once that one has left the list.
        for round in 0..3 * RECENT_PLAN_TEXTS {
            let goal = format!("goal-{round}");
            let fresh = plan(&goal);
            let written = serde_json::to_string(&Holder {
                plan: fresh.clone(),
            })
            .unwrap();
            assert_eq!(written, plainly(&fresh));
        }
        let equal_but_another = plan("goal-0");
        assert_eq!(
            serde_json::to_string(&Holder {
                plan: equal_but_another.clone()
            })
            .unwrap(),
            plainly(&equal_but_another)
        );
    }
}
