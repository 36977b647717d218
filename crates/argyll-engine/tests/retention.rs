//! Retention (`FLOW_RETENTION`): finished flows older than the retention leave the store —
//! events, snapshot, index entry — while younger and unfinished ones stay. The clock is a
//! manual one: the test moves time, it does not wait for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use argyll_engine::{Engine, EngineConfig};
use argyll_events::AggregateId;
use argyll_model::{AttributeSpec, AttributeType, FlowStatus, Step, Timestamp};
use argyll_store::{EmbeddedStore, EventLog, FlowIndex, FlowPhase, FlowQuery, ManualClock};
use serde_json::json;
use support::{MockRunner, ale_script, init, register, start, step, wait};

const HOUR: Duration = Duration::from_secs(3_600);

/// An Ale step doubling `x` into `y`.
fn double() -> Step {
    ale_script("double", "{:y (* 2 x)}")
        .with_attribute("x", AttributeSpec::required(AttributeType::Any))
        .with_attribute("y", AttributeSpec::output(AttributeType::Any))
}

async fn engine(
    store: &EmbeddedStore,
    clock: &Arc<ManualClock>,
    mock: &MockRunner,
    retention: Option<Duration>,
) -> Engine<EmbeddedStore> {
    let engine = Engine::builder(store.clone())
        .config(EngineConfig {
            flow_retention: retention,
            ..support::test_config()
        })
        .runner(Arc::new(mock.clone()))
        .clock(clock.clone())
        .build()
        .unwrap();
    engine.start().await.unwrap();
    engine
}

async fn listed(store: &EmbeddedStore) -> Vec<String> {
    store
        .list_flows(&FlowQuery::default())
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|entry| entry.flow_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_flows_past_the_retention_are_deleted_and_the_rest_kept() {
    let store = EmbeddedStore::new();
    let clock = Arc::new(ManualClock::starting_at(Timestamp::from_unix_millis(
        1_700_000_000_000,
    )));
    let mock = MockRunner::new();
    let _held = mock.hold("slow");
    let engine = engine(&store, &clock, &mock, None).await;
    register(&engine, vec![double(), step("slow", &["w"], &["z"])]).await;
    for id in ["old-1", "old-2"] {
        start(&engine, id, &["double"], init(json!({"x": 1}))).await;
        assert_eq!(wait(&engine, id).await.status, FlowStatus::Completed);
    }
    clock.advance(Duration::from_secs(600));
    start(&engine, "recent", &["double"], init(json!({"x": 2}))).await;
    assert_eq!(wait(&engine, "recent").await.status, FlowStatus::Completed);
    start(&engine, "running", &["slow"], init(json!({"w": 3}))).await;
    clock.advance(HOUR - Duration::from_secs(300));

    // old-* finished 65 minutes ago, recent 55, running has not finished.
    assert_eq!(engine.delete_expired_flows(HOUR).await.unwrap(), 2);
    for gone in ["old-1", "old-2"] {
        assert_eq!(engine.flow(gone).await.unwrap(), None, "{gone}");
        assert!(
            store
                .read(&AggregateId::Flow(gone.into()), 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.get_flow(gone).await.unwrap(), None);
    }
    assert_eq!(listed(&store).await, vec!["recent", "running"]);
    assert_eq!(
        engine.flow("recent").await.unwrap().map(|flow| flow.status),
        Some(FlowStatus::Completed)
    );
    assert_eq!(
        engine.delete_expired_flows(HOUR).await.unwrap(),
        0,
        "nothing else is due"
    );

    // A day later the recent one goes too; the unfinished one never does.
    clock.advance(24 * HOUR);
    assert_eq!(engine.delete_expired_flows(HOUR).await.unwrap(), 1);
    assert_eq!(listed(&store).await, vec!["running"]);
    let running = store.get_flow("running").await.unwrap().unwrap();
    assert_eq!(running.phase, FlowPhase::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_applies_its_retention_in_the_background() {
    let store = EmbeddedStore::new();
    let clock = Arc::new(ManualClock::starting_at(Timestamp::from_unix_millis(
        1_700_000_000_000,
    )));
    let mock = MockRunner::new();
    let engine = engine(&store, &clock, &mock, Some(Duration::from_secs(1))).await;
    register(&engine, vec![double()]).await;
    start(&engine, "short-lived", &["double"], init(json!({"x": 1}))).await;
    assert_eq!(
        wait(&engine, "short-lived").await.status,
        FlowStatus::Completed
    );
    assert_eq!(listed(&store).await, vec!["short-lived"]);
    clock.advance(Duration::from_secs(2));
    // The loop looks every 100 ms (a tenth of the retention, at least 100 ms): wait for its
    // effect, not for a time.
    let started = std::time::Instant::now();
    while !listed(&store).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "never deleted");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.flow("short-lived").await.unwrap(), None);
}
