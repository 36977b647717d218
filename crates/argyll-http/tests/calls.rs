//! Calls against a real local HTTP server: request shape, metadata, timeouts, classification
//! and health checks.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argyll_http::{
    CallOutcome, HealthStatus, HttpRunner, StepRequest, request_metadata, webhook_url,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(HeaderMap, Value)>>>);

async fn serve() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/ok",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    let n = body["arguments"]["n"].as_i64().unwrap_or(0);
                    seen.0.lock().unwrap().push((headers, body));
                    Json(json!({"success": true, "outputs": {"doubled": n * 2}}))
                },
            ),
        )
        .route(
            "/status/{code}",
            post(|Path(code): Path<u16>| async move { StatusCode::from_u16(code).unwrap() }),
        )
        .route(
            "/unsuccessful",
            post(|| async { Json(json!({"success": false, "error": "card declined"})) }),
        )
        .route(
            "/unsuccessful-bare",
            post(|| async { Json(json!({"success": false})) }),
        )
        .route("/not-json", post(|| async { "hello" }))
        .route(
            "/no-outputs",
            post(|| async { Json(json!({"success": true})) }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Json(json!({"success": true}))
            }),
        )
        .route(
            "/big",
            post(|| async {
                let text = "x".repeat(5 << 20);
                Json(json!({"success": true, "outputs": {"text": text}}))
            }),
        )
        .route(
            "/big-stream",
            post(|| async {
                // No Content-Length: the size is only known by reading.
                let chunks = (0..50).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1 << 20]));
                axum::body::Body::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        .route("/health/ok", get(|| async { "ok" }))
        .route(
            "/health/bad",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), seen)
}

fn request(base: &str, path: &str) -> StepRequest {
    StepRequest {
        endpoint: format!("{base}{path}"),
        timeout: None,
        is_async: false,
        arguments: json!({"n": 21}).as_object().cloned().unwrap(),
        metadata: Map::new(),
    }
}

#[tokio::test]
async fn a_sync_call_sends_the_original_request_and_returns_outputs() {
    let (base, seen) = serve().await;
    let runner = HttpRunner::new(Duration::from_secs(5)).unwrap();
    let caller = json!({"trace": "t-1", "flow_id": "spoofed"})
        .as_object()
        .cloned()
        .unwrap();
    let mut call = request(&base, "/ok");
    call.metadata = request_metadata(&caller, "f1", "double", "tok-1", None);
    let outcome = runner.call(&call).await;
    assert_eq!(
        outcome,
        CallOutcome::Completed(Some(json!({"doubled": 42}).as_object().cloned().unwrap()))
    );
    let (headers, body) = seen.0.lock().unwrap().pop().unwrap();
    assert_eq!(
        body,
        json!({
            "arguments": {"n": 21},
            "metadata": {"trace": "t-1", "flow_id": "f1", "step_id": "double", "receipt_token": "tok-1"}
        })
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["accept"], "application/json");
    assert_eq!(headers["user-agent"], "Argyll-Engine/1.0");
}

