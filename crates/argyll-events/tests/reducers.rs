//! Reducer scenarios (`engine.md` §3.2–§3.3, §10.2 "reducers"): what each event does, and that
//! an event which does not fit is an error that leaves the state untouched.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use argyll_events::*;
use argyll_model::*;
use indexmap::IndexMap;
use serde_json::{Value, json};

fn args(value: Value) -> Args {
    match value {
        Value::Object(map) => map,
        _ => Args::new(),
    }
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_764_000_000_000 + ms)
}

fn plan() -> ExecutionPlan {
    let a =
        Step::sync("a", "http://a").with_attribute("x", AttributeSpec::output(AttributeType::Any));
    let b = Step::sync("b", "http://b")
        .with_attribute("x", AttributeSpec::required(AttributeType::Any))
        .with_attribute("y", AttributeSpec::output(AttributeType::Any));
    ExecutionPlan {
        goals: vec!["b".into()],
        steps: [("a".into(), a), ("b".into(), b)].into_iter().collect(),
        ..ExecutionPlan::default()
    }
}

fn started_flow() -> Option<FlowState> {
    let mut flow = None;
    let event = FlowEvent::from(FlowStarted {
        plan: plan().into(),
        init: args(json!({"configValue": 42, "name": "n"})),
        metadata: args(json!({"correlation_id": "cid"})),
        flow_id: "f".into(),
    });
    flow.apply(&event, at(0)).expect("starts");
    flow
}

fn step_started(step: &str, tokens: &[&str]) -> FlowEvent {
    let work_items: IndexMap<String, std::sync::Arc<Args>> = tokens
        .iter()
        .map(|t| {
            (
                (*t).to_owned(),
                std::sync::Arc::new(args(json!({"item": t}))),
            )
        })
        .collect();
    StepStarted {
        inputs: Args::new(),
        flow_id: "f".into(),
        step_id: step.into(),
        work_items,
    }
    .into()
}

fn work_started(step: &str, token: &str) -> FlowEvent {
    WorkStarted {
        flow_id: "f".into(),
        step_id: step.into(),
        token: token.into(),
        inputs: Args::new(),
    }
    .into()
}

fn not_completed(token: &str) -> FlowEvent {
    WorkNotCompleted {
        flow_id: "f".into(),
        step_id: "a".into(),
        token: token.into(),
        error: "work not completed".into(),
    }
    .into()
}

/// Applies `event` expecting an error, and checks the state did not change.
fn rejects(flow: &mut Option<FlowState>, event: FlowEvent) -> ApplyError {
    let before = flow.clone();
    let error = flow.apply(&event, at(999)).expect_err("must be rejected");
    assert_eq!(*flow, before, "a rejected event changed the state");
    error
}

