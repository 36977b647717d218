//! Step graphs drawn as SVG: steps and attributes as nodes (a bipartite graph, so one edge per
//! attribute and role), laid out by [`crate::layout`]. Producers point at the attributes they
//! output; attributes point at the steps that need them, dashed when the input is optional.

use std::collections::BTreeMap;

use argyll_model::{AttributeRole, Step};
use maud::{Markup, html};

use crate::layout::{Graph, Layout, Point, Size, Spacing, layered};

/// Width of a step's box.
const STEP_WIDTH: f64 = 220.0;
/// Height of a step's title and of each attribute line.
const LINE: f64 = 16.0;
/// Steps beyond which a graph is not drawn (the layout's cost grows with layers × nodes; a
/// page shows its table instead).
pub(crate) const MAX_DRAWN_STEPS: usize = 300;
/// Characters of an attribute or step name shown before it is cut.
const NAME_CHARS: usize = 26;

/// What a node stands for.
#[derive(Clone, Debug, PartialEq)]
enum Node<'a> {
    Step(&'a Step),
    Attribute(&'a str),
}

/// An edge and how it is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EdgeKind {
    Output,
    Required,
    Optional,
}

/// The graph of `steps`: each step, each attribute some step outputs or takes as a required or
/// optional input, and their edges.
#[derive(Debug)]
pub(crate) struct StepGraph<'a> {
    nodes: Vec<Node<'a>>,
    edges: Vec<(usize, usize, EdgeKind)>,
    layout: Layout,
}

impl<'a> StepGraph<'a> {
    pub(crate) fn new(steps: impl IntoIterator<Item = &'a Step>) -> StepGraph<'a> {
        let steps: Vec<&'a Step> = steps.into_iter().collect();
        let mut nodes: Vec<Node<'a>> = steps.iter().copied().map(Node::Step).collect();
        let mut attributes: BTreeMap<&'a str, usize> = BTreeMap::new();
        let mut edges = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            for (name, spec) in &step.attributes {
                let kind = match spec.role {
                    AttributeRole::Output => EdgeKind::Output,
                    AttributeRole::Required => EdgeKind::Required,
                    AttributeRole::Optional => EdgeKind::Optional,
                    _ => continue,
                };
                let attribute = *attributes.entry(name.as_str()).or_insert_with(|| {
                    nodes.push(Node::Attribute(name.as_str()));
                    nodes.len() - 1
                });
                edges.push(match kind {
                    EdgeKind::Output => (index, attribute, kind),
                    _ => (attribute, index, kind),
                });
            }
        }
        let layout = if steps.len() > MAX_DRAWN_STEPS {
            Layout::default()
        } else {
            let graph = Graph {
                nodes: nodes.iter().map(size_of).collect(),
                edges: edges.iter().map(|&(from, to, _)| (from, to)).collect(),
            };
            layered(&graph, &Spacing::default())
        };
        StepGraph {
            nodes,
            edges,
            layout,
        }
    }

