//! Script runs through the runner, as the engine makes them: Lua with pooled states (target:
//! 300k runs per second on one core, i.e. ≤ 3.3 µs each) and Ale for comparison.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::hint::black_box;

use argyll_script::{ScriptLimits, ScriptRunner};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

fn bench_scripts(c: &mut Criterion) {
    let runner = ScriptRunner::new(ScriptLimits::default());
    let args = vec!["x".to_owned()];
    let inputs = json!({"x": 2.0}).as_object().cloned().unwrap();
    let mut group = c.benchmark_group("script");
    group.throughput(Throughput::Elements(1));

    let lua = "return {result = (x or 0) * 3}";
    assert_eq!(
        runner.execute_blocking("lua", lua, &args, &inputs).unwrap()["result"],
        6
    );
    group.bench_function("lua/execute_via_runner", |b| {
        b.iter(|| {
            runner
                .execute_blocking("lua", black_box(lua), &args, black_box(&inputs))
                .unwrap()
        })
    });
    let compiled = runner.compile("lua", lua, &args).unwrap();
    let limits = *runner.limits();
    group.bench_function("lua/execute_compiled", |b| {
        b.iter(|| compiled.execute(black_box(&inputs), &limits).unwrap())
    });
    let predicate = runner.compile("lua", "return x > 1", &args).unwrap();
    group.bench_function("lua/predicate_compiled", |b| {
        b.iter(|| {
            predicate
                .evaluate_predicate(black_box(&inputs), &limits)
                .unwrap()
        })
    });

    let ale = "{:result (* (or x 0) 3)}";
    assert_eq!(
        runner.execute_blocking("ale", ale, &args, &inputs).unwrap()["result"],
        6.0
    );
    group.bench_function("ale/execute_via_runner", |b| {
        b.iter(|| {
            runner
                .execute_blocking("ale", black_box(ale), &args, black_box(&inputs))
                .unwrap()
        })
    });
    let ale_predicate = runner.compile("ale", "(> x 1)", &args).unwrap();
    group.bench_function("ale/predicate_compiled", |b| {
        b.iter(|| {
            ale_predicate
                .evaluate_predicate(black_box(&inputs), &limits)
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_scripts);
criterion_main!(benches);
