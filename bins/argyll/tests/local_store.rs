//! The default local store across a crash of the process (issue 16): 2,000 flows of a
//! three-step sync HTTP chain, `kill -9` of the engine mid-run, a restart on the same data
//! directory and port. Every acknowledged start completes, each work item's handler is called
//! at most twice, and every flow's event log replays to its state. And an async step's parked
//! work survives a restart: it is not called again, and its webhook completes the flow.
//!
//! `LOCAL_CRASH_FLOWS` changes the number of flows (default 2,000).

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

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use support::{EngineProcess, send};

fn flows() -> usize {
    std::env::var("LOCAL_CRASH_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// The runs share the machine's two cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Calls = Arc<Mutex<HashMap<String, u32>>>;

/// Sync steps `s1`..`s3` (x → a → b → c, each adding one), counting calls by work item.
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

async fn step_server(calls: Calls) -> String {
    let app = axum::Router::new()
        .route("/{step}", axum::routing::post(handle))
        .with_state(calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn register(client: &reqwest::Client, engine: &str, step: &Value) {
    let (status, body) = send(
        client,
        reqwest::Method::POST,
        &format!("{engine}/engine/step"),
        step,
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {body}");
}

async fn register_chain(client: &reqwest::Client, engine: &str, steps: &str) {
    for (id, input, output) in [("s1", "x", "a"), ("s2", "a", "b"), ("s3", "b", "c")] {
        let step = json!({
            "id": id, "name": id, "type": "sync",
            "http": {"endpoint": format!("{steps}/{id}")},
            "attributes": {
                input: {"role": "required", "type": "number"},
                output: {"role": "output", "type": "number"}
            },
            "work_config": {"max_retries": 5, "backoff_ms": 100, "max_backoff_ms": 1000, "backoff_type": "exponential"}
        });
        register(client, engine, &step).await;
    }
}

/// Starts `count` flows, 32 at a time; each start is retried until the engine acknowledges
/// it (across the engine's death and restart: a repeated start of a flow that exists is
/// acknowledged as well).
async fn start_flows(client: &reqwest::Client, engine: &str, count: usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let url = format!("{engine}/engine/flow");
        starts.spawn(async move {
            let body = json!({"id": format!("crash-{i:05}"), "goals": ["s3"], "init": {"x": i}});
            let (status, body) = send(&client, reqwest::Method::POST, &url, &body).await;
            assert!(status == 201 || status == 200, "start {i}: {status} {body}");
            drop(permit);
        });
    }
    while let Some(started) = starts.join_next().await {
        started.unwrap();
    }
}

/// Every top-level flow in the index, by status.
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

/// Waits for the signal (the index's counts), not for a fixed time.
async fn wait_all_completed(client: &reqwest::Client, engine: &str, count: usize) {
    let started = Instant::now();
    loop {
        let counts = index_counts(client, engine).await;
        if counts.get("completed").copied().unwrap_or(0) == count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not all {count} flows completed after 300 s: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn settings(data_dir: &std::path::Path, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("ARGYLL_DATA_DIR", data_dir.display().to_string()),
        ("ENGINE_PORT", port.to_string()),
        ("ENGINE_LOGGING_LEVEL", "info".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_restarted_on_its_data_dir_completes_every_flow() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let data = tempfile::tempdir().unwrap();
    let port = argyll_testkit::free_port().unwrap();
    let calls = Calls::default();
    let steps = step_server(calls.clone()).await;
    let client = reqwest::Client::new();
    let mut engine = EngineProcess::launch("local-crash", &settings(data.path(), port), None, &[]);
    engine.wait_healthy(&client).await;
    register_chain(&client, &engine.base, &steps).await;

    let starter = {
        let client = client.clone();
        let base = engine.base.clone();
        tokio::spawn(async move { start_flows(&client, &base, count).await })
    };
    // Mid-run: a third of the work items called, starts still arriving.
    while calls.lock().unwrap().len() < count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    engine.kill();
    let called_before_the_kill = calls.lock().unwrap().len();
    let restarted = EngineProcess::launch("local-crash", &settings(data.path(), port), None, &[]);
    restarted.wait_healthy(&client).await;
    starter.await.unwrap();
    let killed_at = Instant::now();
    wait_all_completed(&client, &restarted.base, count).await;
    println!(
        "kill -9 after {called_before_the_kill} of {} work items were called: all {count} flows completed {:?} after the restart",
        3 * count,
        killed_at.elapsed()
    );

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3 * count, "every work item was called");
    let mut histogram: HashMap<u32, usize> = HashMap::new();
    for n in calls.values() {
        *histogram.entry(*n).or_default() += 1;
    }
    println!("calls per work item: {histogram:?}");
    assert!(
        histogram.keys().all(|n| *n <= 2),
        "at most twice: {histogram:?}"
    );
    let log = restarted.log();
    assert!(
        log.contains("using the local store") && log.contains("recovered unfinished flows"),
        "the restart recovered flows: {log}"
    );
    // Every flow's log replays to a completed state with the chain's result.
    for i in 0..count {
        let (status, flow) = send(
            &client,
            reqwest::Method::GET,
            &format!("{}/engine/flow/crash-{i:05}", restarted.base),
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{flow}");
        assert_eq!(flow["status"], "completed", "{flow}");
        assert_eq!(
            flow["attributes"]["c"]["value"],
            json!(i + 3),
            "crash-{i:05}: {flow}"
        );
        let (status, events) = send(
            &client,
            reqwest::Method::GET,
            &format!("{}/engine/flow/crash-{i:05}/events", restarted.base),
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{events}");
        let sequences: Vec<u64> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["sequence"].as_u64().unwrap())
            .collect();
        assert_eq!(
            sequences,
            (0..sequences.len() as u64).collect::<Vec<_>>(),
            "crash-{i:05}: a dense log"
        );
    }
}

/// An async step answers at once and is completed later through its webhook.
async fn async_step(
    State(calls): State<Arc<Mutex<Vec<String>>>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let webhook = body["metadata"]["webhook_url"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    calls.lock().unwrap().push(webhook);
    Json(json!({"success": true}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_async_work_waits_for_its_webhook_across_a_restart() {
    let _serial = SERIAL.lock().await;
    let data = tempfile::tempdir().unwrap();
    let port = argyll_testkit::free_port().unwrap();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .route("/async", axum::routing::post(async_step))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let steps = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();

    let mut engine = EngineProcess::launch("local-async", &settings(data.path(), port), None, &[]);
    engine.wait_healthy(&client).await;
    let step = json!({
        "id": "later", "name": "later", "type": "async",
        "http": {"endpoint": format!("{steps}/async")},
        "attributes": {"x": {"role": "required", "type": "number"}, "y": {"role": "output", "type": "number"}}
    });
    register(&client, &engine.base, &step).await;
    let (status, body) = send(
        &client,
        reqwest::Method::POST,
        &format!("{}/engine/flow", engine.base),
        &json!({"id": "parked", "goals": ["later"], "init": {"x": 1}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let started = Instant::now();
    while calls.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the async step was never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The step accepted the work: its lease is parked. Kill the engine before the webhook.
    engine.kill();
    let restarted = EngineProcess::launch("local-async", &settings(data.path(), port), None, &[]);
    restarted.wait_healthy(&client).await;
    let (status, flow) = send(
        &client,
        reqwest::Method::GET,
        &format!("{}/engine/flow/parked", restarted.base),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{flow}");
    assert_eq!(flow["status"], "active", "{flow}");
    // Recovery ran (the restart's log says so) without calling the step again.
    let started = Instant::now();
    while !restarted.log().contains("recovered unfinished flows") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            restarted.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let webhook = calls.lock().unwrap()[0].clone();
    let response = client
        .post(&webhook)
        .json(&json!({"success": true, "outputs": {"y": 2}}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let (status, flow) = send(
        &client,
        reqwest::Method::GET,
        &format!("{}/engine/flow/parked?wait=10s", restarted.base),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{flow}");
    assert_eq!(flow["status"], "completed", "{flow}");
    assert_eq!(flow["attributes"]["y"]["value"], json!(2), "{flow}");
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "the parked step was not called again"
    );
}
