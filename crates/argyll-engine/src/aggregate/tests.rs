//! The command loop over the store: racing commands decide on fresh state, invalid events are
//! caught before anything is written, snapshots and logs rebuild the same state.

use std::sync::Arc;

use super::{AggregateError, Current, ProjectionCache, execute, load};
use argyll_events::{AggregateId, FlowEvent, FlowFailed, FlowStarted};
use argyll_model::{Args, ExecutionPlan, FlowState, FlowStatus};
use argyll_store::SystemClock;
use argyll_store::{EmbeddedStore, EventLog, Snapshot};

fn started(flow_id: &str) -> FlowEvent {
    FlowEvent::from(FlowStarted {
        plan: ExecutionPlan::default().into(),
        init: Args::new(),
        metadata: Default::default(),
        flow_id: flow_id.into(),
    })
}

/// Start the flow unless it exists: the engine's idempotent start, as a command.
fn start_once(
    flow_id: &str,
) -> impl FnMut(&Option<FlowState>) -> Result<(Vec<FlowEvent>, bool), String> + '_ {
    move |state| {
        Ok(if state.is_some() {
            (Vec::new(), false)
        } else {
            (vec![started(flow_id)], true)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_racing_starts_record_exactly_one_flow_started() {
    let store = EmbeddedStore::new();
    let flow = AggregateId::Flow("race".into());
    let starts: Vec<_> = (0..100)
        .map(|_| {
            let store = store.clone();
            let flow = flow.clone();
            tokio::spawn(async move {
                execute(&store, &SystemClock, &flow, 1000, start_once("race"))
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for start in starts {
        let executed = start.await.unwrap();
        assert!(
            executed.current.state.is_some(),
            "every caller sees the started flow"
        );
        if executed.result {
            winners += 1;
            assert_eq!(executed.appended.len(), 1);
        } else {
            assert!(executed.appended.is_empty());
        }
    }
    assert_eq!(winners, 1);
    let log = store.read(&flow, 0).await.unwrap();
    assert_eq!(log.len(), 1, "exactly one flow_started");
}

#[tokio::test]
async fn events_that_do_not_apply_are_refused_before_writing() {
    let store = EmbeddedStore::new();
    let flow = AggregateId::Flow("f".into());
    let failed_first = |_: &Option<FlowState>| -> Result<(Vec<FlowEvent>, ()), String> {
        Ok((
            vec![FlowEvent::from(FlowFailed {
                flow_id: "f".into(),
                error: "x".into(),
            })],
            (),
        ))
    };
    let error = execute(&store, &SystemClock, &flow, 3, failed_first)
        .await
        .unwrap_err();
    assert!(
        matches!(error, AggregateError::InvalidEvent { .. }),
        "{error}"
    );
    assert!(store.read(&flow, 0).await.unwrap().is_empty());

    let rejected = execute(
        &store,
        &SystemClock,
        &flow,
        3,
        |_: &Option<FlowState>| -> Result<(Vec<FlowEvent>, ()), String> {
            Err("no such step".into())
        },
    )
    .await
    .unwrap();
    assert_eq!(rejected.unwrap_err(), "no such step");
    assert!(store.read(&flow, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn snapshot_plus_tail_rebuilds_the_same_state_as_the_whole_log() {
    let store = EmbeddedStore::new();
    let flow = AggregateId::Flow("snap".into());
    execute(&store, &SystemClock, &flow, 3, start_once("snap"))
        .await
        .unwrap()
        .unwrap();
    let after_start: Current<Option<FlowState>> = load(&store, &flow).await.unwrap();
    store
        .put_snapshot(
            &flow,
            Snapshot {
                sequence: after_start.next_sequence,
                state_json: Arc::from(serde_json::to_string(&after_start.state).unwrap()),
            },
        )
        .await
        .unwrap();
    let fail = |_: &Option<FlowState>| -> Result<(Vec<FlowEvent>, ()), String> {
        Ok((
            vec![FlowEvent::from(FlowFailed {
                flow_id: "snap".into(),
                error: "boom".into(),
            })],
            (),
        ))
    };
    let executed = execute(&store, &SystemClock, &flow, 3, fail)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(executed.current.next_sequence, 2);

    let from_snapshot: Current<Option<FlowState>> = load(&store, &flow).await.unwrap();
    assert_eq!(
        from_snapshot.state.as_ref().map(|f| f.status),
        Some(FlowStatus::Failed)
    );
    assert_eq!(
        from_snapshot, *executed.current,
        "the state the command produced is the state a reload sees"
    );

    let replayed = EmbeddedStore::new();
    for envelope in store.read(&flow, 0).await.unwrap() {
        replayed
            .append(
                &flow,
                envelope.sequence,
                vec![(envelope.timestamp, envelope.event.clone())],
            )
            .await
            .unwrap();
    }
    let from_log: Current<Option<FlowState>> = load(&replayed, &flow).await.unwrap();
    assert_eq!(from_log, from_snapshot);

    store
        .put_snapshot(
            &flow,
            Snapshot {
                sequence: 2,
                state_json: Arc::from("{not json"),
            },
        )
        .await
        .unwrap();
    let corrupt = load::<_, Option<FlowState>>(&store, &flow)
        .await
        .unwrap_err();
    assert!(
        matches!(corrupt, AggregateError::Corrupt { .. }),
        "{corrupt}"
    );
}

#[test]
fn the_projection_cache_stays_bounded_and_keeps_recent_states() {
    let cache: ProjectionCache<u64> = ProjectionCache::new(64);
    let id = |n: u64| AggregateId::Flow(format!("flow-{n}"));
    for n in 0..10_000 {
        cache.insert(
            id(n),
            Arc::new(Current {
                state: n,
                next_sequence: n,
            }),
        );
    }
    let kept = (0..10_000).filter(|n| cache.get(&id(*n)).is_some()).count();
    assert!(kept <= 64, "{kept} states kept for a capacity of 64");
    // The last one in is kept, with its value; replacing an entry keeps one copy.
    assert_eq!(cache.get(&id(9_999)).map(|c| c.state), Some(9_999));
    cache.insert(
        id(9_999),
        Arc::new(Current {
            state: 1,
            next_sequence: 10_000,
        }),
    );
    assert_eq!(cache.get(&id(9_999)).map(|c| c.next_sequence), Some(10_000));
    cache.invalidate(&id(9_999));
    assert!(cache.get(&id(9_999)).is_none());
}

/// Issue 14, item 10: the cache is bounded by bytes as well as by count — many large states
/// do not all stay — but the state just cached stays even when it alone is over the budget
/// (a large fan-out would otherwise replay its log at every command).
#[test]
fn the_projection_cache_stays_within_its_byte_budget() {
    // Each state "weighs" its value: 16 shards of 1,000 bytes.
    let cache: ProjectionCache<u64> = ProjectionCache::with_byte_budget(10_000, 16_000, |n| *n);
    let id = |n: u64| AggregateId::Flow(format!("flow-{n}"));
    let put = |n: u64, weight: u64| {
        cache.insert(
            id(n),
            Arc::new(Current {
                state: weight,
                next_sequence: 1,
            }),
        );
    };
    for n in 0..1_000 {
        put(n, 400);
    }
    let (count, bytes) = cache.usage();
    assert!(
        bytes <= 16 * 1_000 + 16 * 400,
        "{bytes} bytes in {count} states"
    );
    assert!(count < 1_000);
    // One state heavier than a shard's whole budget is still kept, alone in its shard.
    put(5_000, 1_000_000);
    assert_eq!(cache.get(&id(5_000)).map(|c| c.state), Some(1_000_000));
    // Replacing a state re-weighs it.
    put(5_000, 10);
    let (_, bytes) = cache.usage();
    assert!(bytes <= 16 * 1_000 + 16 * 400, "{bytes}");
    assert!(cache.get(&id(5_000)).is_some());
}
