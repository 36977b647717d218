//! A layered layout of a directed graph, drawn left to right (Sugiyama's method, kept small):
//! cycles are broken by reversing the back edges of a depth-first search, nodes get the layer of
//! their longest path from a source, edges longer than one layer pass through virtual nodes,
//! barycenter sweeps reduce crossings (keeping the order with the fewest), and nodes are placed
//! near their neighbours without overlapping. Pure: no I/O, no panics, work bounded by the
//! size of the graph.
//!
//! Written here rather than taken from a crate: `rust-sugiyama` documents panics on some inputs
//! and `unwrap`s throughout its algorithm (a console page must not fall over on a catalog), and
//! the dagre ports were weeks old; this needs ~300 lines and gives edge routes too.

use std::collections::VecDeque;

/// Sweeps of crossing reduction (each one down and up).
const SWEEPS: usize = 8;
/// Passes placing nodes near their neighbours.
const PLACEMENT_PASSES: usize = 4;
/// Virtual nodes beyond which long edges are drawn straight (bounds work on huge graphs).
const MAX_VIRTUAL_NODES: usize = 20_000;

/// A node's size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Size {
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// A graph to lay out: nodes by index, edges as `(from, to)` indices. Edges naming a missing
/// node and self-loops are left out of the layout (their routes are empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// The nodes' sizes.
    pub nodes: Vec<Size>,
    /// The edges.
    pub edges: Vec<(usize, usize)>,
}

/// Gaps of the layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spacing {
    /// Between layers (horizontal).
    pub layer_gap: f64,
    /// Between nodes of one layer (vertical).
    pub node_gap: f64,
    /// Around the drawing.
    pub margin: f64,
}

impl Default for Spacing {
    fn default() -> Self {
        Spacing {
            layer_gap: 60.0,
            node_gap: 18.0,
            margin: 16.0,
        }
    }
}

/// A point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Horizontal.
    pub x: f64,
    /// Vertical.
    pub y: f64,
}

/// A placed node: its top-left corner, size and layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placed {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
    /// Its layer (0 = leftmost).
    pub layer: usize,
}

/// The layout of a graph: nodes in input order, one route per input edge (in input order) from
/// the source's right side to the target's left side, and the drawing's size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    /// The nodes.
    pub nodes: Vec<Placed>,
    /// The edges' routes (empty for an edge left out).
    pub routes: Vec<Vec<Point>>,
    /// Width of the drawing.
    pub width: f64,
    /// Height of the drawing.
    pub height: f64,
}

/// Lays `graph` out in layers from left to right.
pub fn layered(graph: &Graph, spacing: &Spacing) -> Layout {
    let count = graph.nodes.len();
    let edges = acyclic_edges(graph);
    let layer_of = longest_path_layers(count, &edges);
    let mut virtual_graph = VirtualGraph::new(graph, &edges, &layer_of);
    virtual_graph.reduce_crossings();
    let positions = virtual_graph.place(spacing);
    let nodes: Vec<Placed> = (0..count)
        .map(|node| {
            let size = graph.nodes.get(node).copied().unwrap_or(Size {
                width: 0.0,
                height: 0.0,
            });
            let center = positions
                .get(node)
                .copied()
                .unwrap_or(Point { x: 0.0, y: 0.0 });
            Placed {
                x: center.x - size.width / 2.0,
                y: center.y - size.height / 2.0,
                width: size.width,
                height: size.height,
                layer: layer_of.get(node).copied().unwrap_or(0),
            }
        })
        .collect();
    let routes = graph
        .edges
        .iter()
        .enumerate()
        .map(|(index, _)| virtual_graph.route(index, &nodes, &positions))
        .collect();
    let width = nodes.iter().map(|n| n.x + n.width).fold(0.0, f64::max) + spacing.margin;
    let height = positions
        .iter()
        .zip(virtual_graph.heights.iter())
        .map(|(p, h)| p.y + h / 2.0)
        .fold(0.0, f64::max)
        + spacing.margin;
    Layout {
        nodes,
        routes,
        width,
        height,
    }
}

/// An edge kept for layering: the input edge it stands for, and whether it was reversed to
/// break a cycle.
#[derive(Clone, Copy, Debug)]
struct KeptEdge {
    input: usize,
    from: usize,
    to: usize,
    reversed: bool,
}

