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
    let mut on_path = BTreeSet::new();
    let mut done = BTreeSet::new();
    if reaches_cycle(&steps, &graph, &step.id, &mut on_path, &mut done) {
        return Err(CatalogError::Cycle(step.id.clone()));
    }
    Ok(())
}

/// Depth-first from `step_id` through its inputs (required and optional) to their providers.
fn reaches_cycle(
    steps: &std::collections::BTreeMap<String, Step>,
    graph: &AttributeGraph,
    step_id: &str,
    on_path: &mut BTreeSet<String>,
    done: &mut BTreeSet<String>,
) -> bool {
    if on_path.contains(step_id) {
        return true;
    }
    if done.contains(step_id) {
        return false;
    }
    let Some(step) = steps.get(step_id) else {
        return false;
    };
    on_path.insert(step_id.to_owned());
    for (name, _) in step.inputs() {
        for provider in graph.providers(name) {
            if reaches_cycle(steps, graph, provider, on_path, done) {
                return true;
            }
        }
    }
    on_path.remove(step_id);
    done.insert(step_id.to_owned());
    false
}