    /// The SVG drawing; `decorate` says how each step is shown (its state and link).
    pub(crate) fn svg(&self, decorate: &dyn Fn(&Step) -> Decoration) -> Markup {
        let steps = self
            .nodes
            .iter()
            .filter(|n| matches!(n, Node::Step(_)))
            .count();
        if steps > MAX_DRAWN_STEPS {
            return html! {
                p.summary { (steps) " steps are more than the " (MAX_DRAWN_STEPS) " a graph is drawn for: see the list." }
            };
        }
        let (width, height) = (self.layout.width.ceil(), self.layout.height.ceil());
        html! {
            svg.graph xmlns="http://www.w3.org/2000/svg" role="img"
                aria-label="Steps and the attributes they produce and consume"
                width=(width) height=(height) viewBox={ "0 0 " (width) " " (height) } {
                defs {
                    marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"
                        markerHeight="7" orient="auto-start-reverse" {
                        path d="M 0 0 L 10 5 L 0 10 z" {}
                    }
                }
                @for (route, (_, _, kind)) in self.layout.routes.iter().zip(&self.edges) {
                    @if route.len() >= 2 {
                        path class={ "edge " (edge_class(*kind)) } d=(path_of(route))
                            marker-end="url(#arrow)" {}
                    }
                }
                @for (node, placed) in self.nodes.iter().zip(&self.layout.nodes) {
                    @match node {
                        Node::Step(step) => {
                            (step_node(step, &decorate(step), placed.x, placed.y, placed.height))
                        }
                        Node::Attribute(name) => {
                            g.attribute data-attribute=(name) transform=(translate(placed.x, placed.y)) {
                                rect width=(placed.width) height=(placed.height) rx="12" {}
                                text x="12" y="16" { (cut(name)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn size_of(node: &Node<'_>) -> Size {
    match node {
        Node::Step(step) => Size {
            width: STEP_WIDTH,
            height: LINE * 2.0 + 12.0 + LINE * step.attributes.len() as f64,
        },
        Node::Attribute(name) => Size {
            width: 24.0 + 7.5 * name.chars().count().min(NAME_CHARS) as f64,
            height: 24.0,
        },
    }
}

fn step_node(step: &Step, decoration: &Decoration, x: f64, y: f64, height: f64) -> Markup {
    html! {
        a href=(decoration.href) {
            g class={ "step " (decoration.class) } data-step=(step.id) transform=(translate(x, y)) {
                title { (step.name) " (" (step.id) "), " (step.step_type.as_str()) ", " (decoration.state) }
                rect width=(STEP_WIDTH) height=(height) rx="6" {}
                circle.state cx=(STEP_WIDTH - 12.0) cy="12" r="5" {}
                text.name x="10" y="17" { (cut(&step.name)) }
                text.kind x="10" y=(LINE + 17.0) {
                    (step.step_type.as_str()) " · " (cut(&step.id))
                    @if let Some(note) = &decoration.note { " · " (note) }
                }
                @for (line, (name, spec)) in step.attributes.iter().enumerate() {
                    text class={ "attr " (spec.role.as_str()) } x="10" y=(LINE * (line as f64 + 2.0) + 21.0) {
                        (role_mark(&spec.role)) " " (cut(name))
                        @if !spec.attr_type.as_str().is_empty() { ": " (spec.attr_type.as_str()) }
                    }
                }
            }
        }
    }
}

/// How one step is shown: a CSS class for its state, the state in words, an optional note
/// (work items done / total) and where its box links to.
#[derive(Clone, Debug, Default)]
pub(crate) struct Decoration {
    pub class: String,
    pub state: String,
    pub note: Option<String>,
    pub href: String,
}

fn role_mark(role: &AttributeRole) -> &'static str {
    match role {
        AttributeRole::Required => "in",
        AttributeRole::Optional => "in?",
        AttributeRole::Const => "const",
        AttributeRole::Output => "out",
        _ => "?",
    }
}

fn edge_class(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Output => "output",
        EdgeKind::Required => "required",
        EdgeKind::Optional => "optional",
    }
}

fn translate(x: f64, y: f64) -> String {
    format!("translate({x:.1} {y:.1})")
}

/// `name` cut to [`NAME_CHARS`] characters (an ellipsis marks the cut).
fn cut(name: &str) -> String {
    if name.chars().count() <= NAME_CHARS {
        name.to_owned()
    } else {
        let mut short: String = name.chars().take(NAME_CHARS - 1).collect();
        short.push('…');
        short
    }
}

/// An SVG path through `points`, each segment a curve leaving and arriving horizontally.
fn path_of(points: &[Point]) -> String {
    let mut d = String::new();
    for (i, p) in points.iter().enumerate() {
        if i == 0 {
            d.push_str(&format!("M {:.1} {:.1}", p.x, p.y));
        } else if let Some(prev) = points.get(i - 1) {
            let dx = (p.x - prev.x) / 2.0;
            d.push_str(&format!(
                " C {:.1} {:.1} {:.1} {:.1} {:.1} {:.1}",
                prev.x + dx,
                prev.y,
                p.x - dx,
                p.y,
                p.x,
                p.y
            ));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(json: serde_json::Value) -> Step {
        serde_json::from_value(json).unwrap_or_default()
    }

    #[test]
    fn producers_and_consumers_meet_at_one_attribute_node() {
        let steps = vec![
            step(serde_json::json!({"id": "a", "name": "A", "type": "script",
                "attributes": {"x": {"role": "output", "type": "string"}}})),
            step(serde_json::json!({"id": "b", "name": "B", "type": "sync",
                "attributes": {"x": {"role": "required"}, "y": {"role": "optional"},
                               "k": {"role": "const", "default": "1"}}})),
        ];
        let graph = StepGraph::new(&steps);
        let plain = |step: &Step| Decoration {
            class: "health-unknown".into(),
            state: "unknown".into(),
            note: None,
            href: format!("#step-{}", step.id),
        };
        assert_eq!(
            graph.nodes,
            vec![
                Node::Step(&steps[0]),
                Node::Step(&steps[1]),
                Node::Attribute("x"),
                Node::Attribute("y")
            ]
        );
        assert_eq!(
            graph.edges,
            vec![
                (0, 2, EdgeKind::Output),
                (2, 1, EdgeKind::Required),
                (3, 1, EdgeKind::Optional)
            ]
        );
        let svg = graph.svg(&plain).into_string();
        assert_eq!(svg.matches("class=\"edge optional\"").count(), 1);
        assert_eq!(svg.matches("class=\"edge required\"").count(), 1);
        assert!(svg.contains("data-step=\"a\"") && svg.contains("data-attribute=\"x\""));
        assert!(svg.contains("health-unknown"));
        // The producer is left of its output, the output left of its consumer.
        let x = |n: usize| graph.layout.nodes[n].x;
        assert!(x(0) < x(2) && x(2) < x(1));
    }

    #[test]
    fn a_graph_too_large_to_draw_says_so() {
        let steps: Vec<Step> = (0..=MAX_DRAWN_STEPS)
            .map(|i| {
                step(serde_json::json!({"id": format!("s{i}"), "name": "S", "type": "script"}))
            })
            .collect();
        let svg = StepGraph::new(&steps)
            .svg(&|_| Decoration::default())
            .into_string();
        assert!(
            svg.contains("more than the 300") && !svg.contains("<svg"),
            "{svg}"
        );
    }

    #[test]
    fn long_names_are_cut_and_text_is_escaped() {
        assert_eq!(cut("short"), "short");
        assert_eq!(cut(&"n".repeat(40)).chars().count(), NAME_CHARS);
        let steps = vec![step(
            serde_json::json!({"id": "<x>", "name": "<b>", "type": "script"}),
        )];
        let svg = StepGraph::new(&steps)
            .svg(&|_| Decoration::default())
            .into_string();
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }
}
