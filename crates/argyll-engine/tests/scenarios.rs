//! The scenarios of `engine.md` §10.1 through the engine API with a mock HTTP runner (scripts
//! run for real), with the contract's decisions where they differ from the original.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use argyll_engine::{EngineError, StartFlow};
use argyll_model::{
    AttributeSpec, AttributeType, BackoffType, ScriptConfig, ScriptLanguage, WorkConfig,
};
use argyll_plan::InitError;
use serde_json::json;
use support::*;

#[tokio::test]
async fn const_attribute_ignores_the_flow_value() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let script = ale_script("s", "{:result const_value}")
        .with_attribute(
            "const_value",
            AttributeSpec::constant(AttributeType::String, "\"fixed\""),
        )
        .with_attribute("result", AttributeSpec::output(AttributeType::String));
    register(&engine, vec![script]).await;
    let flow = run(
        &engine,
        "f",
        &["s"],
        init(json!({"const_value": "override"})),
    )
    .await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(attr(&flow, "result"), Some(json!("fixed")));
}

#[tokio::test]
async fn dependency_chain() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"valueA": "from-A"}))
        .outputs("b", json!({"valueB": "from-B"}))
        .outputs("c", json!({"result": "done"}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![
            step("a", &[], &["valueA"]),
            step("b", &["valueA"], &["valueB"]),
            step("c", &["valueB"], &["result"]),
        ],
    )
    .await;
    let flow = run(&engine, "f", &["c"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    for id in ["a", "b", "c"] {
        assert_eq!(status(&flow, id), "completed");
    }
    assert_eq!(attr(&flow, "valueA"), Some(json!("from-A")));
    assert_eq!(attr(&flow, "valueB"), Some(json!("from-B")));
    assert_eq!(attr(&flow, "result"), Some(json!("done")));
    assert_eq!(mock.calls().len(), 3);
    assert_eq!(mock.calls_of("b")[0].inputs["valueA"], json!("from-A"));
}

fn diamond(mock: &MockRunner) -> Vec<argyll_model::Step> {
    mock.outputs("a", json!({"valueB": "b-val", "valueC": "c-val"}))
        .outputs("b", json!({"outputB": "B-result"}))
        .outputs("c", json!({"outputC": "C-result"}))
        .outputs("d", json!({"final": "done"}));
    vec![
        step("a", &[], &["valueB", "valueC"]),
        step("b", &["valueB"], &["outputB"]),
        step("c", &["valueC"], &["outputC"]),
        step("d", &["outputB", "outputC"], &["final"]),
    ]
}

#[tokio::test]
async fn diamond_dependencies() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    register(&engine, diamond(&mock)).await;
    let flow = run(&engine, "f", &["d"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    for id in ["a", "b", "c", "d"] {
        assert_eq!(status(&flow, id), "completed");
    }
    assert_eq!(attr(&flow, "final"), Some(json!("done")));
    assert_eq!(mock.calls().len(), 4);
}

#[tokio::test]
async fn partial_flow_failure() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let mut steps = diamond(&mock);
    steps[1] = no_retry(steps[1].clone());
    mock.on("b", vec![Reply::Retryable("work not completed".into())]);
    register(&engine, steps).await;
    start(&engine, "f", &["d"], init(json!({}))).await;
    assert_eq!(wait(&engine, "f").await.status.to_string(), "failed");
    let flow = wait_settled(&engine, "f").await;
    assert_eq!(status(&flow, "a"), "completed");
    assert_eq!(status(&flow, "b"), "failed");
    assert_eq!(status(&flow, "c"), "completed");
    assert_eq!(status(&flow, "d"), "failed");
    assert!(attr(&flow, "valueB").is_some() && attr(&flow, "outputC").is_some());
    assert!(attr(&flow, "outputB").is_none() && attr(&flow, "final").is_none());
    assert!(mock.calls_of("d").is_empty());
    let work = flow.executions["b"].work_items.values().next().unwrap();
    assert_eq!(work.error, "work not completed");
}

#[tokio::test]
async fn unreachable_consumer_fails_without_being_called() {
    let mock = MockRunner::new();
    mock.on("provider", vec![Reply::Failed("boom".into())]);
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![
            no_retry(step("provider", &[], &["value"])),
            step("consumer", &["value"], &["result"]),
        ],
    )
    .await;
    let flow = run(&engine, "f", &["consumer"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(status(&flow, "provider"), "failed");
    assert_eq!(status(&flow, "consumer"), "failed");
    assert_eq!(
        flow.executions["consumer"].error,
        "required input no longer available"
    );
    assert!(mock.calls_of("consumer").is_empty());
    assert_eq!(
        flow.error,
        "step consumer failed: required input no longer available"
    );
}

#[tokio::test]
async fn for_each_work_items_aggregate_in_order() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"items": ["apple", "banana", "cherry"]}))
        .outputs("b", json!({"result": "processed"}));
    let engine = engine(&mock).await;
    let b = step("b", &[], &["result"]).with_attribute(
        "items",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    let a =
        step("a", &[], &[]).with_attribute("items", AttributeSpec::output(AttributeType::Array));
    register(&engine, vec![a, b]).await;
    let flow = run(&engine, "f", &["b"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(mock.calls_of("b").len(), 3);
    assert_eq!(
        attr(&flow, "result"),
        Some(json!([
            {"items": "apple", "result": "processed"},
            {"items": "banana", "result": "processed"},
            {"items": "cherry", "result": "processed"},
        ]))
    );
}

#[tokio::test]
async fn initial_flow_inputs_have_no_provenance() {
    let mock = MockRunner::new();
    mock.outputs("step-a", json!({"result": "ok"}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![step(
            "step-a",
            &["initialValue", "configValue"],
            &["result"],
        )],
    )
    .await;
    let flow = run(
        &engine,
        "f",
        &["step-a"],
        init(json!({"initialValue": "user-provided", "configValue": 42})),
    )
    .await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(mock.calls().len(), 1);
    assert_eq!(
        flow.attributes["initialValue"].value,
        json!("user-provided")
    );
    assert_eq!(flow.attributes["configValue"].value, json!(42));
    assert_eq!(flow.attributes["configValue"].step, None);
    assert_eq!(flow.attributes["result"].step.as_deref(), Some("step-a"));
}

#[tokio::test]
async fn required_inputs_missing_is_an_error_and_creates_nothing() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    register(&engine, vec![step("g", &["customer_id"], &["out"])]).await;
    let error = engine
        .start_flow(StartFlow {
            flow_id: "f".into(),
            goals: vec!["g".into()],
            ..StartFlow::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, EngineError::Init(InitError::MissingRequired { .. })),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "required inputs not provided: [customer_id]"
    );
    assert!(engine.flow("f").await.unwrap().is_none());
}

#[tokio::test]
async fn lazy_evaluation_runs_only_the_plan() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let mut steps = vec![
        step("a", &[], &["va"]),
        step("b", &["va"], &["vb"]),
        step("c", &["vb"], &["vc"]),
    ];
    for id in ["d", "e", "f", "g", "h", "i", "j"] {
        steps.push(step(id, &[], &[&format!("v{id}")]));
    }
    for id in ["a", "b", "c"] {
        mock.outputs(id, json!({ format!("v{id}"): id }));
    }
    register(&engine, steps).await;
    let flow = run(&engine, "flow", &["c"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(flow.executions.len(), 3);
    assert_eq!(flow.attributes.len(), 3);
    assert_eq!(mock.calls().len(), 3);
}

#[tokio::test]
async fn memoization_hit_across_flows() {
    let mock = MockRunner::new();
    mock.outputs("memo", json!({"out": "v1"}));
    let engine = engine(&mock).await;
    let mut memo = step("memo", &[], &["out"]);
    memo.memoizable = true;
    register(&engine, vec![memo]).await;
    let f1 = run(&engine, "f1", &["memo"], init(json!({}))).await;
    let f2 = run(&engine, "f2", &["memo"], init(json!({}))).await;
    assert_eq!(attr(&f1, "out"), Some(json!("v1")));
    assert_eq!(attr(&f2, "out"), Some(json!("v1")));
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test]
async fn memoization_miss_on_other_inputs() {
    let mock = MockRunner::new();
    mock.outputs("memo", json!({"out": "a"}));
    let engine = engine(&mock).await;
    let mut memo = step("memo", &["in"], &["out"]);
    memo.memoizable = true;
    register(&engine, vec![memo]).await;
    let f1 = run(&engine, "f1", &["memo"], init(json!({"in": "a"}))).await;
    mock.outputs("memo", json!({"out": "b"}));
    let f2 = run(&engine, "f2", &["memo"], init(json!({"in": "b"}))).await;
    assert_eq!(attr(&f1, "out"), Some(json!("a")));
    assert_eq!(attr(&f2, "out"), Some(json!("b")));
}

/// Decisions 1 and 23: an item served from the memo takes no place, so with parallelism 1 the
/// items after it start at once. They used to wait for the next recovery sweep (one item per
/// sweep); with a lease of ten minutes there is no sweep within the wait.
#[tokio::test]
async fn memo_hits_never_leave_the_next_items_waiting() {
    let mock = MockRunner::new();
    mock.outputs("m", json!({"out": 1}));
    let config = argyll_engine::EngineConfig {
        lease_ttl: Duration::from_secs(600),
        ..test_config()
    };
    let engine = engine_configured(argyll_store::EmbeddedStore::new(), &mock, config).await;
    let mut memo = step("m", &[], &["out"]).with_attribute(
        "xs",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    memo.memoizable = true;
    register(&engine, vec![memo]).await;
    let flow = run(
        &engine,
        "f",
        &["m"],
        init(json!({"xs": ["a", "a", "a", "b", "b"]})),
    )
    .await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(mock.calls().len(), 2, "one call per distinct element");
}

#[tokio::test]
async fn memoization_between_work_items_of_one_step() {
    let mock = MockRunner::new();
    mock.outputs("m", json!({"out": 1}));
    let engine = engine(&mock).await;
    let mut memo = step("m", &[], &["out"]).with_attribute(
        "xs",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    memo.memoizable = true;
    register(&engine, vec![memo]).await;
    let flow = run(
        &engine,
        "f",
        &["m"],
        init(json!({"xs": ["a", "a", "b", "a"]})),
    )
    .await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(
        mock.calls().len(),
        2,
        "equal elements served from the cache"
    );
}

#[tokio::test]
async fn mixed_step_types() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"valueA": "data"}))
        .outputs("c", json!({"result": "ok"}));
    let b = ale_script("b", "{:valueB (str \"transformed-\" valueA)}");
    let flow = run_http_script_http(&mock, b).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(attr(&flow, "valueB"), Some(json!("transformed-data")));
    let called: Vec<String> = mock.calls().into_iter().map(|c| c.step_id).collect();
    assert_eq!(called, ["a", "c"]);
}

/// A (HTTP, → valueA) → script `b` (valueA → valueB) → C (HTTP goal, valueB → result).
async fn run_http_script_http(mock: &MockRunner, b: argyll_model::Step) -> argyll_model::FlowState {
    let engine = engine(mock).await;
    let b = b
        .with_attribute("valueA", AttributeSpec::required(AttributeType::Untyped))
        .with_attribute("valueB", AttributeSpec::output(AttributeType::Untyped));
    register(
        &engine,
        vec![
            step("a", &[], &["valueA"]),
            b,
            step("c", &["valueB"], &["result"]),
        ],
    )
    .await;
    run(&engine, "f", &["c"], init(json!({}))).await
}

#[tokio::test]
async fn multiple_goals() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"valueB": 1, "valueD": 2}))
        .outputs("b", json!({"valueC": 3}))
        .outputs("c", json!({"resultC": 4}))
        .outputs("d", json!({"resultD": 5}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![
            step("a", &[], &["valueB", "valueD"]),
            step("b", &["valueB"], &["valueC"]),
            step("c", &["valueC"], &["resultC"]),
            step("d", &["valueD"], &["resultD"]),
            step("e", &[], &["unrelated"]),
        ],
    )
    .await;
    let flow = run(&engine, "f", &["c", "d"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert!(!flow.executions.contains_key("e"));
    assert_eq!(mock.calls().len(), 4);
    assert_eq!(attr(&flow, "resultC"), Some(json!(4)));
    assert_eq!(attr(&flow, "resultD"), Some(json!(5)));
}

#[tokio::test]
async fn optional_input_default_is_passed() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"valueA": 1}));
    let engine = engine(&mock).await;
    let b = step("b", &["valueA"], &["result"]).with_attribute(
        "config",
        AttributeSpec::optional(AttributeType::Object, Some("{\"key\": \"default\"}")),
    );
    register(&engine, vec![step("a", &[], &["valueA"]), b]).await;
    let flow = run(&engine, "f", &["b"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(
        mock.calls_of("b")[0].inputs["config"],
        json!({"key": "default"})
    );
}

/// Decision 11 with a predicate that needs more than the quick budget (20,000 steps): it is
/// evaluated on the blocking pool, outside the transaction that found the step ready, and its
/// verdict decides the step as a quick one's would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_predicates_are_evaluated_outside_the_transaction_and_decide() {
    let mock = MockRunner::new();
    mock.outputs("yes", json!({"y": 1}));
    mock.outputs("no", json!({"n": 1}));
    let engine = engine(&mock).await;
    let slow = |verdict: &str| {
        ScriptConfig::new(
            ScriptLanguage::Lua,
            format!("local n = 0 for i = 1, 200000 do n = n + 1 end return n > 0 and {verdict}"),
        )
    };
    let mut yes = step("yes", &[], &["y"]);
    yes.predicate = Some(slow("true"));
    let mut no = step("no", &[], &["n"]);
    no.predicate = Some(slow("false"));
    register(&engine, vec![yes, no]).await;
    let flow = run(&engine, "f", &["yes", "no"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(status(&flow, "yes"), "completed");
    assert_eq!(status(&flow, "no"), "skipped");
    assert_eq!(flow.executions["no"].error, "predicate returned false");
    assert_eq!(
        mock.calls().len(),
        1,
        "only the step whose predicate held ran"
    );
}

/// Decision 11: the predicate sees the step's inputs; false skips, an error fails the step.
#[tokio::test]
async fn predicates_see_the_step_inputs() {
    let mock = MockRunner::new();
    mock.outputs("pay", json!({"paid": true}));
    let engine = engine(&mock).await;
    let mut pay = step("pay", &["amount"], &["paid"]);
    pay.predicate = Some(ScriptConfig::new(ScriptLanguage::Ale, "(> amount 100)"));
    let mut strict = step("strict", &["amount"], &["checked"]);
    strict.predicate = Some(ScriptConfig::new(
        ScriptLanguage::Lua,
        "return amount.x > 1",
    ));
    register(&engine, vec![pay, strict]).await;
    let big = run(&engine, "big", &["pay"], init(json!({"amount": 150}))).await;
    assert_eq!(status(&big, "pay"), "completed");
    let small = run(&engine, "small", &["pay"], init(json!({"amount": 5}))).await;
    assert_eq!(status(&small, "pay"), "skipped");
    assert_eq!(mock.calls().len(), 1);
    let broken = run(&engine, "broken", &["strict"], init(json!({"amount": 5}))).await;
    assert_eq!(status(&broken, "strict"), "failed");
    let error = &broken.executions["strict"].error;
    assert!(
        error.starts_with("predicate evaluation failed:") && error.contains("attempt to index"),
        "{error}"
    );
}

#[tokio::test]
async fn goal_skipped_by_predicate_completes_the_flow() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"valueA": 1}));
    let engine = engine(&mock).await;
    let mut b = step("b", &["valueA"], &["valueB"]);
    b.predicate = Some(ScriptConfig::new(ScriptLanguage::Ale, "false"));
    register(&engine, vec![step("a", &[], &["valueA"]), b]).await;
    let flow = run(&engine, "f", &["b"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(status(&flow, "a"), "completed");
    assert_eq!(status(&flow, "b"), "skipped");
    assert_eq!(flow.executions["b"].error, "predicate returned false");
    assert!(attr(&flow, "valueB").is_none());
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test]
async fn retry_exhaustion_calls_one_plus_max_retries_times() {
    let mock = MockRunner::new();
    mock.on(
        "s",
        vec![Reply::Retryable("work not completed: down".into())],
    );
    let engine = engine(&mock).await;
    let s = with_work_config(
        step("s", &[], &["result"]),
        WorkConfig {
            max_retries: 3,
            backoff_ms: 10,
            backoff_type: BackoffType::Fixed,
            ..WorkConfig::default()
        },
    );
    register(&engine, vec![s]).await;
    let flow = run(&engine, "f", &["s"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(status(&flow, "s"), "failed");
    let item = flow.executions["s"].work_items.values().next().unwrap();
    assert_eq!(item.retry_count, 3);
    // Nothing is pending or running any more: no later call can come.
    wait_settled(&engine, "f").await;
    assert_eq!(mock.calls().len(), 4);
    let tokens: std::collections::BTreeSet<_> = mock.calls().into_iter().map(|c| c.token).collect();
    assert_eq!(tokens.len(), 1, "retries keep the token");
}

fn retrying_step() -> argyll_model::Step {
    with_work_config(
        step("s", &[], &["result"]),
        WorkConfig {
            max_retries: 20,
            backoff_ms: 200,
            backoff_type: BackoffType::Fixed,
            ..WorkConfig::default()
        },
    )
}

#[tokio::test]
async fn flows_recover_after_an_engine_restart() {
    let store = argyll_store::EmbeddedStore::new();
    let mock = MockRunner::new();
    mock.on(
        "s",
        vec![Reply::Retryable("work not completed: down".into())],
    );
    let first = engine_with(store.clone(), &mock).await;
    register(&first, vec![retrying_step()]).await;
    for id in ["f1", "f2", "f3"] {
        start(&first, id, &["s"], init(json!({}))).await;
    }
    for _ in 0..200 {
        if mock.calls().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.shutdown(Duration::from_secs(5)).await;
    let flow = first.flow("f1").await.unwrap().unwrap();
    assert_eq!(flow.status.to_string(), "active");
    assert_eq!(status(&flow, "s"), "active");
    assert!(!flow.executions["s"].work_items.is_empty());

    mock.outputs("s", json!({"result": "ok"}));
    let second = engine_with(store, &mock).await;
    for id in ["f1", "f2", "f3"] {
        let flow = wait(&second, id).await;
        assert_eq!(flow.status.to_string(), "completed", "{id}");
        assert_eq!(status(&flow, "s"), "completed");
    }
}

#[tokio::test]
async fn recovery_keeps_failed_flows_failed_and_finishes_the_others() {
    let store = argyll_store::EmbeddedStore::new();
    let mock = MockRunner::new();
    let first = engine_with(store.clone(), &mock).await;
    mock.on("retrying", vec![Reply::Retryable("down".into())])
        .on("failing", vec![Reply::Retryable("down".into())])
        .outputs("fine", json!({"c": 1}))
        .delay("fine", Duration::from_millis(100));
    let mut retrying = retrying_step();
    retrying.id = "retrying".into();
    retrying.attributes.clear();
    retrying = retrying.with_attribute("a", AttributeSpec::output(AttributeType::Untyped));
    register(
        &first,
        vec![
            retrying,
            no_retry(step("failing", &[], &["b"])),
            step("fine", &[], &["c"]),
        ],
    )
    .await;
    start(&first, "not-completed", &["retrying"], init(json!({}))).await;
    let failed = run(&first, "failed", &["failing"], init(json!({}))).await;
    assert_eq!(failed.status.to_string(), "failed");
    start(&first, "pending", &["fine"], init(json!({}))).await;
    // Shut down while `fine` runs (it takes 100 ms), so the next engine must finish it.
    for _ in 0..500 {
        if !mock.calls_of("fine").is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(mock.calls_of("fine").len(), 1);
    first.shutdown(Duration::from_millis(1)).await;

    mock.outputs("retrying", json!({"a": 1}));
    let second = engine_with(store, &mock).await;
    assert_eq!(
        wait(&second, "not-completed").await.status.to_string(),
        "completed"
    );
    assert_eq!(
        wait(&second, "pending").await.status.to_string(),
        "completed"
    );
    assert_eq!(wait(&second, "failed").await.status.to_string(), "failed");
}

#[tokio::test]
async fn script_error_ale_fails_the_flow_without_retries() {
    script_error_fails_flow(
        ale_script("b", "(/ 1 0)"),
        "", // any non-empty error
    )
    .await;
}

#[tokio::test]
async fn script_error_lua_fails_the_flow_without_retries() {
    script_error_fails_flow(
        lua_script("b", "error(\"Lua error message\")"),
        "error message",
    )
    .await;
}

async fn script_error_fails_flow(b: argyll_model::Step, expected: &str) {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"valueA": 1}));
    let flow = run_http_script_http(&mock, b).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(status(&flow, "a"), "completed");
    assert_eq!(status(&flow, "b"), "failed");
    assert_eq!(status(&flow, "c"), "failed");
    let error = &flow.executions["b"].error;
    assert!(!error.is_empty() && error.contains(expected), "{error}");
    let called: Vec<String> = mock.calls().into_iter().map(|c| c.step_id).collect();
    assert_eq!(called, ["a"]);
    let item = flow.executions["b"].work_items.values().next().unwrap();
    assert_eq!(item.retry_count, 0, "script errors are not retried");
}
