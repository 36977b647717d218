//! Upgrades: a data directory written by format 1 (`tests/fixtures/format-1.tar.gz`, made by
//! `write_format_1_fixture` below and checked in) must open in every later version with all
//! it holds. When the format changes, keep this test and its fixture, teach the store to read
//! (or upgrade) the old format, and add a fixture of the new one.
//!
//! To write the fixture again (only when the format is new):
//! `ARGYLL_FIXTURE_DIR=/tmp/f cargo test -p argyll-store-local --test format -- --ignored` and
//! `tar -czSf crates/argyll-store-local/tests/fixtures/format-1.tar.gz -C /tmp/f .`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use argyll_events::{AggregateId, EngineEvent, Event, FlowActivated};
use argyll_model::Timestamp;
use argyll_store::conformance::{failed, started};
use argyll_store::{
    EventLog, FlowIndex, FlowIndexEntry, FlowOutcome, FlowPhase, FlowQuery, Leases, Snapshot,
    Timer, Timers,
};
use argyll_store_local::{FORMAT_VERSION, LocalConfig, LocalStore};

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_700_000_000_000 + millis)
}

fn flow(id: &str) -> AggregateId {
    AggregateId::Flow(id.to_owned())
}

fn entry(id: &str, outcome: FlowOutcome, phase: FlowPhase) -> FlowIndexEntry {
    FlowIndexEntry {
        flow_id: id.to_owned(),
        parent_flow_id: (id == "child").then(|| "done".to_owned()),
        outcome,
        phase,
        created_at: at(1),
        completed_at: (outcome != FlowOutcome::Active).then(|| at(5)),
        error: (outcome == FlowOutcome::Failed).then(|| "boom".to_owned()),
    }
}

fn activated(flow_id: &str) -> Event {
    Event::from(EngineEvent::from(FlowActivated {
        flow_id: flow_id.to_owned(),
        parent_flow_id: String::new(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the checked-in fixture; run by hand when the format is new"]
async fn write_format_1_fixture() {
    let Some(dir) = std::env::var_os("ARGYLL_FIXTURE_DIR") else {
        return;
    };
    assert_eq!(FORMAT_VERSION, 1, "this writes the format-1 fixture");
    let store = LocalStore::open(&LocalConfig::new(Path::new(&dir))).unwrap();
    store
        .append(&AggregateId::Engine, 0, vec![(at(0), activated("active"))])
        .await
        .unwrap();
    store
        .append(&flow("active"), 0, vec![(at(1), started("active"))])
        .await
        .unwrap();
    store
        .append(
            &flow("done"),
            0,
            vec![(at(1), started("done")), (at(2), failed("done", "first"))],
        )
        .await
        .unwrap();
    store
        .put_snapshot(
            &flow("done"),
            Snapshot {
                sequence: 1,
                state_json: r#"{"id":"done"}"#.into(),
            },
        )
        .await
        .unwrap();
    store
        .append(&flow("done"), 2, vec![(at(3), failed("done", "second"))])
        .await
        .unwrap();
    store
        .insert_flow(entry("active", FlowOutcome::Active, FlowPhase::Active))
        .await
        .unwrap();
    store
        .put_flow(entry("done", FlowOutcome::Failed, FlowPhase::Deactivated))
        .await
        .unwrap();
    store
        .put_flow(entry("child", FlowOutcome::Completed, FlowPhase::Archived))
        .await
        .unwrap();
    store
        .acquire(
            "work:active:s:t",
            "awaiting-result",
            Duration::from_secs(86_400 * 365 * 100),
            at(4),
        )
        .await
        .unwrap();
    store
        .schedule(Timer {
            key: "retry:active:s:t".into(),
            due: at(60_000),
            payload: r#"{"step":"s"}"#.into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_directory_opens_with_everything_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1.tar.gz");
    let unpacked = std::process::Command::new("tar")
        .arg("-xzSf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(unpacked.success(), "tar unpacks {}", fixture.display());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
        "argyll-local-store 1\n"
    );
    let store = LocalStore::open(&LocalConfig::new(dir.path())).unwrap();

    let engine = store.load(&AggregateId::Engine).await.unwrap();
    assert_eq!(engine.tail.len(), 1);
    assert_eq!(engine.tail[0].event.event_type(), "flow_activated");
    let active = store.read(&flow("active"), 0).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].event, started("active"));
    assert_eq!(active[0].timestamp, at(1));
    let done = store.load(&flow("done")).await.unwrap();
    assert_eq!(
        done.snapshot.as_ref().map(|s| (s.sequence, &*s.state_json)),
        Some((1, r#"{"id":"done"}"#))
    );
    assert_eq!(
        done.tail
            .iter()
            .map(|e| e.event.clone())
            .collect::<Vec<_>>(),
        vec![failed("done", "first"), failed("done", "second")]
    );
    assert_eq!(done.next_sequence, 3);

    for (id, outcome, phase) in [
        ("active", FlowOutcome::Active, FlowPhase::Active),
        ("done", FlowOutcome::Failed, FlowPhase::Deactivated),
        ("child", FlowOutcome::Completed, FlowPhase::Archived),
    ] {
        assert_eq!(
            store.get_flow(id).await.unwrap(),
            Some(entry(id, outcome, phase)),
            "{id}"
        );
    }
    let archived = store
        .list_flows(&FlowQuery {
            phases: vec![FlowPhase::Archived],
            ..FlowQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(archived.entries.len(), 1);
    assert_eq!(
        store.recently_deactivated(10).await.unwrap(),
        vec![entry("done", FlowOutcome::Failed, FlowPhase::Deactivated)]
    );
    assert!(
        !store
            .acquire("work:active:s:t", "another", Duration::from_secs(1), at(10))
            .await
            .unwrap(),
        "the parked lease is still held"
    );
    let due = store.take_due(at(60_000), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(&*due[0].payload, r#"{"step":"s"}"#);
    // And it takes new writes where the old ones end.
    store
        .append(&flow("active"), 1, vec![(at(7), failed("active", "new"))])
        .await
        .unwrap();
}
