//! Step registration decisions on the engine aggregate: idempotent register, update,
//! unregister, with the attribute type-conflict and dependency-cycle checks (`engine.md` §1.4,
//! decision 9).

use std::collections::BTreeSet;

use argyll_events::{
    EngineEvent, StepHealthChanged, StepRegistered, StepUnregistered, StepUpdated,
};
use argyll_model::{AttributeGraph, EngineState, HealthStatus, Step};

/// Why a registration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// Another definition is registered under the id.
    #[error("step exists: {0}")]
    StepExists(String),
    /// No step with the id.
    #[error("step not found: {0}")]
    StepNotFound(String),
    /// Another step declares the attribute with another type.
    #[error("attribute type conflict: {0}")]
    TypeConflict(String),
    /// The step would close a dependency cycle.
    #[error("circular dependency detected: step {0}")]
    Cycle(String),
    /// The step would close a cycle through a flow step's child-flow goals: running it would
    /// start child flows without end.
    #[error("circular dependency detected through a child flow: {0}")]
    FlowCycle(String),
}

/// Whether a registration changed the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// The step is new.
    Created,
    /// The identical definition was already registered; nothing changed (decision 9).
    Unchanged,
}

fn has_scripts(step: &Step) -> bool {
    step.script.is_some() || step.predicate.is_some()
}

fn healthy(step: &Step) -> EngineEvent {
    EngineEvent::from(StepHealthChanged {
        step_id: step.id.clone(),
        status: HealthStatus::Healthy,
        error: String::new(),
    })
}

pub(crate) fn register(
    state: &EngineState,
    step: &Step,
) -> Result<(Vec<EngineEvent>, Registration), CatalogError> {
    if let Some(existing) = state.steps.get(&step.id) {
        return if existing == step {
            Ok((Vec::new(), Registration::Unchanged))
        } else {
            Err(CatalogError::StepExists(step.id.clone()))
        };
    }
    check_consistency(state, step)?;
    let mut events = vec![EngineEvent::from(StepRegistered { step: step.clone() })];
    if has_scripts(step) {
        events.push(healthy(step));
    }
    Ok((events, Registration::Created))
}

pub(crate) fn update(state: &EngineState, step: &Step) -> Result<Vec<EngineEvent>, CatalogError> {
    if !state.steps.contains_key(&step.id) {
        return Err(CatalogError::StepNotFound(step.id.clone()));
    }
    check_consistency(state, step)?;
    let mut events = vec![EngineEvent::from(StepUpdated { step: step.clone() })];
    let already_healthy = state
        .health
        .get(&step.id)
        .is_some_and(|h| h.status == HealthStatus::Healthy && h.error.is_empty());
    if has_scripts(step) && !already_healthy {
        events.push(healthy(step));
    }
    Ok(events)
}

pub(crate) fn unregister(
    state: &EngineState,
    step_id: &str,
) -> Result<Vec<EngineEvent>, CatalogError> {
    if !state.steps.contains_key(step_id) {
        return Err(CatalogError::StepNotFound(step_id.to_owned()));
    }
    Ok(vec![EngineEvent::from(StepUnregistered {
        step_id: step_id.to_owned(),
    })])
}

fn check_consistency(state: &EngineState, step: &Step) -> Result<(), CatalogError> {
    for (name, spec) in &step.attributes {
        let conflict = state
            .steps
            .values()
            .filter(|other| other.id != step.id)
            .filter_map(|other| other.attributes.get(name))
            .any(|other| other.attr_type != spec.attr_type);
        if conflict {
            return Err(CatalogError::TypeConflict(name.clone()));
        }
    }
    let mut steps = state.steps.clone();
    steps.insert(step.id.clone(), step.clone());
    let graph = AttributeGraph::from_steps(steps.values());
    let mut path = Vec::new();
    let mut done = BTreeSet::new();
    if let Some(cycle) = find_cycle(&steps, &graph, &step.id, &mut path, &mut done) {
        // A cycle through a flow step's goals would start child flows without end; name it.
        return Err(if cycle.iter().any(|(_, via_goal)| *via_goal) {
            CatalogError::FlowCycle(describe_cycle(&cycle))
        } else {
            CatalogError::Cycle(step.id.clone())
        });
    }
    Ok(())
}

/// `a -> b (child flow goal) -> a`: the steps of a cycle and how each depends on the next.
fn describe_cycle(cycle: &[(String, bool)]) -> String {
    let mut text = String::new();
    for (step_id, via_goal) in cycle {
        if !text.is_empty() {
            text.push_str(if *via_goal {
                " -> (child flow goal) "
            } else {
                " -> (input) "
            });
        }
        text.push_str(step_id);
    }
    text
}

/// Depth-first from `step_id` along what a step depends on: the providers of its inputs
/// (required and optional), and for a flow step the goals of its child flow (a child flow
/// runs those goals and, through them, whatever they depend on). Returns the cycle found, as
/// steps with whether each was reached through a child-flow goal.
fn find_cycle(
    steps: &std::collections::BTreeMap<String, Step>,
    graph: &AttributeGraph,
    step_id: &str,
    path: &mut Vec<(String, bool)>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<(String, bool)>> {
    if let Some(start) = path.iter().position(|(id, _)| id == step_id) {
        // `path` holds each step with the kind of edge leaving it; the cycle lists each step
        // with the kind of edge that reached it, back to the start.
        let on_cycle = path.get(start..).unwrap_or_default();
        let mut cycle = vec![(step_id.to_owned(), false)];
        for (index, (_, via_goal)) in on_cycle.iter().enumerate() {
            let reached = on_cycle
                .get(index + 1)
                .map_or(step_id, |(id, _)| id.as_str());
            cycle.push((reached.to_owned(), *via_goal));
        }
        return Some(cycle);
    }
    if done.contains(step_id) {
        return None;
    }
    let step = steps.get(step_id)?;
    let mut next: Vec<(String, bool)> = Vec::new();
    for (name, _) in step.inputs() {
        next.extend(graph.providers(name).iter().map(|p| (p.clone(), false)));
    }
    if let Some(flow) = &step.flow {
        next.extend(flow.goals.iter().map(|goal| (goal.clone(), true)));
    }
    for (dependency, goal_edge) in next {
        path.push((step_id.to_owned(), goal_edge));
        let found = find_cycle(steps, graph, &dependency, path, done);
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    done.insert(step_id.to_owned());
    None
}