/// The input edges without self-loops and dangling ends, with the back edges of a depth-first
/// search (in node order) reversed so that the graph has no cycle.
fn acyclic_edges(graph: &Graph) -> Vec<KeptEdge> {
    let count = graph.nodes.len();
    let mut outgoing: Vec<Vec<(usize, usize)>> = vec![Vec::new(); count];
    for (input, &(from, to)) in graph.edges.iter().enumerate() {
        if from != to
            && from < count
            && to < count
            && let Some(list) = outgoing.get_mut(from)
        {
            list.push((input, to));
        }
    }
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state = vec![0u8; count];
    let mut reversed = vec![false; graph.edges.len()];
    for root in 0..count {
        if state.get(root).copied() != Some(0) {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        set(&mut state, root, 1);
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            let out = outgoing.get(node).map_or(&[][..], Vec::as_slice);
            if let Some(&(input, to)) = out.get(*next) {
                *next += 1;
                match state.get(to).copied() {
                    Some(0) => {
                        set(&mut state, to, 1);
                        stack.push((to, 0));
                    }
                    Some(1) => set(&mut reversed, input, true),
                    _ => {}
                }
            } else {
                set(&mut state, node, 2);
                stack.pop();
            }
        }
    }
    let mut kept = Vec::new();
    for (input, out) in outgoing.iter().enumerate().flat_map(|(from, out)| {
        out.iter()
            .map(move |&(input, to)| (input, (from, to)))
            .collect::<Vec<_>>()
    }) {
        let (from, to) = out;
        let flip = reversed.get(input).copied().unwrap_or(false);
        kept.push(KeptEdge {
            input,
            from: if flip { to } else { from },
            to: if flip { from } else { to },
            reversed: flip,
        });
    }
    kept.sort_by_key(|edge| edge.input);
    kept
}

fn set<T>(slice: &mut [T], index: usize, value: T) {
    if let Some(slot) = slice.get_mut(index) {
        *slot = value;
    }
}

/// Each node's layer: the length of its longest path from a source (Kahn's order).
fn longest_path_layers(count: usize, edges: &[KeptEdge]) -> Vec<usize> {
    let mut incoming = vec![0usize; count];
    let mut outgoing: Vec<Vec<usize>> = vec![Vec::new(); count];
    for edge in edges {
        if let (Some(n), Some(out)) = (incoming.get_mut(edge.to), outgoing.get_mut(edge.from)) {
            *n += 1;
            out.push(edge.to);
        }
    }
    let mut layer = vec![0usize; count];
    let mut ready: VecDeque<usize> = (0..count)
        .filter(|&n| incoming.get(n) == Some(&0))
        .collect();
    while let Some(node) = ready.pop_front() {
        let here = layer.get(node).copied().unwrap_or(0);
        for &to in outgoing.get(node).map_or(&[][..], Vec::as_slice) {
            if let Some(l) = layer.get_mut(to) {
                *l = (*l).max(here + 1);
            }
            if let Some(n) = incoming.get_mut(to) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.push_back(to);
                }
            }
        }
    }
    layer
}

/// The graph with virtual nodes on long edges: every segment joins adjacent layers.
#[derive(Debug)]
struct VirtualGraph {
    /// Nodes of each layer, in order (real nodes first by index, virtual ones after).
    layers: Vec<Vec<usize>>,
    /// Each node's layer.
    layer_of: Vec<usize>,
    /// Each node's width and height (virtual nodes: 0 × a small height).
    widths: Vec<f64>,
    heights: Vec<f64>,
    /// Segments by upper (left) node and by lower (right) node.
    successors: Vec<Vec<usize>>,
    predecessors: Vec<Vec<usize>>,
    /// For each input edge: the chain of nodes from its layered source to its layered target,
    /// and whether it runs against the input direction; empty when left out.
    chains: Vec<(Vec<usize>, bool)>,
}