#[test]
fn flow_started_builds_one_pending_execution_per_plan_step_and_init_attributes() {
    let flow = started_flow().expect("exists");
    assert_eq!(flow.id, "f");
    assert_eq!(flow.status, FlowStatus::Active);
    assert_eq!(
        (flow.created_at, flow.last_updated, flow.completed_at),
        (at(0), at(0), Timestamp::ZERO)
    );
    assert_eq!(flow.executions.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert!(
        flow.executions
            .values()
            .all(|e| e.status == StepStatus::Pending && e.work_items.is_empty())
    );
    assert_eq!(flow.attribute("configValue"), Some(&json!(42)));
    assert_eq!(flow.attributes["configValue"].step, None);
    assert_eq!(flow.metadata["correlation_id"], json!("cid"));
}

#[test]
fn events_before_start_and_a_second_start_are_errors() {
    let mut none: Option<FlowState> = None;
    assert_eq!(
        rejects(&mut none, work_started("a", "t")),
        ApplyError::FlowNotStarted {
            event_type: "work_started"
        }
    );
    let mut flow = started_flow();
    let again = FlowStarted {
        plan: plan().into(),
        init: Args::new(),
        metadata: Default::default(),
        flow_id: "f".into(),
    };
    assert!(matches!(
        rejects(&mut flow, again.into()),
        ApplyError::FlowAlreadyStarted { .. }
    ));
    let other = StepFailed {
        flow_id: "g".into(),
        step_id: "a".into(),
        error: "x".into(),
    };
    assert!(matches!(
        rejects(&mut flow, other.into()),
        ApplyError::FlowMismatch { .. }
    ));
}

#[test]
fn unknown_steps_and_tokens_are_errors_not_panics() {
    let mut flow = started_flow();
    let completed = StepCompleted {
        outputs: Args::new(),
        flow_id: "f".into(),
        step_id: "ghost".into(),
        duration: 1,
    };
    assert_eq!(
        rejects(&mut flow, completed.into()),
        ApplyError::UnknownStep {
            step_id: "ghost".into()
        }
    );
    for event in [
        FlowEvent::from(StepFailed {
            flow_id: "f".into(),
            step_id: "ghost".into(),
            error: "e".into(),
        }),
        StepSkipped {
            flow_id: "f".into(),
            step_id: "ghost".into(),
            reason: "r".into(),
        }
        .into(),
        work_started("ghost", "t"),
    ] {
        assert!(matches!(
            rejects(&mut flow, event),
            ApplyError::UnknownStep { .. }
        ));
    }
    flow.apply(&step_started("a", &["t1"]), at(1))
        .expect("started");
    let error = rejects(&mut flow, work_started("a", "nope"));
    assert_eq!(
        error,
        ApplyError::UnknownWorkItem {
            step_id: "a".into(),
            token: "nope".into()
        }
    );
    assert_eq!(error.to_string(), "work item not found: nope (step a)");
}

#[test]
fn step_lifecycle_and_its_illegal_moves() {
    let mut flow = started_flow();
    let complete_a = || -> FlowEvent {
        StepCompleted {
            outputs: args(json!({"x": 1})),
            flow_id: "f".into(),
            step_id: "a".into(),
            duration: 5,
        }
        .into()
    };
    assert!(matches!(
        rejects(&mut flow, complete_a()),
        ApplyError::StepTransition {
            from: StepStatus::Pending,
            ..
        }
    ));
    flow.apply(&step_started("a", &["t1", "t2"]), at(1))
        .expect("started");
    let a = &flow.as_ref().expect("flow").executions["a"];
    assert_eq!((a.status, a.started_at), (StepStatus::Active, at(1)));
    assert_eq!(
        a.work_items.keys().collect::<Vec<_>>(),
        ["t1", "t2"],
        "work items keep expansion order"
    );
    assert_eq!(
        *a.work_items.get("t2").unwrap().inputs,
        args(json!({"item": "t2"}))
    );
    assert!(matches!(
        rejects(&mut flow, step_started("a", &["t3"])),
        ApplyError::StepTransition { .. }
    ));
    let skip_a = StepSkipped {
        flow_id: "f".into(),
        step_id: "a".into(),
        reason: "outputs not needed".into(),
    };
    assert!(matches!(
        rejects(&mut flow, skip_a.into()),
        ApplyError::StepTransition { .. }
    ));
    flow.apply(&complete_a(), at(6)).expect("completes");
    let a = &flow.as_ref().expect("flow").executions["a"];
    assert_eq!(
        (a.status, a.completed_at, a.duration),
        (StepStatus::Completed, at(6), 5)
    );
    assert_eq!(*a.outputs, args(json!({"x": 1})));
    assert!(matches!(
        rejects(&mut flow, complete_a()),
        ApplyError::StepTransition { .. }
    ));

    let skip_b = StepSkipped {
        flow_id: "f".into(),
        step_id: "b".into(),
        reason: "predicate returned false".into(),
    };
    flow.apply(&skip_b.into(), at(7)).expect("skips");
    let b = &flow.as_ref().expect("flow").executions["b"];
    assert_eq!(
        (b.status, b.error.as_str()),
        (StepStatus::Skipped, "predicate returned false")
    );
}

#[test]
fn work_items_retry_and_keep_their_first_start_time() {
    let mut flow = started_flow();
    flow.apply(&step_started("a", &["t"]), at(1))
        .expect("started");
    assert!(matches!(
        rejects(&mut flow, not_completed("t")),
        ApplyError::WorkTransition {
            from: WorkStatus::Pending,
            ..
        }
    ));
    flow.apply(&work_started("a", "t"), at(2))
        .expect("work started");
    flow.apply(&not_completed("t"), at(3))
        .expect("not completed");
    let retry = RetryScheduled {
        flow_id: "f".into(),
        step_id: "a".into(),
        token: "t".into(),
        retry_count: 1,
        next_retry_at: at(1003),
        error: "work not completed".into(),
    };
    flow.apply(&retry.into(), at(3)).expect("retry scheduled");
    let item = &flow.as_ref().expect("flow").executions["a"]
        .work_items
        .get("t")
        .unwrap();
    assert_eq!(item.status, WorkStatus::Pending);
    assert_eq!(
        (item.retry_count, item.next_retry_at, item.completed_at),
        (1, at(1003), at(3))
    );
    assert_eq!(item.error, "work not completed");

    flow.apply(&work_started("a", "t"), at(1004))
        .expect("restarted");
    let item = &flow.as_ref().expect("flow").executions["a"]
        .work_items
        .get("t")
        .unwrap();
    assert_eq!(
        (item.status, item.started_at),
        (WorkStatus::Active, at(2)),
        "first start time kept"
    );
    let success = WorkSucceeded {
        flow_id: "f".into(),
        step_id: "a".into(),
        token: "t".into(),
        outputs: args(json!({"x": 2})),
    };
    flow.apply(&success.clone().into(), at(1005))
        .expect("succeeded");
    assert!(matches!(
        rejects(&mut flow, success.into()),
        ApplyError::WorkTransition {
            from: WorkStatus::Succeeded,
            ..
        }
    ));
    let failure = WorkFailed {
        flow_id: "f".into(),
        step_id: "a".into(),
        token: "t".into(),
        error: "late".into(),
    };
    assert!(matches!(
        rejects(&mut flow, failure.into()),
        ApplyError::WorkTransition { .. }
    ));
    let item = &flow.as_ref().expect("flow").executions["a"]
        .work_items
        .get("t")
        .unwrap();
    assert_eq!(
        (item.status, item.outputs.clone()),
        (WorkStatus::Succeeded, args(json!({"x": 2})))
    );
}

#[test]
fn attributes_are_set_once_with_provenance() {
    let mut flow = started_flow();
    let set = |key: &str| -> FlowEvent {
        AttributeSet {
            value: json!("v"),
            flow_id: "f".into(),
            step_id: "a".into(),
            key: key.into(),
        }
        .into()
    };
    flow.apply(&set("x"), at(1)).expect("set");
    let state = flow.as_ref().expect("flow");
    assert_eq!(state.attributes["x"].step.as_deref(), Some("a"));
    assert_eq!(state.last_updated, at(1));
    assert_eq!(
        rejects(&mut flow, set("x")),
        ApplyError::AttributeAlreadySet { key: "x".into() }
    );
    assert_eq!(
        rejects(&mut flow, set("name")),
        ApplyError::AttributeAlreadySet { key: "name".into() }
    );
}

#[test]
fn a_flow_becomes_terminal_once() {
    let mut flow = started_flow();
    let fail = FlowFailed {
        flow_id: "f".into(),
        error: "step a failed: boom".into(),
    };
    flow.apply(&fail.into(), at(5)).expect("fails");
    let state = flow.as_ref().expect("flow");
    assert_eq!(
        (state.status, state.error.as_str(), state.completed_at),
        (FlowStatus::Failed, "step a failed: boom", at(5))
    );
    let complete = FlowCompleted {
        result: Args::new(),
        flow_id: "f".into(),
    };
    assert!(matches!(
        rejects(&mut flow, complete.into()),
        ApplyError::FlowAlreadyTerminal {
            status: FlowStatus::Failed,
            ..
        }
    ));
    // Late results are still recorded on a terminal flow.
    flow.apply(&step_started("a", &["late"]), at(6))
        .expect("audit trail continues");
}

// ------------------------------------------------------------------ engine aggregate

fn register(step: Step) -> EngineEvent {
    StepRegistered { step }.into()
}

#[test]
fn catalog_events_maintain_steps_health_and_graph() {
    let mut engine = EngineState::default();
    let producer =
        Step::sync("p", "http://p").with_attribute("x", AttributeSpec::output(AttributeType::Any));
    let consumer = Step::sync("c", "http://c")
        .with_attribute("x", AttributeSpec::required(AttributeType::Any));
    engine
        .apply(&register(producer.clone()), at(1))
        .expect("register p");
    engine
        .apply(&register(consumer.clone()), at(2))
        .expect("register c");
    assert_eq!(engine.health["p"].status, HealthStatus::Unknown);
    assert_eq!(engine.attributes.providers("x"), ["p"]);
    assert_eq!(engine.attributes.consumers("x"), ["c"]);
    assert_eq!(engine.last_updated, at(2));
    assert!(matches!(
        engine.apply(&register(producer), at(3)),
        Err(ApplyError::StepAlreadyRegistered { .. })
    ));

    let health = StepHealthChanged {
        step_id: "p".into(),
        status: HealthStatus::Unhealthy,
        error: "connection refused".into(),
    };
    engine.apply(&health.into(), at(4)).expect("health");
    assert_eq!(
        engine.health["p"],
        HealthState {
            status: HealthStatus::Unhealthy,
            error: "connection refused".into()
        }
    );

    let renamed = Step::sync("c", "http://c2")
        .with_attribute("y", AttributeSpec::required(AttributeType::Any));
    engine
        .apply(&StepUpdated { step: renamed }.into(), at(5))
        .expect("update");
    assert!(engine.attributes.consumers("x").is_empty());
    assert_eq!(engine.attributes.consumers("y"), ["c"]);
    assert_eq!(
        engine.health["p"].status,
        HealthStatus::Unhealthy,
        "update keeps health"
    );

    engine
        .apply(
            &StepUnregistered {
                step_id: "p".into(),
            }
            .into(),
            at(6),
        )
        .expect("unregister");
    assert!(!engine.steps.contains_key("p") && !engine.health.contains_key("p"));
    assert!(engine.attributes.get("x").is_none());

    let before = engine.clone();
    for event in [
        EngineEvent::from(StepUnregistered {
            step_id: "p".into(),
        }),
        StepUpdated {
            step: Step::sync("ghost", "http://g"),
        }
        .into(),
        StepHealthChanged {
            step_id: "ghost".into(),
            status: HealthStatus::Healthy,
            error: String::new(),
        }
        .into(),
    ] {
        assert!(matches!(
            engine.apply(&event, at(7)),
            Err(ApplyError::UnknownStep { .. })
        ));
    }
    assert_eq!(engine, before);
}

#[test]
fn flow_index_lifecycle() {
    let mut engine = EngineState::default();
    engine
        .apply(
            &FlowActivated {
                flow_id: "p".into(),
                parent_flow_id: String::new(),
            }
            .into(),
            at(1),
        )
        .expect("p");
    engine
        .apply(
            &FlowActivated {
                flow_id: "p:s:t".into(),
                parent_flow_id: "p".into(),
            }
            .into(),
            at(2),
        )
        .expect("child");
    assert_eq!(engine.active["p:s:t"].parent_flow_id, "p");
    assert_eq!(engine.flow_digests["p"].status, FlowStatus::Active);
    assert!(matches!(
        engine.apply(
            &FlowActivated {
                flow_id: "p".into(),
                parent_flow_id: String::new()
            }
            .into(),
            at(3)
        ),
        Err(ApplyError::FlowAlreadyIndexed { .. })
    ));

    let digest = FlowDigestUpdated {
        flow_id: "p:s:t".into(),
        status: FlowStatus::Completed,
        completed_at: at(4),
        error: String::new(),
    };
    engine.apply(&digest.into(), at(4)).expect("digest");
    assert_eq!(
        engine.flow_digests["p:s:t"].created_at,
        at(2),
        "created_at survives the update"
    );
    engine
        .apply(
            &FlowDeactivated {
                flow_id: "p:s:t".into(),
            }
            .into(),
            at(5),
        )
        .expect("deactivate");
    assert_eq!(
        engine.deactivated,
        [DeactivatedFlow {
            flow_id: "p:s:t".into(),
            parent_flow_id: "p".into(),
            deactivated_at: at(5)
        }]
    );
    assert!(matches!(
        engine.apply(
            &FlowDeactivated {
                flow_id: "p:s:t".into()
            }
            .into(),
            at(6)
        ),
        Err(ApplyError::FlowIndexTransition {
            expected: "active",
            ..
        })
    ));

    assert!(matches!(
        engine.apply(
            &FlowArchiving {
                flow_id: "p".into()
            }
            .into(),
            at(7)
        ),
        Err(ApplyError::FlowIndexTransition {
            expected: "deactivated",
            ..
        })
    ));
    engine
        .apply(
            &FlowArchiving {
                flow_id: "p:s:t".into(),
            }
            .into(),
            at(8),
        )
        .expect("claim");
    assert!(engine.deactivated.is_empty());
    engine
        .apply(
            &FlowArchiving {
                flow_id: "p:s:t".into(),
            }
            .into(),
            at(9),
        )
        .expect("expired claim retaken");
    assert_eq!(engine.archiving["p:s:t"], at(9));
    engine
        .apply(
            &FlowArchived {
                flow_id: "p:s:t".into(),
            }
            .into(),
            at(10),
        )
        .expect("archived");
    assert!(!engine.archiving.contains_key("p:s:t") && !engine.flow_digests.contains_key("p:s:t"));
    assert!(matches!(
        engine.apply(
            &FlowArchived {
                flow_id: "p:s:t".into()
            }
            .into(),
            at(11)
        ),
        Err(ApplyError::FlowIndexTransition {
            expected: "archiving",
            ..
        })
    ));
}
