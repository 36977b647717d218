//! The decision core alone: each case builds a catalog, starts a flow with [`FlowTx::start`]
//! against a fake [`FlowServices`], applies commands as a runner or a webhook would, and
//! asserts the resulting statuses, events and effects. Every case names the contract rule
//! (`../shared/spec/README.md`, "Decisions") or the `engine.md` rule it checks.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use argyll_events::EventKind;
use argyll_model::{
    Args, AttributeGraph, AttributeSpec, AttributeType, BackoffType, FlowState, FlowStatus, Step,
    StepStatus, StepType, Timestamp, WorkConfig, WorkStatus,
};
use argyll_retry::RetryPolicy;
use serde_json::{Map, Value, json};

use super::{Effect, FlowCommandError, FlowServices, FlowTx, TxError};

/// The services a transaction gets, with every answer set by the case.
struct Fake {
    predicates: HashMap<String, Result<bool, String>>,
    predicate_calls: RefCell<Vec<(String, Args)>>,
    memo: RefCell<HashMap<String, Args>>,
    retry: RetryPolicy,
    tokens: Cell<u64>,
    max_work_items: usize,
    min_retry_delay_ms: u64,
    max_state_bytes: u64,
    /// Script steps run inside the transaction: their outputs (or error) by step id.
    quick: HashMap<String, Result<Args, String>>,
}

impl Default for Fake {
    fn default() -> Self {
        Fake {
            predicates: HashMap::new(),
            predicate_calls: RefCell::default(),
            memo: RefCell::default(),
            retry: RetryPolicy::never(),
            tokens: Cell::new(0),
            max_work_items: 1000,
            min_retry_delay_ms: 0,
            max_state_bytes: 1 << 20,
            quick: HashMap::new(),
        }
    }
}

fn memo_key(step: &Step, inputs: &Args) -> String {
    format!("{}:{}", step.id, Value::Object(inputs.clone()))
}

impl FlowServices for Fake {
    fn evaluate_predicate(&self, step: &Step, inputs: &Args) -> Result<bool, String> {
        if step.predicate.is_none() {
            return Ok(true);
        }
        self.predicate_calls
            .borrow_mut()
            .push((step.id.clone(), inputs.clone()));
        self.predicates.get(&step.id).cloned().unwrap_or(Ok(true))
    }

    fn memo_lookup(&self, step: &Step, inputs: &Args) -> Option<Args> {
        self.memo.borrow().get(&memo_key(step, inputs)).cloned()
    }

    fn memo_store(&self, step: &Step, inputs: &Args, outputs: &Args) {
        self.memo
            .borrow_mut()
            .entry(memo_key(step, inputs))
            .or_insert_with(|| outputs.clone());
    }

    fn retry_policy(&self, step: &Step) -> RetryPolicy {
        RetryPolicy::for_step(step.work_config.as_ref(), &self.retry)
    }

    fn new_token(&self) -> String {
        let next = self.tokens.get() + 1;
        self.tokens.set(next);
        format!("t{next}")
    }

    fn max_work_items(&self) -> usize {
        self.max_work_items
    }

    fn min_retry_delay_ms(&self) -> u64 {
        self.min_retry_delay_ms
    }

    fn max_state_bytes(&self) -> u64 {
        self.max_state_bytes
    }

    fn run_script_quickly(&self, step: &Step, _inputs: &Args) -> Option<Result<Args, String>> {
        self.quick.get(&step.id).cloned()
    }
}

// ------------------------------------------------------------------ building catalogs

const AT: Timestamp = Timestamp::from_unix_millis(1_000_000);

/// A sync step reading `inputs` (required) and producing `outputs`.
fn step(id: &str, inputs: &[&str], outputs: &[&str]) -> Step {
    let mut step = Step::sync(id, format!("http://svc/{id}"));
    for name in inputs {
        step = step.with_attribute(*name, AttributeSpec::required(AttributeType::Untyped));
    }
    for name in outputs {
        step = step.with_attribute(*name, AttributeSpec::output(AttributeType::Untyped));
    }
    step
}

fn with_optional(step: Step, name: &str, default: Option<&str>) -> Step {
    step.with_attribute(
        name,
        AttributeSpec::optional(AttributeType::Untyped, default),
    )
}

fn with_for_each(step: Step, name: &str) -> Step {
    step.with_attribute(
        name,
        AttributeSpec::required(AttributeType::Array).for_each(),
    )
}

fn with_predicate(mut step: Step) -> Step {
    step.predicate = Some(argyll_model::ScriptConfig::new(
        argyll_model::ScriptLanguage::Ale,
        "true",
    ));
    step
}

fn with_work(mut step: Step, parallelism: i64, max_retries: i64, backoff_ms: i64) -> Step {
    step.work_config = Some(WorkConfig {
        max_retries,
        backoff_ms,
        max_backoff_ms: 0,
        backoff_type: BackoffType::Fixed,
        parallelism,
    });
    step
}

fn args(value: Value) -> Args {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A flow of `steps` started with `goals` and `init`, as the engine starts one.
struct Flow<'f> {
    tx: FlowTx<'f>,
}

fn start<'f>(fake: &'f Fake, steps: &[Step], goals: &[&str], init: Value) -> Flow<'f> {
    let catalog: BTreeMap<String, Step> = steps.iter().map(|s| (s.id.clone(), s.clone())).collect();
    let graph = AttributeGraph::from_steps(catalog.values());
    let goals: Vec<String> = goals.iter().map(|g| (*g).to_owned()).collect();
    let init = args(init);
    let plan = argyll_plan::plan(&catalog, &graph, &goals, &init).expect("a plan");
    let tx = FlowTx::start(fake, AT, "f", Arc::new(plan), init, Map::new()).expect("started");
    Flow { tx }
}