impl VirtualGraph {
    fn new(graph: &Graph, edges: &[KeptEdge], layer_of: &[usize]) -> VirtualGraph {
        let count = graph.nodes.len();
        let mut layer_of = layer_of.to_vec();
        let mut widths: Vec<f64> = graph.nodes.iter().map(|s| s.width.max(0.0)).collect();
        let mut heights: Vec<f64> = graph.nodes.iter().map(|s| s.height.max(0.0)).collect();
        let mut successors = vec![Vec::new(); count];
        let mut predecessors = vec![Vec::new(); count];
        let mut chains = vec![(Vec::new(), false); graph.edges.len()];
        let span_total: usize = edges
            .iter()
            .map(|e| {
                let from = layer_of.get(e.from).copied().unwrap_or(0);
                let to = layer_of.get(e.to).copied().unwrap_or(0);
                to.saturating_sub(from).saturating_sub(1)
            })
            .sum();
        let with_virtual = span_total <= MAX_VIRTUAL_NODES;
        for edge in edges {
            let from_layer = layer_of.get(edge.from).copied().unwrap_or(0);
            let to_layer = layer_of.get(edge.to).copied().unwrap_or(0);
            let mut chain = vec![edge.from];
            if with_virtual {
                for layer in from_layer + 1..to_layer {
                    let id = layer_of.len();
                    layer_of.push(layer);
                    widths.push(0.0);
                    heights.push(4.0);
                    successors.push(Vec::new());
                    predecessors.push(Vec::new());
                    chain.push(id);
                }
            }
            chain.push(edge.to);
            for pair in chain.windows(2) {
                if let [upper, lower] = *pair {
                    if let Some(s) = successors.get_mut(upper) {
                        s.push(lower);
                    }
                    if let Some(p) = predecessors.get_mut(lower) {
                        p.push(upper);
                    }
                }
            }
            set(&mut chains, edge.input, (chain, edge.reversed));
        }
        let depth = layer_of.iter().copied().max().map_or(0, |m| m + 1);
        let mut layers = vec![Vec::new(); depth];
        for (node, &layer) in layer_of.iter().enumerate() {
            if let Some(list) = layers.get_mut(layer) {
                list.push(node);
            }
        }
        VirtualGraph {
            layers,
            layer_of,
            widths,
            heights,
            successors,
            predecessors,
            chains,
        }
    }

    /// Barycenter sweeps down and up, keeping the order with the fewest crossings.
    fn reduce_crossings(&mut self) {
        let mut best = self.layers.clone();
        let mut best_crossings = self.crossings();
        for _ in 0..SWEEPS {
            if best_crossings == 0 {
                break;
            }
            for layer in 1..self.layers.len() {
                self.sort_by_neighbours(layer, true);
            }
            for layer in (0..self.layers.len().saturating_sub(1)).rev() {
                self.sort_by_neighbours(layer, false);
            }
            let crossings = self.crossings();
            if crossings < best_crossings {
                best_crossings = crossings;
                best.clone_from(&self.layers);
            }
        }
        self.layers = best;
    }

