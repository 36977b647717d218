//! Planner invariants over random catalogs (proptest).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet};

use argyll_model::{Args, AttributeGraph, AttributeSpec, AttributeType, ExecutionPlan, Step};
use proptest::prelude::*;
use serde_json::Value;

const NAMES: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

/// One random step: for each attribute name, 0 = absent, 1 = required, 2 = optional, 3 = output.
#[derive(Debug, Clone)]
struct StepShape {
    roles: Vec<u8>,
}

fn build(id: usize, shape: &StepShape) -> Step {
    let mut step = Step::sync(format!("s{id}"), "http://svc");
    for (name, role) in NAMES.iter().zip(&shape.roles) {
        let spec = match role {
            1 => AttributeSpec::required(AttributeType::Any),
            2 => AttributeSpec::optional(AttributeType::Any, None),
            3 => AttributeSpec::output(AttributeType::Any),
            _ => continue,
        };
        step = step.with_attribute(*name, spec);
    }
    step
}

#[derive(Debug, Clone)]
struct Scenario {
    shapes: Vec<StepShape>,
    goals: Vec<usize>,
    init: Vec<bool>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let shape =
        proptest::collection::vec(0u8..4, NAMES.len()).prop_map(|roles| StepShape { roles });
    proptest::collection::vec(shape, 1..10).prop_flat_map(|shapes| {
        let count = shapes.len();
        (
            Just(shapes),
            proptest::collection::vec(0..count, 1..4),
            proptest::collection::vec(any::<bool>(), NAMES.len()),
        )
            .prop_map(|(shapes, goals, init)| Scenario {
                shapes,
                goals,
                init,
            })
    })
}

fn catalog(steps: &[Step]) -> (BTreeMap<String, Step>, AttributeGraph) {
    let graph = AttributeGraph::from_steps(steps);
    let map = steps.iter().map(|s| (s.id.clone(), s.clone())).collect();
    (map, graph)
}

fn plan_for(scenario: &Scenario, reversed: bool) -> (ExecutionPlan, BTreeMap<String, Step>, Args) {
    let mut steps: Vec<Step> = scenario
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| build(i, s))
        .collect();
    if reversed {
        steps.reverse();
    }
    let (map, graph) = catalog(&steps);
    let goals: Vec<String> = scenario.goals.iter().map(|g| format!("s{g}")).collect();
    let init: Args = NAMES
        .iter()
        .zip(&scenario.init)
        .filter(|(_, given)| **given)
        .map(|(name, _)| ((*name).to_owned(), Value::Null))
        .collect();
    let plan = argyll_plan::plan(&map, &graph, &goals, &init).expect("goals are registered");
    (plan, map, init)
}

/// Steps reachable backwards from the goals through inputs and their providers.
fn backward_closure(steps: &BTreeMap<String, Step>, goals: &[String]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut pending: Vec<String> = goals.to_vec();
    while let Some(id) = pending.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        for (name, _) in steps[&id].inputs() {
            pending.extend(
                steps
                    .values()
                    .filter(|s| s.produces(name))
                    .map(|s| s.id.clone()),
            );
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn planning_is_deterministic_and_ignores_registration_order(scenario in scenario()) {
        let (first, _, _) = plan_for(&scenario, false);
        let (again, _, _) = plan_for(&scenario, false);
        let (reversed, _, _) = plan_for(&scenario, true);
        prop_assert_eq!(&first, &again);
        prop_assert_eq!(&first, &reversed);
    }

    #[test]
    fn every_required_input_has_a_source(scenario in scenario()) {
        let (plan, _, init) = plan_for(&scenario, false);
        for step in plan.steps.values() {
            for name in step.required_inputs() {
                let from_init = init.contains_key(name);
                let from_provider = plan.steps.values().any(|p| p.produces(name));
                let declared_required = plan.required.contains(name);
                prop_assert!(
                    from_init || from_provider || (plan.is_goal(&step.id) && declared_required),
                    "{} needs {} and nothing supplies it", step.id, name
                );
            }
        }
        for name in &plan.required {
            prop_assert!(!init.contains_key(name), "{} is required but in init", name);
            prop_assert!(
                plan.goals.iter().any(|g| plan.steps.get(g).is_some_and(|s| s.required_inputs().any(|n| n == name))),
                "only goals' inputs can be required: {}", name
            );
        }
    }

    #[test]
    fn no_step_outside_the_backward_closure_of_the_goals(scenario in scenario()) {
        let (plan, steps, init) = plan_for(&scenario, false);
        let closure = backward_closure(&steps, &plan.goals);
        for id in plan.steps.keys() {
            prop_assert!(closure.contains(id), "{} is not needed by any goal", id);
        }
        for goal in &plan.goals {
            let step = &steps[goal];
            let satisfied = step.outputs().count() > 0 && step.outputs().all(|o| init.contains_key(o));
            prop_assert_eq!(plan.steps.contains_key(goal), !satisfied, "goal {}", goal);
        }
    }

    #[test]
    fn the_plan_runs_to_its_goals_once_required_inputs_are_given(scenario in scenario()) {
        let (plan, _, init) = plan_for(&scenario, false);
        let mut available: BTreeSet<&str> = init.keys().map(String::as_str).collect();
        available.extend(plan.required.iter().map(String::as_str));
        let mut ran: BTreeSet<&str> = BTreeSet::new();
        let mut progress = true;
        while progress {
            progress = false;
            for step in plan.steps.values() {
                if !ran.contains(step.id.as_str()) && step.required_inputs().all(|n| available.contains(n.as_str())) {
                    ran.insert(step.id.as_str());
                    available.extend(step.outputs().map(String::as_str));
                    progress = true;
                }
            }
        }
        prop_assert_eq!(ran.len(), plan.steps.len(), "steps that can never start: {:?}",
            plan.steps.keys().filter(|id| !ran.contains(id.as_str())).collect::<Vec<_>>());
    }

    #[test]
    fn plan_edges_only_name_included_steps_with_matching_roles(scenario in scenario()) {
        let (plan, _, _) = plan_for(&scenario, false);
        for (name, edges) in plan.attributes.iter() {
            prop_assert!(edges.providers.windows(2).all(|w| w[0] < w[1]), "providers sorted");
            prop_assert!(edges.consumers.windows(2).all(|w| w[0] < w[1]), "consumers sorted");
            for id in &edges.providers {
                prop_assert!(plan.steps.get(id).is_some_and(|s| s.produces(name)));
            }
            for id in &edges.consumers {
                prop_assert!(plan.steps.get(id).is_some_and(|s| s.attributes.get(name).is_some_and(|a| a.is_input())));
            }
        }
    }
}
