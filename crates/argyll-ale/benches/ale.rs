//! Ale costs on the engine's hot paths: compiling a step's script at registration, and running
//! compiled predicates and scripts per work item, JSON inputs in and JSON outputs out (the
//! target is 2 million predicate evaluations per second on one core, i.e. ≤ 500 ns each).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use argyll_ale::{Limits, Program};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Map, Value as Json, json};

fn inputs(value: Json) -> Map<String, Json> {
    value.as_object().cloned().expect("an object")
}

fn bench_ale(c: &mut Criterion) {
    c.bench_function("ale/compile/greeting", |b| {
        b.iter(|| Program::compile(black_box("{:greeting name}"), &["name"]).expect("compiles"))
    });

    let limits = Limits::default();
    let mut group = c.benchmark_group("ale/run");
    group.throughput(Throughput::Elements(1));

    let predicate = Program::compile("(> amount 100)", &["amount"]).expect("compiles");
    let big_order = inputs(json!({"amount": 150, "customer": "c-17"}));
    assert!(predicate.run_predicate(&big_order, limits).expect("runs"));
    group.bench_function("predicate/amount_gt_100", |b| {
        b.iter(|| {
            predicate
                .run_predicate(black_box(&big_order), limits)
                .expect("runs")
        })
    });

    // The same predicate from the JSON text of the inputs, as a store or HTTP body holds them.
    let text = r#"{"amount": 150, "customer": "c-17"}"#;
    group.bench_function("predicate/amount_gt_100_from_json_text", |b| {
        b.iter(|| {
            let parsed: Map<String, Json> = serde_json::from_str(black_box(text)).expect("json");
            predicate.run_predicate(&parsed, limits).expect("runs")
        })
    });

    let script = Program::compile(
        "{:total (* price qty) :big (> (* price qty) 1000)}",
        &["price", "qty"],
    )
    .expect("compiles");
    let line = inputs(json!({"price": 12.5, "qty": 100}));
    let outputs = script.run_script(&line, limits).expect("runs");
    assert_eq!(Json::Object(outputs), json!({"total": 1250.0, "big": true}));
    group.bench_function("script/total_and_big", |b| {
        b.iter(|| script.run_script(black_box(&line), limits).expect("runs"))
    });
    group.bench_function("script/total_and_big_to_json_text", |b| {
        b.iter(|| {
            let outputs = script.run_script(black_box(&line), limits).expect("runs");
            serde_json::to_string(&outputs).expect("json")
        })
    });
    group.finish();
}

criterion_group!(benches, bench_ale);
criterion_main!(benches);