impl<'f> Flow<'f> {
    /// The state after this transaction, in a new transaction (as the next command sees it).
    fn next(self, fake: &'f Fake) -> Flow<'f> {
        Flow {
            tx: FlowTx::new(self.tx.state, AT.plus_millis(10), fake),
        }
    }

    fn state(&self) -> &FlowState {
        &self.tx.state
    }

    fn step_status(&self, step_id: &str) -> Option<StepStatus> {
        self.state().executions.get(step_id).map(|e| e.status)
    }

    fn step_error(&self, step_id: &str) -> String {
        self.state()
            .executions
            .get(step_id)
            .map(|e| e.error.clone())
            .unwrap_or_default()
    }

    fn tokens(&self, step_id: &str) -> Vec<String> {
        self.state()
            .executions
            .get(step_id)
            .map(|e| e.work_items.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn token(&self, step_id: &str) -> String {
        self.tokens(step_id).first().cloned().expect("a work item")
    }

    fn item_status(&self, step_id: &str, token: &str) -> Option<WorkStatus> {
        self.state()
            .executions
            .get(step_id)
            .and_then(|e| e.work_items.get(token))
            .map(|item| item.status)
    }

    /// Steps whose work this transaction asked to run, in order.
    fn runs(&self) -> Vec<String> {
        self.tx
            .effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Run { step_id, .. } => Some(step_id.clone()),
                _ => None,
            })
            .collect()
    }

    fn event_types(&self) -> Vec<&'static str> {
        self.tx.events.iter().map(|e| e.event_type()).collect()
    }

    fn attribute(&self, name: &str) -> Option<&Value> {
        self.state().attribute(name)
    }

    fn complete(&mut self, step_id: &str, outputs: Value) -> Result<(), TxError> {
        let token = self.token(step_id);
        self.tx.complete_work(step_id, &token, args(outputs))
    }

    fn fail(&mut self, step_id: &str, error: &str) -> Result<(), TxError> {
        let token = self.token(step_id);
        self.tx.fail_work(step_id, &token, error)
    }

    fn retryable(&mut self, step_id: &str, error: &str) -> Result<(), TxError> {
        let token = self.token(step_id);
        self.tx.not_complete_work(step_id, &token, error)
    }
}

// ------------------------------------------------------------------ the cases

/// A case: the rule it checks and the check.
type Case = (&'static str, fn());

#[test]
fn every_decision_rule_holds() {
    let mut failed = Vec::new();
    for (rule, case) in CASES {
        if std::panic::catch_unwind(case).is_err() {
            failed.push(*rule);
        }
    }
    assert!(
        CASES.len() >= 40,
        "{} cases: the core's rules deserve at least 40",
        CASES.len()
    );
    assert!(failed.is_empty(), "rules broken: {failed:#?}");
}

const CASES: &[Case] = &[
    (
        "d1: a ready step starts with the flow and is sent to run",
        || {
            let fake = Fake::default();
            let flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
            assert_eq!(flow.step_status("a"), Some(StepStatus::Active));
            assert_eq!(flow.runs(), ["a"]);
            assert_eq!(flow.state().status, FlowStatus::Active);
        },
    ),
    (
        "d1: the start raises flow_started, step_started, work_started in that order",
        || {
            let fake = Fake::default();
            let flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
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
            let mut flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
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
            let mut flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
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
        let flow = start(
            &fake,
            &[with_predicate(step("a", &["x"], &["y"]))],
            &["a"],
            json!({"x": 1}),
        );
        assert_eq!(flow.step_status("a"), Some(StepStatus::Skipped));
        assert_eq!(flow.step_error("a"), "predicate returned false");
        assert!(flow.runs().is_empty());
    }),
    (
        "d1: a skipped goal counts as done: the flow completes",
        || {
            let mut fake = Fake::default();
            fake.predicates.insert("a".into(), Ok(false));
            let flow = start(
                &fake,
                &[with_predicate(step("a", &["x"], &["y"]))],
                &["a"],
                json!({"x": 1}),
            );
            assert_eq!(flow.state().status, FlowStatus::Completed);
        },
    ),
    (
        "d11: a predicate that errors fails the step with the error",
        || {
            let mut fake = Fake::default();
            fake.predicates
                .insert("a".into(), Err("predicate evaluation failed: x".into()));
            let flow = start(
                &fake,
                &[with_predicate(step("a", &["x"], &["y"]))],
                &["a"],
                json!({"x": 1}),
            );
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
            let mut flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
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
            let mut flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
            let refused = flow.tx.complete_work("nope", "t1", Args::new());
            assert!(matches!(
                refused,
                Err(TxError::Refused(FlowCommandError::StepNotInPlan(_)))
            ));
        },
    ),
    ("results: a result for an unknown token is refused", || {
        let fake = Fake::default();
        let mut flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
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
            let mut flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
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
        let flow = start(&fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}));
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
            let mut script = step("s", &["x"], &["y"]);
            script.step_type = StepType::Script;
            let mut flow = start(&fake, &[script], &["s"], json!({"x": 1}));
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
            let mut script = step("s", &["x"], &["y"]);
            script.step_type = StepType::Script;
            let mut flow = start(&fake, &[script], &["s"], json!({"x": 1}));
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
            let mut script = step("s", &["x"], &["y"]);
            script.step_type = StepType::Script;
            let mut flow = start(&fake, &[script], &["s"], json!({"x": 1}));
            flow.tx.run_quick_work(0).unwrap();
            assert_eq!(flow.runs(), ["s"]);
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