#[tokio::test]
async fn outcomes_are_classified_as_the_contract_says() {
    let (base, _) = serve().await;
    let runner = HttpRunner::new(Duration::from_secs(5)).unwrap();
    let outcome = |path: &'static str| {
        let runner = runner.clone();
        let call = request(&base, path);
        async move { runner.call(&call).await }
    };
    assert_eq!(
        outcome("/status/500").await,
        CallOutcome::Retryable("work not completed: step returned HTTP error: status 500".into())
    );
    assert_eq!(
        outcome("/status/503").await,
        CallOutcome::Retryable("work not completed: step returned HTTP error: status 503".into())
    );
    assert_eq!(
        outcome("/status/429").await,
        CallOutcome::Retryable("work not completed: step returned HTTP error: status 429".into())
    );
    assert_eq!(
        outcome("/status/404").await,
        CallOutcome::Permanent("step returned HTTP error: status 404".into())
    );
    assert_eq!(
        outcome("/status/400").await,
        CallOutcome::Permanent("step returned HTTP error: status 400".into())
    );
    assert_eq!(
        outcome("/status/202").await,
        CallOutcome::Retryable("work not completed: step returned HTTP error: status 202".into())
    );
    assert_eq!(
        outcome("/unsuccessful").await,
        CallOutcome::Permanent("step unsuccessful: card declined".into())
    );
    assert_eq!(
        outcome("/unsuccessful-bare").await,
        CallOutcome::Permanent("step unsuccessful".into())
    );
    assert_eq!(outcome("/no-outputs").await, CallOutcome::Completed(None));
    assert!(
        matches!(outcome("/not-json").await, CallOutcome::Permanent(text) if text.starts_with("invalid step response"))
    );
    let refused = runner.call(&request("http://127.0.0.1:1", "/x")).await;
    assert!(
        matches!(&refused, CallOutcome::Retryable(text) if text.starts_with("work not completed: ")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn async_steps_are_acknowledged_by_200_or_202() {
    let (base, seen) = serve().await;
    let runner = HttpRunner::new(Duration::from_secs(5)).unwrap();
    let mut call = request(&base, "/ok");
    call.is_async = true;
    call.metadata = request_metadata(
        &Map::new(),
        "f1",
        "s1",
        "tok",
        Some(webhook_url("http://engine:8080/", "f1", "s1", "tok")),
    );
    assert_eq!(runner.call(&call).await, CallOutcome::Accepted);
    assert_eq!(
        seen.0.lock().unwrap()[0].1["metadata"]["webhook_url"],
        "http://engine:8080/webhook/f1/s1/tok"
    );
    let mut accepted = request(&base, "/status/202");
    accepted.is_async = true;
    assert_eq!(runner.call(&accepted).await, CallOutcome::Accepted);
}

#[tokio::test]
async fn the_step_timeout_wins_over_the_default() {
    let (base, _) = serve().await;
    let runner = HttpRunner::new(Duration::from_secs(5)).unwrap();
    let mut call = request(&base, "/slow");
    call.timeout = Some(Duration::from_millis(100));
    assert_eq!(
        runner.call(&call).await,
        CallOutcome::Retryable("work not completed: step timed out after 100 ms".into())
    );
    call.timeout = Some(Duration::ZERO);
    assert_eq!(
        runner.call(&call).await,
        CallOutcome::Completed(None),
        "0 means the default (5 s here)"
    );
    let short_default = HttpRunner::new(Duration::from_millis(100)).unwrap();
    call.timeout = None;
    assert!(matches!(
        short_default.call(&call).await,
        CallOutcome::Retryable(_)
    ));
}

#[tokio::test]
async fn health_checks() {
    let (base, _) = serve().await;
    let runner = HttpRunner::new(Duration::from_secs(5)).unwrap();
    assert_eq!(
        runner.check_health(&format!("{base}/health/ok")).await,
        HealthStatus::Healthy
    );
    assert_eq!(
        runner.check_health(&format!("{base}/health/bad")).await,
        HealthStatus::Unhealthy("HTTP 500 Internal Server Error".into())
    );
    assert!(matches!(
        runner.check_health("http://127.0.0.1:1/health").await,
        HealthStatus::Unhealthy(_)
    ));
}

/// Issue 14, item 10: responses are read up to `max_response_bytes`; a larger one fails the
/// work item for good, whether or not it announced its length.
#[tokio::test]
async fn responses_beyond_the_limit_fail_for_good() {
    let (base, _) = serve().await;
    let runner = HttpRunner::new(Duration::from_secs(5))
        .unwrap()
        .with_max_response_bytes(4 << 20);
    assert_eq!(runner.max_response_bytes(), 4 << 20);
    let announced = runner.call(&request(&base, "/big")).await;
    let CallOutcome::Permanent(error) = announced else {
        panic!("{announced:?}");
    };
    assert!(
        error.starts_with("step response too large: 524")
            && error.ends_with("bytes, the limit is 4194304 bytes (STEP_MAX_RESPONSE_BYTES)"),
        "{error}"
    );
    let streamed = runner.call(&request(&base, "/big-stream")).await;
    assert_eq!(
        streamed,
        CallOutcome::Permanent(
            "step response too large: more than the limit, the limit is 4194304 bytes (STEP_MAX_RESPONSE_BYTES)"
                .into()
        )
    );
    // Within the limit, the same runner reads the response.
    let small = HttpRunner::new(Duration::from_secs(5)).unwrap();
    let outcome = small.call(&request(&base, "/ok")).await;
    assert!(matches!(outcome, CallOutcome::Completed(_)), "{outcome:?}");
}
