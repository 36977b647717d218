//! A three-step sync HTTP chain (x → a → b → c, each step adding one) served by a step server
//! in the test process that counts the calls of every work item (by `receipt_token`), and
//! the drivers of the runs that use it: many starts, the index's counts, waiting for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::{register_step, send, serve_steps};

pub type Calls = Arc<Mutex<HashMap<String, u32>>>;

/// Counts a step call by the receipt token of its work item.
pub fn count_call(calls: &Calls, body: &Value) {
    let token = body["metadata"]["receipt_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    *calls.lock().unwrap().entry(token).or_default() += 1;
}

async fn handle(
    State(calls): State<Calls>,
    Path(step): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    count_call(&calls, &body);
    let args = &body["arguments"];
    let outputs = match step.as_str() {
        "s1" => json!({"a": args["x"].as_i64().unwrap_or(0) + 1}),
        "s2" => json!({"b": args["a"].as_i64().unwrap_or(0) + 1}),
        _ => json!({"c": args["b"].as_i64().unwrap_or(0) + 1}),
    };
    Json(json!({"success": true, "outputs": outputs}))
}

pub async fn step_server() -> (String, Calls) {
    let calls = Calls::default();
    let app = axum::Router::new()
        .route("/{step}", axum::routing::post(handle))
        .with_state(calls.clone());
    let base = serve_steps(app).await;
    (base, calls)
}

pub async fn register_chain(client: &reqwest::Client, engine: &str, steps: &str) {
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
        register_step(client, engine, &step).await;
    }
}

/// Starts `count` flows, alternating between the engines, 32 at a time.
pub async fn start_flows(client: &reqwest::Client, engines: &[String], prefix: &str, count: usize) {
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let engine = engines[i % engines.len()].clone();
        let id = format!("{prefix}-{i:05}");
        starts.spawn(async move {
            let body = json!({"id": id, "goals": ["s3"], "init": {"x": i}});
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
pub async fn index_counts(client: &reqwest::Client, engine: &str) -> HashMap<String, usize> {
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

pub async fn wait_all_completed(
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

pub fn call_histogram(calls: &Calls) -> (usize, HashMap<u32, usize>) {
    let calls = calls.lock().unwrap();
    let mut histogram = HashMap::new();
    for count in calls.values() {
        *histogram.entry(*count).or_default() += 1;
    }
    (calls.len(), histogram)
}
