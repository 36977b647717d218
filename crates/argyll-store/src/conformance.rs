//! The conformance kit: checks every [`Store`] adapter must pass, written once against the
//! traits. An adapter's test calls [`run_all`] with a factory of fresh, empty stores (or the
//! checks one by one). The checks panic on a violation, like assertions in a test.

// A test kit: a failed check is a panic with the reason, as in any test.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use argyll_events::{
    AggregateId, EngineEvent, Event, EventEnvelope, FlowActivated, FlowEvent, FlowFailed,
    FlowStarted,
};
use argyll_model::{Args, ExecutionPlan, Timestamp};

use crate::{
    FlowIndexEntry, FlowOrder, FlowOutcome, FlowPhase, FlowQuery, Snapshot, Store, StoreError,
    Timer,
};

fn at(millis: i64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

fn flow(id: &str) -> AggregateId {
    AggregateId::Flow(id.to_owned())
}

/// A `flow_started` event for `flow_id`.
pub fn started(flow_id: &str) -> Event {
    Event::Flow(FlowEvent::from(FlowStarted {
        plan: ExecutionPlan::default().into(),
        init: Args::new(),
        metadata: Default::default(),
        flow_id: flow_id.to_owned(),
    }))
}

/// A `flow_failed` event whose error text tags it (to tell writers apart).
pub fn failed(flow_id: &str, tag: &str) -> Event {
    Event::Flow(FlowEvent::from(FlowFailed {
        flow_id: flow_id.to_owned(),
        error: tag.to_owned(),
    }))
}

fn activated(flow_id: &str) -> Event {
    Event::from(EngineEvent::from(FlowActivated {
        flow_id: flow_id.to_owned(),
        parent_flow_id: String::new(),
    }))
}

fn tag_of(event: &Event) -> String {
    match event {
        Event::Flow(FlowEvent::FlowFailed(failed)) => failed.error.clone(),
        other => panic!(
            "expected a tagged flow_failed event, got {}",
            other.event_type()
        ),
    }
}

/// Appends number events densely from the expected sequence; reads return them in order.
pub async fn append_and_read<S: Store>(store: &S) {
    let f = flow("append-read");
    assert!(
        store.read(&f, 0).await.unwrap().is_empty(),
        "an unknown aggregate has no events"
    );
    let first = store
        .append(&f, 0, vec![(at(1), started("append-read"))])
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].sequence, first[0].timestamp), (0, at(1)));
    let more = store
        .append(
            &f,
            1,
            vec![
                (at(2), failed("append-read", "a")),
                (at(3), failed("append-read", "b")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        more.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let all = store.read(&f, 0).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(all[0].event, started("append-read"));
    assert_eq!(tag_of(&all[2].event), "b");
    assert_eq!(store.read(&f, 2).await.unwrap().len(), 1);
    assert!(store.read(&f, 10).await.unwrap().is_empty());
    assert!(
        store.append(&f, 3, Vec::new()).await.unwrap().is_empty(),
        "an empty append at the right sequence is a no-op"
    );
    assert_eq!(store.read(&f, 0).await.unwrap().len(), 3);
}

/// A reader's copy of a log is completed from where it ends, and a copy longer than the
/// store's log (events lost since it was read) is told apart.
pub async fn read_newer<S: Store>(store: &S) {
    let f = flow("read-newer");
    let sequences = |events: Option<Vec<Arc<EventEnvelope>>>| {
        events.map(|events| events.iter().map(|e| e.sequence).collect::<Vec<_>>())
    };
    assert_eq!(
        sequences(store.read_newer(&f, 0).await.unwrap()),
        Some(vec![]),
        "an unknown aggregate has nothing newer than nothing"
    );
    assert_eq!(
        sequences(store.read_newer(&f, 1).await.unwrap()),
        None,
        "a reader holding an event of an unknown aggregate holds a lost one"
    );
    store
        .append(
            &f,
            0,
            vec![
                (at(1), started("read-newer")),
                (at(2), failed("read-newer", "a")),
                (at(3), failed("read-newer", "b")),
            ],
        )
        .await
        .unwrap();
    let check = |known: u64, expected: Option<Vec<u64>>| {
        let f = f.clone();
        async move {
            assert_eq!(
                sequences(store.read_newer(&f, known).await.unwrap()),
                expected,
                "read_newer from {known}"
            );
        }
    };
    check(0, Some(vec![0, 1, 2])).await;
    check(1, Some(vec![1, 2])).await;
    check(3, Some(vec![])).await;
    check(4, None).await;
    let newer = store.read_newer(&f, 2).await.unwrap().unwrap();
    assert_eq!(
        tag_of(&newer[0].event),
        "b",
        "the events themselves come back"
    );
    // Whatever the store keeps in memory about the log, a deleted log is gone for readers.
    assert!(store.delete(&f).await.unwrap());
    check(3, None).await;
    check(0, Some(vec![])).await;
}

/// A flow's first events are appended with its index entry where the store can (and the
/// store says whether it did); a second first append conflicts and writes nothing, and an
/// entry already there is kept.
pub async fn append_first<S: Store>(store: &S) {
    let f = flow("first");
    let first_entry = entry("first", None, FlowOutcome::Active, FlowPhase::Active);
    let (appended, indexed) = store
        .append_first(&f, vec![(at(1), started("first"))], &first_entry)
        .await
        .unwrap();
    assert_eq!(
        appended.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(store.read(&f, 0).await.unwrap().len(), 1);
    let stored = store.get_flow("first").await.unwrap();
    if indexed {
        assert_eq!(stored, Some(first_entry.clone()));
    } else {
        assert_eq!(
            stored, None,
            "a store that says it did not index wrote no entry"
        );
        store.insert_flow(first_entry.clone()).await.unwrap();
    }
    let other = entry("first", None, FlowOutcome::Failed, FlowPhase::Deactivated);
    let error = store
        .append_first(&f, vec![(at(2), started("first"))], &other)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        StoreError::Conflict {
            aggregate: f.clone(),
            expected: 0,
            actual: 1
        }
    );
    assert_eq!(store.get_flow("first").await.unwrap(), Some(first_entry));
    assert_eq!(
        store.read(&f, 0).await.unwrap().len(),
        1,
        "nothing appended"
    );

    // A flow indexed before its log was written (a start retried after a lost reply whose
    // log was then deleted) keeps the entry it has.
    let kept = entry("kept", None, FlowOutcome::Completed, FlowPhase::Deactivated);
    store.put_flow(kept.clone()).await.unwrap();
    let (appended, _) = store
        .append_first(
            &flow("kept"),
            vec![(at(3), started("kept"))],
            &entry("kept", None, FlowOutcome::Active, FlowPhase::Active),
        )
        .await
        .unwrap();
    assert_eq!(appended.len(), 1);
    assert_eq!(store.get_flow("kept").await.unwrap(), Some(kept));
}

/// A stale expected sequence is a conflict that writes nothing and reports the actual one.
pub async fn stale_appends_conflict<S: Store>(store: &S) {
    let f = flow("stale");
    store
        .append(&f, 0, vec![(at(1), started("stale"))])
        .await
        .unwrap();
    let error = store
        .append(&f, 0, vec![(at(2), failed("stale", "late"))])
        .await
        .unwrap_err();
    assert_eq!(
        error,
        StoreError::Conflict {
            aggregate: f.clone(),
            expected: 0,
            actual: 1
        }
    );
    let error = store
        .append(&f, 5, vec![(at(2), failed("stale", "ahead"))])
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict { actual: 1, .. }),
        "{error}"
    );
    assert_eq!(
        store.read(&f, 0).await.unwrap().len(),
        1,
        "a conflict writes nothing"
    );
    let error = store
        .append(&f, 1, vec![(at(2), activated("stale"))])
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::WrongAggregate { .. }),
        "engine events do not go into flow logs: {error}"
    );
    let error = store
        .append(&AggregateId::Engine, 0, vec![(at(2), started("x"))])
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::WrongAggregate { .. }),
        "{error}"
    );
}

