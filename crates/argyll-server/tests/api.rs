//! The API beyond what the black-box suite covers: the WebSocket stream, long-poll reads,
//! flow listing with filters and paging, CORS, unknown routes, the body limit, health-gated
//! dispatch and graceful shutdown — over a real socket, with in-process step handlers.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argyll_engine::{Engine, EngineConfig, HandlerError, LocalHandlers};
use argyll_model::Args;
use argyll_server::ServerConfig;
use argyll_store::EmbeddedStore;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

struct TestServer {
    base: String,
    engine: Engine<EmbeddedStore>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

async fn server_with(config: ServerConfig, handlers: LocalHandlers) -> TestServer {
    server_on(EmbeddedStore::new(), config, handlers).await
}

async fn server_on(
    store: EmbeddedStore,
    config: ServerConfig,
    handlers: LocalHandlers,
) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = Engine::builder(store)
        .config(EngineConfig {
            webhook_base_url: base.clone(),
            health_check_interval: Duration::from_millis(200),
            ..EngineConfig::default()
        })
        .local_handlers(handlers)
        .build()
        .unwrap();
    engine.start().await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(argyll_server::serve(
        listener,
        engine.clone(),
        config,
        async move {
            let _ = stopped.await;
        },
    ));
    TestServer {
        base,
        engine,
        stop: Some(stop),
        served,
        client: reqwest::Client::new(),
    }
}

async fn server() -> TestServer {
    server_with(ServerConfig::default(), echo_handlers()).await
}

fn echo_handlers() -> LocalHandlers {
    let handlers = LocalHandlers::new();
    handlers.register("echo", |work| async move {
        let mut outputs = Args::new();
        outputs.insert(
            "out".into(),
            work.inputs.get("in").cloned().unwrap_or(Value::Null),
        );
        Ok(outputs)
    });
    handlers.register("fail", |_| async move {
        Err(HandlerError::Permanent("nope".into()))
    });
    handlers
}

impl TestServer {
    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn register(&self, id: &str, endpoint: &str) {
        let step = json!({
            "id": id, "name": id, "type": "sync",
            "http": {"endpoint": endpoint},
            "attributes": {"in": {"role": "required"}, "out": {"role": "output"}},
            "work_config": {"max_retries": 0}
        });
        let (status, body) = self.send("POST", "/engine/step", Some(step)).await;
        assert_eq!(status, 201, "{body}");
    }

    async fn start(&self, flow_id: &str, goal: &str) -> u16 {
        let body = json!({"id": flow_id, "goals": [goal], "init": {"in": 1}});
        self.send("POST", "/engine/flow", Some(body)).await.0
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.served.await.unwrap().unwrap();
    }
}

/// Handlers whose `gate` step waits for `release` (and says it started on `started`).
fn gated_handlers(
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
) -> LocalHandlers {
    let handlers = echo_handlers();
    handlers.register("gate", move |work| {
        let (started, release) = (started.clone(), release.clone());
        async move {
            started.notify_one();
            release.notified().await;
            let mut outputs = Args::new();
            outputs.insert(
                "out".into(),
                work.inputs.get("in").cloned().unwrap_or(Value::Null),
            );
            Ok(outputs)
        }
    });
    handlers
}

