//! The default local store across a crash of the process (issue 16): 2,000 flows of a
//! three-step sync HTTP chain, `kill -9` of the engine mid-run, a restart on the same data
//! directory and port. Every acknowledged start completes, each work item's handler is called
//! at most twice, and every flow's event log replays to its state. And an async step's parked
//! work survives a restart: it is not called again, and its webhook completes the flow.
//!
//! `LOCAL_CRASH_FLOWS` changes the number of flows (default 2,000). The chain, its step server
//! and the drivers are `support::chain`'s, shared with the many-instances runs.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use support::chain::{
    call_histogram, register_chain, start_flows, step_server, wait_all_completed,
};
use support::{EngineProcess, register_step, send, serve_steps};

fn flows() -> usize {
    std::env::var("LOCAL_CRASH_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

/// The runs share the machine's two cores: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One engine on its own data directory and port, which a restart keeps (so clients' and
/// webhooks' URLs stay valid).
struct Rig {
    name: &'static str,
    data: tempfile::TempDir,
    port: u16,
    client: reqwest::Client,
    engine: EngineProcess,
}

impl Rig {
    async fn launch(name: &'static str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let port = argyll_testkit::free_port().unwrap();
        let client = reqwest::Client::new();
        let engine = Self::engine(name, &data, port, &client).await;
        Rig {
            name,
            data,
            port,
            client,
            engine,
        }
    }

    async fn engine(
        name: &str,
        data: &tempfile::TempDir,
        port: u16,
        client: &reqwest::Client,
    ) -> EngineProcess {
        let settings = [
            ("ARGYLL_DATA_DIR", data.path().display().to_string()),
            ("ENGINE_PORT", port.to_string()),
            ("ENGINE_LOGGING_LEVEL", "info".into()),
        ];
        let engine = EngineProcess::launch(name, &settings, None, &[]);
        engine.wait_healthy(client).await;
        engine
    }

    /// A new engine on the same directory and port, after a `kill -9` of the running one (if
    /// the test has not killed it already).
    async fn restart(&mut self) {
        self.engine.kill();
        self.engine = Self::engine(self.name, &self.data, self.port, &self.client).await;
    }

    /// Registers `step` and starts `flow` (`{"id", "goals", "init"}`).
    async fn start(&self, step: &Value, flow: &Value) {
        register_step(&self.client, &self.engine.base, step).await;
        let (status, body) = send(
            &self.client,
            reqwest::Method::POST,
            &format!("{}/engine/flow", self.engine.base),
            flow,
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    /// The state of flow `id`, waiting up to `wait` (e.g. `10s`) for it to finish if given.
    async fn flow(&self, id: &str, wait: Option<&str>) -> Value {
        let query = wait.map(|wait| format!("?wait={wait}")).unwrap_or_default();
        let (status, flow) = send(
            &self.client,
            reqwest::Method::GET,
            &format!("{}/engine/flow/{id}{query}", self.engine.base),
            &Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{flow}");
        flow
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_restarted_on_its_data_dir_completes_every_flow() {
    let _serial = SERIAL.lock().await;
    let count = flows();
    let (steps, calls) = step_server().await;
    let mut rig = Rig::launch("local-crash").await;
    let client = rig.client.clone();
    register_chain(&client, &rig.engine.base, &steps).await;

    let starter = {
        let client = client.clone();
        let base = rig.engine.base.clone();
        tokio::spawn(async move { start_flows(&client, &[base], "crash", count).await })
    };
    // Mid-run: a third of the work items called, starts still arriving. (Polled: the step
    // server's calls are the signal.)
    while calls.lock().unwrap().len() < count {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.engine.kill();
    let called_before_the_kill = calls.lock().unwrap().len();
    rig.restart().await;
    let restarted = &rig.engine;
    starter.await.unwrap();
    let killed_at = Instant::now();
    wait_all_completed(&client, &restarted.base, count, Duration::from_secs(300)).await;
    println!(
        "kill -9 after {called_before_the_kill} of {} work items were called: all {count} flows completed {:?} after the restart",
        3 * count,
        killed_at.elapsed()
    );

    let (items, histogram) = call_histogram(&calls);
    assert_eq!(items, 3 * count, "every work item was called");
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
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .route("/async", axum::routing::post(async_step))
        .with_state(calls.clone());
    let steps = serve_steps(app).await;
    let mut rig = Rig::launch("local-async").await;
    let client = rig.client.clone();
    let step = json!({
        "id": "later", "name": "later", "type": "async",
        "http": {"endpoint": format!("{steps}/async")},
        "attributes": {"x": {"role": "required", "type": "number"}, "y": {"role": "output", "type": "number"}}
    });
    rig.start(
        &step,
        &json!({"id": "parked", "goals": ["later"], "init": {"x": 1}}),
    )
    .await;
    let started = Instant::now();
    while calls.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the async step was never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The step accepted the work: its lease is parked. Kill the engine before the webhook.
    rig.restart().await;
    let restarted = &rig.engine;
    let flow = rig.flow("parked", None).await;
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
    let flow = rig.flow("parked", Some("10s")).await;
    assert_eq!(flow["status"], "completed", "{flow}");
    assert_eq!(flow["attributes"]["y"]["value"], json!(2), "{flow}");
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "the parked step was not called again"
    );
}

/// A step that fails its first call with a retryable error (a 503) and succeeds after,
/// counting calls.
async fn flaky_step(State(calls): State<Arc<Mutex<u32>>>) -> (axum::http::StatusCode, Json<Value>) {
    let call = {
        let mut calls = calls.lock().unwrap();
        *calls += 1;
        *calls
    };
    if call == 1 {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "not yet"})),
        )
    } else {
        (
            axum::http::StatusCode::OK,
            Json(json!({"success": true, "outputs": {"y": call}})),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_scheduled_before_a_kill_fires_after_the_restart() {
    let _serial = SERIAL.lock().await;
    let calls: Arc<Mutex<u32>> = Arc::default();
    let app = axum::Router::new()
        .route("/flaky", axum::routing::post(flaky_step))
        .with_state(calls.clone());
    let steps = serve_steps(app).await;
    let mut rig = Rig::launch("local-retry").await;
    // The retry is due 3 s after the failure: long enough to kill and restart before it.
    let step = json!({
        "id": "flaky", "name": "flaky", "type": "sync",
        "http": {"endpoint": format!("{steps}/flaky")},
        "attributes": {"x": {"role": "required"}, "y": {"role": "output"}},
        "work_config": {"max_retries": 3, "backoff_ms": 3000, "max_backoff_ms": 3000, "backoff_type": "fixed"}
    });
    rig.start(
        &step,
        &json!({"id": "retried", "goals": ["flaky"], "init": {"x": 1}}),
    )
    .await;
    // Wait for the failure to be recorded (the retry is then scheduled in the same command).
    let started = Instant::now();
    loop {
        let flow = rig.flow("retried", None).await;
        if flow.to_string().contains("next_retry_at")
            && !flow
                .to_string()
                .contains("\"next_retry_at\":\"0001-01-01T00:00:00Z\"")
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{flow}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.engine.kill();
    assert_eq!(*calls.lock().unwrap(), 1, "killed before the retry");
    rig.restart().await;
    let flow = rig.flow("retried", Some("20s")).await;
    assert_eq!(flow["status"], "completed", "{flow}");
    assert_eq!(flow["attributes"]["y"]["value"], json!(2), "{flow}");
    assert_eq!(
        *calls.lock().unwrap(),
        2,
        "one retry, fired by the restarted engine"
    );
}