/// Many writers racing on one aggregate: each append either wins its expected sequence or
/// conflicts; retrying on fresh sequences, every writer's event lands exactly once, densely.
pub async fn concurrent_conflicting_appends<S: Store + Clone>(store: &S) {
    let f = flow("race");
    let writers = 32;
    let first_round: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            let f = f.clone();
            tokio::spawn(async move {
                store
                    .append(&f, 0, vec![(at(1), failed("race", &format!("w{writer}")))])
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for handle in first_round {
        match handle.await.unwrap() {
            Ok(_) => winners += 1,
            Err(StoreError::Conflict {
                expected: 0,
                actual: 1,
                ..
            }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners, 1, "exactly one writer wins sequence 0");

    let retries: Vec<_> = (0..writers)
        .map(|writer| {
            let store = store.clone();
            let f = f.clone();
            tokio::spawn(async move {
                let tag = format!("r{writer}");
                loop {
                    let next = store.load(&f).await.unwrap().next_sequence;
                    match store
                        .append(&f, next, vec![(at(2), failed("race", &tag))])
                        .await
                    {
                        Ok(appended) => return appended[0].sequence,
                        Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
            })
        })
        .collect();
    let mut sequences = BTreeSet::new();
    for handle in retries {
        assert!(
            sequences.insert(handle.await.unwrap()),
            "two writers got the same sequence"
        );
    }
    let events = store.read(&f, 0).await.unwrap();
    assert_eq!(events.len(), writers + 1);
    assert!(
        events
            .iter()
            .enumerate()
            .all(|(i, e)| e.sequence == i as u64),
        "sequences are dense"
    );
    let tags: BTreeSet<String> = events.iter().skip(1).map(|e| tag_of(&e.event)).collect();
    assert_eq!(
        tags,
        (0..writers).map(|w| format!("r{w}")).collect(),
        "every retry landed exactly once"
    );
}

/// `load` returns the latest snapshot and only the events after it.
pub async fn snapshots<S: Store>(store: &S) {
    let f = flow("snap");
    let empty = store.load(&f).await.unwrap();
    assert!(empty.snapshot.is_none() && empty.tail.is_empty() && empty.next_sequence == 0);
    let events = (0..5)
        .map(|i| (at(i), failed("snap", &format!("e{i}"))))
        .collect();
    store.append(&f, 0, events).await.unwrap();
    let loaded = store.load(&f).await.unwrap();
    assert!(loaded.snapshot.is_none());
    assert_eq!((loaded.tail.len(), loaded.next_sequence), (5, 5));

    let snapshot = Snapshot {
        sequence: 3,
        state_json: Arc::from(r#"{"upto":3}"#),
    };
    store.put_snapshot(&f, snapshot.clone()).await.unwrap();
    let loaded = store.load(&f).await.unwrap();
    assert_eq!(loaded.snapshot, Some(snapshot.clone()));
    assert_eq!(
        loaded.tail.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(loaded.next_sequence, 5);

    store
        .put_snapshot(
            &f,
            Snapshot {
                sequence: 2,
                state_json: Arc::from("{}"),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.load(&f).await.unwrap().snapshot,
        Some(snapshot),
        "an older snapshot never replaces a newer one"
    );
    let error = store
        .put_snapshot(
            &f,
            Snapshot {
                sequence: 9,
                state_json: Arc::from("{}"),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::InvalidSnapshot {
                sequence: 9,
                next_sequence: 5,
                ..
            }
        ),
        "{error}"
    );
}

/// Subscribers see every appended event, each aggregate's in order, and nothing from conflicts.
pub async fn feed_carries_every_append<S: Store + Clone>(store: &S) {
    let mut subscriber = store.subscribe();
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = format!("feed-{writer}");
                let f = flow(&id);
                for sequence in 0..25u64 {
                    store
                        .append(
                            &f,
                            sequence,
                            vec![(at(1), failed(&id, &sequence.to_string()))],
                        )
                        .await
                        .unwrap();
                }
                let _ = store
                    .append(&f, 0, vec![(at(1), failed(&id, "conflict"))])
                    .await;
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut seen: std::collections::BTreeMap<AggregateId, Vec<u64>> = Default::default();
    for _ in 0..100 {
        let envelope = tokio::time::timeout(Duration::from_secs(5), subscriber.recv())
            .await
            .expect("feed delivers")
            .unwrap();
        assert_ne!(
            tag_of(&envelope.event),
            "conflict",
            "events of a failed append are not published"
        );
        seen.entry(envelope.aggregate_id.clone())
            .or_default()
            .push(envelope.sequence);
    }
    assert_eq!(seen.len(), 4);
    for sequences in seen.values() {
        assert_eq!(
            sequences,
            &(0..25).collect::<Vec<_>>(),
            "each aggregate's events arrive in order"
        );
    }
    assert!(subscriber.try_recv().is_err(), "nothing else was published");
}

/// The flow ids of `entries`, in order.
fn flow_ids(entries: &[FlowIndexEntry]) -> Vec<String> {
    entries.iter().map(|entry| entry.flow_id.clone()).collect()
}

fn entry(id: &str, parent: Option<&str>, outcome: FlowOutcome, phase: FlowPhase) -> FlowIndexEntry {
    FlowIndexEntry {
        flow_id: id.to_owned(),
        goals: Vec::new(),
        parent_flow_id: parent.map(str::to_owned),
        outcome,
        phase,
        created_at: at(1),
        completed_at: None,
        error: None,
    }
}

/// The index: first insert wins, entries update, listings filter, sort by id and page.
pub async fn flow_index<S: Store>(store: &S) {
    assert!(
        store
            .insert_flow(entry("b", None, FlowOutcome::Active, FlowPhase::Active))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_flow(entry("b", None, FlowOutcome::Failed, FlowPhase::Active))
            .await
            .unwrap(),
        "first insert wins"
    );
    assert_eq!(
        store.get_flow("b").await.unwrap().unwrap().outcome,
        FlowOutcome::Active
    );
    for (id, parent, outcome, phase) in [
        ("a", None, FlowOutcome::Completed, FlowPhase::Deactivated),
        ("c", Some("b"), FlowOutcome::Active, FlowPhase::Active),
        ("d", None, FlowOutcome::Failed, FlowPhase::Deactivated),
        ("e", None, FlowOutcome::Completed, FlowPhase::Archived),
        ("f", None, FlowOutcome::Active, FlowPhase::Active),
    ] {
        store
            .put_flow(entry(id, parent, outcome, phase))
            .await
            .unwrap();
    }
    let mut updated = entry("f", None, FlowOutcome::Completed, FlowPhase::Deactivated);
    updated.completed_at = Some(at(9));
    store.put_flow(updated.clone()).await.unwrap();
    assert_eq!(store.get_flow("f").await.unwrap(), Some(updated));
    assert_eq!(store.get_flow("zzz").await.unwrap(), None);

    let all = store.list_flows(&FlowQuery::default()).await.unwrap();
    assert_eq!(flow_ids(&all.entries), vec!["a", "b", "c", "d", "e", "f"]);
    assert_eq!(all.next_after, None);
    let listed = FlowQuery {
        top_level_only: true,
        phases: vec![FlowPhase::Active, FlowPhase::Deactivated],
        ..FlowQuery::default()
    };
    assert_eq!(
        flow_ids(&store.list_flows(&listed).await.unwrap().entries),
        vec!["a", "b", "d", "f"]
    );
    let completed = FlowQuery {
        outcome: Some(FlowOutcome::Completed),
        ..FlowQuery::default()
    };
    assert_eq!(
        flow_ids(&store.list_flows(&completed).await.unwrap().entries),
        vec!["a", "e", "f"]
    );

    let mut paged = Vec::new();
    let mut query = FlowQuery {
        limit: 2,
        ..FlowQuery::default()
    };
    loop {
        let page = store.list_flows(&query).await.unwrap();
        assert!(page.entries.len() <= 2);
        paged.extend(flow_ids(&page.entries));
        match page.next_after {
            Some(after) => query.after = Some(after),
            None => break,
        }
    }
    assert_eq!(
        paged,
        vec!["a", "b", "c", "d", "e", "f"],
        "paging visits every entry once, in order"
    );

    // One phase at a time, as the sweep (active) and the archiver (deactivated) ask; an
    // entry moved to another phase leaves the old phase's listing.
    let in_phase = |phase: FlowPhase, limit: usize| FlowQuery {
        phases: vec![phase],
        limit,
        ..FlowQuery::default()
    };
    assert_eq!(
        flow_ids(
            &store
                .list_flows(&in_phase(FlowPhase::Active, 0))
                .await
                .unwrap()
                .entries
        ),
        vec!["b", "c"],
        "f moved from active to deactivated"
    );
    assert_eq!(
        flow_ids(
            &store
                .list_flows(&in_phase(FlowPhase::Deactivated, 0))
                .await
                .unwrap()
                .entries
        ),
        vec!["a", "d", "f"]
    );
    let first = store
        .list_flows(&in_phase(FlowPhase::Deactivated, 2))
        .await
        .unwrap();
    assert_eq!(flow_ids(&first.entries), vec!["a", "d"]);
    let mut rest = in_phase(FlowPhase::Deactivated, 2);
    rest.after = first.next_after;
    assert_eq!(
        flow_ids(&store.list_flows(&rest).await.unwrap().entries),
        vec!["f"]
    );

    assert!(store.remove_flow("c").await.unwrap());
    assert!(!store.remove_flow("c").await.unwrap());
    assert_eq!(store.get_flow("c").await.unwrap(), None);
    assert_eq!(
        flow_ids(
            &store
                .list_flows(&in_phase(FlowPhase::Active, 0))
                .await
                .unwrap()
                .entries
        ),
        vec!["b"],
        "a removed entry leaves its phase's listing"
    );
}

/// The most recently deactivated flows, newest first, follow entries in and out of the
/// deactivated phase (archiving, removal, a new completion time).
pub async fn recently_deactivated<S: Store>(store: &S) {
    let finished = |id: &str, millis: i64| FlowIndexEntry {
        completed_at: Some(at(millis)),
        ..entry(id, None, FlowOutcome::Completed, FlowPhase::Deactivated)
    };
    assert!(store.recently_deactivated(10).await.unwrap().is_empty());
    store
        .insert_flow(entry(
            "running",
            None,
            FlowOutcome::Active,
            FlowPhase::Active,
        ))
        .await
        .unwrap();
    for (id, millis) in [
        ("old", 100),
        ("newest", 400),
        ("middle", 200),
        ("gone", 300),
    ] {
        store.insert_flow(finished(id, millis)).await.unwrap();
    }
    assert_eq!(
        flow_ids(&store.recently_deactivated(10).await.unwrap()),
        vec!["newest", "gone", "middle", "old"]
    );
    assert_eq!(
        flow_ids(&store.recently_deactivated(2).await.unwrap()),
        vec!["newest", "gone"]
    );
    // Archiving takes a flow out; removal too; a later completion moves one to the front; a
    // flow that becomes deactivated joins.
    store
        .put_flow(FlowIndexEntry {
            phase: FlowPhase::Archiving,
            ..finished("newest", 400)
        })
        .await
        .unwrap();
    assert!(store.remove_flow("gone").await.unwrap());
    store.put_flow(finished("old", 500)).await.unwrap();
    store.put_flow(finished("running", 450)).await.unwrap();
    assert_eq!(
        flow_ids(&store.recently_deactivated(10).await.unwrap()),
        vec!["old", "running", "middle"]
    );
    assert_eq!(store.recently_deactivated(0).await.unwrap(), Vec::new());
}

/// The oldest deactivated flows finished before a time, oldest first (ties by id), without
/// active, archiving or archived ones; a sub-millisecond bound is exact.
pub async fn deactivated_before<S: Store>(store: &S) {
    let finished = |id: &str, nanos: i64| FlowIndexEntry {
        completed_at: Some(Timestamp::from_unix_nanos(nanos)),
        ..entry(id, None, FlowOutcome::Completed, FlowPhase::Deactivated)
    };
    let ms = 1_000_000;
    assert!(
        store
            .deactivated_before(at(1_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .insert_flow(entry(
            "running",
            None,
            FlowOutcome::Active,
            FlowPhase::Active,
        ))
        .await
        .unwrap();
    for (id, nanos) in [
        ("b-tie", 200 * ms),
        ("late", 900 * ms),
        ("first", 100 * ms),
        ("a-tie", 200 * ms),
        ("just-before", 500 * ms + 300_000),
        ("just-after", 500 * ms + 700_000),
        ("archiving", 50 * ms),
    ] {
        store.insert_flow(finished(id, nanos)).await.unwrap();
    }
    store
        .put_flow(FlowIndexEntry {
            phase: FlowPhase::Archiving,
            ..finished("archiving", 50 * ms)
        })
        .await
        .unwrap();
    let bound = Timestamp::from_unix_nanos(500 * ms + 500_000);
    assert_eq!(
        flow_ids(&store.deactivated_before(bound, 10).await.unwrap()),
        vec!["first", "a-tie", "b-tie", "just-before"]
    );
    assert_eq!(
        flow_ids(&store.deactivated_before(bound, 2).await.unwrap()),
        vec!["first", "a-tie"]
    );
    assert!(store.remove_flow("first").await.unwrap());
    store.put_flow(finished("a-tie", 950 * ms)).await.unwrap();
    assert_eq!(
        flow_ids(&store.deactivated_before(at(1_000), 10).await.unwrap()),
        vec!["b-tie", "just-before", "just-after", "late", "a-tie"]
    );
    assert_eq!(
        store.deactivated_before(bound, 0).await.unwrap(),
        Vec::new()
    );
}

/// An active top-level entry created at `millis`.
fn created(id: &str, millis: i64) -> FlowIndexEntry {
    FlowIndexEntry {
        created_at: at(millis),
        ..entry(id, None, FlowOutcome::Active, FlowPhase::Active)
    }
}

/// Every page of `query` from its cursor on, `query.limit` at a time: the ids in the order
/// listed. Each page but the last is full, and the last says there is no more.
async fn page_through<S: Store>(store: &S, query: &FlowQuery) -> Vec<String> {
    let mut query = query.clone();
    let mut ids = Vec::new();
    for _ in 0..10_000 {
        let page = store.list_flows(&query).await.unwrap();
        assert!(
            page.entries.len() <= query.page_limit(),
            "a page holds at most its limit: {query:?}"
        );
        ids.extend(flow_ids(&page.entries));
        match page.next_after {
            Some(after) => {
                assert!(
                    !page.entries.is_empty(),
                    "a page that says there is more is not empty: {query:?}"
                );
                query.after = Some(after);
            }
            None => return ids,
        }
    }
    panic!("paging never ended: {query:?}");
}

/// The time orders: newest first and oldest first by `created_at` (ties by id, descending
/// newest first; an unset time before every other), in pages of any size that list every entry
/// once; an entry keeps its place when it changes, and leaves the order when removed — a
/// cursor at it still continues after its place. A cursor the store did not give out for a
/// time order is [`StoreError::InvalidCursor`], not a panic.
pub async fn flows_by_creation_time<S: Store>(store: &S) {
    for (id, millis) in [
        ("m", 300),
        ("a", 500),
        ("z", 100),
        ("t2", 200),
        ("t1", 200),
        ("t3", 200),
        ("b", 400),
    ] {
        assert!(store.insert_flow(created(id, millis)).await.unwrap());
    }
    store
        .insert_flow(FlowIndexEntry {
            created_at: Timestamp::ZERO,
            ..created("unset", 0)
        })
        .await
        .unwrap();
    let oldest: Vec<String> = ["unset", "z", "t1", "t2", "t3", "m", "b", "a"]
        .map(String::from)
        .to_vec();
    let newest: Vec<String> = oldest.iter().rev().cloned().collect();
    for (order, expected) in [
        (FlowOrder::OldestFirst, &oldest),
        (FlowOrder::NewestFirst, &newest),
    ] {
        let all = store
            .list_flows(&FlowQuery {
                order,
                ..FlowQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(&flow_ids(&all.entries), expected, "{order:?}");
        assert_eq!(all.next_after, None, "{order:?}: one unlimited page");
        for limit in [1, 2, 3, 7, 8, 9, 100] {
            let query = FlowQuery {
                order,
                limit,
                ..FlowQuery::default()
            };
            assert_eq!(
                &page_through(store, &query).await,
                expected,
                "{order:?} in pages of {limit}: every entry once, in order"
            );
        }
    }
    assert_eq!(
        flow_ids(
            &store
                .list_flows(&FlowQuery::default())
                .await
                .unwrap()
                .entries
        ),
        ["a", "b", "m", "t1", "t2", "t3", "unset", "z"],
        "by id is still the default"
    );

    // A changed entry keeps its place.
    store
        .put_flow(FlowIndexEntry {
            outcome: FlowOutcome::Completed,
            phase: FlowPhase::Deactivated,
            completed_at: Some(at(900)),
            ..created("t2", 200)
        })
        .await
        .unwrap();
    let by = |order: FlowOrder, limit: usize| FlowQuery {
        order,
        limit,
        ..FlowQuery::default()
    };
    assert_eq!(
        page_through(store, &by(FlowOrder::OldestFirst, 2)).await,
        oldest
    );

    // The last entry of a page is removed before the next page is read: the next page
    // continues after the place it had.
    let first = store
        .list_flows(&by(FlowOrder::NewestFirst, 3))
        .await
        .unwrap();
    assert_eq!(flow_ids(&first.entries), ["a", "b", "m"]);
    assert!(store.remove_flow("m").await.unwrap());
    let rest = page_through(
        store,
        &FlowQuery {
            after: first.next_after,
            ..by(FlowOrder::NewestFirst, 2)
        },
    )
    .await;
    assert_eq!(rest, ["t3", "t2", "t1", "z", "unset"]);
    let first = store
        .list_flows(&by(FlowOrder::OldestFirst, 3))
        .await
        .unwrap();
    assert_eq!(flow_ids(&first.entries), ["unset", "z", "t1"]);
    assert!(store.remove_flow("t1").await.unwrap());
    let rest = page_through(
        store,
        &FlowQuery {
            after: first.next_after,
            ..by(FlowOrder::OldestFirst, 1)
        },
    )
    .await;
    assert_eq!(rest, ["t2", "t3", "b", "a"]);

    for order in [FlowOrder::NewestFirst, FlowOrder::OldestFirst] {
        for bad in [
            "a",
            "t1",
            "",
            ":t1",
            "x:t1",
            "1.5:t1",
            "99999999999999999999:t1",
        ] {
            let error = store
                .list_flows(&FlowQuery {
                    order,
                    after: Some(bad.to_owned()),
                    ..FlowQuery::default()
                })
                .await
                .unwrap_err();
            assert!(
                matches!(error, StoreError::InvalidCursor(_)),
                "{order:?} after {bad:?}: {error:?}"
            );
        }
    }
}

/// The filters (outcome, phases, top level) hold in every order, page by page.
pub async fn ordered_listing_filters<S: Store>(store: &S) {
    let flows = [
        (
            "p1",
            None,
            FlowOutcome::Completed,
            FlowPhase::Deactivated,
            100,
        ),
        ("p2", None, FlowOutcome::Active, FlowPhase::Active, 600),
        (
            "c1",
            Some("p2"),
            FlowOutcome::Active,
            FlowPhase::Active,
            700,
        ),
        ("p3", None, FlowOutcome::Failed, FlowPhase::Deactivated, 300),
        ("p4", None, FlowOutcome::Completed, FlowPhase::Archived, 400),
        (
            "p5",
            None,
            FlowOutcome::Completed,
            FlowPhase::Deactivated,
            300,
        ),
        (
            "c2",
            Some("p1"),
            FlowOutcome::Completed,
            FlowPhase::Deactivated,
            200,
        ),
        ("p6", None, FlowOutcome::Active, FlowPhase::Active, 50),
    ];
    for (id, parent, outcome, phase, millis) in flows {
        store
            .insert_flow(FlowIndexEntry {
                created_at: at(millis),
                ..entry(id, parent, outcome, phase)
            })
            .await
            .unwrap();
    }
    let listed = |order: FlowOrder, limit: usize| FlowQuery {
        top_level_only: true,
        phases: vec![FlowPhase::Active, FlowPhase::Deactivated],
        order,
        limit,
        ..FlowQuery::default()
    };
    let completed = |order: FlowOrder, limit: usize| FlowQuery {
        outcome: Some(FlowOutcome::Completed),
        order,
        limit,
        ..FlowQuery::default()
    };
    let active = |order: FlowOrder, limit: usize| FlowQuery {
        phases: vec![FlowPhase::Active],
        order,
        limit,
        ..FlowQuery::default()
    };
    for limit in [0, 1, 2, 5] {
        assert_eq!(
            page_through(store, &listed(FlowOrder::NewestFirst, limit)).await,
            ["p2", "p5", "p3", "p1", "p6"],
            "top level, active or deactivated, newest first, pages of {limit}"
        );
        assert_eq!(
            page_through(store, &listed(FlowOrder::OldestFirst, limit)).await,
            ["p6", "p1", "p3", "p5", "p2"]
        );
        assert_eq!(
            page_through(store, &completed(FlowOrder::NewestFirst, limit)).await,
            ["p4", "p5", "c2", "p1"]
        );
        assert_eq!(
            page_through(store, &completed(FlowOrder::OldestFirst, limit)).await,
            ["p1", "c2", "p5", "p4"]
        );
        assert_eq!(
            page_through(store, &active(FlowOrder::NewestFirst, limit)).await,
            ["c1", "p2", "p6"]
        );
        assert_eq!(
            page_through(store, &active(FlowOrder::OldestFirst, limit)).await,
            ["p6", "p2", "c1"]
        );
    }
    // No entry passes: an empty page, in every order.
    for order in [
        FlowOrder::ById,
        FlowOrder::NewestFirst,
        FlowOrder::OldestFirst,
    ] {
        let none = FlowQuery {
            outcome: Some(FlowOutcome::Failed),
            phases: vec![FlowPhase::Archived],
            order,
            limit: 2,
            ..FlowQuery::default()
        };
        let page = store.list_flows(&none).await.unwrap();
        assert_eq!(
            (page.entries.len(), page.next_after),
            (0, None),
            "{order:?}"
        );
    }
}

/// An id prefix in every order: only ids that start with it, also when other ids share a
/// shorter prefix or sort right after it ("ab", "ab1", "abz" against "aa", "ac", "a"); a prefix
/// no id has lists nothing; a cursor before, inside or past the prefix's ids.
pub async fn flow_id_prefix<S: Store>(store: &S) {
    for (id, millis) in [
        ("a", 50),
        ("aa", 400),
        ("ab", 300),
        ("ab1", 100),
        ("ab2", 500),
        ("abz", 200),
        ("ac", 250),
        ("b", 350),
    ] {
        store.insert_flow(created(id, millis)).await.unwrap();
    }
    store
        .put_flow(FlowIndexEntry {
            outcome: FlowOutcome::Failed,
            phase: FlowPhase::Deactivated,
            ..created("ab2", 500)
        })
        .await
        .unwrap();
    let with = |prefix: &str, order: FlowOrder, limit: usize| FlowQuery {
        prefix: Some(prefix.to_owned()),
        order,
        limit,
        ..FlowQuery::default()
    };
    let cases: [(&str, FlowOrder, &[&str]); 12] = [
        ("ab", FlowOrder::ById, &["ab", "ab1", "ab2", "abz"]),
        ("ab", FlowOrder::OldestFirst, &["ab1", "abz", "ab", "ab2"]),
        ("ab", FlowOrder::NewestFirst, &["ab2", "ab", "abz", "ab1"]),
        ("ab1", FlowOrder::ById, &["ab1"]),
        ("ab1", FlowOrder::NewestFirst, &["ab1"]),
        (
            "a",
            FlowOrder::ById,
            &["a", "aa", "ab", "ab1", "ab2", "abz", "ac"],
        ),
        (
            "a",
            FlowOrder::NewestFirst,
            &["ab2", "aa", "ab", "ac", "abz", "ab1", "a"],
        ),
        (
            "",
            FlowOrder::ById,
            &["a", "aa", "ab", "ab1", "ab2", "abz", "ac", "b"],
        ),
        ("abx", FlowOrder::ById, &[]),
        ("abx", FlowOrder::OldestFirst, &[]),
        ("zz", FlowOrder::ById, &[]),
        ("zz", FlowOrder::NewestFirst, &[]),
    ];
    for (prefix, order, expected) in cases {
        for limit in [0, 1, 2, 3, 10] {
            assert_eq!(
                page_through(store, &with(prefix, order, limit)).await,
                expected,
                "prefix {prefix:?}, {order:?}, pages of {limit}"
            );
        }
    }
    let by_id_after = |after: &str| FlowQuery {
        after: Some(after.to_owned()),
        ..with("ab", FlowOrder::ById, 0)
    };
    for (after, expected) in [
        ("", &["ab", "ab1", "ab2", "abz"][..]),
        ("aa", &["ab", "ab1", "ab2", "abz"]),
        ("ab", &["ab1", "ab2", "abz"]),
        ("ab1", &["ab2", "abz"]),
        ("ab15", &["ab2", "abz"]),
        ("abz", &[]),
        ("ac", &[]),
    ] {
        assert_eq!(
            flow_ids(&store.list_flows(&by_id_after(after)).await.unwrap().entries),
            expected,
            "prefix ab after {after:?}"
        );
    }
    // With the other filters.
    let failed = FlowQuery {
        outcome: Some(FlowOutcome::Failed),
        ..with("ab", FlowOrder::NewestFirst, 1)
    };
    assert_eq!(page_through(store, &failed).await, ["ab2"]);
    let active = FlowQuery {
        phases: vec![FlowPhase::Active],
        ..with("ab", FlowOrder::ById, 1)
    };
    assert_eq!(page_through(store, &active).await, ["ab", "ab1", "abz"]);
}

/// Paging in every order while flows are added between pages (earlier, later and equal
/// creation times, ids before and after the cursor): every flow that existed before the first
/// page is listed exactly once, and no flow twice.
pub async fn paging_while_flows_are_added<S: Store>(store: &S) {
    for (n, order) in [
        FlowOrder::ById,
        FlowOrder::NewestFirst,
        FlowOrder::OldestFirst,
    ]
    .into_iter()
    .enumerate()
    {
        let prefix = format!("r{n}-");
        let mut existing = BTreeSet::new();
        for i in 0..20 {
            let id = format!("{prefix}{i:02}");
            store
                .insert_flow(created(&id, 1_000 + (i % 5) * 10))
                .await
                .unwrap();
            existing.insert(id);
        }
        let mut query = FlowQuery {
            prefix: Some(prefix.clone()),
            order,
            limit: 3,
            ..FlowQuery::default()
        };
        let mut listed = Vec::new();
        let mut added = 0;
        for round in 0..1_000 {
            let page = store.list_flows(&query).await.unwrap();
            listed.extend(flow_ids(&page.entries));
            // New flows everywhere in every order: the first and last ids, the times of
            // existing flows, and before and after them all.
            for (id, millis) in [
                (format!("{prefix}-{round}"), 1_020),
                (format!("{prefix}a{round}"), 500),
                (format!("{prefix}z{round}"), 5_000),
                (format!("{prefix}{round:02}5"), 1_000),
            ] {
                assert!(store.insert_flow(created(&id, millis)).await.unwrap());
                added += 1;
            }
            match page.next_after {
                Some(after) => query.after = Some(after),
                None => break,
            }
        }
        assert!(added > 0);
        let unique: BTreeSet<&String> = listed.iter().collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "{order:?}: no flow twice: {listed:?}"
        );
        for id in &existing {
            assert_eq!(
                listed.iter().filter(|listed| *listed == id).count(),
                1,
                "{order:?}: {id} existed before the first page"
            );
        }
    }
}

/// Leases: one owner at a time, renewable by the owner, free after lapsing or release.
pub async fn leases<S: Store>(store: &S) {
    let ttl = Duration::from_secs(10);
    assert!(store.acquire("work:1", "i1", ttl, at(0)).await.unwrap());
    assert!(
        !store.acquire("work:1", "i2", ttl, at(5_000)).await.unwrap(),
        "held by i1"
    );
    assert!(
        store.acquire("work:1", "i1", ttl, at(5_000)).await.unwrap(),
        "the owner may re-acquire"
    );
    assert!(store.renew("work:1", "i1", ttl, at(8_000)).await.unwrap());
    assert!(!store.renew("work:1", "i2", ttl, at(8_000)).await.unwrap());
    assert!(
        store
            .lapsed("work:", at(17_000), 10)
            .await
            .unwrap()
            .is_empty(),
        "renewed until 18 s"
    );
    assert!(store.acquire("archive:1", "i1", ttl, at(0)).await.unwrap());
    assert!(
        store.lapsed("work:", at(50_000), 10).await.unwrap().len() == 1,
        "the prefix keeps other key spaces out"
    );
    assert!(store.release("archive:1", "i1").await.unwrap());
    let lapsed = store.lapsed("work:", at(18_001), 10).await.unwrap();
    assert_eq!(
        lapsed
            .iter()
            .map(|l| (l.key.as_str(), l.owner.as_str()))
            .collect::<Vec<_>>(),
        vec![("work:1", "i1")]
    );
    assert!(
        store
            .acquire("work:1", "i2", ttl, at(18_001))
            .await
            .unwrap(),
        "a lapsed lease can be taken over"
    );
    assert!(
        !store.renew("work:1", "i1", ttl, at(18_002)).await.unwrap(),
        "the old owner lost it"
    );
    assert!(!store.release("work:1", "i1").await.unwrap());
    assert!(store.release("work:1", "i2").await.unwrap());
    assert!(
        store
            .acquire("work:1", "i3", ttl, at(18_003))
            .await
            .unwrap()
    );
}

/// Several leases in one call (acquire, release, exchange): each key decided as by a single
/// acquire or release.
pub async fn many_leases<S: Store>(store: &S) {
    let ttl = Duration::from_secs(10);
    let keys: Vec<String> = ["work:a", "work:b", "work:c"].map(String::from).to_vec();
    assert!(store.acquire("work:b", "other", ttl, at(0)).await.unwrap());
    assert_eq!(
        store
            .acquire_many(&keys, "i1", ttl, at(1_000))
            .await
            .unwrap(),
        vec![true, false, true],
        "work:b is held by another owner"
    );
    assert!(
        !store
            .acquire("work:a", "other", ttl, at(2_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire_many(&[], "i1", ttl, at(2_000))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.release_many(&keys, "i1").await.unwrap(),
        vec![true, false, true]
    );
    assert!(
        store
            .acquire("work:a", "other", ttl, at(3_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .acquire("work:c", "other", ttl, at(3_000))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .acquire_many(&keys, "i1", ttl, at(20_000))
            .await
            .unwrap(),
        vec![true, true, true],
        "lapsed leases are taken over"
    );
    let lapsed = store.lapsed("work:", at(31_000), 10).await.unwrap();
    assert_eq!(lapsed.len(), 3);
    assert!(lapsed.iter().all(|lease| lease.owner == "i1"));

    // Exchange: give up a and b, take d and (held by another owner) e.
    assert!(
        store
            .acquire("work:e", "other", ttl, at(20_000))
            .await
            .unwrap()
    );
    let release: Vec<String> = ["work:a", "work:b"].map(String::from).to_vec();
    let acquire: Vec<String> = ["work:d", "work:e"].map(String::from).to_vec();
    assert_eq!(
        store
            .exchange(&release, &acquire, "i1", ttl, at(21_000))
            .await
            .unwrap(),
        vec![true, false]
    );
    assert!(
        store
            .acquire("work:a", "other", ttl, at(21_000))
            .await
            .unwrap()
    );
    assert!(
        !store
            .acquire("work:d", "other", ttl, at(21_000))
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .exchange(&["work:d".to_owned()], &[], "i1", ttl, at(22_000))
            .await
            .unwrap(),
        Vec::<bool>::new()
    );
    assert!(
        store
            .acquire("work:d", "other", ttl, at(22_000))
            .await
            .unwrap()
    );
}

/// Concurrent acquirers of one free lease: exactly one gets it.
pub async fn lease_races<S: Store + Clone>(store: &S) {
    let contenders: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .acquire("work:race", &format!("i{i}"), Duration::from_secs(5), at(0))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for contender in contenders {
        if contender.await.unwrap() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

fn timer(key: &str, due: i64) -> Timer {
    Timer {
        key: key.to_owned(),
        due: at(due),
        payload: Arc::from(format!(r#"{{"key":"{key}"}}"#)),
    }
}

/// Timers fire in due order, once; rescheduling replaces, cancelling removes.
pub async fn timers<S: Store + Clone>(store: &S) {
    assert_eq!(store.next_due().await.unwrap(), None);
    store.schedule(timer("t3", 300)).await.unwrap();
    store.schedule(timer("t1", 100)).await.unwrap();
    store.schedule(timer("t2", 200)).await.unwrap();
    store.schedule(timer("t2", 250)).await.unwrap();
    assert_eq!(store.next_due().await.unwrap(), Some(at(100)));
    assert!(store.take_due(at(99), 10).await.unwrap().is_empty());
    let due = store.take_due(at(260), 10).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|t| (t.key.as_str(), t.due))
            .collect::<Vec<_>>(),
        vec![("t1", at(100)), ("t2", at(250))]
    );
    assert_eq!(due[0].payload.as_ref(), r#"{"key":"t1"}"#);
    assert!(
        store.take_due(at(260), 10).await.unwrap().is_empty(),
        "a timer fires once"
    );
    assert!(store.cancel("t3").await.unwrap());
    assert!(!store.cancel("t3").await.unwrap());
    assert_eq!(store.next_due().await.unwrap(), None);

    for i in 0..200 {
        store.schedule(timer(&format!("many{i}"), i)).await.unwrap();
    }
    let takers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.take_due(at(1_000), 7).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|t| t.key));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for taker in takers {
        all.extend(taker.await.unwrap());
    }
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(
        (all.len(), unique.len()),
        (200, 200),
        "each timer is claimed by exactly one taker"
    );
}

/// Deleting an aggregate removes its events and snapshot; others are untouched.
pub async fn delete_aggregates<S: Store>(store: &S) {
    let gone = flow("gone");
    let kept = flow("kept");
    for aggregate in [&gone, &kept] {
        store
            .append(
                aggregate,
                0,
                vec![(at(1), failed("x", "a")), (at(2), failed("x", "b"))],
            )
            .await
            .unwrap();
    }
    store
        .put_snapshot(
            &gone,
            Snapshot {
                sequence: 1,
                state_json: Arc::from("{}"),
            },
        )
        .await
        .unwrap();
    assert!(store.delete(&gone).await.unwrap());
    assert!(
        !store.delete(&gone).await.unwrap(),
        "nothing left to delete"
    );
    assert!(store.read(&gone, 0).await.unwrap().is_empty());
    let loaded = store.load(&gone).await.unwrap();
    assert!(loaded.snapshot.is_none() && loaded.tail.is_empty());
    assert_eq!(loaded.next_sequence, 0);
    assert_eq!(store.read(&kept, 0).await.unwrap().len(), 2);
}

/// Calls `callback!(args..., check, check, ...)` with the name of every check, so that an
/// adapter's tests list them once and gain new checks without editing:
/// `argyll_store::for_each_conformance_check!(check!(single, server().addr(),));`
#[macro_export]
macro_rules! for_each_conformance_check {
    ($callback:ident ! ( $($args:tt)* )) => {
        $callback!(
            $($args)*
            append_and_read,
            read_newer,
            append_first,
            stale_appends_conflict,
            concurrent_conflicting_appends,
            snapshots,
            feed_carries_every_append,
            flow_index,
            recently_deactivated,
            deactivated_before,
            flows_by_creation_time,
            ordered_listing_filters,
            flow_id_prefix,
            paging_while_flows_are_added,
            leases,
            many_leases,
            lease_races,
            timers,
            delete_aggregates,
        );
    };
}

/// Runs every check, each on a fresh store from `make`.
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    append_and_read(&make().await).await;
    read_newer(&make().await).await;
    append_first(&make().await).await;
    stale_appends_conflict(&make().await).await;
    concurrent_conflicting_appends(&make().await).await;
    snapshots(&make().await).await;
    feed_carries_every_append(&make().await).await;
    flow_index(&make().await).await;
    recently_deactivated(&make().await).await;
    deactivated_before(&make().await).await;
    flows_by_creation_time(&make().await).await;
    ordered_listing_filters(&make().await).await;
    flow_id_prefix(&make().await).await;
    paging_while_flows_are_added(&make().await).await;
    leases(&make().await).await;
    many_leases(&make().await).await;
    lease_races(&make().await).await;
    timers(&make().await).await;
    delete_aggregates(&make().await).await;
}
