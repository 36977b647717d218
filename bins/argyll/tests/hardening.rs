//! Issue 14: what broke when the server was attacked or driven by real clients. One test per
//! item, named after it (`item_NN_...`), each against the real `argyll` binary; the crash and
//! hang items run it under `prlimit` and check that it still answers `/health` afterwards.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use support::{EngineProcess, send};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

// ------------------------------------------------------------------ helpers

/// A step service in the test process, on a free port.
struct StepService {
    base: String,
}

impl StepService {
    async fn start(router: axum::Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        StepService { base }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post_json(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let response = client.post(url).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Registers a step; panics unless it is accepted.
async fn register(client: &reqwest::Client, engine: &EngineProcess, step: Value) {
    let (status, body) = post_json(client, &format!("{}/engine/step", engine.base), &step).await;
    assert!(status == 201 || status == 200, "{status}: {body}");
}

/// Reads a flow, waiting up to `wait` for it to finish.
async fn flow_after(
    client: &reqwest::Client,
    engine: &EngineProcess,
    flow_id: &str,
    wait: &str,
) -> Value {
    let (status, flow) = send(
        client,
        reqwest::Method::GET,
        &format!("{}/engine/flow/{flow_id}?wait={wait}", engine.base),
        &Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{flow}");
    flow
}

// ------------------------------------------------------------------ item 4

/// A sync step's handler that reports the token of each call and answers when released.
#[derive(Clone)]
struct HeldHandler {
    tokens: mpsc::UnboundedSender<String>,
    release: Arc<Notify>,
}

async fn held_handler(State(held): State<HeldHandler>, Json(request): Json<Value>) -> Json<Value> {
    let token = request["metadata"]["receipt_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let _ = held.tokens.send(token);
    held.release.notified().await;
    Json(json!({"success": true, "outputs": {"r": "from handler"}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_04_webhook_for_a_sync_step_is_refused() {
    let (tokens, mut received) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let service = StepService::start(
        axum::Router::new()
            .route("/step", post(held_handler))
            .with_state(HeldHandler {
                tokens,
                release: release.clone(),
            }),
    )
    .await;
    let client = client();
    let engine = EngineProcess::launch("item-04", &[], None, &[]);
    engine.wait_healthy(&client).await;
    register(
        &client,
        &engine,
        json!({
            "id": "s", "name": "s", "type": "sync",
            "http": {"endpoint": format!("{}/step", service.base)},
            "attributes": {"r": {"role": "output"}}
        }),
    )
    .await;
    let (status, body) = post_json(
        &client,
        &format!("{}/engine/flow", engine.base),
        &json!({"id": "f", "goals": ["s"], "init": {}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = received.recv().await.unwrap();
    assert!(!token.is_empty());
    let (status, body) = post_json(
        &client,
        &format!("{}/webhook/f/s/{token}", engine.base),
        &json!({"success": true, "outputs": {"r": "from webhook"}}),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({
                "error": "step s is not an async step: only work items of async steps accept webhook results",
                "status": 400
            })
        )
    );
    release.notify_waiters();
    let flow = flow_after(&client, &engine, "f", "10s").await;
    assert_eq!(flow["status"], "completed", "{flow}");
    assert_eq!(flow["attributes"]["r"]["value"], "from handler", "{flow}");
}

// ------------------------------------------------------------------ item 13

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_13_oversized_request_gets_a_json_413() {
    let client = client();
    let engine = EngineProcess::launch(
        "item-13",
        &[("ENGINE_MAX_REQUEST_BYTES", "2048".into())],
        None,
        &[],
    );
    engine.wait_healthy(&client).await;
    let (status, body) = post_json(
        &client,
        &format!("{}/engine/flow", engine.base),
        &json!({"id": "f", "goals": ["g"], "init": {"big": "x".repeat(4096)}}),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            413,
            json!({
                "error": "request body too large: the limit is 2048 bytes (ENGINE_MAX_REQUEST_BYTES)",
                "status": 413
            })
        )
    );
}
