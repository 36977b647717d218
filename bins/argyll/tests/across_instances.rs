//! Any instance serves any request (issue 6, decision 21): a flow started on one engine is
//! completed by a webhook posted to another, its events reach a WebSocket subscriber on a
//! third, and an instance starting while another holds work in flight does not run that
//! work again.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argyll_testkit::RedisServer;
use axum::Json;
use axum::extract::{Path, State};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::chain::{Calls, count_call};
use support::{EngineProcess, register_step, send, serve_steps};
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Default)]
struct Service {
    /// Calls per receipt token.
    calls: Calls,
    /// Metadata of the async calls, for posting their results.
    pending: Arc<Mutex<Vec<Value>>>,
}

/// `/async` acknowledges and remembers the call; `/slow` answers after 3 s.
async fn handle(
    State(service): State<Service>,
    Path(step): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    count_call(&service.calls, &body);
    if step == "async" {
        service
            .pending
            .lock()
            .unwrap()
            .push(body["metadata"].clone());
        return Json(json!({"success": true}));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    Json(json!({"success": true, "outputs": {"slow_out": 1}}))
}

async fn service() -> (String, Service) {
    let service = Service::default();
    let app = axum::Router::new()
        .route("/{step}", axum::routing::post(handle))
        .with_state(service.clone());
    let base = serve_steps(app).await;
    (base, service)
}

async fn register(client: &reqwest::Client, engine: &str, id: &str, kind: &str, endpoint: String) {
    let step = json!({
        "id": id, "name": id, "type": kind,
        "http": {"endpoint": endpoint},
        "attributes": {format!("{id}_out"): {"role": "output"}},
        "work_config": {"max_retries": 0}
    });
    register_step(client, engine, &step).await;
}

async fn wait_terminal(client: &reqwest::Client, engine: &str, flow: &str) -> Value {
    let (status, state) = send(
        client,
        reqwest::Method::GET,
        &format!("{engine}/engine/flow/{flow}?wait=20s"),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{state}");
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_and_subscribers_on_any_instance() {
    let redis = RedisServer::start().unwrap();
    let (steps, service) = service().await;
    let client = reqwest::Client::new();
    let a = EngineProcess::start("a", &redis.addr());
    let b = EngineProcess::start("b", &redis.addr());
    let c = EngineProcess::start("c", &redis.addr());
    for engine in [&a, &b, &c] {
        engine.wait_healthy(&client).await;
    }
    register(&client, &a.base, "async", "async", format!("{steps}/async")).await;

    // Started on A; the step is called by A with A's webhook URL...
    let body = json!({"id": "across", "goals": ["async"]});
    let (status, _) = send(
        &client,
        reqwest::Method::POST,
        &format!("{}/engine/flow", a.base),
        &body,
    )
    .await;
    assert_eq!(status, 201);
    let metadata = loop {
        if let Some(metadata) = service.pending.lock().unwrap().first().cloned() {
            break metadata;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let url = metadata["webhook_url"].as_str().unwrap();
    assert!(url.starts_with(&a.base), "{url}");
    // A subscriber on C while the flow waits for its webhook: the snapshot, then what B does.
    let ws = format!("{}/engine/ws", c.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    let subscribe = json!({"type": "subscribe", "data": {"aggregate_id": ["flow", "across"]}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let snapshot = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("C answers the subscription")
        .unwrap()
        .unwrap();
    let snapshot: Value = serde_json::from_str(snapshot.to_text().unwrap()).unwrap();
    assert_eq!(snapshot["type"], "subscribed");
    assert_eq!(snapshot["data"]["status"], "active");
    // ...and completed through B.
    let on_b = url.replacen(&a.base, &b.base, 1);
    let result = json!({"success": true, "outputs": {"async_out": "via b"}});
    let (status, body) = send(&client, reqwest::Method::POST, &on_b, &result).await;
    assert_eq!(status, 200, "{body}");

    let flow = wait_terminal(&client, &c.base, "across").await;
    assert_eq!(flow["status"], "completed");
    assert_eq!(flow["attributes"]["async_out"]["value"], "via b");

    let mut seen = Vec::new();
    while !seen.contains(&"flow_completed".to_owned()) {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("C's subscriber receives the flow's events")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        seen.push(event["type"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("work_succeeded"),
        "B's events, live on C: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_instance_leaves_live_work_alone() {
    let redis = RedisServer::start().unwrap();
    let (steps, service) = service().await;
    let client = reqwest::Client::new();
    let a = EngineProcess::start("a", &redis.addr());
    a.wait_healthy(&client).await;
    register(&client, &a.base, "slow", "sync", format!("{steps}/slow")).await;
    let body = json!({"id": "held", "goals": ["slow"]});
    let (status, _) = send(
        &client,
        reqwest::Method::POST,
        &format!("{}/engine/flow", a.base),
        &body,
    )
    .await;
    assert_eq!(status, 201);
    while service.calls.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second instance starts (and recovers unfinished flows) while A's call runs.
    let late = EngineProcess::start("late", &redis.addr());
    late.wait_healthy(&client).await;
    let flow = wait_terminal(&client, &late.base, "held").await;
    assert_eq!(flow["status"], "completed");
    let calls: Vec<u32> = service.calls.lock().unwrap().values().copied().collect();
    assert_eq!(calls, [1], "the work item ran once");
}
