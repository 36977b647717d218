//! The contract's decisions where the engine differs from the original, and the issue's
//! concurrency and restart requirements, through the engine API with a mock HTTP runner.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use argyll_engine::{
    CatalogError, EngineError, FlowCommandError, Registration, StartFlow, WorkReport,
};
use argyll_events::{AggregateId, Event, FlowEvent};
use argyll_model::{
    AttributeSpec, AttributeType, BackoffType, FlowConfig, ScriptConfig, ScriptLanguage, WorkConfig,
};
use argyll_plan::InitError;
use argyll_store::{EmbeddedStore, EventLog, FlowQuery, Leases};
use serde_json::json;
use support::*;

fn start_request(flow_id: &str, goals: &[&str], init: serde_json::Value) -> StartFlow {
    StartFlow {
        flow_id: flow_id.into(),
        goals: goals.iter().map(|g| (*g).to_owned()).collect(),
        init: support::init(init),
        metadata: Default::default(),
    }
}

#[tokio::test]
async fn goal_feeds_goal() {
    let mock = MockRunner::new();
    mock.outputs("g1", json!({"x": 1}))
        .outputs("g2", json!({"y": 2}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![step("g1", &[], &["x"]), step("g2", &["x"], &["y"])],
    )
    .await;
    let flow = run(&engine, "f", &["g1", "g2"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(attr(&flow, "y"), Some(json!(2)));
}

#[tokio::test]
async fn empty_for_each_completes_with_empty_lists() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let g = step("g", &[], &["out"]).with_attribute(
        "xs",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    register(&engine, vec![g]).await;
    let flow = run(&engine, "f", &["g"], init(json!({"xs": []}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(attr(&flow, "out"), Some(json!([])));
    assert!(mock.calls().is_empty());
}

#[tokio::test]
async fn for_each_single_element_is_a_list_and_cartesian_order_is_fixed() {
    let mock = MockRunner::new();
    mock.outputs("g", json!({"r": 1}));
    let engine = engine(&mock).await;
    let mut g = step("g", &[], &["r"])
        .with_attribute(
            "a",
            AttributeSpec::required(AttributeType::Array).for_each(),
        )
        .with_attribute(
            "b",
            AttributeSpec::required(AttributeType::Array).for_each(),
        );
    g.work_config = Some(WorkConfig {
        parallelism: 4,
        ..WorkConfig::default()
    });
    register(&engine, vec![g]).await;
    let flow = run(
        &engine,
        "one",
        &["g"],
        init(json!({"a": ["x"], "b": ["y"]})),
    )
    .await;
    assert_eq!(
        attr(&flow, "r"),
        Some(json!([{"a": "x", "b": "y", "r": 1}]))
    );
    let flow = run(
        &engine,
        "two",
        &["g"],
        init(json!({"a": [1, 2], "b": ["p", "q"]})),
    )
    .await;
    assert_eq!(
        attr(&flow, "r"),
        Some(json!([
            {"a": 1, "b": "p", "r": 1},
            {"a": 1, "b": "q", "r": 1},
            {"a": 2, "b": "p", "r": 1},
            {"a": 2, "b": "q", "r": 1},
        ]))
    );
}

#[tokio::test]
async fn predicate_is_evaluated_once_with_the_whole_array() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let mut g = step("g", &[], &["r"]).with_attribute(
        "xs",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    g.predicate = Some(ScriptConfig::new(
        ScriptLanguage::Lua,
        "return type(xs) == 'table'",
    ));
    register(&engine, vec![g]).await;
    let flow = run(&engine, "f", &["g"], init(json!({"xs": ["a", "b"]}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(mock.calls().len(), 2);
}

#[tokio::test]
async fn optional_input_waits_for_its_planned_provider() {
    let mock = MockRunner::new();
    mock.outputs("p", json!({"hint": "from-p"}))
        .delay("p", Duration::from_millis(100))
        .outputs("g", json!({"r": 1}));
    let engine = engine(&mock).await;
    let g = step("g", &[], &["r"]).with_attribute(
        "hint",
        AttributeSpec::optional(AttributeType::Untyped, None),
    );
    register(&engine, vec![step("p", &[], &["hint"]), g]).await;
    let flow = run(&engine, "f", &["g"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(mock.calls_of("g")[0].inputs["hint"], json!("from-p"));
}

#[tokio::test]
async fn optional_input_stops_waiting_when_its_provider_fails() {
    let mock = MockRunner::new();
    mock.on("p", vec![Reply::Failed("no".into())])
        .outputs("g", json!({"r": 1}));
    let engine = engine(&mock).await;
    let g = step("g", &[], &["r"]).with_attribute(
        "hint",
        AttributeSpec::optional(AttributeType::Untyped, Some("\"fallback\"")),
    );
    register(&engine, vec![no_retry(step("p", &[], &["hint"])), g]).await;
    let flow = run(&engine, "f", &["g"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(mock.calls_of("g")[0].inputs["hint"], json!("fallback"));
}

#[tokio::test]
async fn provider_without_its_output_fails_the_consumer() {
    let mock = MockRunner::new();
    mock.outputs("p", json!({"other": 1}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![step("p", &[], &["v"]), step("g", &["v"], &["r"])],
    )
    .await;
    let flow = run(&engine, "f", &["g"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(
        flow.executions["g"].error,
        "required input no longer available"
    );
}

#[tokio::test]
async fn skipped_provider_fails_the_consumer_transitively() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let mut p = step("p", &[], &["v"]);
    p.predicate = Some(ScriptConfig::new(ScriptLanguage::Ale, "false"));
    register(
        &engine,
        vec![p, step("m", &["v"], &["w"]), step("g", &["w"], &["r"])],
    )
    .await;
    let flow = run(&engine, "f", &["g"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(status(&flow, "p"), "skipped");
    assert_eq!(status(&flow, "m"), "failed");
    assert_eq!(status(&flow, "g"), "failed");
    assert!(mock.calls().is_empty());
}

#[tokio::test]
async fn failed_alternative_provider_does_not_block_completion() {
    let mock = MockRunner::new();
    mock.on("p1", vec![Reply::Failed("down".into())])
        .outputs("p2", json!({"v": 2}))
        .delay("p2", Duration::from_millis(30))
        .outputs("g", json!({"r": 1}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![
            no_retry(step("p1", &[], &["v"])),
            step("p2", &[], &["v"]),
            step("g", &["v"], &["r"]),
        ],
    )
    .await;
    let flow = run(&engine, "f", &["g"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(status(&flow, "p1"), "failed");
}

#[tokio::test]
async fn goals_done_while_another_provider_still_runs() {
    let mock = MockRunner::new();
    mock.outputs("fast", json!({"v": 1}))
        .outputs("slow", json!({"v": 2}))
        .delay("slow", Duration::from_millis(300))
        .outputs("g", json!({"r": 1}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![
            step("fast", &[], &["v"]),
            step("slow", &[], &["v"]),
            step("g", &["v"], &["r"]),
        ],
    )
    .await;
    let flow = run(&engine, "f", &["g"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(
        status(&flow, "slow"),
        "active",
        "still running when the flow completed"
    );
    let flow = wait_settled(&engine, "f").await;
    assert_eq!(status(&flow, "slow"), "completed");
    assert_eq!(attr(&flow, "v"), Some(json!(1)), "first writer wins");
}

#[tokio::test]
async fn zero_step_plan_completes_at_once() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    register(&engine, vec![step("g", &[], &["r"])]).await;
    let flow = run(&engine, "f", &["g"], init(json!({"r": 5}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert!(flow.executions.is_empty());
    assert!(mock.calls().is_empty());
}

#[tokio::test]
async fn flow_start_is_idempotent_and_conflicts_are_refused() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![step("g", &["x"], &["r"]), step("h", &[], &["s"])],
    )
    .await;
    let first = engine
        .start_flow(start_request(
            "f",
            &["g"],
            json!({"x": 1, "y": {"a": 1, "b": 2}}),
        ))
        .await
        .unwrap();
    assert!(first.created);
    let again = engine
        .start_flow(start_request(
            "f",
            &["g"],
            json!({"y": {"b": 2, "a": 1}, "x": 1}),
        ))
        .await
        .unwrap();
    assert!(!again.created);
    for (goals, init) in [(vec!["g"], json!({"x": 2})), (vec!["h"], json!({}))] {
        let error = engine
            .start_flow(start_request("f", &goals, init))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "flow exists: f");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_starts_record_one_flow_started() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    register(&engine, vec![step("g", &[], &["r"])]).await;
    let starts: Vec<_> = (0..100)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .start_flow(start_request("race", &["g"], json!({})))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for start in starts {
        if start.await.unwrap().unwrap().created {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    wait(&engine, "race").await;
    let events = engine
        .store()
        .read(&AggregateId::Flow("race".into()), 0)
        .await
        .unwrap();
    let started = events
        .iter()
        .filter(|e| matches!(e.event, Event::Flow(FlowEvent::FlowStarted(_))))
        .count();
    assert_eq!(started, 1);
    assert_eq!(mock.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_flows_all_complete() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"v": 1}))
        .outputs("g", json!({"r": 2}));
    let engine = engine(&mock).await;
    register(
        &engine,
        vec![step("a", &["seed"], &["v"]), step("g", &["v"], &["r"])],
    )
    .await;
    let starts: Vec<_> = (0..1000)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                engine
                    .start_flow(start_request(&format!("f{i}"), &["g"], json!({"seed": i})))
                    .await
                    .unwrap();
                engine
                    .wait_for_flow(&format!("f{i}"), Duration::from_secs(30))
                    .await
                    .unwrap()
                    .unwrap()
            })
        })
        .collect();
    for start in starts {
        let flow = start.await.unwrap();
        assert_eq!(flow.status.to_string(), "completed", "{}", flow.id);
        assert_eq!(attr(&flow, "r"), Some(json!(2)));
    }
    assert_eq!(mock.calls().len(), 2000);
    let page = engine.list_flows(&FlowQuery::default()).await.unwrap();
    assert_eq!(page.entries.len(), 1000);
}

#[tokio::test]
async fn async_step_survives_a_restart_and_completes_by_webhook() {
    let store = EmbeddedStore::new();
    let mock = MockRunner::new();
    mock.on("a", vec![Reply::Accepted]);
    let first = engine_with(store.clone(), &mock).await;
    let mut a = step("a", &["x"], &["r"]);
    a.step_type = argyll_model::StepType::Async;
    register(&first, vec![a]).await;
    start(&first, "f", &["a"], init(json!({"x": 1}))).await;
    let token = mock.first_call().await.token;
    first.shutdown(Duration::from_secs(1)).await;
    drop(first);

    let second = engine_with(store, &mock).await;
    second
        .report_work(
            "f",
            "a",
            &token,
            WorkReport::Succeeded(init(json!({"r": "late"}))),
        )
        .await
        .unwrap();
    let flow = wait(&second, "f").await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(attr(&flow, "r"), Some(json!("late")));
    let error = second
        .report_work("f", "a", &token, WorkReport::Succeeded(init(json!({}))))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            EngineError::Work(FlowCommandError::InvalidTransition(_))
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "invalid work state transition: succeeded -> succeeded"
    );
}

#[tokio::test]
async fn webhook_can_request_a_retry() {
    let mock = MockRunner::new();
    mock.on("a", vec![Reply::Accepted]);
    let engine = engine(&mock).await;
    let mut a = with_work_config(
        step("a", &[], &["r"]),
        WorkConfig {
            max_retries: 2,
            backoff_ms: 10,
            backoff_type: BackoffType::Fixed,
            ..WorkConfig::default()
        },
    );
    a.step_type = argyll_model::StepType::Async;
    register(&engine, vec![a]).await;
    start(&engine, "f", &["a"], init(json!({}))).await;
    for attempt in 1..=2 {
        for _ in 0..200 {
            if mock.calls().len() >= attempt {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(mock.calls().len(), attempt);
        let token = mock.calls()[0].token.clone();
        let report = if attempt == 1 {
            WorkReport::Retry("busy".into())
        } else {
            WorkReport::Succeeded(init(json!({"r": "second"})))
        };
        engine.report_work("f", "a", &token, report).await.unwrap();
    }
    let flow = wait(&engine, "f").await;
    assert_eq!(attr(&flow, "r"), Some(json!("second")));
}

#[tokio::test]
async fn webhook_errors_name_the_problem() {
    let mock = MockRunner::new();
    mock.on("a", vec![Reply::Accepted]);
    let engine = engine(&mock).await;
    register(&engine, vec![async_step("a", &[], &["r"])]).await;
    start(&engine, "f", &["a"], init(json!({}))).await;
    let report = || WorkReport::Succeeded(init(json!({})));
    let error = engine
        .report_work("nope", "a", "t", report())
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::FlowNotFound(_)));
    let error = engine
        .report_work("f", "zz", "t", report())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "step not in execution plan: zz");
    let error = engine
        .report_work("f", "a", "t", report())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "work item not found: t");
}

/// Issue 14, item 4: only work items of async steps accept a webhook; a webhook for a sync
/// step's item is refused and the handler's own result decides the item.
#[tokio::test]
async fn webhook_for_a_sync_step_is_refused_and_the_handler_decides() {
    let mock = MockRunner::new();
    mock.outputs("a", json!({"r": "from handler"}));
    let held = mock.hold("a");
    let engine = engine(&mock).await;
    register(&engine, vec![step("a", &[], &["r"])]).await;
    start(&engine, "f", &["a"], init(json!({}))).await;
    let token = mock.first_call().await.token;
    let error = engine
        .report_work(
            "f",
            "a",
            &token,
            WorkReport::Succeeded(init(json!({"r": "from webhook"}))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, EngineError::Work(FlowCommandError::NotAsync(_))),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "step a is not an async step: only work items of async steps accept webhook results"
    );
    held.release();
    let flow = wait(&engine, "f").await;
    assert_eq!(flow.status.to_string(), "completed");
    assert_eq!(attr(&flow, "r"), Some(json!("from handler")));
}

fn child_setup(mock: &MockRunner) -> Vec<argyll_model::Step> {
    let _ = mock;
    let child = ale_script("child", "{:child_out (* 2 child_in)}")
        .with_attribute("child_in", AttributeSpec::required(AttributeType::Untyped))
        .with_attribute("child_out", AttributeSpec::output(AttributeType::Untyped));
    let mut parent = flow_step("parent")
        .with_attribute("input", AttributeSpec::required(AttributeType::Untyped))
        .with_attribute("output", AttributeSpec::output(AttributeType::Untyped));
    parent.flow = Some(FlowConfig {
        goals: vec!["child".into()],
        input_map: [("input".to_owned(), "child_in".to_owned())].into(),
        output_map: [("child_out".to_owned(), "output".to_owned())].into(),
    });
    vec![child, parent]
}

#[tokio::test]
async fn child_flow_maps_inputs_and_outputs() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    register(&engine, child_setup(&mock)).await;
    let flow = run(&engine, "p", &["parent"], init(json!({"input": 7}))).await;
    assert_eq!(flow.status.to_string(), "completed", "{flow:#?}");
    assert_eq!(attr(&flow, "output"), Some(json!(14)));
    assert!(attr(&flow, "child_out").is_none());
    let token = flow.executions["parent"]
        .work_items
        .keys()
        .next()
        .unwrap()
        .clone();
    let child = engine
        .flow(&format!("p:parent:{token}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(child.status.to_string(), "completed");
    assert_eq!(child.metadata["parent_flow_id"], json!("p"));
    assert_eq!(child.metadata["parent_step_id"], json!("parent"));
    assert_eq!(child.metadata["parent_work_item_token"], json!(token));
    let top = engine
        .list_flows(&FlowQuery {
            top_level_only: true,
            ..FlowQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<_> = top.entries.iter().map(|e| e.flow_id.as_str()).collect();
    assert_eq!(ids, ["p"]);
}

#[tokio::test]
async fn failing_or_missing_children_fail_the_parent() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let failing = lua_script("boom", "error('boom')")
        .with_attribute("o", AttributeSpec::output(AttributeType::Untyped));
    let mut parent =
        flow_step("parent1").with_attribute("o", AttributeSpec::output(AttributeType::Untyped));
    parent.flow = Some(FlowConfig {
        goals: vec!["boom".into()],
        ..FlowConfig::default()
    });
    let mut missing_goal = flow_step("parent2");
    missing_goal.flow = Some(FlowConfig {
        goals: vec!["never-registered".into()],
        ..FlowConfig::default()
    });
    let empty = ale_script("empty", "{}")
        .with_attribute("child_out", AttributeSpec::output(AttributeType::Untyped));
    let mut missing_output = flow_step("parent3")
        .with_attribute("output", AttributeSpec::output(AttributeType::Untyped));
    missing_output.flow = Some(FlowConfig {
        goals: vec!["empty".into()],
        output_map: [("child_out".to_owned(), "output".to_owned())].into(),
        ..FlowConfig::default()
    });
    register(
        &engine,
        vec![failing, parent, missing_goal, empty, missing_output],
    )
    .await;
    let flow = run(&engine, "f1", &["parent1"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert!(
        flow.executions["parent1"].error.contains("boom"),
        "{}",
        flow.error
    );
    let flow = run(&engine, "f2", &["parent2"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert!(flow.executions["parent2"].error.contains("step not found"));
    let flow = run(&engine, "f3", &["parent3"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(
        flow.executions["parent3"].error,
        "flow output missing: child_out"
    );
}

#[tokio::test]
async fn init_values_are_type_checked() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let g = step("g", &[], &["r"])
        .with_attribute("amt", AttributeSpec::required(AttributeType::Number))
        .with_attribute("who", AttributeSpec::required(AttributeType::String));
    register(&engine, vec![g]).await;
    let error = engine
        .start_flow(start_request("f", &["g"], json!({"amt": "12", "who": 3})))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        EngineError::Init(InitError::TypeMismatch { .. })
    ));
    let text = error.to_string();
    assert!(text.contains("amt") && text.contains("who"), "{text}");
    assert!(engine.flow("f").await.unwrap().is_none());
}

#[tokio::test]
async fn registration_checks() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let a = step("a", &[], &["x"]);
    assert_eq!(
        engine.register_step(a.clone()).await.unwrap(),
        Registration::Created
    );
    assert_eq!(
        engine.register_step(a.clone()).await.unwrap(),
        Registration::Unchanged
    );
    let mut renamed = a.clone();
    renamed.name = "other".into();
    let error = engine.register_step(renamed).await.unwrap_err();
    assert!(matches!(
        error,
        EngineError::Catalog(CatalogError::StepExists(_))
    ));

    let conflicting =
        step("b", &[], &[]).with_attribute("x", AttributeSpec::required(AttributeType::Number));
    let error = engine.register_step(conflicting).await.unwrap_err();
    assert_eq!(error.to_string(), "attribute type conflict: x");

    register(&engine, vec![step("c", &["y"], &["z"])]).await;
    let error = engine
        .register_step(step("d", &["z"], &["y"]))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "circular dependency detected: step d");

    let error = engine
        .register_step(ale_script("e", "(+ 1"))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::Script(_)), "{error}");
    let mut predicate = step("p", &[], &[]);
    predicate.predicate = Some(ScriptConfig::new(ScriptLanguage::Lua, "return ("));
    assert!(matches!(
        engine.register_step(predicate).await.unwrap_err(),
        EngineError::Script(_)
    ));
    let invalid = step("", &[], &[]);
    assert_eq!(
        engine.register_step(invalid).await.unwrap_err().to_string(),
        "step ID empty"
    );

    let catalog = engine.catalog().await.unwrap();
    assert_eq!(
        catalog.state.steps.keys().collect::<Vec<_>>(),
        ["a", "c"],
        "refused registrations left nothing behind"
    );
    engine.unregister_step("a").await.unwrap();
    assert!(matches!(
        engine.unregister_step("a").await.unwrap_err(),
        EngineError::Catalog(CatalogError::StepNotFound(_))
    ));
}

/// Issue 14, item 14: a step asking for no backoff and many retries still waits
/// `min_retry_delay` between attempts instead of retrying in a busy loop.
#[tokio::test]
async fn retries_wait_at_least_the_minimum_backoff() {
    let mock = MockRunner::new();
    mock.on("busy", vec![Reply::Retryable("try again".into())]);
    let engine = engine(&mock).await;
    let busy = with_work_config(
        step("busy", &[], &["r"]),
        WorkConfig {
            max_retries: 3,
            backoff_ms: 0,
            backoff_type: BackoffType::Fixed,
            ..WorkConfig::default()
        },
    );
    register(&engine, vec![busy]).await;
    let flow = run(&engine, "f", &["busy"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(mock.calls_of("busy").len(), 4);
    let events = engine
        .store()
        .read(&AggregateId::Flow("f".into()), 0)
        .await
        .unwrap();
    let delays: Vec<i64> = events
        .iter()
        .filter_map(|envelope| match &envelope.event {
            Event::Flow(FlowEvent::RetryScheduled(retry)) => {
                Some(retry.next_retry_at.millis_since(envelope.timestamp))
            }
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 3);
    let floor = i64::try_from(test_config().min_retry_delay.as_millis()).unwrap();
    assert!(floor >= 20);
    assert!(delays.iter().all(|delay| *delay >= floor), "{delays:?}");
}

fn flow_step_to(id: &str, goals: &[&str]) -> argyll_model::Step {
    let mut step = flow_step(id);
    step.flow = Some(FlowConfig {
        goals: goals.iter().map(|g| (*g).to_owned()).collect(),
        ..FlowConfig::default()
    });
    step
}

/// Issue 14, item 7: a flow step whose child flow would reach the flow step again is refused
/// at registration, naming the cycle — itself as goal, two flow steps calling each other, or
/// a goal that needs an input the flow step provides.
#[tokio::test]
async fn flow_steps_that_reach_themselves_are_refused() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let error = engine
        .register_step(flow_step_to("self", &["self"]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, EngineError::Catalog(CatalogError::FlowCycle(_))),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "circular dependency detected through a child flow: self -> (child flow goal) self"
    );

    register(&engine, vec![flow_step_to("ping", &["pong"])]).await;
    let error = engine
        .register_step(flow_step_to("pong", &["ping"]))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "circular dependency detected through a child flow: pong -> (child flow goal) ping -> (child flow goal) pong"
    );

    // outer's child runs `needs`, which needs `x`, which outer provides.
    let outer = flow_step_to("outer", &["needs"])
        .with_attribute("x", AttributeSpec::output(AttributeType::Untyped));
    register(&engine, vec![outer]).await;
    let error = engine
        .register_step(step("needs", &["x"], &["y"]))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "circular dependency detected through a child flow: needs -> (input) outer -> (child flow goal) needs"
    );
    // The same through an update of an existing step.
    register(&engine, vec![step("free", &[], &["y2"])]).await;
    let error = engine
        .update_step(flow_step_to("free", &["free"]))
        .await
        .unwrap_err();
    assert!(
        matches!(error, EngineError::Catalog(CatalogError::FlowCycle(_))),
        "{error}"
    );
    let catalog = engine.catalog().await.unwrap();
    assert_eq!(
        catalog.state.steps.keys().collect::<Vec<_>>(),
        ["free", "outer", "ping"]
    );
}

/// Issue 14, item 7: child flows nest at most `FLOW_MAX_DEPTH` levels, whatever the catalog;
/// child ids that would grow past `MAX_ID_LENGTH` are shortened to a hash and still work.
#[tokio::test]
async fn child_flows_nest_within_the_depth_limit_with_bounded_ids() {
    let mock = MockRunner::new();
    let engine = engine_configured(
        EmbeddedStore::new(),
        &mock,
        argyll_engine::EngineConfig {
            flow_max_depth: 2,
            max_id_length: 60,
            ..test_config()
        },
    )
    .await;
    let leaf = ale_script("leaf", "{:r 1}")
        .with_attribute("r", AttributeSpec::output(AttributeType::Untyped));
    let level = |id: &str, goal: &str| {
        flow_step_to(id, &[goal]).with_attribute("r", AttributeSpec::output(AttributeType::Untyped))
    };
    register(
        &engine,
        vec![
            leaf,
            level("two", "leaf"),
            level("one", "two"),
            level("zero", "one"),
        ],
    )
    .await;
    // Two levels of children: within the limit.
    let flow = run(&engine, "fits-the-limit", &["one"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed", "{}", flow.error);
    assert_eq!(attr(&flow, "r"), Some(json!(1)));
    let children = engine
        .list_flows(&argyll_store::FlowQuery::default())
        .await
        .unwrap()
        .entries;
    assert_eq!(children.len(), 3);
    // Ids within the limit keep their `parent:step:token` form; longer ones become
    // `<32 hex digits>:<token>` (69 characters).
    assert!(
        children
            .iter()
            .all(|entry| entry.flow_id.chars().count() <= 69),
        "{children:?}"
    );
    assert!(
        children
            .iter()
            .any(|entry| entry.flow_id == "fits-the-limit")
    );
    assert!(
        children
            .iter()
            .any(|entry| entry.flow_id.starts_with("fits-the-limit:one:")),
        "{children:?}"
    );
    // Three levels: the third child is not started.
    let flow = run(&engine, "too-deep", &["zero"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert!(
        flow.error.contains(
            "child flow depth limit reached: flows nest at most 2 levels deep (FLOW_MAX_DEPTH)"
        ),
        "{}",
        flow.error
    );
}

#[tokio::test]
async fn parallelism_limits_active_items_and_terminal_flows_cancel_queued_work() {
    let mock = MockRunner::new();
    mock.on(
        "g",
        vec![
            Reply::Failed("first fails".into()),
            Reply::Outputs(json!({"r": 1})),
        ],
    )
    .delay("g", Duration::from_millis(20));
    let engine = engine(&mock).await;
    let mut g = step("g", &[], &["r"]).with_attribute(
        "xs",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    g.work_config = Some(WorkConfig {
        parallelism: 1,
        ..WorkConfig::default()
    });
    register(&engine, vec![g]).await;
    let flow = run(&engine, "f", &["g"], init(json!({"xs": [1, 2, 3]}))).await;
    // Every item runs (a step fails only when all its items are done), one at a time.
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(mock.calls().len(), 3);
    let flow = wait_settled(&engine, "f").await;
    assert!(!flow.has_unfinished_work());
}

/// Issue 14, item 8: a step expands to at most `MAX_WORK_ITEMS` items. A start whose init
/// would exceed it is refused (nothing is written); a step that reaches it later fails with
/// a message naming the limit.
#[tokio::test]
async fn fan_outs_beyond_the_work_item_limit_are_refused_or_fail() {
    let mock = MockRunner::new();
    let engine = engine_configured(
        EmbeddedStore::new(),
        &mock,
        argyll_engine::EngineConfig {
            max_work_items: 5,
            ..test_config()
        },
    )
    .await;
    let fan = step("fan", &[], &["r"]).with_attribute(
        "xs",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    let make = ale_script("make", "{:xs [0 1 2 3 4 5]}")
        .with_attribute("xs", AttributeSpec::output(AttributeType::Array));
    register(&engine, vec![fan, make]).await;

    let error = engine
        .start_flow(start_request(
            "big",
            &["fan"],
            json!({"xs": [1, 2, 3, 4, 5, 6]}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::TooManyWorkItems(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "too many work items: step fan expands to 6, the limit is 5 (MAX_WORK_ITEMS)"
    );
    assert_eq!(engine.flow("big").await.unwrap(), None, "nothing written");

    let flow = run(
        &engine,
        "fits",
        &["fan"],
        init(json!({"xs": [1, 2, 3, 4, 5]})),
    )
    .await;
    assert_eq!(flow.status.to_string(), "completed");

    let flow = run(&engine, "later", &["fan"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert_eq!(
        flow.error,
        "step fan failed: too many work items: step fan expands to 6, the limit is 5 (MAX_WORK_ITEMS)"
    );
    assert!(
        mock.calls_of("fan").len() == 5,
        "only the flow that fits ran"
    );
}

/// Issue 14, item 8: fan-out work is linear in the number of items. A large fan-out over a
/// long array runs every item once, with the parallelism respected, and copies of the flow's
/// state (commands, reads) share its items instead of copying them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fan_out_runs_every_item_once() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let mut fan = with_work_config(
        ale_script("fan", "{:r (* 2 x)}"),
        WorkConfig {
            parallelism: 50,
            ..WorkConfig::default()
        },
    )
    .with_attribute(
        "x",
        AttributeSpec::required(AttributeType::Array).for_each(),
    )
    .with_attribute("r", AttributeSpec::output(AttributeType::Any));
    fan.memoizable = false;
    register(&engine, vec![fan]).await;
    let n = 20_000;
    let flow = run(
        &engine,
        "f",
        &["fan"],
        init(json!({"x": (0..n).collect::<Vec<_>>()})),
    )
    .await;
    assert_eq!(flow.status.to_string(), "completed", "{}", flow.error);
    let execution = &flow.executions["fan"];
    assert_eq!(execution.work_items.len(), n);
    assert_eq!(
        execution
            .work_items
            .count(argyll_model::WorkStatus::Succeeded),
        n
    );
    let results = attr(&flow, "r").unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), n);
    assert_eq!(results[n - 1], json!({"x": n - 1, "r": 2 * (n - 1)}));
    // One start per item: the events say so, whatever ran them.
    let events = engine
        .store()
        .read(&AggregateId::Flow("f".into()), 0)
        .await
        .unwrap();
    let started = events
        .iter()
        .filter(|e| matches!(&e.event, Event::Flow(FlowEvent::WorkStarted(_))))
        .count();
    assert_eq!(started, n);
}

/// Decision 22: an instance that dies mid-work stops renewing its lease; another instance
/// takes the work over once the lease lapses, without any restart.
#[test]
fn work_of_a_dead_instance_is_taken_over() {
    take_over_after_death(["doomed", "survivor"]);
}

/// An instance restarted under the same `ENGINE_INSTANCE_ID` finds leases in its own name that
/// nothing in the new process runs: it takes that work over (decision 24 only protects work
/// that is running).
#[test]
fn a_restarted_instance_takes_over_its_own_leftover_work() {
    take_over_after_death(["same", "same"]);
}

fn take_over_after_death(instances: [&str; 2]) {
    let store = EmbeddedStore::new();
    let config = |instance: &str| argyll_engine::EngineConfig {
        lease_ttl: Duration::from_millis(300),
        instance_id: instance.to_owned(),
        ..test_config()
    };
    let stuck = MockRunner::new();
    stuck
        .outputs("s", json!({"r": "never"}))
        .delay("s", Duration::from_secs(3600));
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    doomed.block_on(async {
        let engine = argyll_engine::Engine::builder(store.clone())
            .config(config(instances[0]))
            .runner(std::sync::Arc::new(stuck.clone()))
            .build()
            .unwrap();
        engine.start().await.unwrap();
        register(&engine, vec![step("s", &[], &["r"])]).await;
        start(&engine, "f", &["s"], init(json!({}))).await;
        while stuck.calls().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // The instance dies: its tasks (the running call, the lease renewal) vanish.
    doomed.shutdown_background();

    let survivor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    survivor.block_on(async {
        let healthy = MockRunner::new();
        healthy.outputs("s", json!({"r": "taken over"}));
        let engine = argyll_engine::Engine::builder(store.clone())
            .config(config(instances[1]))
            .runner(std::sync::Arc::new(healthy.clone()))
            .build()
            .unwrap();
        engine.start().await.unwrap();
        let flow = wait(&engine, "f").await;
        assert_eq!(flow.status.to_string(), "completed");
        assert_eq!(attr(&flow, "r"), Some(json!("taken over")));
        let calls = healthy.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].token,
            stuck.calls()[0].token,
            "same work item, same token"
        );
    });
}

/// Issue 14, item 1 (decision 24): a call that runs for many lease periods keeps its lease
/// (renewed while it runs); neither the sweep of quiet flows nor the lapsed-lease check of the
/// instance that runs it dispatches it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_in_progress_keeps_its_lease_and_is_called_once() {
    let mock = MockRunner::new();
    // Eight lease periods and more than two sweeps of quiet flows.
    mock.outputs("slow", json!({"r": "done"}))
        .delay("slow", Duration::from_millis(2500));
    let engine = engine_configured(
        EmbeddedStore::new(),
        &mock,
        argyll_engine::EngineConfig {
            lease_ttl: Duration::from_millis(300),
            ..test_config()
        },
    )
    .await;
    let fan = ale_script("fan", "{:x [1 2 3]}")
        .with_attribute("x", AttributeSpec::output(AttributeType::Untyped));
    let mut slow = with_work_config(
        step("slow", &["x"], &["r"]),
        WorkConfig {
            parallelism: 3,
            ..WorkConfig::default()
        },
    );
    slow.attributes.get_mut("x").unwrap().for_each = true;
    register(&engine, vec![fan, slow]).await;
    start(&engine, "f", &["slow"], init(json!({}))).await;
    let flow = engine
        .wait_for_flow("f", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(flow.status.to_string(), "completed");
    let calls = mock.calls_of("slow");
    let mut tokens: Vec<&str> = calls.iter().map(|c| c.token.as_str()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(
        (calls.len(), tokens.len()),
        (3, 3),
        "each of the 3 items called exactly once"
    );
    // Nor was any of them re-dispatched (a second `work_started`) while it ran.
    let events = engine
        .store()
        .read(&AggregateId::Flow("f".into()), 0)
        .await
        .unwrap();
    let started = events
        .iter()
        .filter(|e| matches!(&e.event, Event::Flow(FlowEvent::WorkStarted(_))))
        .count();
    assert_eq!(started, 4, "one work_started per item (and the script's)");
}

/// Issue 14, item 5: a flow the index lists as active whose events the store lost cannot be
/// run again; recovery reports it and removes it from the index instead of failing on it at
/// every sweep.
#[tokio::test]
async fn a_flow_whose_events_were_lost_leaves_the_index() {
    let mock = MockRunner::new();
    mock.on("a", vec![Reply::Accepted]);
    let engine = engine(&mock).await;
    register(&engine, vec![async_step("a", &[], &["r"])]).await;
    start(&engine, "lost", &["a"], init(json!({}))).await;
    mock.first_call().await;
    let store = engine.store();
    assert!(
        store
            .delete(&AggregateId::Flow("lost".into()))
            .await
            .unwrap()
    );
    let error = engine.recover_flow("lost").await.unwrap_err();
    assert!(matches!(error, EngineError::FlowNotFound(_)), "{error}");
    let listed = engine.list_flows(&FlowQuery::default()).await.unwrap();
    assert!(listed.entries.is_empty(), "{listed:?}");
}

/// Issue 14, item 15: `GET /engine` keeps the original's shape but lists every active flow and
/// only the most recently finished ones (`engine_state_max_flows`), not every flow ever run.
#[tokio::test]
async fn engine_state_lists_active_flows_and_the_latest_finished_ones() {
    let mock = MockRunner::new();
    mock.on("held", vec![Reply::Accepted]);
    let engine = engine_configured(
        EmbeddedStore::new(),
        &mock,
        argyll_engine::EngineConfig {
            engine_state_max_flows: 3,
            ..test_config()
        },
    )
    .await;
    let quick = ale_script("quick", "{:r 1}")
        .with_attribute("r", AttributeSpec::output(AttributeType::Untyped));
    register(&engine, vec![quick, async_step("held", &[], &["h"])]).await;
    for n in 0..10 {
        let flow = run(&engine, &format!("done-{n}"), &["quick"], init(json!({}))).await;
        assert_eq!(flow.status.to_string(), "completed");
    }
    start(&engine, "running", &["held"], init(json!({}))).await;
    let state = engine.engine_state().await.unwrap();
    assert_eq!(state.active.keys().collect::<Vec<_>>(), ["running"]);
    let finished: Vec<&str> = state
        .deactivated
        .iter()
        .map(|flow| flow.flow_id.as_str())
        .collect();
    assert_eq!(finished, ["done-7", "done-8", "done-9"], "oldest first");
    assert_eq!(
        state.flow_digests.keys().collect::<Vec<_>>(),
        ["done-7", "done-8", "done-9", "running"]
    );
    // Every flow is still listed by the paged flow listing.
    let all = engine.list_flows(&FlowQuery::default()).await.unwrap();
    assert_eq!(all.entries.len(), 11);
}

/// Issue 14, item 10: a flow's state is bounded (`max_state_bytes`): a start whose init alone
/// is too large is refused; a result that would grow the state past the limit fails its work
/// item; a fan-out whose items would fails its step — each naming the limit.
#[tokio::test]
async fn a_flow_state_stays_within_its_byte_limit() {
    let mock = MockRunner::new();
    mock.outputs("big", json!({"r": "x".repeat(5_000)}));
    mock.outputs("small", json!({"r": "ok"}));
    let engine = engine_configured(
        EmbeddedStore::new(),
        &mock,
        argyll_engine::EngineConfig {
            max_state_bytes: 4_000,
            ..test_config()
        },
    )
    .await;
    // Every item of `fan` gets a copy of `pad`.
    let fan = step("fan", &["pad"], &["r"]).with_attribute(
        "xs",
        AttributeSpec::required(AttributeType::Array).for_each(),
    );
    register(
        &engine,
        vec![
            no_retry(step("big", &[], &["r"])),
            no_retry(step("small", &[], &["r"])),
            no_retry(fan),
        ],
    )
    .await;
    let error = engine
        .start_flow(start_request(
            "huge-init",
            &["small"],
            json!({"pad": "y".repeat(5_000)}),
        ))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::StateTooLarge(_)), "{error}");
    assert!(
        error.to_string().starts_with(
            "flow state too large: the init values and metadata (5012 bytes) would take"
        ),
        "{error}"
    );
    let flow = run(&engine, "big-result", &["big"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert!(
        flow.error.contains(
            "flow state too large: the work item's outputs (5008 bytes) would take the flow's state past 4000 bytes (FLOW_MAX_STATE_BYTES)"
        ),
        "{}",
        flow.error
    );
    assert!(attr(&flow, "r").is_none());
    let wide = json!({"xs": [1, 2, 3, 4], "pad": "z".repeat(1_000)});
    let flow = run(&engine, "wide", &["fan"], init(wide)).await;
    assert_eq!(flow.status.to_string(), "failed");
    assert!(
        flow.error
            .contains("flow state too large: the step's work items ("),
        "{}",
        flow.error
    );
    assert!(mock.calls_of("fan").is_empty());
    let flow = run(&engine, "fits", &["small"], init(json!({}))).await;
    assert_eq!(flow.status.to_string(), "completed");
    assert!(
        flow.size.bytes() > 0 && flow.size.bytes() < 4_000,
        "{:?}",
        flow.size
    );
}

/// The engine's flow cache never outlives the flow's log: a result for a flow deleted from the
/// store (archived) finds no flow instead of the cached one.
#[tokio::test]
async fn a_deleted_flow_is_not_served_from_the_cache() {
    let mock = MockRunner::new();
    mock.on("a", vec![Reply::Accepted]);
    let engine = engine(&mock).await;
    register(&engine, vec![async_step("a", &[], &["r"])]).await;
    start(&engine, "f", &["a"], init(json!({}))).await;
    let token = mock.first_call().await.token;
    assert!(
        engine
            .store()
            .delete(&AggregateId::Flow("f".into()))
            .await
            .unwrap()
    );
    assert_eq!(engine.flow("f").await.unwrap(), None);
    let error = engine
        .report_work(
            "f",
            "a",
            &token,
            WorkReport::Succeeded(init(json!({"r": 1}))),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::FlowNotFound(_)), "{error}");
}

/// Timestamps of the flow's events: one transaction stamps all its events alike.
async fn commit_times(
    engine: &argyll_engine::Engine<EmbeddedStore>,
    flow_id: &str,
) -> Vec<Option<i64>> {
    let events = engine
        .store()
        .read(&AggregateId::Flow(flow_id.into()), 0)
        .await
        .unwrap();
    let mut times: Vec<Option<i64>> = events.iter().map(|e| e.timestamp.unix_nanos()).collect();
    times.dedup();
    times
}

#[tokio::test]
async fn quick_scripts_run_inside_the_transaction_and_long_ones_are_dispatched() {
    let mock = MockRunner::new();
    let engine = engine(&mock).await;
    let quick = lua_script("quick", "return {doubled = x * 2}")
        .with_attribute("x", AttributeSpec::required(AttributeType::Number))
        .with_attribute("doubled", AttributeSpec::output(AttributeType::Number));
    // 200,000 loop iterations: beyond the quick budget, well within the script limits.
    let long = lua_script(
        "long",
        "local n = 0 for i = 1, 200000 do n = n + 1 end return {counted = n + doubled}",
    )
    .with_attribute("doubled", AttributeSpec::required(AttributeType::Number))
    .with_attribute("counted", AttributeSpec::output(AttributeType::Number));
    let failing = ale_script("failing", "(/ x 0)")
        .with_attribute("x", AttributeSpec::required(AttributeType::Number))
        .with_attribute("never", AttributeSpec::output(AttributeType::Number));
    register(&engine, vec![quick, long, failing]).await;

    // Start, step, work item, result and completion: one commit.
    engine
        .start_flow(start_request("one-commit", &["quick"], json!({"x": 21})))
        .await
        .unwrap();
    let flow = wait(&engine, "one-commit").await;
    assert_eq!(attr(&flow, "doubled"), Some(json!(42)));
    assert_eq!(commit_times(&engine, "one-commit").await.len(), 1);

    // The long script is dispatched: its result is a commit of its own.
    engine
        .start_flow(start_request("dispatched", &["long"], json!({"x": 1})))
        .await
        .unwrap();
    let flow = wait(&engine, "dispatched").await;
    assert_eq!(flow.status.to_string(), "completed", "{flow:#?}");
    assert_eq!(attr(&flow, "counted"), Some(json!(200_002)));
    assert_eq!(commit_times(&engine, "dispatched").await.len(), 2);

    // A quick script's failure is the item's failure, as when dispatched.
    engine
        .start_flow(start_request("fails", &["failing"], json!({"x": 1})))
        .await
        .unwrap();
    let flow = wait(&engine, "fails").await;
    assert_eq!(flow.status.to_string(), "failed");
    assert!(
        flow.error.starts_with("step failing failed: "),
        "{}",
        flow.error
    );
    assert_eq!(commit_times(&engine, "fails").await.len(), 1);
}

fn square_fan() -> argyll_model::Step {
    let mut fan = ale_script("fan", "{:square (* n n)}")
        .with_attribute(
            "n",
            AttributeSpec {
                for_each: true,
                ..AttributeSpec::required(AttributeType::Any)
            },
        )
        .with_attribute("square", AttributeSpec::output(AttributeType::Any));
    fan.work_config = Some(WorkConfig {
        parallelism: 3,
        ..WorkConfig::default()
    });
    fan
}

#[tokio::test]
async fn a_quick_script_fan_out_runs_every_item_under_its_parallelism() {
    let squares: Vec<serde_json::Value> = (1..=40)
        .map(|n: i64| json!({"n": n, "square": n * n}))
        .collect();
    let quick = engine(&MockRunner::new()).await;
    let mut config = test_config();
    config.quick_script_budget = None;
    let dispatched = argyll_engine::Engine::builder(EmbeddedStore::new())
        .config(config)
        .runner(std::sync::Arc::new(MockRunner::new()))
        .build()
        .unwrap();
    dispatched.start().await.unwrap();
    for (engine, commits) in [(&quick, 1..=1), (&dispatched, 2..=41)] {
        register(engine, vec![square_fan()]).await;
        engine
            .start_flow(start_request(
                "fan",
                &["fan"],
                json!({"n": (1..=40).collect::<Vec<i64>>()}),
            ))
            .await
            .unwrap();
        let flow = wait(engine, "fan").await;
        assert_eq!(attr(&flow, "square"), Some(json!(squares)));
        assert_eq!(flow.executions["fan"].work_items.len(), 40);
        // Quick: the whole fan-out in the starting commit. Dispatched: the results in commits
        // of their own (at most one each).
        let made = commit_times(engine, "fan").await.len();
        assert!(commits.contains(&made), "{made} commits");
    }
}

#[tokio::test]
async fn commands_on_a_stale_cached_state_are_checked_against_the_store() {
    // Two instances on one store, each with its own command cache.
    let store = EmbeddedStore::new();
    let mock = MockRunner::new();
    mock.on("a", vec![Reply::Accepted]);
    let first = engine_with(store.clone(), &mock).await;
    let second = engine_with(store.clone(), &mock).await;
    let mut a = step("a", &["x"], &["r"]);
    a.step_type = argyll_model::StepType::Async;
    register(&first, vec![a]).await;

    // A start presumed new on the second instance meets the first instance's flow: the same
    // start is answered from the stored flow, another one is refused as a duplicate before its
    // init is checked.
    start(&first, "f", &["a"], init(json!({"x": 1}))).await;
    let again = second
        .start_flow(start_request("f", &["a"], json!({"x": 1})))
        .await
        .unwrap();
    assert!(!again.created);
    let error = second
        .start_flow(start_request("f", &["a"], json!({"x": "other"})))
        .await
        .unwrap_err();
    assert!(matches!(error, EngineError::FlowExists(_)), "{error}");

    let token = mock.first_call().await.token;
    // The second instance records the result; the first one's cache still shows the item
    // running, so its copy of the same report conflicts, re-reads, and is refused.
    second
        .report_work(
            "f",
            "a",
            &token,
            WorkReport::Succeeded(init(json!({"r": 1}))),
        )
        .await
        .unwrap();
    let error = first
        .report_work(
            "f",
            "a",
            &token,
            WorkReport::Succeeded(init(json!({"r": 2}))),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid work state transition: succeeded -> succeeded"
    );
    let flow = wait(&first, "f").await;
    assert_eq!(attr(&flow, "r"), Some(json!(1)));
    let succeeded = store
        .read(&AggregateId::Flow("f".into()), 0)
        .await
        .unwrap()
        .iter()
        .filter(|e| matches!(e.event, Event::Flow(FlowEvent::WorkSucceeded(_))))
        .count();
    assert_eq!(succeeded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_arriving_together_are_recorded_together() {
    let mock = MockRunner::new();
    mock.gate("fan", 10);
    let engine = engine(&mock).await;
    let mut fan = step("fan", &[], &["r"]).with_attribute(
        "n",
        AttributeSpec {
            for_each: true,
            ..AttributeSpec::required(AttributeType::Any)
        },
    );
    fan.work_config = Some(WorkConfig {
        parallelism: 10,
        ..WorkConfig::default()
    });
    register(&engine, vec![fan]).await;
    start(
        &engine,
        "fan",
        &["fan"],
        init(json!({"n": (0..50).collect::<Vec<i64>>()})),
    )
    .await;
    let flow = wait(&engine, "fan").await;
    assert_eq!(flow.status.to_string(), "completed", "{flow:#?}");
    assert_eq!(flow.executions["fan"].work_items.len(), 50);
    // Every item ran once, and its lease was given back.
    assert_eq!(mock.calls_of("fan").len(), 50);
    let tokens: std::collections::BTreeSet<String> =
        mock.calls_of("fan").into_iter().map(|c| c.token).collect();
    assert_eq!(tokens.len(), 50);
    let far_future = argyll_model::Timestamp::from_unix_nanos(i64::MAX);
    assert_eq!(
        engine
            .store()
            .lapsed("work/", far_future, 100)
            .await
            .unwrap(),
        vec![]
    );
    // The items finish ten at a time: results that arrive while one is being recorded share
    // the next commit (one commit per result would be 50 plus the start).
    let commits = commit_times(&engine, "fan").await.len();
    assert!(commits <= 30, "{commits} commits for 50 results");
}

/// A waiter woken because the engine's feed subscriber missed events (it cannot tell whether
/// the flow ended) looks again and, while the flow still runs, keeps waiting: `wait_for_flow`
/// (and the HTTP long-poll on it) answers a running flow only when the wait has passed. Seen
/// with a WebSocket test whose flow made 120,000 events: the long-poll came back `active`.
#[tokio::test]
async fn waiting_for_a_flow_outlasts_missed_events() {
    let mock = MockRunner::new();
    mock.outputs("slow", json!({"r": 1}));
    let held = mock.hold("slow");
    // A feed of one event: the waiter loop misses events as soon as two arrive together.
    let engine = engine_with(EmbeddedStore::with_feed_capacity(1), &mock).await;
    register(
        &engine,
        vec![step("slow", &[], &["r"]), ale_script("quick", "{:q 1}")],
    )
    .await;
    start(&engine, "watched", &["slow"], init(json!({}))).await;
    mock.first_call().await;
    let waiting = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .wait_for_flow("watched", Duration::from_secs(60))
                .await
        })
    };
    // Other flows' events overflow the feed while the watched flow's call is held.
    for i in 0..50 {
        start(&engine, &format!("noise{i}"), &["quick"], init(json!({}))).await;
        wait(&engine, &format!("noise{i}")).await;
    }
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "the wait answered while the flow was still running"
    );
    held.release();
    let flow = waiting.await.unwrap().unwrap().unwrap();
    assert_eq!(flow.status.to_string(), "completed");
}
