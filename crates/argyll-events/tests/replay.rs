//! Replay properties over random, valid flow histories (proptest).
//!
//! A small driver turns a random list of choices into a valid event sequence by picking, at each
//! point, one of the events the current state allows. Then: replaying the sequence from its
//! stored encoding rebuilds the incrementally built state exactly, the state survives a JSON
//! round trip, and events that do not fit are rejected without changing anything.

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
use proptest::prelude::*;
use serde_json::{Value, json};

const FLOW: &str = "flow-p";

fn plan(step_count: usize) -> ExecutionPlan {
    let steps = (0..step_count)
        .map(|i| {
            let step = Step::sync(format!("s{i}"), "http://svc")
                .with_attribute(format!("a{i}"), AttributeSpec::output(AttributeType::Any));
            (step.id.clone(), step)
        })
        .collect();
    ExecutionPlan {
        goals: vec![format!("s{}", step_count - 1)],
        steps,
        ..ExecutionPlan::default()
    }
}

/// Every event the state allows next (a representative of each kind, with concrete values).
fn candidates(state: &Option<FlowState>, step_count: usize, choice: u32) -> Vec<FlowEvent> {
    let Some(flow) = state else {
        return vec![
            FlowStarted {
                plan: plan(step_count).into(),
                init: [("seed".to_owned(), json!(choice))].into_iter().collect(),
                metadata: Default::default(),
                flow_id: FLOW.into(),
            }
            .into(),
        ];
    };
    let ids = |step: &str| (FLOW.to_owned(), step.to_owned());
    let mut out: Vec<FlowEvent> = Vec::new();
    for (step_id, execution) in &flow.executions {
        let (flow_id, step_id) = ids(step_id);
        match execution.status {
            StepStatus::Pending => {
                let items = (choice % 3 + 1) as usize;
                let work_items: IndexMap<String, std::sync::Arc<Args>> = (0..items)
                    .map(|j| {
                        (
                            format!("{step_id}-t{j}"),
                            std::sync::Arc::new([("i".to_owned(), json!(j))].into_iter().collect()),
                        )
                    })
                    .collect();
                out.push(
                    StepStarted {
                        inputs: Args::new(),
                        flow_id: flow_id.clone(),
                        step_id: step_id.clone(),
                        work_items,
                    }
                    .into(),
                );
                out.push(
                    StepSkipped {
                        flow_id: flow_id.clone(),
                        step_id: step_id.clone(),
                        reason: "outputs not needed".into(),
                    }
                    .into(),
                );
                out.push(
                    StepFailed {
                        flow_id,
                        step_id,
                        error: "required input no longer available".into(),
                    }
                    .into(),
                );
            }
            StepStatus::Active => {
                let mut all_done = true;
                let mut any_failed = false;
                for (token, item) in &execution.work_items {
                    let token = token.clone();
                    let (flow_id, step_id) = (flow_id.clone(), step_id.clone());
                    let started = WorkStarted {
                        flow_id: flow_id.clone(),
                        step_id: step_id.clone(),
                        token: token.clone(),
                        inputs: Args::clone(&item.inputs),
                    };
                    let succeeded = WorkSucceeded {
                        flow_id: flow_id.clone(),
                        step_id: step_id.clone(),
                        token: token.clone(),
                        outputs: [(format!("a{}", &step_id[1..]), json!(choice))]
                            .into_iter()
                            .collect(),
                    };
                    let failed = WorkFailed {
                        flow_id: flow_id.clone(),
                        step_id: step_id.clone(),
                        token: token.clone(),
                        error: "boom".into(),
                    };
                    match item.status {
                        WorkStatus::Pending => {
                            all_done = false;
                            out.extend([started.into(), succeeded.into(), failed.into()]);
                        }
                        WorkStatus::Active => {
                            all_done = false;
                            out.push(
                                WorkNotCompleted {
                                    flow_id,
                                    step_id,
                                    token,
                                    error: "work not completed: timeout".into(),
                                }
                                .into(),
                            );
                            out.extend([succeeded.into(), failed.into(), started.into()]);
                        }
                        WorkStatus::NotCompleted => {
                            all_done = false;
                            out.push(
                                RetryScheduled {
                                    flow_id,
                                    step_id,
                                    token,
                                    retry_count: item.retry_count + 1,
                                    next_retry_at: Timestamp::from_unix_millis(
                                        1_800_000_000_000 + i64::from(choice),
                                    ),
                                    error: item.error.clone(),
                                }
                                .into(),
                            );
                            out.extend([failed.into(), started.into()]);
                        }
                        WorkStatus::Failed => any_failed = true,
                        WorkStatus::Succeeded => {}
                    }
                }
                if all_done {
                    if any_failed {
                        out.push(
                            StepFailed {
                                flow_id,
                                step_id,
                                error: "boom".into(),
                            }
                            .into(),
                        );
                    } else {
                        let outputs = execution
                            .work_items
                            .values()
                            .flat_map(|i| i.outputs.clone())
                            .collect();
                        out.push(
                            StepCompleted {
                                outputs,
                                flow_id,
                                step_id,
                                duration: i64::from(choice % 100),
                            }
                            .into(),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    for i in 0..step_count {
        let key = format!("a{i}");
        if !flow.attributes.contains_key(&key) {
            out.push(
                AttributeSet {
                    value: json!([choice, {"nested": key.clone()}]),
                    flow_id: FLOW.into(),
                    step_id: format!("s{i}"),
                    key,
                }
                .into(),
            );
        }
    }
    if !flow.status.is_terminal() {
        out.push(
            FlowCompleted {
                result: Args::new(),
                flow_id: FLOW.into(),
            }
            .into(),
        );
        out.push(
            FlowFailed {
                flow_id: FLOW.into(),
                error: "step s0 failed: boom".into(),
            }
            .into(),
        );
    }
    out
}

/// Builds a valid history from the choices, applying each event as it is chosen.
fn history(step_count: usize, choices: &[u32]) -> (Vec<(Timestamp, FlowEvent)>, Option<FlowState>) {
    let mut state: Option<FlowState> = None;
    let mut events = Vec::new();
    let mut now = 1_700_000_000_000i64;
    for choice in choices {
        let options = candidates(&state, step_count, *choice);
        let Some(event) = options
            .get(*choice as usize % options.len().max(1))
            .cloned()
        else {
            break;
        };
        now += i64::from(choice % 50);
        let at = Timestamp::from_unix_nanos(now * 1_000_000 + i64::from(*choice % 1000));
        state
            .apply(&event, at)
            .unwrap_or_else(|e| panic!("driver produced an invalid event {event:?}: {e}"));
        events.push((at, event));
    }
    (events, state)
}

/// An event that can never fit: an unknown token, an unknown step, or another flow's id.
fn misfit(kind: u32) -> FlowEvent {
    match kind % 3 {
        0 => WorkSucceeded {
            flow_id: FLOW.into(),
            step_id: "s0".into(),
            token: "no-such-token".into(),
            outputs: Args::new(),
        }
        .into(),
        1 => StepCompleted {
            outputs: Args::new(),
            flow_id: FLOW.into(),
            step_id: "no-such-step".into(),
            duration: 1,
        }
        .into(),
        _ => FlowFailed {
            flow_id: "another-flow".into(),
            error: "x".into(),
        }
        .into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn replaying_the_stored_log_rebuilds_the_state_exactly(
        step_count in 1usize..5,
        choices in proptest::collection::vec(any::<u32>(), 1..80),
    ) {
        let (events, state) = history(step_count, &choices);
        let stored: Vec<String> = events
            .iter()
            .map(|(at, event)| encode_stored(event, *at).expect("encodes"))
            .collect();
        let decoded: Vec<(Timestamp, FlowEvent)> = stored
            .iter()
            .map(|text| decode_stored(text).expect("decodes"))
            .collect();
        prop_assert_eq!(&decoded, &events);
        let replayed: Option<FlowState> = replay(decoded.iter().map(|(at, e)| (*at, e))).expect("replays");
        prop_assert_eq!(&replayed, &state);

        let json: Value = serde_json::to_value(&state).expect("encodes");
        let back: Option<FlowState> = serde_json::from_value(json).expect("decodes");
        prop_assert_eq!(back, state);
    }

    #[test]
    fn misfit_events_are_rejected_and_change_nothing(
        step_count in 1usize..4,
        choices in proptest::collection::vec(any::<u32>(), 1..40),
        kind in any::<u32>(),
    ) {
        let (_, mut state) = history(step_count, &choices);
        let before = state.clone();
        prop_assert!(state.apply(&misfit(kind), Timestamp::from_unix_millis(1)).is_err());
        prop_assert_eq!(state, before);
    }
}
