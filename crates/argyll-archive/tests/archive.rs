//! Archiving against real services: flows run by the engine on a real `redis-server`, archived
//! into a real S3 API (`moto_server`), both started by the test on free ports.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use argyll_archive::{ArchivePolicy, Archiver, Bucket, JobOutcome};
use argyll_engine::{Engine, StartFlow};
use argyll_model::{AttributeSpec, AttributeType, FlowState, ScriptLanguage, Step};
use argyll_store::{Clock, FlowIndex, FlowPhase, FlowQuery, Leases, ManualClock};
use argyll_store_redis::{RedisConfig, RedisStore};
use argyll_testkit::{MotoServer, RedisServer, unique};
use serde_json::json;

fn s3_options(moto: &MotoServer) -> Vec<(&'static str, String)> {
    vec![
        ("aws_endpoint", moto.endpoint()),
        ("aws_allow_http", "true".into()),
        ("aws_access_key_id", "test".into()),
        ("aws_secret_access_key", "test".into()),
        ("aws_region", "us-east-1".into()),
    ]
}

fn bucket(moto: &MotoServer, name: &str) -> Bucket {
    let options = s3_options(moto);
    let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Bucket::open_with(&format!("s3://{name}"), "archived/", &options).unwrap()
}

fn policy() -> ArchivePolicy {
    ArchivePolicy {
        max_age: Duration::from_secs(1),
        sweep_batch: 100,
        pressure_batch: 10,
        lease_timeout: Duration::from_secs(2),
        ..ArchivePolicy::default()
    }
}

async fn store(redis: &RedisServer) -> RedisStore {
    let prefix = unique("archive");
    RedisStore::connect(
        RedisConfig::new(&redis.addr(), &format!("{prefix}:engine")),
        RedisConfig {
            // A short feed, so that archiving frees what the flows took.
            feed_length: 100,
            ..RedisConfig::new(&redis.addr(), &format!("{prefix}:flow"))
        },
    )
    .await
    .unwrap()
}

/// The tests run hundreds of flows each; one at a time on two cores.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `count` one-step flows on the engine and waits until all are deactivated; returns
/// their final states by id.
async fn finished_flows(
    store: &RedisStore,
    count: usize,
    payload: usize,
) -> BTreeMap<String, FlowState> {
    more_finished_flows(store, 0, count, payload).await
}

