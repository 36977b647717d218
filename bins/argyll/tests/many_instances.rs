//! Several `argyll` processes on one Redis (issue 6): 2,000 flows of a three-step sync HTTP
//! chain started alternately through two engines, against a local step server that counts
//! the calls of every work item (by `receipt_token`). Three runs: both engines healthy; one
//! engine killed with SIGKILL mid-run; `redis-server` (AOF) restarted mid-run.
//!
//! `MANY_INSTANCES_FLOWS` changes the number of flows (default 2,000).

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argyll_testkit::RedisServer;
use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use support::{EngineProcess, LEASE, send};

fn flows() -> usize {
    std::env::var("MANY_INSTANCES_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// The three runs share the machine's two cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ------------------------------------------------------------------ the step server

type Calls = Arc<Mutex<HashMap<String, u32>>>;

async fn handle(
    State(calls): State<Calls>,
    Path(step): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let token = body["metadata"]["receipt_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    *calls.lock().unwrap().entry(token).or_default() += 1;
    let args = &body["arguments"];
    let outputs = match step.as_str() {
        "s1" => json!({"a": args["x"].as_i64().unwrap_or(0) + 1}),
        "s2" => json!({"b": args["a"].as_i64().unwrap_or(0) + 1}),
        _ => json!({"c": args["b"].as_i64().unwrap_or(0) + 1}),
    };
    Json(json!({"success": true, "outputs": outputs}))
}

async fn step_server() -> (String, Calls) {
    let calls = Calls::default();
    let app = axum::Router::new()
        .route("/{step}", axum::routing::post(handle))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

async fn register_chain(client: &reqwest::Client, engine: &str, steps: &str) {
    let chain = [
        (
            "s1",
            json!({"x": {"role": "required", "type": "number"}, "a": {"role": "output", "type": "number"}}),
        ),
        (
            "s2",
            json!({"a": {"role": "required", "type": "number"}, "b": {"role": "output", "type": "number"}}),
        ),
        (
            "s3",
            json!({"b": {"role": "required", "type": "number"}, "c": {"role": "output", "type": "number"}}),
        ),
    ];
    for (id, attributes) in chain {
        let step = json!({
            "id": id, "name": id, "type": "sync",
            "http": {"endpoint": format!("{steps}/{id}")},
            "attributes": attributes,
            "work_config": {"max_retries": 5, "backoff_ms": 100, "max_backoff_ms": 1000, "backoff_type": "exponential"}
        });
        let (status, body) = send(
            client,
            reqwest::Method::POST,
            &format!("{engine}/engine/step"),
            &step,
        )
        .await;
        assert!(status == 201 || status == 200, "{status} {body}");
    }
}

/// Starts `count` flows, alternating between the engines, 32 at a time.
async fn start_flows(client: &reqwest::Client, engines: &[String], count: usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let engine = engines[i % engines.len()].clone();
        starts.spawn(async move {
            let body = json!({"id": format!("load-{i:05}"), "goals": ["s3"], "init": {"x": i}});
            let (status, body) = send(
                &client,
                reqwest::Method::POST,
                &format!("{engine}/engine/flow"),
                &body,
            )
            .await;
            assert!(status == 201 || status == 200, "start {i}: {status} {body}");
            drop(permit);
        });
    }
    while let Some(started) = starts.join_next().await {
        started.unwrap();
    }
}

/// Every flow in the index (top-level), by status.
async fn index_counts(client: &reqwest::Client, engine: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(after) => format!("{engine}/engine/flow?limit=1000&cursor={after}"),
            None => format!("{engine}/engine/flow?limit=1000"),
        };
        let (status, page) = send(client, reqwest::Method::GET, &url, &Value::Null).await;
        assert_eq!(status, 200, "{page}");
        for flow in page["flows"].as_array().unwrap() {
            let status = flow["digest"]["status"].as_str().unwrap().to_owned();
            *counts.entry(status).or_default() += 1;
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return counts,
        }
    }
}

async fn wait_all_completed(
    client: &reqwest::Client,
    engine: &str,
    count: usize,
    deadline: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let counts = index_counts(client, engine).await;
        let completed = counts.get("completed").copied().unwrap_or(0);
        if completed == count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < deadline,
            "only {completed} of {count} flows completed after {deadline:?}: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn call_histogram(calls: &Calls) -> (usize, HashMap<u32, usize>) {
    let calls = calls.lock().unwrap();
    let mut histogram = HashMap::new();
    for count in calls.values() {
        *histogram.entry(*count).or_default() += 1;
    }
    (calls.len(), histogram)
}

// ------------------------------------------------------------------ the runs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_complete_every_flow_calling_each_item_once() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let redis = RedisServer::start().unwrap();
    let (steps, calls) = step_server().await;
    let client = reqwest::Client::new();
    let a = EngineProcess::start("a", &redis.addr());
    let b = EngineProcess::start("b", &redis.addr());
    a.wait_healthy(&client).await;
    b.wait_healthy(&client).await;
    register_chain(&client, &a.base, &steps).await;

    let started = Instant::now();
    start_flows(&client, &[a.base.clone(), b.base.clone()], count).await;
    wait_all_completed(&client, &b.base, count, Duration::from_secs(300)).await;
    println!("{count} flows on two engines: {:?}", started.elapsed());

    let (tokens, histogram) = call_histogram(&calls);
    assert_eq!(tokens, 3 * count, "every work item was called");
    assert_eq!(
        histogram,
        HashMap::from([(1, 3 * count)]),
        "each exactly once"
    );
    let counts = index_counts(&client, &a.base).await;
    assert_eq!(counts, HashMap::from([("completed".to_owned(), count)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_s_work_is_finished_by_the_survivor() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let redis = RedisServer::start().unwrap();
    let (steps, calls) = step_server().await;
    let client = reqwest::Client::new();
    let survivor = EngineProcess::start("survivor", &redis.addr());
    let mut victim = EngineProcess::start("victim", &redis.addr());
    survivor.wait_healthy(&client).await;
    victim.wait_healthy(&client).await;
    register_chain(&client, &survivor.base, &steps).await;

    start_flows(
        &client,
        &[survivor.base.clone(), victim.base.clone()],
        count,
    )
    .await;
    // Kill the victim while work is in flight.
    loop {
        let done = index_counts(&client, &survivor.base)
            .await
            .get("completed")
            .copied()
            .unwrap_or(0);
        if done >= count / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    victim.kill();
    let killed_at = Instant::now();
    if std::env::var("MANY_INSTANCES_LOGS").is_ok() {
        for _ in 0..15 {
            let counts = index_counts(&client, &survivor.base).await;
            println!("{:?} after the kill: {counts:?}", killed_at.elapsed());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    wait_all_completed(&client, &survivor.base, count, Duration::from_secs(300)).await;
    println!(
        "after SIGKILL of one engine: all {count} flows completed {:?} later (lease {LEASE})",
        killed_at.elapsed()
    );

    let (tokens, histogram) = call_histogram(&calls);
    assert_eq!(tokens, 3 * count, "every work item was called");
    let twice = histogram.get(&2).copied().unwrap_or(0);
    assert_eq!(
        histogram.keys().copied().max(),
        Some(if twice > 0 { 2 } else { 1 }),
        "at most twice: {histogram:?}"
    );
    println!("work items called twice (at-least-once after the kill): {twice}");
    if std::env::var("MANY_INSTANCES_LOGS").is_ok() {
        println!("--- survivor log\n{}", survivor.log());
    }
    let counts = index_counts(&client, &survivor.base).await;
    assert_eq!(counts, HashMap::from([("completed".to_owned(), count)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let mut redis = RedisServer::start_persistent().unwrap();
    let (steps, calls) = step_server().await;
    let client = reqwest::Client::new();
    let a = EngineProcess::start("a", &redis.addr());
    let b = EngineProcess::start("b", &redis.addr());
    a.wait_healthy(&client).await;
    b.wait_healthy(&client).await;
    register_chain(&client, &a.base, &steps).await;

    let engines = [a.base.clone(), b.base.clone()];
    let starter = {
        let client = client.clone();
        tokio::spawn(async move { start_flows(&client, &engines, count).await })
    };
    while calls.lock().unwrap().len() < count / 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    redis.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis.restart().unwrap();
    starter.await.unwrap();
    wait_all_completed(&client, &a.base, count, Duration::from_secs(300)).await;

    let counts = index_counts(&client, &b.base).await;
    assert_eq!(
        counts,
        HashMap::from([("completed".to_owned(), count)]),
        "none lost or duplicated"
    );
    let (tokens, histogram) = call_histogram(&calls);
    assert_eq!(tokens, 3 * count);
    println!("calls per work item across the Redis restart: {histogram:?}");
    let logs = a.log() + &b.log();
    assert!(
        logs.contains("redis connection lost"),
        "the outage is logged"
    );
}
