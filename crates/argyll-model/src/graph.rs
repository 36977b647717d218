//! The attribute dependency graph: who provides and who consumes each attribute name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::step::Step;
use crate::wire::nullable;
use crate::{AttributeName, StepId};

/// Providers and consumers of one attribute name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttributeEdges {
    /// Steps that declare the attribute as an output.
    #[serde(default, deserialize_with = "nullable")]
    pub providers: Vec<StepId>,
    /// Steps that declare the attribute as a required or optional input.
    #[serde(default, deserialize_with = "nullable")]
    pub consumers: Vec<StepId>,
}

/// The graph over a set of steps: attribute name → its providers and consumers.
///
/// In the engine's catalog the lists keep registration order (the original's behaviour); in a
/// plan they are sorted. `const` attributes are not part of the graph: their value never comes
/// from the flow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AttributeGraph {
    edges: BTreeMap<AttributeName, AttributeEdges>,
}

impl AttributeGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the graph of `steps`, adding them in iteration order.
    pub fn from_steps<'a>(steps: impl IntoIterator<Item = &'a Step>) -> Self {
        let mut graph = Self::new();
        for step in steps {
            graph.add_step(step);
        }
        graph
    }

    /// Adds the contributions of `step` (no duplicates; existing order kept).
    pub fn add_step(&mut self, step: &Step) {
        for (name, spec) in &step.attributes {
            let list = if spec.is_output() {
                &mut self.edges.entry(name.clone()).or_default().providers
            } else if spec.is_input() {
                &mut self.edges.entry(name.clone()).or_default().consumers
            } else {
                continue;
            };
            if !list.contains(&step.id) {
                list.push(step.id.clone());
            }
        }
    }

    /// Removes every contribution of the step `step_id`; names left with no edges disappear.
    pub fn remove_step(&mut self, step_id: &str) {
        self.edges.retain(|_, edges| {
            edges.providers.retain(|id| id != step_id);
            edges.consumers.retain(|id| id != step_id);
            !(edges.providers.is_empty() && edges.consumers.is_empty())
        });
    }

    /// Replaces the contributions of `step` (used on re-registration and update).
    pub fn replace_step(&mut self, step: &Step) {
        self.remove_step(&step.id);
        self.add_step(step);
    }

    /// The edges of `name`, if any step mentions it.
    pub fn get(&self, name: &str) -> Option<&AttributeEdges> {
        self.edges.get(name)
    }

    /// Providers of `name` (empty when none).
    pub fn providers(&self, name: &str) -> &[StepId] {
        self.edges.get(name).map_or(&[], |edges| &edges.providers)
    }

    /// Consumers of `name` (empty when none).
    pub fn consumers(&self, name: &str) -> &[StepId] {
        self.edges.get(name).map_or(&[], |edges| &edges.consumers)
    }

    /// All names with their edges, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&AttributeName, &AttributeEdges)> {
        self.edges.iter()
    }

    /// Mutable access for builders of derived graphs (plans).
    pub fn entry(&mut self, name: AttributeName) -> &mut AttributeEdges {
        self.edges.entry(name).or_default()
    }

    /// Whether the graph has no names.
    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Number of attribute names.
    pub fn len(&self) -> usize {
        self.edges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::{AttributeSpec, AttributeType};

    fn step(id: &str, inputs: &[&str], outputs: &[&str]) -> Step {
        let mut step = Step::sync(id, "http://x");
        for name in inputs {
            step = step.with_attribute(*name, AttributeSpec::required(AttributeType::Any));
        }
        for name in outputs {
            step = step.with_attribute(*name, AttributeSpec::output(AttributeType::Any));
        }
        step
    }

    #[test]
    fn keeps_registration_order_without_duplicates() {
        let mut graph = AttributeGraph::new();
        graph.add_step(&step("b", &[], &["x"]));
        graph.add_step(&step("a", &[], &["x"]));
        graph.add_step(&step("b", &[], &["x"]));
        graph.add_step(&step("c", &["x"], &[]));
        assert_eq!(graph.providers("x"), ["b", "a"]);
        assert_eq!(graph.consumers("x"), ["c"]);
    }

    #[test]
    fn removal_drops_empty_names_and_replace_rebuilds() {
        let mut graph = AttributeGraph::from_steps([&step("a", &["in"], &["out"])]);
        graph.replace_step(&step("a", &["other"], &["out"]));
        assert!(graph.get("in").is_none());
        assert_eq!(graph.consumers("other"), ["a"]);
        graph.remove_step("a");
        assert!(graph.is_empty());
    }

    #[test]
    fn const_attributes_are_not_edges() {
        let s = step("a", &[], &[])
            .with_attribute("k", AttributeSpec::constant(AttributeType::Any, "1"));
        assert!(AttributeGraph::from_steps([&s]).is_empty());
    }
}