    /// Orders `layer` by the mean position of each node's neighbours in the layer before
    /// (`use_predecessors`) or after it; nodes without such neighbours keep their place.
    fn sort_by_neighbours(&mut self, layer: usize, use_predecessors: bool) {
        let neighbour_layer = if use_predecessors {
            layer.checked_sub(1)
        } else {
            Some(layer + 1)
        };
        let Some(positions) = neighbour_layer.map(|l| self.positions_in(l)) else {
            return;
        };
        let Some(nodes) = self.layers.get(layer) else {
            return;
        };
        let mut keyed: Vec<(f64, usize, usize)> = nodes
            .iter()
            .enumerate()
            .map(|(index, &node)| {
                let neighbours = if use_predecessors {
                    self.predecessors.get(node)
                } else {
                    self.successors.get(node)
                }
                .map_or(&[][..], Vec::as_slice);
                let known: Vec<f64> = neighbours
                    .iter()
                    .filter_map(|&n| positions.get(n).copied().flatten())
                    .map(|p| p as f64)
                    .collect();
                let key = if known.is_empty() {
                    index as f64
                } else {
                    known.iter().sum::<f64>() / known.len() as f64
                };
                (key, index, node)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        if let Some(list) = self.layers.get_mut(layer) {
            *list = keyed.into_iter().map(|(_, _, node)| node).collect();
        }
    }

    /// Position of every node within its layer, for the nodes of `layer` (others `None`).
    fn positions_in(&self, layer: usize) -> Vec<Option<usize>> {
        let mut positions = vec![None; self.layer_of.len()];
        for (index, &node) in self
            .layers
            .get(layer)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .enumerate()
        {
            set(&mut positions, node, Some(index));
        }
        positions
    }

    /// Edge crossings between all adjacent layers (inversions of segment ends, counted with a
    /// Fenwick tree: O(segments × log nodes)).
    fn crossings(&self) -> usize {
        let mut total = 0;
        for layer in 0..self.layers.len().saturating_sub(1) {
            let upper = self.positions_in(layer);
            let lower = self.positions_in(layer + 1);
            let mut segments: Vec<(usize, usize)> = Vec::new();
            for &node in self.layers.get(layer).map_or(&[][..], Vec::as_slice) {
                let Some(Some(from)) = upper.get(node).copied() else {
                    continue;
                };
                for successor in self.successors.get(node).map_or(&[][..], Vec::as_slice) {
                    if let Some(Some(to)) = lower.get(*successor).copied() {
                        segments.push((from, to));
                    }
                }
            }
            segments.sort_unstable();
            let width = self.layers.get(layer + 1).map_or(0, Vec::len);
            let mut tree = vec![0usize; width + 1];
            for (seen, &(_, to)) in segments.iter().enumerate() {
                // Segments already seen ending strictly after `to` cross this one.
                let mut at_or_before = 0;
                let mut i = to + 1;
                while i > 0 {
                    at_or_before += tree.get(i).copied().unwrap_or(0);
                    i -= i & i.wrapping_neg();
                }
                total += seen - at_or_before;
                let mut i = to + 1;
                while i <= width {
                    if let Some(slot) = tree.get_mut(i) {
                        *slot += 1;
                    }
                    i += i & i.wrapping_neg();
                }
            }
        }
        total
    }

    /// Centres of every node: layers side by side, each node near the mean of its neighbours'
    /// centres, nodes of a layer in order and at least `node_gap` apart.
    fn place(&self, spacing: &Spacing) -> Vec<Point> {
        let mut centers = vec![Point { x: 0.0, y: 0.0 }; self.layer_of.len()];
        let mut x = spacing.margin;
        for nodes in &self.layers {
            let width = nodes
                .iter()
                .filter_map(|&n| self.widths.get(n))
                .copied()
                .fold(0.0, f64::max);
            for &node in nodes {
                if let Some(c) = centers.get_mut(node) {
                    c.x = x + width / 2.0;
                }
            }
            x += width + spacing.layer_gap;
        }
        for nodes in &self.layers {
            let mut y = spacing.margin;
            for &node in nodes {
                let height = self.heights.get(node).copied().unwrap_or(0.0);
                if let Some(c) = centers.get_mut(node) {
                    c.y = y + height / 2.0;
                }
                y += height + spacing.node_gap;
            }
        }
        for pass in 0..PLACEMENT_PASSES {
            let downwards = pass % 2 == 0;
            let order: Vec<usize> = if downwards {
                (1..self.layers.len()).collect()
            } else {
                (0..self.layers.len().saturating_sub(1)).rev().collect()
            };
            for layer in order {
                self.place_layer(layer, downwards, spacing, &mut centers);
            }
        }
        let top = centers
            .iter()
            .zip(&self.heights)
            .map(|(c, h)| c.y - h / 2.0)
            .fold(f64::INFINITY, f64::min);
        if top.is_finite() {
            let shift = spacing.margin - top;
            for c in &mut centers {
                c.y += shift;
            }
        }
        centers
    }

    /// Moves the nodes of `layer` towards their neighbours in the previous (`downwards`) or next
    /// layer, keeping their order and gaps.
    fn place_layer(&self, layer: usize, downwards: bool, spacing: &Spacing, centers: &mut [Point]) {
        let Some(nodes) = self.layers.get(layer) else {
            return;
        };
        let wanted: Vec<f64> = nodes
            .iter()
            .map(|&node| {
                let neighbours = if downwards {
                    self.predecessors.get(node)
                } else {
                    self.successors.get(node)
                }
                .map_or(&[][..], Vec::as_slice);
                let ys: Vec<f64> = neighbours
                    .iter()
                    .filter_map(|&n| centers.get(n).map(|c| c.y))
                    .collect();
                if ys.is_empty() {
                    centers.get(node).map_or(0.0, |c| c.y)
                } else {
                    ys.iter().sum::<f64>() / ys.len() as f64
                }
            })
            .collect();
        // Top to bottom, each node at its wanted place or just below the one before; then
        // bottom to top so a crowded end does not push everything down.
        let half = |node: usize| self.heights.get(node).copied().unwrap_or(0.0) / 2.0;
        let mut placed = wanted.clone();
        for i in 1..nodes.len() {
            if let (Some(&prev), Some(&node), Some(&before)) =
                (nodes.get(i - 1), nodes.get(i), placed.get(i - 1))
            {
                let lowest = before + half(prev) + spacing.node_gap + half(node);
                if let Some(y) = placed.get_mut(i) {
                    *y = y.max(lowest);
                }
            }
        }
        let mut lifted = wanted;
        for i in (0..nodes.len()).rev() {
            if let (Some(&node), Some(&down)) = (nodes.get(i), placed.get(i)) {
                let mut y = lifted.get(i).copied().unwrap_or(down);
                if let (Some(&next), Some(&after)) = (nodes.get(i + 1), lifted.get(i + 1)) {
                    y = y.min(after - half(next) - spacing.node_gap - half(node));
                }
                set(&mut lifted, i, y);
            }
        }
        for (i, &node) in nodes.iter().enumerate() {
            let down = placed.get(i).copied().unwrap_or(0.0);
            let up = lifted.get(i).copied().unwrap_or(down);
            if let Some(c) = centers.get_mut(node) {
                c.y = (down + up) / 2.0;
            }
        }
        // The average of two valid placements can still crowd: restore the gaps downwards.
        for i in 1..nodes.len() {
            if let (Some(&prev), Some(&node)) = (nodes.get(i - 1), nodes.get(i)) {
                let lowest = centers.get(prev).map_or(0.0, |c| c.y)
                    + half(prev)
                    + spacing.node_gap
                    + half(node);
                if let Some(c) = centers.get_mut(node) {
                    c.y = c.y.max(lowest);
                }
            }
        }
    }

    /// The route of input edge `index`: from its source's right side through its virtual nodes
    /// to its target's left side.
    fn route(&self, index: usize, nodes: &[Placed], centers: &[Point]) -> Vec<Point> {
        let Some((chain, reversed)) = self.chains.get(index) else {
            return Vec::new();
        };
        let (Some(&first), Some(&last)) = (chain.first(), chain.last()) else {
            return Vec::new();
        };
        let mut points = Vec::with_capacity(chain.len());
        if let Some(n) = nodes.get(first) {
            points.push(Point {
                x: n.x + n.width,
                y: n.y + n.height / 2.0,
            });
        }
        for node in chain.iter().skip(1).take(chain.len().saturating_sub(2)) {
            if let Some(c) = centers.get(*node) {
                points.push(*c);
            }
        }
        if let Some(n) = nodes.get(last) {
            points.push(Point {
                x: n.x,
                y: n.y + n.height / 2.0,
            });
        }
        if *reversed {
            points.reverse();
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes(n: usize) -> Vec<Size> {
        vec![
            Size {
                width: 100.0,
                height: 30.0
            };
            n
        ]
    }

    fn lay(nodes: usize, edges: &[(usize, usize)]) -> Layout {
        layered(
            &Graph {
                nodes: boxes(nodes),
                edges: edges.to_vec(),
            },
            &Spacing::default(),
        )
    }

    fn overlaps(a: &Placed, b: &Placed) -> bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }

    fn assert_no_overlap(layout: &Layout) {
        for (i, a) in layout.nodes.iter().enumerate() {
            for b in layout.nodes.iter().skip(i + 1) {
                assert!(!overlaps(a, b), "{a:?} overlaps {b:?}");
            }
            assert!(a.x >= 0.0 && a.y >= 0.0, "{a:?} is off the drawing");
            assert!(a.x + a.width <= layout.width && a.y + a.height <= layout.height);
        }
    }

    #[test]
    fn a_chain_runs_left_to_right_in_one_row() {
        let layout = lay(3, &[(0, 1), (1, 2)]);
        let layers: Vec<usize> = layout.nodes.iter().map(|n| n.layer).collect();
        assert_eq!(layers, vec![0, 1, 2]);
        assert!(layout.nodes[0].x < layout.nodes[1].x && layout.nodes[1].x < layout.nodes[2].x);
        assert_eq!(layout.nodes[0].y, layout.nodes[1].y);
        assert_eq!(layout.nodes[1].y, layout.nodes[2].y);
        assert_no_overlap(&layout);
    }

    #[test]
    fn a_node_sits_in_the_layer_after_its_longest_path() {
        // 0 -> 1 -> 2 -> 3 and 0 -> 3: 3 is in layer 3, the short edge gets two bends.
        let layout = lay(4, &[(0, 1), (1, 2), (2, 3), (0, 3)]);
        assert_eq!(layout.nodes[3].layer, 3);
        assert_eq!(layout.routes[3].len(), 4);
        let route = &layout.routes[3];
        assert_eq!(route[0].x, layout.nodes[0].x + 100.0);
        assert_eq!(route[3].x, layout.nodes[3].x);
        assert_no_overlap(&layout);
    }

    #[test]
    fn routes_leave_the_source_and_reach_the_target() {
        let layout = lay(3, &[(0, 2), (1, 2)]);
        for (edge, &(from, to)) in [(0usize, 2usize), (1, 2)].iter().enumerate() {
            let route = &layout.routes[edge];
            let (a, b) = (&layout.nodes[from], &layout.nodes[to]);
            assert_eq!(
                route.first(),
                Some(&Point {
                    x: a.x + a.width,
                    y: a.y + a.height / 2.0
                })
            );
            assert_eq!(
                route.last(),
                Some(&Point {
                    x: b.x,
                    y: b.y + b.height / 2.0
                })
            );
        }
    }

    #[test]
    fn a_cycle_is_laid_out_and_its_back_edge_still_runs_from_its_source() {
        let layout = lay(3, &[(0, 1), (1, 2), (2, 0)]);
        assert_no_overlap(&layout);
        let back = &layout.routes[2];
        let (two, zero) = (&layout.nodes[2], &layout.nodes[0]);
        // The reversed edge is drawn from node 2's left side back to node 0's right side.
        assert_eq!(back.first().map(|p| p.x), Some(two.x));
        assert_eq!(back.last().map(|p| p.x), Some(zero.x + zero.width));
    }

    #[test]
    fn crossings_are_removed_where_an_order_without_them_exists() {
        // Two parallel pairs given crossed: 0 -> 3, 1 -> 2 (2 is listed before 3).
        let layout = lay(4, &[(0, 3), (1, 2)]);
        let above = |a: usize, b: usize| layout.nodes[a].y < layout.nodes[b].y;
        assert_eq!(above(0, 1), above(3, 2), "{:?}", layout.nodes);
    }

    #[test]
    fn self_loops_and_dangling_edges_are_left_out() {
        let layout = lay(2, &[(0, 0), (0, 7), (9, 1), (0, 1)]);
        assert!(layout.routes[0].is_empty());
        assert!(layout.routes[1].is_empty());
        assert!(layout.routes[2].is_empty());
        assert_eq!(layout.routes[3].len(), 2);
    }

    #[test]
    fn an_empty_graph_is_just_the_margins() {
        let layout = lay(0, &[]);
        assert!(layout.nodes.is_empty());
        assert!(layout.width <= 2.0 * Spacing::default().margin);
    }

    #[test]
    fn a_wide_graph_never_overlaps() {
        // One producer feeding 30 consumers, each feeding one sink.
        let mut edges = Vec::new();
        for i in 1..=30 {
            edges.push((0, i));
            edges.push((i, 31));
        }
        let layout = lay(32, &edges);
        assert_no_overlap(&layout);
        assert_eq!(layout.nodes[31].layer, 2);
    }

    #[test]
    fn a_big_dense_graph_finishes_and_never_overlaps() {
        // 400 nodes, edges from each node to the next 5: many long edges, many crossings.
        let mut edges = Vec::new();
        for i in 0..400usize {
            for step in [1, 3, 7, 20, 90] {
                if i + step < 400 {
                    edges.push((i, i + step));
                }
            }
        }
        let layout = lay(400, &edges);
        assert_no_overlap(&layout);
        assert_eq!(layout.routes.len(), edges.len());
    }

    proptest::proptest! {
        #[test]
        fn any_graph_lays_out_without_overlaps(
            nodes in 0usize..24,
            edges in proptest::collection::vec((0usize..30, 0usize..30), 0..60),
        ) {
            let layout = lay(nodes, &edges);
            proptest::prop_assert_eq!(layout.nodes.len(), nodes);
            proptest::prop_assert_eq!(layout.routes.len(), edges.len());
            assert_no_overlap(&layout);
            for (route, &(from, to)) in layout.routes.iter().zip(&edges) {
                if from < nodes && to < nodes && from != to {
                    proptest::prop_assert!(route.len() >= 2);
                }
            }
        }
    }
}
