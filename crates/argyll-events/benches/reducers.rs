//! Event costs: encoding/decoding stored records and replaying the fixture flow logs.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use argyll_events::{FlowEvent, Projection, decode_stored, encode_stored};
use argyll_model::{FlowState, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn fixture(name: &str) -> Vec<String> {
    let path = format!(
        "{}/tests/fixtures/v1/{name}.events.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .expect("fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn bench_events(c: &mut Criterion) {
    let mut group = c.benchmark_group("events");
    for name in ["flow-hello", "flow-orders"] {
        let lines = fixture(name);
        let events: Vec<(Timestamp, FlowEvent)> = lines
            .iter()
            .map(|l| decode_stored(l).expect("decodes"))
            .collect();
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(format!("decode_and_replay/{name}"), |b| {
            b.iter(|| {
                let mut state: Option<FlowState> = None;
                for line in &lines {
                    let (at, event): (Timestamp, FlowEvent) =
                        decode_stored(black_box(line)).expect("decodes");
                    state.apply(&event, at).expect("applies");
                }
                state
            })
        });
        group.bench_function(format!("replay_only/{name}"), |b| {
            b.iter(|| {
                let mut state: Option<FlowState> = None;
                for (at, event) in &events {
                    state.apply(black_box(event), *at).expect("applies");
                }
                state
            })
        });
        group.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                events
                    .iter()
                    .map(|(at, e)| encode_stored(e, *at).expect("encodes").len())
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_events);
criterion_main!(benches);