/// Events of `socket` until (and with) the flow's `flow_completed`: (type, sequence). A
/// `subscribed` snapshot (the flow existed when the subscription took effect) ends them at once.
async fn events_until_completed(socket: &mut Socket, flow_id: &str) -> Vec<(String, u64)> {
    let mut events = Vec::new();
    loop {
        let event = next(socket).await;
        if event["type"] == "subscribed" {
            events.push(("subscribed".to_owned(), event["sequence"].as_u64().unwrap()));
            return events;
        }
        assert_eq!(event["id"], json!(["flow", flow_id]), "{event}");
        assert!(event["timestamp"].as_i64().unwrap() > 0);
        let kind = event["type"].as_str().unwrap().to_owned();
        events.push((kind.clone(), event["sequence"].as_u64().unwrap()));
        if kind == "flow_completed" {
            return events;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sends_a_snapshot_then_live_events_in_order() {
    let (started, release) = (Arc::default(), Arc::new(tokio::sync::Notify::new()));
    let server = server_with(
        ServerConfig::default(),
        gated_handlers(started, release.clone()),
    )
    .await;
    server.register("g", "local://gate").await;
    let ws_url = format!("{}/engine/ws", server.base.replace("http://", "ws://"));

    // The flow exists and waits at its step: the snapshot has its state and next sequence, and
    // the live events continue exactly from there.
    assert_eq!(server.start("wsf", "g").await, 201);
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let subscribe = json!({"type": "subscribe", "data": {"aggregate_id": ["flow", "wsf"]}});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let snapshot = next(&mut socket).await;
    assert_eq!(snapshot["type"], "subscribed");
    assert_eq!(snapshot["data"]["status"], "active");
    let from = snapshot["sequence"].as_u64().unwrap();
    assert!(from > 0, "flow_started is in the snapshot");
    release.notify_one();
    let events = events_until_completed(&mut socket, "wsf").await;
    let sequences: Vec<u64> = events.iter().map(|(_, sequence)| *sequence).collect();
    assert_eq!(
        sequences,
        (from..from + sequences.len() as u64).collect::<Vec<_>>()
    );
    assert!(events.iter().all(|(kind, _)| kind != "flow_started"));

    // A second connection subscribing to the finished flow gets its state and next sequence.
    let (mut late, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    late.send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let snapshot = next(&mut late).await;
    assert_eq!(snapshot["type"], "subscribed");
    assert_eq!(snapshot["data"]["status"], "completed");
    assert_eq!(
        snapshot["sequence"].as_u64().unwrap(),
        from + sequences.len() as u64
    );
    server.stop().await;
}

/// A flow that does not exist yet: no snapshot, and once the subscription is in place its
/// events arrive from sequence 0. The server answers nothing to such a subscription, so the
/// test cannot know when it is in place: each attempt uses a new flow, and a flow whose first
/// events passed before the subscription took effect is followed by another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_subscribers_of_a_future_flow_get_its_events_from_zero() {
    let server = server().await;
    server.register("s", "local://echo").await;
    let ws_url = format!("{}/engine/ws", server.base.replace("http://", "ws://"));
    let mut from_zero = None;
    for attempt in 0..20 {
        let flow_id = format!("future-{attempt}");
        let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        let subscribe = json!({"type": "subscribe", "data": {"aggregate_id": ["flow", flow_id]}});
        socket
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
        assert_eq!(server.start(&flow_id, "s").await, 201);
        let events = events_until_completed(&mut socket, &flow_id).await;
        if events.first().map(|(_, sequence)| *sequence) == Some(0) {
            from_zero = Some(events);
            break;
        }
    }
    let events = from_zero.expect("a subscription in place before the start sees sequence 0");
    assert_eq!(events[0].0, "flow_started");
    let sequences: Vec<u64> = events.iter().map(|(_, sequence)| *sequence).collect();
    assert_eq!(sequences, (0..sequences.len() as u64).collect::<Vec<_>>());
    server.stop().await;
}

/// `event_types` alone filters across flows (no snapshot). Flows are started one after the
/// other until the first `flow_completed` arrives: then the subscription is in place, and
/// nothing but `flow_completed` events of those flows came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_event_types_alone_filter_across_flows() {
    let server = server().await;
    server.register("s", "local://echo").await;
    let ws_url = format!("{}/engine/ws", server.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let by_type = json!({"type": "subscribe", "data": {"event_types": ["flow_completed"]}});
    socket
        .send(Message::Text(by_type.to_string().into()))
        .await
        .unwrap();
    let mut started = Vec::new();
    let event = loop {
        let flow_id = format!("other-{}", started.len());
        assert_eq!(server.start(&flow_id, "s").await, 201);
        started.push(flow_id.clone());
        let (_, flow) = server
            .send("GET", &format!("/engine/flow/{flow_id}?wait=5s"), None)
            .await;
        assert_eq!(flow["status"], "completed");
        let arrived = tokio::time::timeout(Duration::from_millis(200), socket.next()).await;
        if let Ok(Some(Ok(message))) = arrived {
            break serde_json::from_str::<Value>(message.to_text().unwrap()).unwrap();
        }
        assert!(started.len() < 50, "the subscription never took effect");
    };
    assert_eq!(event["type"], "flow_completed");
    let flow_id = event["id"][1].as_str().unwrap().to_owned();
    assert!(started.contains(&flow_id), "{event}");
    server.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message of `socket` as JSON (within 5 s).
async fn next(socket: &mut Socket) -> Value {
    let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str(message.to_text().unwrap()).unwrap()
}

/// Issue 14, item 3: engine-aggregate subscribers (the original web UI) learn of new and
/// finished flows live: `flow_activated` `{flow_id, parent_flow_id?}` when a flow starts,
/// `flow_deactivated` `{flow_id}` when it reaches a terminal state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_subscribers_see_flows_activated_and_deactivated() {
    let server = server().await;
    server.register("s", "local://echo").await;
    let ws_url = format!("{}/engine/ws", server.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    // The original UI's engine subscription.
    let subscribe = json!({"type": "subscribe", "data": {
        "aggregate_id": ["engine"],
        "event_types": ["step_registered", "step_unregistered", "step_updated",
                        "step_health_changed", "flow_activated", "flow_deactivated"]
    }});
    socket
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    let snapshot = next(&mut socket).await;
    assert_eq!(snapshot["type"], "subscribed");
    let sequence = snapshot["sequence"].clone();
    assert_eq!(server.start("live", "s").await, 201);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = next(&mut socket).await;
        assert_eq!(event["id"], json!(["engine"]), "{event}");
        assert_eq!(event["sequence"], sequence, "{event}");
        assert!(event["timestamp"].as_i64().unwrap() > 0, "{event}");
        seen.push((event["type"].clone(), event["data"].clone()));
    }
    assert_eq!(
        seen,
        vec![
            (json!("flow_activated"), json!({"flow_id": "live"})),
            (json!("flow_deactivated"), json!({"flow_id": "live"})),
        ]
    );
    // Subscribed to flow events only, the notices do not come.
    let flows_only = json!({"type": "subscribe", "data": {"event_types": ["flow_completed"]}});
    socket
        .send(Message::Text(flows_only.to_string().into()))
        .await
        .unwrap();
    let engine_again = json!({"type": "subscribe", "data": {"aggregate_id": ["engine"]}});
    socket
        .send(Message::Text(engine_again.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next(&mut socket).await["type"], "subscribed");
    assert_eq!(server.start("second", "s").await, 201);
    let event = next(&mut socket).await;
    assert_eq!(event["type"], "flow_activated");
    assert_eq!(event["data"], json!({"flow_id": "second"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_the_finished_flow_or_the_current_state() {
    let release = Arc::new(tokio::sync::Notify::new());
    let server = server_with(
        ServerConfig::default(),
        gated_handlers(Arc::default(), release.clone()),
    )
    .await;
    server.register("s", "local://gate").await;
    assert_eq!(server.start("lp", "s").await, 201);
    let (status, flow) = server.send("GET", "/engine/flow/lp?wait=10ms", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        flow["status"], "active",
        "a short wait returns the running flow"
    );
    release.notify_one();
    let (status, flow) = server.send("GET", "/engine/flow/lp?wait=5s", None).await;
    assert_eq!(status, 200);
    assert_eq!(flow["status"], "completed");
    assert_eq!(flow["attributes"]["out"]["value"], 1);
    let (status, body) = server.send("GET", "/engine/flow/lp?wait=soon", None).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("wait"));
    let (status, body) = server.send("GET", "/engine/flow/none?wait=1s", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("flow not found: none"))
    );
    // The event log in pages (`from`, `limit`; `next_from` while more follow).
    let (_, all) = server.send("GET", "/engine/flow/lp/events", None).await;
    let count = all["count"].as_u64().unwrap();
    assert!(count >= 4, "{all}");
    assert!(all.get("next_from").is_none());
    let (status, page) = server
        .send("GET", "/engine/flow/lp/events?from=1&limit=2", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 2);
    assert_eq!(page["events"][0], all["events"][1]);
    assert_eq!(page["events"][1], all["events"][2]);
    assert_eq!(page["next_from"], 3);
    let (_, last) = server
        .send(
            "GET",
            &format!("/engine/flow/lp/events?from={}&limit=5", count - 1),
            None,
        )
        .await;
    assert_eq!(
        (last["count"].as_u64(), last.get("next_from")),
        (Some(1), None)
    );
    let (_, past) = server
        .send(
            "GET",
            &format!("/engine/flow/lp/events?from={}", count + 10),
            None,
        )
        .await;
    assert_eq!(past["count"], 0);
    for bad in ["from=-1", "limit=0", "limit=many"] {
        let (status, body) = server
            .send("GET", &format!("/engine/flow/lp/events?{bad}"), None)
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        let field = bad.split('=').next().unwrap();
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("invalid {field}")),
            "{body}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_listing_filters_and_pages() {
    let server = server().await;
    server.register("ok", "local://echo").await;
    server.register("bad", "local://fail").await;
    for i in 0..5 {
        assert_eq!(server.start(&format!("ok-{i}"), "ok").await, 201);
    }
    for i in 0..2 {
        assert_eq!(server.start(&format!("bad-{i}"), "bad").await, 201);
    }
    for id in ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4", "bad-0", "bad-1"] {
        server
            .send("GET", &format!("/engine/flow/{id}?wait=5s"), None)
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/engine/flow?limit=3".to_owned();
    loop {
        let (status, page) = server.send("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        let flows = page["flows"].as_array().unwrap();
        assert!(flows.len() <= 3);
        seen.extend(flows.iter().map(|f| f["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/engine/flow?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<String> = (0..2)
        .map(|i| format!("bad-{i}"))
        .chain((0..5).map(|i| format!("ok-{i}")))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    // The index records an outcome right after the flow's terminal event is committed.
    let mut failed = Vec::new();
    for _ in 0..100 {
        let page = server
            .send("GET", "/engine/flow?status=failed", None)
            .await
            .1;
        failed = page["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect();
        if failed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(failed, ["bad-0", "bad-1"]);
    let (status, body) = server.send("GET", "/engine/flow?status=weird", None).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = server.send("GET", "/engine/flow?limit=0", None).await;
    assert_eq!(status, 400);
    server.stop().await;
}

/// `sort=recent|oldest|id` and `prefix=` on `GET /engine/flow`: newest or oldest first by
/// creation, paged with the cursor each page gives; only ids with the prefix; a bad sort or a
/// cursor that is not one a time order gave out is a 400.
#[tokio::test]
async fn flow_listing_sorts_by_creation_and_filters_by_prefix() {
    let server = server().await;
    server.register("ok", "local://echo").await;
    // Started in this order: creation times increase, ids do not.
    let started = ["x-10", "y-1", "x-2", "x-1"];
    for id in started {
        assert_eq!(server.start(id, "ok").await, 201);
        server
            .send("GET", &format!("/engine/flow/{id}?wait=5s"), None)
            .await;
    }
    let ids = |page: &Value| -> Vec<String> {
        page["flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let list = |query: String| {
        let server = &server;
        async move {
            let (status, page) = server
                .send("GET", &format!("/engine/flow?{query}"), None)
                .await;
            assert_eq!(status, 200, "{query}: {page}");
            page
        }
    };
    // Every page of `query`, one flow at a time.
    let paged = |query: &'static str| {
        let server = &server;
        async move {
            let mut seen = Vec::new();
            let mut path = format!("/engine/flow?{query}&limit=1");
            loop {
                let (status, page) = server.send("GET", &path, None).await;
                assert_eq!(status, 200, "{path}: {page}");
                seen.extend(ids(&page));
                match page["next_cursor"].as_str() {
                    Some(cursor) => path = format!("/engine/flow?{query}&limit=1&cursor={cursor}"),
                    None => return seen,
                }
            }
        }
    };
    let newest = ["x-1", "x-2", "y-1", "x-10"];
    let oldest = ["x-10", "y-1", "x-2", "x-1"];
    let by_id = ["x-1", "x-10", "x-2", "y-1"];
    assert_eq!(ids(&list("sort=recent".into()).await), newest);
    assert_eq!(ids(&list("sort=oldest".into()).await), oldest);
    assert_eq!(ids(&list("sort=id".into()).await), by_id);
    assert_eq!(
        ids(&list("sort=".into()).await),
        by_id,
        "by id is the default"
    );
    assert_eq!(ids(&list("status=completed".into()).await), by_id);
    assert_eq!(paged("sort=recent").await, newest);
    assert_eq!(paged("sort=oldest").await, oldest);
    assert_eq!(paged("sort=id").await, by_id);
    assert_eq!(paged("sort=recent&prefix=x-").await, ["x-1", "x-2", "x-10"]);

    assert_eq!(ids(&list("prefix=x-".into()).await), ["x-1", "x-10", "x-2"]);
    assert_eq!(ids(&list("prefix=x-1".into()).await), ["x-1", "x-10"]);
    assert_eq!(
        ids(&list("prefix=x-1&sort=oldest".into()).await),
        ["x-10", "x-1"]
    );
    assert_eq!(
        ids(&list("prefix=".into()).await),
        by_id,
        "an empty prefix is none"
    );
    assert!(ids(&list("prefix=zzz".into()).await).is_empty());
    assert!(ids(&list("prefix=x-3&sort=recent".into()).await).is_empty());

    let (status, body) = server.send("GET", "/engine/flow?sort=weird", None).await;
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "invalid sort: weird (expected recent, oldest or id)", "status": 400})
        )
    );
    let (status, body) = server
        .send("GET", "/engine/flow?sort=recent&cursor=x-1", None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("invalid cursor"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn cors_options_unknown_routes_and_body_limit() {
    let server = server_with(
        ServerConfig {
            max_request_bytes: 1024,
            ..ServerConfig::default()
        },
        echo_handlers(),
    )
    .await;
    let response = server
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/no/such/path", server.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let (status, body) = server.send("GET", "/no/such/path", None).await;
    assert_eq!(
        (status, body),
        (404, json!({"error": "404 page not found", "status": 404}))
    );
    let (status, body) = server.send("GET", "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"service": "argyll-engine", "status": "healthy"})
    );
    let big = json!({"id": "x".repeat(4096), "name": "n", "type": "sync"});
    let (status, body) = server.send("POST", "/engine/step", Some(big)).await;
    // Issue 14, item 13: the 413 uses the error body of every other error and names the limit.
    assert_eq!(
        (status, body),
        (
            413,
            json!({
                "error": "request body too large: the limit is 1024 bytes (ENGINE_MAX_REQUEST_BYTES)",
                "status": 413
            })
        )
    );
    // A request the route has no method for, and a WebSocket request that is no upgrade.
    for (method, path) in [("PATCH", "/engine/step"), ("GET", "/engine/ws")] {
        let (status, body) = server.send(method, path, None).await;
        assert!(status >= 400, "{method} {path}: {status}");
        assert_eq!(body["status"], status, "{method} {path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    let response = server
        .client
        .post(format!("{}/engine/step", server.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON request: ")
    );
    assert_eq!(body["status"], 400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_steps_are_not_called() {
    // A step service whose health check answers 500 and which counts its calls.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = axum::Router::new()
        .route(
            "/health",
            axum::routing::get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route(
            "/step",
            axum::routing::post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { axum::Json(json!({"success": true, "outputs": {"out": 1}})) }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await });

    let server = server().await;
    let step = json!({
        "id": "sick", "name": "sick", "type": "sync",
        "http": {"endpoint": format!("{service_base}/step"), "health_check": format!("{service_base}/health")},
        "attributes": {"out": {"role": "output"}},
        "work_config": {"max_retries": 1, "backoff_ms": 10, "backoff_type": "fixed"}
    });
    assert_eq!(server.send("POST", "/engine/step", Some(step)).await.0, 201);
    let mut health = Value::Null;
    for _ in 0..100 {
        health = server.send("GET", "/engine/health/sick", None).await.1;
        if health["status"] == "unhealthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        health,
        json!({"status": "unhealthy", "error": "HTTP 500 Internal Server Error"})
    );
    let body = json!({"id": "gated", "goals": ["sick"]});
    assert_eq!(server.send("POST", "/engine/flow", Some(body)).await.0, 201);
    let (_, flow) = server.send("GET", "/engine/flow/gated?wait=5s", None).await;
    assert_eq!(flow["status"], "failed");
    let item = flow["executions"]["sick"]["work_items"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(
        item["error"],
        "step unhealthy: HTTP 500 Internal Server Error"
    );
    assert_eq!(item["retry_count"], 1, "the retry policy decided");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "an unhealthy step is never called"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_work_finish() {
    let (started, release) = (
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
    );
    let server = server_with(
        ServerConfig::default(),
        gated_handlers(started.clone(), release.clone()),
    )
    .await;
    server.register("g", "local://gate").await;
    assert_eq!(server.start("late", "g").await, 201);
    // The step is running; shutdown begins while it waits, and it finishes meanwhile.
    started.notified().await;
    let engine = server.engine.clone();
    let stopping = tokio::spawn(server.stop());
    while !engine.is_stopping() {
        tokio::task::yield_now().await;
    }
    release.notify_one();
    stopping.await.unwrap();
    let flow = engine.flow("late").await.unwrap().unwrap();
    assert_eq!(
        flow.status.to_string(),
        "completed",
        "the running step finished first"
    );
}

/// Issue 14, item 12: at most `max_clients` WebSocket clients; one more gets 503 in the usual
/// error body; a closed client's place is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_are_capped() {
    let server = server_with(
        ServerConfig {
            websocket: argyll_server::WsLimits {
                max_clients: 3,
                ..argyll_server::WsLimits::default()
            },
            ..ServerConfig::default()
        },
        echo_handlers(),
    )
    .await;
    let ws_url = format!("{}/engine/ws", server.base.replace("http://", "ws://"));
    let subscribe = json!({"type": "subscribe", "data": {"aggregate_id": ["engine"]}});
    let mut open = Vec::new();
    for _ in 0..3 {
        let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        socket
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
        assert_eq!(next(&mut socket).await["type"], "subscribed");
        open.push(socket);
    }
    let refused = tokio_tungstenite::connect_async(&ws_url).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(response.status(), 503);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"error": "too many WebSocket clients: at most 3 at once (WS_MAX_CLIENTS)", "status": 503})
    );
    // A client that leaves frees its place (once the server has seen it go).
    let mut leaving = open.pop().unwrap();
    leaving.close(None).await.unwrap();
    while leaving.next().await.is_some() {}
    let mut admitted = None;
    for _ in 0..100 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(&ws_url).await {
            admitted = Some(socket);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        admitted.is_some(),
        "the freed place was not given out again"
    );
    server.stop().await;
}

/// Issue 14, item 12: a client that does not read is disconnected with a close frame saying
/// why once more than `send_queue` messages wait for it — instead of the server buffering
/// without end — while the flow it watched runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_that_does_not_read_is_disconnected_with_a_reason() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let handlers = echo_handlers();
    let opened = gate.clone();
    handlers.register("gate", move |_| {
        let opened = opened.clone();
        async move {
            opened.notified().await;
            let mut outputs = Args::new();
            outputs.insert("xs".into(), json!((0..60_000).collect::<Vec<_>>()));
            Ok(outputs)
        }
    });
    // A feed longer than the flow's 120,000 events: the client must be dropped for its own
    // queue, not because the feed it is served from overflowed (the other reason it can go).
    let server = server_on(
        EmbeddedStore::with_feed_capacity(1 << 18),
        ServerConfig {
            websocket: argyll_server::WsLimits {
                send_queue: 4,
                ..argyll_server::WsLimits::default()
            },
            ..ServerConfig::default()
        },
        handlers,
    )
    .await;
    for step in [
        json!({"id": "gate", "name": "gate", "type": "sync", "http": {"endpoint": "local://gate"},
               "attributes": {"xs": {"role": "output"}}}),
        json!({"id": "fan", "name": "fan", "type": "script",
               "attributes": {"xs": {"role": "required", "for_each": true}, "y": {"role": "output"}},
               "script": {"language": "ale", "script": "{:y xs}"},
               "work_config": {"parallelism": 100}}),
    ] {
        let (status, body) = server.send("POST", "/engine/step", Some(step)).await;
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(server.start("watched", "fan").await, 201);
    // A client whose socket takes in almost nothing, subscribed to the running flow.
    let address = server.base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(address).await.unwrap();
    let ws_url = format!("{}/engine/ws", server.base.replace("http://", "ws://"));
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut client, _) = tokio_tungstenite::client_async(&ws_url, stream)
        .await
        .unwrap();
    let subscribe = json!({"type": "subscribe", "data": {"aggregate_id": ["flow", "watched"]}});
    client
        .send(Message::Text(subscribe.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next(&mut client).await["type"], "subscribed");
    // It stops reading; the flow makes 120,000 events. (`notify_one` keeps the permit if the
    // gate's call has not begun waiting yet; `notify_waiters` would be lost then.)
    gate.notify_one();
    let flow = server
        .engine
        .wait_for_flow("watched", Duration::from_secs(120))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flow.status.to_string(), "completed", "{}", flow.error);
    let mut reason = None;
    let mut messages = 0usize;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(20), client.next()).await
    {
        match message {
            Message::Close(frame) => {
                reason = frame.map(|frame| (u16::from(frame.code), frame.reason.to_string()));
                break;
            }
            _ => messages += 1,
        }
    }
    assert_eq!(
        reason,
        Some((
            1008,
            "client too slow: more than 4 messages waiting (WS_SEND_QUEUE)".to_owned()
        )),
        "after {messages} messages"
    );
    assert!(messages < 120_000, "{messages}");
    server.stop().await;
}

/// Routes mounted beside the API (the console) sit behind the same limits; their HTML pages
/// keep their body even when they are errors (a page for people), while their plain-text
/// errors become the API's error body. `GET /engine/info`
/// names the version and the store.
#[tokio::test]
async fn routes_beside_the_api_and_engine_info() {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let engine = Engine::builder(EmbeddedStore::new()).build().unwrap();
    engine.start().await.unwrap();
    let routes = axum::Router::new()
        .route(
            "/ui/missing",
            axum::routing::get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<h1>Not found</h1>",
                )
                    .into_response()
            }),
        )
        .route(
            "/ui/broken",
            axum::routing::get(|| async { (StatusCode::BAD_GATEWAY, "upstream gone") }),
        );
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(argyll_server::serve_with(
        listener,
        engine.clone(),
        ServerConfig {
            store_name: "memory".into(),
            ..ServerConfig::default()
        },
        routes,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::new();
    let page = client
        .get(format!("{base}/ui/missing"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    assert_eq!(page.text().await.unwrap(), "<h1>Not found</h1>");
    let broken = client
        .get(format!("{base}/ui/broken"))
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 502);
    assert_eq!(
        broken.json::<Value>().await.unwrap(),
        json!({"error": "upstream gone", "status": 502})
    );
    let info: Value = client
        .get(format!("{base}/engine/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["store"], "memory");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info["instance_id"].as_str(),
        Some(engine.config().instance_id.as_str())
    );
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
