//! Cases of starting and advancing a flow: readiness, skips, unreachable inputs, optional
//! inputs, predicates, `for_each` expansion and aggregation, parallelism, memo hits, terminal
//! rules.

use super::*;

pub(super) const CASES: &[Case] = &[
    (
        "d11: a predicate that needs more than the quick budget is evaluated outside; the step waits",
        || {
            let fake = slow_predicate_of_a();
            let flow = start_guarded_a(&fake);
            assert_eq!(flow.step_status("a"), Some(StepStatus::Pending));
            assert_eq!(
                flow.tx.effects,
                [Effect::EvaluatePredicate {
                    step_id: "a".into(),
                    inputs: args(json!({"x": 1})),
                }]
            );
            assert_eq!(fake.predicate_calls.borrow().len(), 1, "asked once");
            assert_eq!(flow.state().status, FlowStatus::Active);
        },
    ),
    (
        "d11: a slow predicate's true verdict starts the step",
        || {
            let fake = slow_predicate_of_a();
            let flow = start_guarded_a(&fake);
            let mut flow = flow.next(&fake);
            flow.tx.decide_predicate("a", Ok(true)).unwrap();
            assert_eq!(flow.step_status("a"), Some(StepStatus::Active));
            assert_eq!(flow.runs(), ["a"]);
            assert_eq!(
                fake.predicate_calls.borrow().len(),
                1,
                "not evaluated again"
            );
        },
    ),
    (
        "d11: a slow predicate's false verdict skips the step; a late second verdict changes nothing",
        || {
            let fake = slow_predicate_of_a();
            let flow = start_guarded_a(&fake);
            let mut flow = flow.next(&fake);
            flow.tx.decide_predicate("a", Ok(false)).unwrap();
            assert_eq!(flow.step_status("a"), Some(StepStatus::Skipped));
            assert_eq!(flow.state().status, FlowStatus::Completed);
            let events = flow.tx.events.len();
            flow.tx.decide_predicate("a", Ok(true)).unwrap();
            assert_eq!(flow.tx.events.len(), events);
        },
    ),
    (
        "d11: a slow predicate that fails fails the step with its error",
        || {
            let fake = slow_predicate_of_a();
            let flow = start_guarded_a(&fake);
            let mut flow = flow.next(&fake);
            flow.tx
                .decide_predicate("a", Err("predicate evaluation failed: boom".into()))
                .unwrap();
            assert_eq!(flow.step_status("a"), Some(StepStatus::Failed));
            assert_eq!(flow.step_error("a"), "predicate evaluation failed: boom");
            assert_eq!(flow.state().status, FlowStatus::Failed);
        },
    ),
    (
        "d1: a step waiting for its predicate does not keep others from starting",
        || {
            let fake = slow_predicate_of_a();
            let steps = [
                with_predicate(step("a", &["x"], &["y"])),
                step("b", &["x"], &["z"]),
            ];
            let flow = start(&fake, &steps, &["a", "b"], json!({"x": 1}));
            assert_eq!(flow.step_status("a"), Some(StepStatus::Pending));
            assert_eq!(flow.runs(), ["b"]);
        },
    ),
    (
        "d1: a ready step starts with the flow and is sent to run",
        || {
            let fake = Fake::default();
            let flow = start_a(&fake);
            assert_eq!(flow.step_status("a"), Some(StepStatus::Active));
            assert_eq!(flow.runs(), ["a"]);
            assert_eq!(flow.state().status, FlowStatus::Active);
        },
    ),
    (
        "d1: the start raises flow_started, step_started, work_started in that order",
        || {
            let fake = Fake::default();
            let flow = start_a(&fake);
            assert_eq!(
                flow.event_types(),
                ["flow_started", "step_started", "work_started"]
            );
        },
    ),
    (
        "d1: a flow whose only goal completes is completed in the same transaction",
        || {
            let fake = Fake::default();
            let mut flow = start_a(&fake);
            flow.complete("a", json!({"y": 2})).unwrap();
            assert_eq!(flow.step_status("a"), Some(StepStatus::Completed));
            assert_eq!(flow.state().status, FlowStatus::Completed);
            assert_eq!(flow.attribute("y"), Some(&json!(2)));
        },
    ),
    (
        "d1: a goal that fails fails the flow, naming the goal and its error",
        || {
            let fake = Fake::default();
            let mut flow = start_a(&fake);
            flow.fail("a", "boom").unwrap();
            assert_eq!(flow.state().status, FlowStatus::Failed);
            assert_eq!(flow.state().error, "step a failed: boom");
        },
    ),
    (
        "d1: a completed provider starts its consumer (the flow advances to a fixpoint)",
        || {
            let fake = Fake::default();
            let steps = [step("a", &["x"], &["y"]), step("b", &["y"], &["z"])];
            let flow = start(&fake, &steps, &["b"], json!({"x": 1}));
            assert_eq!(flow.step_status("b"), Some(StepStatus::Pending));
            let mut flow = flow.next(&fake);
            flow.complete("a", json!({"y": 2})).unwrap();
            assert_eq!(flow.runs(), ["b"]);
            assert_eq!(flow.step_status("b"), Some(StepStatus::Active));
            assert_eq!(flow.state().status, FlowStatus::Active);
        },
    ),
    (
        "d1: a plan whose goals init already satisfies completes at start",
        || {
            let fake = Fake::default();
            let flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"y": 5}));
            assert_eq!(flow.state().status, FlowStatus::Completed);
            assert!(flow.runs().is_empty());
        },
    ),
    (
        "d1: a flow with two goals completes only when both are done",
        || {
            let fake = Fake::default();
            let steps = [step("a", &["x"], &["y"]), step("b", &["x"], &["z"])];
            let mut flow = start(&fake, &steps, &["a", "b"], json!({"x": 1}));
            flow.complete("a", json!({"y": 1})).unwrap();
            assert_eq!(flow.state().status, FlowStatus::Active);
            flow.complete("b", json!({"z": 1})).unwrap();
            assert_eq!(flow.state().status, FlowStatus::Completed);
        },
    ),
    (
        "d1: one failed goal fails the flow although the other completed",
        || {
            let fake = Fake::default();
            let steps = [step("a", &["x"], &["y"]), step("b", &["x"], &["z"])];
            let mut flow = start(&fake, &steps, &["a", "b"], json!({"x": 1}));
            flow.complete("a", json!({"y": 1})).unwrap();
            flow.fail("b", "no").unwrap();
            assert_eq!(flow.state().status, FlowStatus::Failed);
            assert_eq!(flow.state().error, "step b failed: no");
        },
    ),
    (
        "d1: a provider whose outputs nobody needs any more is skipped",
        || {
            // Two providers of `y`; the first to deliver makes the other unneeded.
            let fake = Fake::default();
            let steps = [
                step("p1", &["x"], &["y"]),
                step("p2", &["w"], &["y"]),
                step("w", &["x"], &["w"]),
                step("goal", &["y"], &["z"]),
            ];
            let mut flow = start(&fake, &steps, &["goal"], json!({"x": 1}));
            assert_eq!(flow.step_status("p2"), Some(StepStatus::Pending));
            flow.complete("p1", json!({"y": 1})).unwrap();
            assert_eq!(flow.step_status("p2"), Some(StepStatus::Skipped));
            assert_eq!(flow.step_error("p2"), "outputs not needed");
        },
    ),
    (
        "d2: goals may feed goals: completing one goal starts the goal that consumes it",
        || {
            let fake = Fake::default();
            let steps = [step("a", &["x"], &["y"]), step("b", &["y"], &["z"])];
            let mut flow = start(&fake, &steps, &["a", "b"], json!({"x": 1}));
            flow.complete("a", json!({"y": 1})).unwrap();
            assert_eq!(flow.step_status("b"), Some(StepStatus::Active));
            assert_eq!(flow.state().status, FlowStatus::Active);
            flow.complete("b", json!({"z": 1})).unwrap();
            assert_eq!(flow.state().status, FlowStatus::Completed);
        },
    ),
    (
        "d3: a failed provider fails its consumer at once as unreachable",
        || {
            let fake = Fake::default();
            let steps = [step("a", &["x"], &["y"]), step("b", &["y"], &["z"])];
            let mut flow = start(&fake, &steps, &["b"], json!({"x": 1}));
            flow.fail("a", "down").unwrap();
            assert_eq!(flow.step_status("b"), Some(StepStatus::Failed));
            assert_eq!(flow.step_error("b"), "required input no longer available");
            assert_eq!(flow.state().status, FlowStatus::Failed);
        },
    ),
    (
        "d3: a provider that succeeds without the output fails its consumer as unreachable",
        || {
            let fake = Fake::default();
            let steps = [step("a", &["x"], &["y"]), step("b", &["y"], &["z"])];
            let mut flow = start(&fake, &steps, &["b"], json!({"x": 1}));
            flow.complete("a", json!({})).unwrap();
            assert_eq!(flow.step_status("b"), Some(StepStatus::Failed));
            assert_eq!(flow.state().status, FlowStatus::Failed);
        },
    ),
    (
        "d3: a provider skipped by its predicate fails a consumer that requires its output",
        || {
            let mut fake = Fake::default();
            fake.predicates.insert("a".into(), Ok(false));
            let steps = [
                with_predicate(step("a", &["x"], &["y"])),
                step("b", &["y"], &["z"]),
            ];
            let flow = start(&fake, &steps, &["b"], json!({"x": 1}));
            assert_eq!(flow.step_status("a"), Some(StepStatus::Skipped));
            assert_eq!(flow.step_status("b"), Some(StepStatus::Failed));
            assert_eq!(flow.state().status, FlowStatus::Failed);
        },
    ),
    (
        "d3: a consumer with another live provider is not failed when one provider fails",
        || {
            let fake = Fake::default();
            let steps = [
                step("p1", &["x"], &["y"]),
                step("p2", &["x"], &["y"]),
                step("b", &["y"], &["z"]),
            ];
            let mut flow = start(&fake, &steps, &["b"], json!({"x": 1}));
            flow.fail("p1", "down").unwrap();
            assert_eq!(flow.step_status("b"), Some(StepStatus::Pending));
            flow.complete("p2", json!({"y": 3})).unwrap();
            assert_eq!(flow.step_status("b"), Some(StepStatus::Active));
        },
    ),
    (
        "d4: an empty for_each array completes the step at once with [] outputs",
        || {
            let fake = Fake::default();
            let fan = with_for_each(step("fan", &[], &["out"]), "items");
            let flow = start(&fake, &[fan], &["fan"], json!({"items": []}));
            assert_eq!(flow.step_status("fan"), Some(StepStatus::Completed));
            assert_eq!(flow.attribute("out"), Some(&json!([])));
            assert_eq!(flow.state().status, FlowStatus::Completed);
            assert!(flow.runs().is_empty());
        },
    ),
    (
        "d5: a for_each step makes one work item per element",
        || {
            let fake = Fake::default();
            let fan = with_work(with_for_each(step("fan", &[], &["out"]), "items"), 10, 0, 0);
            let flow = start(&fake, &[fan], &["fan"], json!({"items": [1, 2, 3]}));
            assert_eq!(flow.tokens("fan").len(), 3);
            assert_eq!(flow.runs(), ["fan", "fan", "fan"]);
        },
    ),
    (
        "d5: aggregated outputs keep the element order whatever order items finish in",
        || {
            let fake = Fake::default();
            let fan = with_work(with_for_each(step("fan", &[], &["out"]), "items"), 10, 0, 0);
            let mut flow = start(&fake, &[fan], &["fan"], json!({"items": [1, 2, 3]}));
            let tokens = flow.tokens("fan");
            for (token, value) in tokens.iter().rev().zip([30, 20, 10]) {
                flow.tx
                    .complete_work("fan", token, args(json!({"out": value})))
                    .unwrap();
            }
            assert_eq!(
                flow.attribute("out"),
                Some(&json!([
                    {"items": 1, "out": 10},
                    {"items": 2, "out": 20},
                    {"items": 3, "out": 30}
                ]))
            );
            assert_eq!(flow.state().status, FlowStatus::Completed);
        },
    ),
    (
        "d5: a one-element for_each still aggregates into an array",
        || {
            let fake = Fake::default();
            let fan = with_for_each(step("fan", &[], &["out"]), "items");
            let mut flow = start(&fake, &[fan], &["fan"], json!({"items": ["only"]}));
            flow.complete("fan", json!({"out": 7})).unwrap();
            assert_eq!(
                flow.attribute("out"),
                Some(&json!([{"items": "only", "out": 7}]))
            );
        },
    ),
    ("d5: each work item gets its own element as input", || {
        let fake = Fake::default();
        let fan = with_work(with_for_each(step("fan", &[], &["out"]), "items"), 10, 0, 0);
        let flow = start(&fake, &[fan], &["fan"], json!({"items": ["p", "q"]}));
        let inputs: Vec<Value> = flow
            .tx
            .effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Run { inputs, .. } => inputs.get("items").cloned(),
                _ => None,
            })
            .collect();
        assert_eq!(inputs, [json!("p"), json!("q")]);
    }),
    (
        "d5: one failed item fails the step with that item's error once all are done",
        || {
            let fake = Fake::default();
            let fan = with_work(with_for_each(step("fan", &[], &["out"]), "items"), 10, 0, 0);
            let mut flow = start(&fake, &[fan], &["fan"], json!({"items": [1, 2]}));
            let tokens = flow.tokens("fan");
            flow.tx.fail_work("fan", &tokens[0], "bad element").unwrap();
            assert_eq!(flow.step_status("fan"), Some(StepStatus::Active));
            flow.tx
                .complete_work("fan", &tokens[1], args(json!({"out": 1})))
                .unwrap();
            assert_eq!(flow.step_status("fan"), Some(StepStatus::Failed));
            assert_eq!(flow.step_error("fan"), "bad element");
        },
    ),
    (
        "parallelism: at most `parallelism` items of a step run at once",
        || {
            let fake = Fake::default();
            let fan = with_work(with_for_each(step("fan", &[], &["out"]), "items"), 2, 0, 0);
            let flow = start(&fake, &[fan], &["fan"], json!({"items": [1, 2, 3, 4, 5]}));
            assert_eq!(flow.runs().len(), 2);
            let active = flow
                .tokens("fan")
                .iter()
                .filter(|t| flow.item_status("fan", t) == Some(WorkStatus::Active))
                .count();
            assert_eq!(active, 2);
        },
    ),
    (
        "parallelism: a finished item starts the next pending one",
        || {
            let fake = Fake::default();
            let fan = with_work(with_for_each(step("fan", &[], &["out"]), "items"), 2, 0, 0);
            let flow = start(&fake, &[fan], &["fan"], json!({"items": [1, 2, 3]}));
            let first = flow.token("fan");
            let mut flow = flow.next(&fake);
            flow.tx
                .complete_work("fan", &first, args(json!({"out": 1})))
                .unwrap();
            assert_eq!(flow.runs(), ["fan"]);
            let third = flow.tokens("fan")[2].clone();
            assert_eq!(flow.item_status("fan", &third), Some(WorkStatus::Active));
        },
    ),
    (
        "d11: the predicate is evaluated once per step, with step-level inputs",
        || {
            let fake = Fake::default();
            let fan = with_predicate(with_work(
                with_for_each(step("fan", &["k"], &["out"]), "items"),
                10,
                0,
                0,
            ));
            let flow = start(
                &fake,
                &[fan],
                &["fan"],
                json!({"items": [1, 2, 3], "k": "v"}),
            );
            let calls = fake.predicate_calls.borrow();
            assert_eq!(calls.len(), 1, "{calls:?}");
            assert_eq!(calls[0].1.get("items"), Some(&json!([1, 2, 3])));
            assert_eq!(calls[0].1.get("k"), Some(&json!("v")));
            assert_eq!(flow.tokens("fan").len(), 3);
        },
    ),
    ("d11: a false predicate skips the step, saying so", || {
        let mut fake = Fake::default();
        fake.predicates.insert("a".into(), Ok(false));
        let flow = start_guarded_a(&fake);
        assert_eq!(flow.step_status("a"), Some(StepStatus::Skipped));
        assert_eq!(flow.step_error("a"), "predicate returned false");
        assert!(flow.runs().is_empty());
    }),
    (
        "d1: a skipped goal counts as done: the flow completes",
        || {
            let mut fake = Fake::default();
            fake.predicates.insert("a".into(), Ok(false));
            let flow = start_guarded_a(&fake);
            assert_eq!(flow.state().status, FlowStatus::Completed);
        },
    ),
    (
        "d11: a predicate that errors fails the step with the error",
        || {
            let mut fake = Fake::default();
            fake.predicates
                .insert("a".into(), Err("predicate evaluation failed: x".into()));
            let flow = start_guarded_a(&fake);
            assert_eq!(flow.step_status("a"), Some(StepStatus::Failed));
            assert_eq!(flow.step_error("a"), "predicate evaluation failed: x");
            assert_eq!(flow.state().status, FlowStatus::Failed);
        },
    ),
    (
        "d12: a step with an optional input waits while a planned provider may produce it",
        || {
            let fake = Fake::default();
            let steps = [
                step("p", &["x"], &["opt"]),
                with_optional(step("c", &["x"], &["z"]), "opt", None),
            ];
            let flow = start(&fake, &steps, &["c", "p"], json!({"x": 1}));
            assert_eq!(flow.step_status("c"), Some(StepStatus::Pending));
            assert_eq!(flow.runs(), ["p"]);
        },
    ),
    (
        "d12: the optional input is passed once its provider delivered it",
        || {
            let fake = Fake::default();
            let steps = [
                step("p", &["x"], &["opt"]),
                with_optional(step("c", &["x"], &["z"]), "opt", None),
            ];
            let mut flow = start(&fake, &steps, &["c", "p"], json!({"x": 1})).next(&fake);
            flow.complete("p", json!({"opt": "here"})).unwrap();
            let inputs = flow
                .tx
                .effects
                .iter()
                .find_map(|effect| match effect {
                    Effect::Run {
                        step_id, inputs, ..
                    } if step_id == "c" => Some(inputs.clone()),
                    _ => None,
                })
                .expect("c runs");
            assert_eq!(inputs.get("opt"), Some(&json!("here")));
        },
    ),
    (
        "d12: when the optional input's provider fails, the step runs without it",
        || {
            let fake = Fake::default();
            let steps = [
                step("p", &["x"], &["opt"]),
                with_optional(step("c", &["x"], &["z"]), "opt", None),
            ];
            let mut flow = start(&fake, &steps, &["c"], json!({"x": 1}));
            flow.fail("p", "gone").unwrap();
            assert_eq!(flow.step_status("c"), Some(StepStatus::Active));
            assert_eq!(flow.state().status, FlowStatus::Active);
        },
    ),
    (
        "engine.md §2: an absent optional input is given its default",
        || {
            let fake = Fake::default();
            let c = with_optional(step("c", &["x"], &["z"]), "opt", Some("\"dflt\""));
            let flow = start(&fake, &[c], &["c"], json!({"x": 1}));
            let inputs = flow
                .tx
                .effects
                .iter()
                .find_map(|effect| match effect {
                    Effect::Run { inputs, .. } => Some(inputs.clone()),
                    _ => None,
                })
                .expect("c runs");
            assert_eq!(inputs.get("opt"), Some(&json!("dflt")));
        },
    ),
    (
        "d14: a retryable failure schedules a retry under the step's policy",
        || {
            let fake = Fake::default();
            let a = with_work(step("a", &["x"], &["y"]), 1, 3, 500);
            let mut flow = start(&fake, &[a], &["a"], json!({"x": 1}));
            let token = flow.token("a");
            flow.retryable("a", "try later").unwrap();
            assert!(flow.tx.effects.contains(&Effect::ScheduleRetry {
                step_id: "a".into(),
                token: token.clone(),
                due: AT.plus_millis(500),
            }));
            assert_eq!(flow.item_status("a", &token), Some(WorkStatus::Pending));
            assert!(flow.event_types().contains(&"retry_scheduled"));
            assert_eq!(flow.state().status, FlowStatus::Active);
        },
    ),
    (
        "d14: without retries left a retryable failure fails the item and the step",
        || {
            let fake = Fake::default();
            let a = with_work(step("a", &["x"], &["y"]), 1, 0, 500);
            let mut flow = start(&fake, &[a], &["a"], json!({"x": 1}));
            flow.retryable("a", "still down").unwrap();
            assert_eq!(flow.step_status("a"), Some(StepStatus::Failed));
            assert_eq!(flow.step_error("a"), "still down");
            assert_eq!(flow.state().status, FlowStatus::Failed);
        },
    ),
    (
        "terminal: a completed flow's result holds its goals' outputs",
        || {
            let fake = Fake::default();
            let steps = [step("a", &["x"], &["y"]), step("b", &["y"], &["z"])];
            let mut flow = start(&fake, &steps, &["b"], json!({"x": 1}));
            flow.complete("a", json!({"y": 2})).unwrap();
            flow.complete("b", json!({"z": 3})).unwrap();
            assert_eq!(flow.state().status, FlowStatus::Completed);
            assert!(flow.event_types().contains(&"flow_completed"));
            assert_eq!(flow.attribute("z"), Some(&json!(3)));
        },
    ),
];
