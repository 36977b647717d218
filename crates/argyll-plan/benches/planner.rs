//! Planning cost: the quickstart shape, and a 3-step chain inside a catalog of 1,000 steps.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::hint::black_box;

use argyll_model::{Args, AttributeGraph, AttributeSpec, AttributeType, Step};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn catalog(steps: Vec<Step>) -> (BTreeMap<String, Step>, AttributeGraph) {
    let graph = AttributeGraph::from_steps(&steps);
    (
        steps.into_iter().map(|s| (s.id.clone(), s)).collect(),
        graph,
    )
}

fn chain_step(id: &str, input: Option<&str>, output: &str) -> Step {
    let mut step = Step::sync(id, "http://svc")
        .with_attribute(output, AttributeSpec::output(AttributeType::Any));
    if let Some(input) = input {
        step = step.with_attribute(input, AttributeSpec::required(AttributeType::Any));
    }
    step
}

fn bench_planner(c: &mut Criterion) {
    let hello = Step::script(
        "hello",
        argyll_model::ScriptLanguage::Ale,
        "{:greeting name}",
    )
    .with_attribute("name", AttributeSpec::required(AttributeType::String))
    .with_attribute("greeting", AttributeSpec::output(AttributeType::String));
    let (steps, graph) = catalog(vec![hello]);
    let goals = vec!["hello".to_owned()];
    let init: Args = [("name".to_owned(), json!("Argyll"))].into_iter().collect();
    c.bench_function("plan/quickstart", |b| {
        b.iter(|| argyll_plan::plan(black_box(&steps), &graph, &goals, &init).expect("plan"))
    });

    let mut many = vec![
        chain_step("a", None, "x"),
        chain_step("b", Some("x"), "y"),
        chain_step("c", Some("y"), "z"),
    ];
    for i in 0..1_000 {
        many.push(chain_step(
            &format!("noise-{i}"),
            Some(&format!("n{i}")),
            &format!("m{i}"),
        ));
    }
    let (steps, graph) = catalog(many);
    let goals = vec!["c".to_owned()];
    c.bench_function("plan/chain3_in_1000_steps", |b| {
        b.iter(|| argyll_plan::plan(black_box(&steps), &graph, &goals, &Args::new()).expect("plan"))
    });
}

criterion_group!(benches, bench_planner);
criterion_main!(benches);
