//! Cases of work results and retries: retry scheduling and its floor, due retries, cancelled
//! retries, memo storage, bounds, refused results, webhooks, re-dispatch, quick script items.

use super::*;

pub(super) const CASES: &[Case] = &[
    (
        "d8: retry delays never fall below the engine's floor",
        || {
            let fake = Fake {
                min_retry_delay_ms: 20,
                ..Fake::default()
            };
            let a = with_work(step("a", &["x"], &["y"]), 1, 3, 0);
            let mut flow = start(&fake, &[a], &["a"], json!({"x": 1}));
            let token = flow.token("a");
            flow.retryable("a", "again").unwrap();
            assert!(flow.tx.effects.contains(&Effect::ScheduleRetry {
                step_id: "a".into(),
                token,
                due: AT.plus_millis(20),
            }));
        },
    ),
    (
        "d22: a due retry resumes the step and runs the item again",
        || {
            let fake = Fake::default();
            let a = with_work(step("a", &["x"], &["y"]), 1, 3, 500);
            let mut flow = start(&fake, &[a], &["a"], json!({"x": 1}));
            let token = flow.token("a");
            flow.retryable("a", "later").unwrap();
            let mut flow = Flow {
                tx: FlowTx::new(flow.tx.state, AT.plus_millis(600), &fake),
            };
            flow.tx.resume_step("a").unwrap();
            assert_eq!(flow.runs(), ["a"]);
            assert_eq!(flow.item_status("a", &token), Some(WorkStatus::Active));
        },
    ),
    (
        "d22: a retry that is not yet due is not started early",
        || {
            let fake = Fake::default();
            let a = with_work(step("a", &["x"], &["y"]), 1, 3, 500);
            let mut flow = start(&fake, &[a], &["a"], json!({"x": 1}));
            flow.retryable("a", "later").unwrap();
            let mut flow = Flow {
                tx: FlowTx::new(flow.tx.state, AT.plus_millis(100), &fake),
            };
            flow.tx.resume_step("a").unwrap();
            assert!(flow.runs().is_empty());
        },
    ),
    (
        "terminal: a failing flow cancels queued retries of other steps",
        || {
            let fake = Fake::default();
            let steps = [
                with_work(step("a", &["x"], &["y"]), 1, 3, 500),
                step("b", &["x"], &["z"]),
            ];
            let mut flow = start(&fake, &steps, &["a", "b"], json!({"x": 1}));
            let token = flow.token("a");
            flow.retryable("a", "later").unwrap();
            flow.fail("b", "fatal").unwrap();
            assert_eq!(flow.state().status, FlowStatus::Failed);
            assert!(
                flow.tx.effects.contains(&Effect::CancelRetry {
                    step_id: "a".into(),
                    token
                }),
                "{:?}",
                flow.tx.effects
            );
        },
    ),
    (
        "d23: a memoized result completes the item without running it",
        || {
            let fake = Fake::default();
            let mut a = step("a", &["x"], &["y"]);
            a.memoizable = true;
            fake.memo
                .borrow_mut()
                .insert(memo_key(&a, &args(json!({"x": 1}))), args(json!({"y": 9})));
            let flow = start(&fake, &[a], &["a"], json!({"x": 1}));
            assert!(flow.runs().is_empty());
            assert_eq!(flow.attribute("y"), Some(&json!(9)));
            assert_eq!(flow.state().status, FlowStatus::Completed);
        },
    ),
    (
        "d23: a memoizable step's result is stored inside the transaction that records it",
        || {
            let fake = Fake::default();
            let mut a = step("a", &["x"], &["y"]);
            a.memoizable = true;
            let mut flow = start(&fake, &[a.clone()], &["a"], json!({"x": 1}));
            flow.complete("a", json!({"y": 4})).unwrap();
            assert_eq!(
                fake.memo_lookup(&a, &args(json!({"x": 1}))),
                Some(args(json!({"y": 4})))
            );
        },
    ),
    (
        "d23: equal for_each elements after the first finished are served from the memo",
        || {
            let fake = Fake::default();
            let mut fan = with_work(with_for_each(step("fan", &[], &["out"]), "items"), 1, 0, 0);
            fan.memoizable = true;
            let mut flow = start(&fake, &[fan], &["fan"], json!({"items": [5, 5, 5]}));
            assert_eq!(flow.runs().len(), 1);
            flow.complete("fan", json!({"out": "five"})).unwrap();
            assert_eq!(flow.state().status, FlowStatus::Completed);
            let outs: Vec<&Value> = flow
                .attribute("out")
                .and_then(Value::as_array)
                .expect("aggregated")
                .iter()
                .map(|entry| &entry["out"])
                .collect();
            assert_eq!(outs, [&json!("five"), &json!("five"), &json!("five")]);
            assert_eq!(flow.runs().len(), 1, "the equal elements were not sent");
        },
    ),
    (
        "d25: a start that would exceed MAX_WORK_ITEMS is flagged for refusal",
        || {
            let fake = Fake {
                max_work_items: 2,
                ..Fake::default()
            };
            let fan = with_for_each(step("fan", &[], &["out"]), "items");
            let flow = start(&fake, &[fan], &["fan"], json!({"items": [1, 2, 3]}));
            let refusal = flow.tx.too_many_work_items.clone().expect("flagged");
            assert!(refusal.contains("MAX_WORK_ITEMS"), "{refusal}");
        },
    ),
    (
        "d25: a result past FLOW_MAX_STATE_BYTES fails the item instead of growing the state",
        || {
            let fake = Fake {
                max_state_bytes: 2_000,
                ..Fake::default()
            };
            let mut flow = start_a(&fake);
            flow.complete("a", json!({"y": "z".repeat(5_000)})).unwrap();
            assert_eq!(flow.step_status("a"), Some(StepStatus::Failed));
            assert!(
                flow.step_error("a").contains("FLOW_MAX_STATE_BYTES"),
                "{}",
                flow.step_error("a")
            );
            assert!(flow.attribute("y").is_none());
        },
    ),
    (
        "results: a result for a step outside the plan is refused",
        || {
            let fake = Fake::default();
            let mut flow = start_a(&fake);
            let refused = flow.tx.complete_work("nope", "t1", Args::new());
            assert!(matches!(
                refused,
                Err(TxError::Refused(FlowCommandError::StepNotInPlan(_)))
            ));
        },
    ),
    ("results: a result for an unknown token is refused", || {
        let fake = Fake::default();
        let mut flow = start_a(&fake);
        let refused = flow.tx.complete_work("a", "not-a-token", Args::new());
        assert!(matches!(
            refused,
            Err(TxError::Refused(FlowCommandError::WorkItemNotFound(_)))
        ));
    }),
    (
        "results: a second result for a finished item is refused as an invalid transition",
        || {
            let fake = Fake::default();
            let mut flow = start_a(&fake);
            flow.complete("a", json!({"y": 1})).unwrap();
            let token = flow.token("a");
            let refused = flow.tx.fail_work("a", &token, "late");
            assert!(matches!(
                refused,
                Err(TxError::Refused(FlowCommandError::InvalidTransition(_)))
            ));
        },
    ),
    (
        "webhooks: only async steps accept results from outside",
        || {
            let fake = Fake::default();
            let mut async_step = step("b", &["x"], &["z"]);
            async_step.step_type = StepType::Async;
            let flow = start(
                &fake,
                &[step("a", &["x"], &["y"]), async_step],
                &["a", "b"],
                json!({"x": 1}),
            );
            assert!(matches!(
                flow.tx.check_reported_from_outside("a"),
                Err(TxError::Refused(FlowCommandError::NotAsync(_)))
            ));
            assert!(flow.tx.check_reported_from_outside("b").is_ok());
        },
    ),
    ("d22: re-dispatching a running item sends it again", || {
        let fake = Fake::default();
        let flow = start_a(&fake);
        let token = flow.token("a");
        let mut flow = flow.next(&fake);
        assert!(flow.tx.redispatch("a", &token).unwrap());
        assert_eq!(flow.runs(), ["a"]);
    }),
    ("d22: re-dispatching a finished item does nothing", || {
        let fake = Fake::default();
        let mut flow = start(
            &fake,
            &[step("a", &["x"], &["y"]), step("b", &["x"], &["z"])],
            &["a", "b"],
            json!({"x": 1}),
        );
        flow.complete("a", json!({"y": 1})).unwrap();
        let token = flow.token("a");
        let mut flow = flow.next(&fake);
        assert!(!flow.tx.redispatch("a", &token).unwrap());
        assert!(flow.runs().is_empty());
    }),
    (
        "quick work: a script item that finishes within the budget is recorded in the same transaction",
        || {
            let mut fake = Fake::default();
            fake.quick.insert("s".into(), Ok(args(json!({"y": 3}))));
            let mut flow = start_script(&fake);
            let failures = flow.tx.run_quick_work(10).unwrap();
            assert!(failures.is_empty());
            assert!(flow.runs().is_empty());
            assert_eq!(flow.state().status, FlowStatus::Completed);
        },
    ),
    (
        "quick work: a quick script's failure fails the item and is reported for the log",
        || {
            let mut fake = Fake::default();
            fake.quick.insert("s".into(), Err("script error".into()));
            let mut flow = start_script(&fake);
            let failures = flow.tx.run_quick_work(10).unwrap();
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].error, "script error");
            assert_eq!(flow.state().status, FlowStatus::Failed);
        },
    ),
    (
        "quick work: past its allowance, work is dispatched instead",
        || {
            let mut fake = Fake::default();
            fake.quick.insert("s".into(), Ok(args(json!({"y": 3}))));
            let mut flow = start_script(&fake);
            flow.tx.run_quick_work(0).unwrap();
            assert_eq!(flow.runs(), ["s"]);
        },
    ),
];
