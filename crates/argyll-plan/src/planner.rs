//! The backward walk from the goals (`engine.md` §4).

use std::collections::{BTreeMap, BTreeSet};

use argyll_model::{Args, AttributeGraph, ExcludedSteps, ExecutionPlan, Step, StepId};

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The goal list is empty.
    #[error("at least one goal step is required")]
    NoGoals,
    /// Some goals are not registered steps.
    #[error("step not found: [{}]", .missing.join(" "))]
    StepNotFound {
        /// The unknown goal ids, in request order.
        missing: Vec<StepId>,
    },
}

/// Computes the plan that reaches `goals` from `init`.
///
/// `steps` is the registry and `graph` its attribute graph. The walk visits, for each input of a
/// needed step, every provider that can run (all its required inputs obtainable); a provider
/// whose outputs the init values already hold is left out and reported in `excluded.satisfied`,
/// and one that cannot run is left out silently. Required inputs of a needed step that nothing
/// can provide become `required`: they must come from init. As in the original,
/// `excluded.missing` stays empty: every step the walk enters can run by construction.
/// A plan may have no steps at all (every goal's outputs are in init).
pub fn plan(
    steps: &BTreeMap<StepId, Step>,
    graph: &AttributeGraph,
    goals: &[StepId],
    init: &Args,
) -> Result<ExecutionPlan, PlanError> {
    if goals.is_empty() {
        return Err(PlanError::NoGoals);
    }
    let missing: Vec<StepId> = goals
        .iter()
        .filter(|goal| !steps.contains_key(*goal))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(PlanError::StepNotFound { missing });
    }
    let mut walk = Walk::new(steps, graph, init, goals);
    for goal in goals {
        walk.visit(goal);
    }
    Ok(walk.into_plan(goals))
}

struct Walk<'a> {
    steps: &'a BTreeMap<StepId, Step>,
    graph: &'a AttributeGraph,
    init: &'a Args,
    /// Attribute names obtainable from init or from a runnable step.
    available: BTreeSet<&'a str>,
    runnable: BTreeSet<&'a str>,
    visited: BTreeSet<&'a str>,
    included: BTreeSet<&'a str>,
    missing_inputs: BTreeSet<&'a str>,
}

impl<'a> Walk<'a> {
    fn new(
        steps: &'a BTreeMap<StepId, Step>,
        graph: &'a AttributeGraph,
        init: &'a Args,
        goals: &'a [StepId],
    ) -> Self {
        let mut walk = Walk {
            steps,
            graph,
            init,
            available: init.keys().map(String::as_str).collect(),
            runnable: BTreeSet::new(),
            visited: BTreeSet::new(),
            included: BTreeSet::new(),
            missing_inputs: BTreeSet::new(),
        };
        walk.find_runnable(goals);
        walk
    }

    /// Fixpoint: a step can run when all its required inputs are available; its outputs then
    /// become available. Only the backward closure of the goals can matter, so only it is scanned.
    fn find_runnable(&mut self, goals: &'a [StepId]) {
        let closure = self.backward_closure(goals);
        let mut changed = true;
        while changed {
            changed = false;
            for step in &closure {
                if self.runnable.contains(step.id.as_str()) {
                    continue;
                }
                if step
                    .required_inputs()
                    .all(|name| self.available.contains(name.as_str()))
                {
                    self.runnable.insert(step.id.as_str());
                    self.available.extend(step.outputs().map(String::as_str));
                    changed = true;
                }
            }
        }
    }

    fn backward_closure(&self, goals: &'a [StepId]) -> Vec<&'a Step> {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut closure = Vec::new();
        let mut pending: Vec<&'a str> = goals.iter().map(String::as_str).collect();
        while let Some(id) = pending.pop() {
            if !seen.insert(id) {
                continue;
            }
            let Some(step) = self.steps.get(id) else {
                continue;
            };
            closure.push(step);
            for (name, _) in step.inputs() {
                pending.extend(self.providers_of(name).map(|provider| provider.id.as_str()));
            }
        }
        closure
    }

    /// Registered providers of `name`, sorted by id (independent of registration order).
    fn providers_of(&self, name: &str) -> impl Iterator<Item = &'a Step> + use<'a> {
        let mut ids: Vec<&'a StepId> = self.graph.providers(name).iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let steps = self.steps;
        ids.into_iter().filter_map(move |id| steps.get(id))
    }

    fn in_init(&self, name: &str) -> bool {
        self.init.contains_key(name)
    }

    fn outputs_all_in_init(&self, step: &Step) -> bool {
        let mut outputs = step.outputs().peekable();
        outputs.peek().is_some() && outputs.all(|name| self.in_init(name))
    }

    fn visit(&mut self, id: &'a str) {
        if !self.visited.insert(id) {
            return;
        }
        let Some(step) = self.steps.get(id) else {
            return;
        };
        if self.outputs_all_in_init(step) {
            // Nothing to produce. The original still walked such a step's inputs, planning
            // providers (and demanding init values) that nothing needs.
            return;
        }
        for (name, spec) in step.inputs() {
            if self.in_init(name) {
                // Providers made redundant by init are recorded as excluded, not walked.
                for provider in self.providers_of(name) {
                    if self.outputs_all_in_init(provider) {
                        self.visited.insert(provider.id.as_str());
                    }
                }
                continue;
            }
            let mut any_runnable = false;
            for provider in self.providers_of(name) {
                if self.runnable.contains(provider.id.as_str()) {
                    any_runnable = true;
                    self.visit(provider.id.as_str());
                }
            }
            if !any_runnable && spec.is_required() {
                self.missing_inputs.insert(name.as_str());
            }
        }
        self.included.insert(id);
    }

    fn into_plan(self, goals: &[StepId]) -> ExecutionPlan {
        let steps: BTreeMap<StepId, Step> = self
            .included
            .iter()
            .filter_map(|id| self.steps.get(*id))
            .map(|step| (step.id.clone(), step.clone()))
            .collect();

        let mut attributes = AttributeGraph::new();
        for step in steps.values() {
            for name in step.outputs() {
                attributes
                    .entry(name.clone())
                    .providers
                    .push(step.id.clone());
            }
        }
        for step in steps.values() {
            for (name, _) in step.inputs() {
                let has_provider = attributes
                    .get(name)
                    .is_some_and(|edges| !edges.providers.is_empty());
                if self.in_init(name) || has_provider {
                    attributes
                        .entry(name.clone())
                        .consumers
                        .push(step.id.clone());
                }
            }
        }

        let mut excluded = ExcludedSteps::default();
        for id in &self.visited {
            if self.included.contains(id) {
                continue;
            }
            if let Some(step) = self.steps.get(*id).filter(|s| self.outputs_all_in_init(s)) {
                excluded
                    .satisfied
                    .insert(step.id.clone(), step.outputs().cloned().collect());
            }
        }
        ExecutionPlan {
            goals: goals.to_vec(),
            required: self
                .missing_inputs
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
            steps,
            attributes,
            excluded,
        }
    }
}
