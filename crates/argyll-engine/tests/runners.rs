//! The runner layer: each step type reaches the right runner and its outcome comes back
//! classified — HTTP against a real local server, scripts through the script runner, and
//! in-process `local://` handlers.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use argyll_engine::{
    HandlerError, HttpStepRunner, LocalHandlers, RunnerSet, ScriptStepRunner, StepRunner,
    WorkOutcome, WorkRequest,
};
use argyll_http::HttpRunner;
use argyll_model::{Args, AttributeSpec, AttributeType, ScriptLanguage, Step, StepType};
use argyll_script::{ScriptLimits, ScriptRunner};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

fn args(value: Value) -> Args {
    value.as_object().cloned().unwrap()
}

fn work(step: Step, inputs: Value) -> WorkRequest {
    WorkRequest {
        flow_id: "f1".into(),
        step: Arc::new(step),
        token: "tok-1".into(),
        inputs: args(inputs),
        metadata: args(json!({"trace": "t"})),
    }
}

async fn server() -> String {
    let app = Router::new()
        .route(
            "/echo",
            post(|Json(body): Json<Value>| async move {
                Json(json!({"success": true, "outputs": {"seen": body}}))
            }),
        )
        .route(
            "/fail",
            post(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn runners(local: LocalHandlers) -> RunnerSet {
    let scripts = Arc::new(ScriptRunner::new(ScriptLimits::default()));
    RunnerSet {
        http: Arc::new(HttpStepRunner::new(
            HttpRunner::new(Duration::from_secs(5)).unwrap(),
            "http://engine:8080",
        )),
        scripts: Arc::new(ScriptStepRunner::new(scripts)),
        local: Arc::new(local),
    }
}

#[tokio::test]
async fn http_steps_send_inputs_and_metadata_and_classify_failures() {
    let base = server().await;
    let runners = runners(LocalHandlers::new());
    let outcome = runners
        .run(work(
            Step::sync("echo", format!("{base}/echo")),
            json!({"n": 1}),
        ))
        .await;
    let WorkOutcome::Completed(outputs) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        outputs["seen"],
        json!({
            "arguments": {"n": 1},
            "metadata": {"trace": "t", "flow_id": "f1", "step_id": "echo", "receipt_token": "tok-1"}
        })
    );

    let mut async_step = Step::sync("later", format!("{base}/echo"));
    async_step.step_type = StepType::Async;
    assert_eq!(
        runners.run(work(async_step, json!({}))).await,
        WorkOutcome::Accepted
    );

    let outcome = runners
        .run(work(Step::sync("down", format!("{base}/fail")), json!({})))
        .await;
    assert_eq!(
        outcome,
        WorkOutcome::Retryable("work not completed: step returned HTTP error: status 503".into())
    );
}

#[tokio::test]
async fn script_steps_run_with_sorted_runtime_inputs_and_fail_permanently() {
    let runners = runners(LocalHandlers::new());
    let step = Step::script(
        "greet",
        ScriptLanguage::Ale,
        "{:greeting (str \"Hello, \" name \" x\" times)}",
    )
    .with_attribute("name", AttributeSpec::required(AttributeType::String))
    .with_attribute("times", AttributeSpec::required(AttributeType::Number))
    .with_attribute("greeting", AttributeSpec::output(AttributeType::String));
    let outcome = runners
        .run(work(step, json!({"name": "Argyll", "times": 2})))
        .await;
    assert_eq!(
        outcome,
        WorkOutcome::Completed(args(json!({"greeting": "Hello, Argyll x2"})))
    );

    let lua = Step::script("boom", ScriptLanguage::Lua, "error('no', 0)");
    assert_eq!(
        runners.run(work(lua, json!({}))).await,
        WorkOutcome::Failed("runtime error: no".into())
    );
}

#[tokio::test]
async fn local_handlers_run_in_process() {
    let local = LocalHandlers::new();
    local.register("double", |work: WorkRequest| async move {
        let n = work.inputs["n"]
            .as_i64()
            .ok_or_else(|| HandlerError::Permanent("n must be a number".into()))?;
        Ok(args(json!({"doubled": n * 2, "token": work.token})))
    });
    local.register("flaky", |_| async {
        Err(HandlerError::Retryable("try again".into()))
    });
    let runners = runners(local);
    let outcome = runners
        .run(work(Step::sync("d", "local://double"), json!({"n": 21})))
        .await;
    assert_eq!(
        outcome,
        WorkOutcome::Completed(args(json!({"doubled": 42, "token": "tok-1"})))
    );
    let outcome = runners
        .run(work(Step::sync("d", "local://double"), json!({"n": "x"})))
        .await;
    assert_eq!(outcome, WorkOutcome::Failed("n must be a number".into()));
    let outcome = runners
        .run(work(Step::sync("f", "local://flaky"), json!({})))
        .await;
    assert_eq!(outcome, WorkOutcome::Retryable("try again".into()));
    let outcome = runners
        .run(work(Step::sync("m", "local://missing"), json!({})))
        .await;
    assert_eq!(
        outcome,
        WorkOutcome::Failed("no local handler registered for local://missing".into())
    );

    let mut child = Step::sync("child", "http://unused");
    child.step_type = StepType::Flow;
    assert_eq!(
        runners.run(work(child, json!({}))).await,
        WorkOutcome::Failed("flow steps are run by the engine, not by a step runner".into())
    );
}
