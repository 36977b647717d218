//! Upgrades: a data directory written by each format (`tests/fixtures/format-N.tar.gz`, made by
//! `write_format_N_fixture` below and checked in) must open in every later version with all
//! it holds. When the format changes, keep these tests and their fixtures, teach the store to
//! read (or upgrade) the old format, and add a fixture of the new one.
//!
//! To write the newest fixture (only when the format is new):
//! `ARGYLL_FIXTURE_DIR=/tmp/f cargo test -p argyll-store-local --test format -- --ignored
//! write_format_2_fixture` and
//! `tar -czSf crates/argyll-store-local/tests/fixtures/format-2.tar.gz -C /tmp/f .`
//!
//! Format 2 added the index by creation time: a format-1 directory is upgraded when opened.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use argyll_events::{AggregateId, EngineEvent, Event, FlowActivated};
use argyll_model::Timestamp;
use argyll_store::conformance::{failed, started};
use argyll_store::{
    EventLog, FlowIndex, FlowIndexEntry, FlowOrder, FlowOutcome, FlowPhase, FlowQuery, Leases,
    Snapshot, Timer, Timers,
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
        goals: Vec::new(),
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
    fill(&LocalStore::open(&LocalConfig::new(Path::new(&dir))).unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes the checked-in fixture; run by hand when the format is new"]
async fn write_format_2_fixture() {
    let Some(dir) = std::env::var_os("ARGYLL_FIXTURE_DIR") else {
        return;
    };
    assert_eq!(FORMAT_VERSION, 2, "this writes the format-2 fixture");
    fill(&LocalStore::open(&LocalConfig::new(Path::new(&dir))).unwrap()).await;
}

/// What every fixture holds: engine and flow events, a snapshot, index entries in three
/// phases, a parked lease and a timer.
async fn fill(store: &LocalStore) {
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

/// Unpacks `tests/fixtures/format-<version>.tar.gz` into `dir`.
fn unpack(version: u32, dir: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/format-{version}.tar.gz"));
    let unpacked = std::process::Command::new("tar")
        .arg("-xzSf")
        .arg(&fixture)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(unpacked.success(), "tar unpacks {}", fixture.display());
    assert_eq!(
        std::fs::read_to_string(dir.join("FORMAT")).unwrap(),
        format!("argyll-local-store {version}\n")
    );
}

fn format_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("FORMAT")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_1_directory_opens_with_everything_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    unpack(1, dir.path());
    let store = LocalStore::open(&LocalConfig::new(dir.path())).unwrap();
    assert_eq!(
        format_of(dir.path()),
        format!("argyll-local-store {FORMAT_VERSION}\n"),
        "upgraded when opened"
    );
    holds_the_fixture(&store).await;
    fires_the_timer(&store).await;
    // And it takes new writes where the old ones end.
    store
        .append(&flow("active"), 1, vec![(at(7), failed("active", "new"))])
        .await
        .unwrap();
    new_flows_list_by_time(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_2_directory_opens_with_everything_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    unpack(2, dir.path());
    let store = LocalStore::open(&LocalConfig::new(dir.path())).unwrap();
    assert_eq!(format_of(dir.path()), "argyll-local-store 2\n");
    holds_the_fixture(&store).await;
    fires_the_timer(&store).await;
    store
        .append(&flow("active"), 1, vec![(at(7), failed("active", "new"))])
        .await
        .unwrap();
    new_flows_list_by_time(&store).await;
}

/// An upgrade cut short (its keys written, `FORMAT` not yet rewritten) is done again at the
/// next open, without listing a flow twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_cut_short_is_done_again() {
    let dir = tempfile::tempdir().unwrap();
    unpack(1, dir.path());
    drop(LocalStore::open(&LocalConfig::new(dir.path())).unwrap());
    std::fs::write(dir.path().join("FORMAT"), "argyll-local-store 1\n").unwrap();
    let store = LocalStore::open(&LocalConfig::new(dir.path())).unwrap();
    assert_eq!(format_of(dir.path()), "argyll-local-store 2\n");
    holds_the_fixture(&store).await;
    drop(store);
    let store = LocalStore::open(&LocalConfig::new(dir.path())).unwrap();
    holds_the_fixture(&store).await;
}

/// What [`fill`] wrote is there, and the flows list in every order.
async fn holds_the_fixture(store: &LocalStore) {
    let engine = store.load(&AggregateId::Engine).await.unwrap();
    assert_eq!(engine.tail.len(), 1);
    assert_eq!(engine.tail[0].event.event_type(), "flow_activated");
    let active = store.read(&flow("active"), 0).await.unwrap();
    assert!(!active.is_empty());
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
    // Every flow created at the same instant: ties by id, in both time orders.
    for (order, expected) in [
        (FlowOrder::OldestFirst, ["active", "child", "done"]),
        (FlowOrder::NewestFirst, ["done", "child", "active"]),
    ] {
        let page = store
            .list_flows(&FlowQuery {
                order,
                ..FlowQuery::default()
            })
            .await
            .unwrap();
        let ids: Vec<&str> = page.entries.iter().map(|e| e.flow_id.as_str()).collect();
        assert_eq!(ids, expected, "{order:?}");
    }
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
    assert_eq!(store.next_due().await.unwrap(), Some(at(60_000)));
}

/// The fixture's timer fires with its payload.
async fn fires_the_timer(store: &LocalStore) {
    let due = store.take_due(at(60_000), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(&*due[0].payload, r#"{"step":"s"}"#);
}

/// Flows indexed after the upgrade take their place in the time orders.
async fn new_flows_list_by_time(store: &LocalStore) {
    store
        .insert_flow(FlowIndexEntry {
            created_at: at(100),
            ..entry("later", FlowOutcome::Active, FlowPhase::Active)
        })
        .await
        .unwrap();
    let newest = store
        .list_flows(&FlowQuery {
            order: FlowOrder::NewestFirst,
            limit: 2,
            ..FlowQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = newest.entries.iter().map(|e| e.flow_id.as_str()).collect();
    assert_eq!(ids, ["later", "done"]);
    assert!(newest.next_after.is_some());
}