/// Flows `first..first + count`, after which `first + count` flows are deactivated in all.
async fn more_finished_flows(
    store: &RedisStore,
    first: usize,
    count: usize,
    payload: usize,
) -> BTreeMap<String, FlowState> {
    let engine = Engine::builder(store.clone()).build().unwrap();
    engine.start().await.unwrap();
    let step = Step::script("s", ScriptLanguage::Ale, "{:y (* 2 x)}")
        .with_attribute("x", AttributeSpec::required(AttributeType::Number))
        .with_attribute("pad", AttributeSpec::optional(AttributeType::String, None))
        .with_attribute("y", AttributeSpec::output(AttributeType::Number));
    let _ = engine.register_step(step).await.unwrap();
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut runs = tokio::task::JoinSet::new();
    for i in first..first + count {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let engine = engine.clone();
        runs.spawn(async move {
            let id = format!("f-{i:04}");
            let mut init = argyll_model::Args::new();
            init.insert("x".into(), json!(i));
            init.insert("pad".into(), json!("p".repeat(payload)));
            engine
                .start_flow(StartFlow {
                    flow_id: id.clone(),
                    goals: vec!["s".into()],
                    init,
                    metadata: Default::default(),
                })
                .await
                .unwrap();
            let flow = engine
                .wait_for_flow(&id, Duration::from_secs(30))
                .await
                .unwrap()
                .unwrap();
            drop(permit);
            (id, flow)
        });
    }
    let mut flows = BTreeMap::new();
    while let Some(run) = runs.join_next().await {
        let (id, flow) = run.unwrap();
        assert_eq!(flow.status.to_string(), "completed");
        flows.insert(id, flow);
    }
    let deactivated = FlowQuery {
        phases: vec![FlowPhase::Deactivated],
        ..FlowQuery::default()
    };
    for _ in 0..500 {
        if store.list_flows(&deactivated).await.unwrap().entries.len() >= first + count {
            engine.shutdown(Duration::from_secs(1)).await;
            return flows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("flows never deactivated");
}

fn redis_keys(redis: &RedisServer, pattern: &str) -> usize {
    redis.count_keys(pattern).unwrap()
}

async fn phase_count(store: &RedisStore, phase: FlowPhase) -> usize {
    let query = FlowQuery {
        phases: vec![phase],
        ..FlowQuery::default()
    };
    store.list_flows(&query).await.unwrap().entries.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_sweep_moves_every_finished_flow_to_the_bucket() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start().unwrap();
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let store = store(&redis).await;
    let flows = finished_flows(&store, 500, 16).await;
    assert_eq!(redis_keys(&redis, "*flow:f-*:events"), 500);
    let archiver = aged_archiver(store.clone(), bucket(&moto, "flows"), policy(), "a1");
    let mut sweeps = 0;
    while phase_count(&store, FlowPhase::Archived).await < 500 {
        sweeps += 1;
        assert!(sweeps <= 10, "500 flows in batches of 100 take 5 sweeps");
        archiver.sweep_once().await.unwrap();
    }
    assert_eq!(sweeps, 5);
    assert_eq!(redis_keys(&redis, "*flow:f-*:events"), 0, "gone from Redis");
    let bucket = bucket(&moto, "flows");
    for (id, state) in &flows {
        let archived = bucket.read(id).await.unwrap().expect("in the bucket");
        assert_eq!(&archived.state, state, "{id} reads back identical");
        assert_eq!(archived.events.len(), 7, "{id}: the whole log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_archivers_never_archive_a_flow_twice() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start().unwrap();
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let store = store(&redis).await;
    finished_flows(&store, 200, 0).await;
    let policy = ArchivePolicy {
        sweep_batch: 1000,
        ..policy()
    };
    let first = aged_archiver(store.clone(), bucket(&moto, "flows"), policy.clone(), "a1");
    let second = aged_archiver(store.clone(), bucket(&moto, "flows"), policy, "a2");
    let (a, b) = tokio::join!(first.sweep_once(), second.sweep_once());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a + b,
        200,
        "each flow archived by exactly one archiver ({a} + {b})"
    );
    assert_eq!(phase_count(&store, FlowPhase::Archived).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_deletes_nothing_and_archiving_resumes() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start().unwrap();
    let mut moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let store = store(&redis).await;
    finished_flows(&store, 20, 0).await;
    let archiver = aged_archiver(store.clone(), bucket(&moto, "flows"), policy(), "a1");

    moto.stop().unwrap();
    assert!(archiver.sweep_once().await.is_err(), "every job failed");
    assert_eq!(
        redis_keys(&redis, "*flow:f-*:events"),
        20,
        "nothing deleted"
    );
    assert_eq!(phase_count(&store, FlowPhase::Archived).await, 0);

    moto.restart().unwrap();
    moto.create_bucket("flows").unwrap();
    assert_eq!(
        archiver.sweep_once().await.unwrap(),
        20,
        "archiving resumes"
    );
    assert_eq!(redis_keys(&redis, "*flow:f-*:events"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_died_after_writing_is_finished_once_by_the_next_archiver() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start().unwrap();
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let store = store(&redis).await;
    let flows = finished_flows(&store, 3, 0).await;
    // What a crashed archiver leaves: its lease, the flow marked archiving, the object written,
    // the events not yet deleted.
    let clock = aged_clock();
    let crashed = "f-0001";
    assert!(
        store
            .acquire(
                &format!("archive/{crashed}"),
                "dead",
                Duration::from_millis(300),
                clock.now()
            )
            .await
            .unwrap()
    );
    let mut entry = store.get_flow(crashed).await.unwrap().unwrap();
    entry.phase = FlowPhase::Archiving;
    store.put_flow(entry).await.unwrap();
    let survivor = Archiver::new(store.clone(), bucket(&moto, "flows"), policy(), "alive")
        .with_clock(Arc::new(clock.clone()));
    assert_eq!(
        survivor.archive_flow(crashed).await.unwrap(),
        JobOutcome::Skipped,
        "the dead archiver's lease still holds"
    );
    // The dead archiver's lease lapses.
    clock.advance(Duration::from_millis(400));
    assert_eq!(survivor.sweep_once().await.unwrap(), 3);
    assert_eq!(
        survivor.sweep_once().await.unwrap(),
        0,
        "nothing is archived twice"
    );
    let archived = bucket(&moto, "flows").read(crashed).await.unwrap().unwrap();
    assert_eq!(archived.state, flows[crashed]);
    assert_eq!(redis_keys(&redis, "*flow:f-*:events"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_is_relieved() {
    let _heavy = HEAVY.lock().await;
    let redis = RedisServer::start_with(&["--maxmemory", "8mb"]).unwrap();
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let store = store(&redis).await;
    let archiver = Archiver::new(
        store.clone(),
        bucket(&moto, "flows"),
        ArchivePolicy {
            memory_percent: 40.0,
            ..policy()
        },
        "a1",
    );
    let before = archiver.memory_percent().await.unwrap().unwrap();
    assert!(before < 40.0, "starts below the threshold: {before:.1}%");
    // Completed flows with 4 KiB of init data each, 25 at a time, until Redis holds more
    // than 40% of its 8 MiB.
    let mut total = 0;
    let mut full = before;
    while full < 40.0 {
        assert!(total < 1000, "never filled: {full:.1}%");
        more_finished_flows(&store, total, 25, 4 * 1024).await;
        total += 25;
        full = archiver.memory_percent().await.unwrap().unwrap();
    }
    let archived = archiver.relieve_pressure_once().await.unwrap();
    let after = archiver.memory_percent().await.unwrap().unwrap();
    assert!(
        archived > 0 && after < 40.0,
        "{archived} archived, now {after:.1}%"
    );
    assert!(
        archived < total,
        "only what was needed: {archived} of {total}"
    );
}

/// A clock `policy().max_age` and a bit past the system's time: flows that just finished
/// are old enough for the sweep, without waiting for them to age.
fn aged_clock() -> ManualClock {
    let clock = ManualClock::starting_now();
    clock.advance(policy().max_age + Duration::from_millis(100));
    clock
}

/// An archiver that sees the flows finished just now as due.
fn aged_archiver<S: argyll_store::Store>(
    store: S,
    bucket: Bucket,
    policy: ArchivePolicy,
    owner: &str,
) -> Archiver<S> {
    Archiver::new(store, bucket, policy, owner).with_clock(Arc::new(aged_clock()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_is_swept_too_and_has_no_pressure_trigger() {
    let store = argyll_store::EmbeddedStore::new();
    let engine = Engine::builder(store.clone()).build().unwrap();
    engine.start().await.unwrap();
    let step = Step::script("s", ScriptLanguage::Ale, "{:y 1}")
        .with_attribute("y", AttributeSpec::output(AttributeType::Number));
    engine.register_step(step).await.unwrap();
    for i in 0..5 {
        engine
            .start_flow(StartFlow {
                flow_id: format!("e-{i}"),
                goals: vec!["s".into()],
                ..StartFlow::default()
            })
            .await
            .unwrap();
        engine
            .wait_for_flow(&format!("e-{i}"), Duration::from_secs(5))
            .await
            .unwrap();
    }
    let bucket = Bucket::open("memory://", "archived/").unwrap();
    let archiver = aged_archiver(store.clone(), bucket.clone(), policy(), "a1");
    assert_eq!(archiver.memory_percent().await.unwrap(), None);
    assert_eq!(archiver.relieve_pressure_once().await.unwrap(), 0);
    let mut archived = 0;
    for _ in 0..50 {
        archived += archiver.sweep_once().await.unwrap();
        if archived == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(archived, 5);
    assert!(
        engine.flow("e-0").await.unwrap().is_none(),
        "gone from the store"
    );
    assert!(bucket.read("e-0").await.unwrap().is_some());
}

#[tokio::test]
async fn without_maxmemory_the_pressure_trigger_is_off() {
    let redis = RedisServer::start().unwrap();
    let moto = MotoServer::start().unwrap();
    moto.create_bucket("flows").unwrap();
    let store = store(&redis).await;
    let archiver = Archiver::new(store, bucket(&moto, "flows"), policy(), "a1");
    assert_eq!(archiver.memory_percent().await.unwrap(), None);
    assert_eq!(archiver.relieve_pressure_once().await.unwrap(), 0);
}
