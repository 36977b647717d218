//! Upgrade safety: checked-in logs in every supported stored format replay to their states.
//! See `fixtures/README.md` before touching anything here.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::fs;
use std::path::{Path, PathBuf};

use argyll_events::{Projection, decode_stored};
use argyll_model::{EngineState, FlowState, Timestamp};
use serde::Serialize;
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn replay_file<P: Projection + Serialize>(events: &Path) -> Value {
    let text = fs::read_to_string(events).expect("fixture readable");
    let mut state = P::default();
    for (line_no, line) in text.lines().enumerate() {
        let (at, event): (Timestamp, P::Event) = decode_stored(line)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", events.display(), line_no + 1));
        state
            .apply(&event, at)
            .unwrap_or_else(|e| panic!("{}:{}: {e}", events.display(), line_no + 1));
    }
    serde_json::to_value(&state).expect("state encodes")
}

#[test]
fn every_fixture_log_replays_to_its_recorded_state() {
    let mut checked = Vec::new();
    for version in ["v0", "v1"] {
        let dir = fixture_dir().join(version);
        let mut logs: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("fixture folder")
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.to_string_lossy().ends_with(".events.jsonl"))
            .collect();
        logs.sort();
        assert!(!logs.is_empty(), "no logs in {}", dir.display());
        for log in logs {
            let name = log
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            let state_path = dir.join(name.replace(".events.jsonl", ".state.json"));
            let expected: Value =
                serde_json::from_str(&fs::read_to_string(&state_path).expect("state file"))
                    .expect("json");
            let actual = if name.starts_with("engine") {
                replay_file::<EngineState>(&log)
            } else {
                replay_file::<Option<FlowState>>(&log)
            };
            assert_eq!(
                actual, expected,
                "replay of {version}/{name} differs from its recorded state"
            );
            checked.push(format!("{version}/{name}"));
        }
    }
    assert_eq!(
        checked,
        [
            "v0/flow-hello.events.jsonl",
            "v1/engine.events.jsonl",
            "v1/flow-hello.events.jsonl",
            "v1/flow-orders.events.jsonl"
        ]
    );
}

#[test]
fn the_v1_fixtures_cover_every_event_type() {
    let mut seen = std::collections::BTreeSet::new();
    for name in ["engine", "flow-hello", "flow-orders"] {
        let text = fs::read_to_string(fixture_dir().join(format!("v1/{name}.events.jsonl")))
            .expect("fixture");
        for line in text.lines() {
            let record: Value = serde_json::from_str(line).expect("json");
            seen.insert(record["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    let mut all: Vec<&str> =
        <argyll_events::EngineEvent as argyll_events::EventKind>::TYPES.to_vec();
    all.extend(<argyll_events::FlowEvent as argyll_events::EventKind>::TYPES);
    for event_type in all {
        assert!(
            seen.contains(event_type),
            "no fixture event of type {event_type}"
        );
    }
}
