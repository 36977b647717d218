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

use super::{Effect, FlowCommandError, FlowServices, FlowTx, PredicateCheck, TxError};

/// The services a transaction gets, with every answer set by the case.
struct Fake {
    predicates: HashMap<String, Result<bool, String>>,
    /// Steps whose predicate needs more than the quick budget.
    slow_predicates: Vec<String>,
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
            slow_predicates: Vec::new(),
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
    fn evaluate_predicate(&self, step: &Step, inputs: &Args) -> PredicateCheck {
        if step.predicate.is_none() {
            return PredicateCheck::Decided(Ok(true));
        }
        self.predicate_calls
            .borrow_mut()
            .push((step.id.clone(), inputs.clone()));
        if self.slow_predicates.contains(&step.id) {
            return PredicateCheck::Deferred;
        }
        PredicateCheck::Decided(self.predicates.get(&step.id).cloned().unwrap_or(Ok(true)))
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

/// The one-step flow most cases start: goal `a` needs `x` and makes `y`, started with `x = 1`.
fn start_a(fake: &Fake) -> Flow<'_> {
    start(fake, &[step("a", &["x"], &["y"])], &["a"], json!({"x": 1}))
}

/// The same flow with a predicate on `a`.
fn start_guarded_a(fake: &Fake) -> Flow<'_> {
    start(
        fake,
        &[with_predicate(step("a", &["x"], &["y"]))],
        &["a"],
        json!({"x": 1}),
    )
}

/// A fake whose predicate of `a` needs more than the quick budget.
fn slow_predicate_of_a() -> Fake {
    Fake {
        slow_predicates: vec!["a".into()],
        ..Fake::default()
    }
}

/// The flow of one script step `s` (needs `x`, makes `y`), started with `x = 1`.
fn start_script(fake: &Fake) -> Flow<'_> {
    let mut script = step("s", &["x"], &["y"]);
    script.step_type = StepType::Script;
    start(fake, &[script], &["s"], json!({"x": 1}))
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

mod advance;
mod work;

/// Every case, by module.
const CASES: &[&[Case]] = &[advance::CASES, work::CASES];

#[test]
fn every_decision_rule_holds() {
    let mut failed = Vec::new();
    let cases: Vec<&Case> = CASES.iter().flat_map(|cases| cases.iter()).collect();
    for (rule, case) in cases.iter().copied() {
        if std::panic::catch_unwind(case).is_err() {
            failed.push(*rule);
        }
    }
    assert!(
        cases.len() >= 40,
        "{} cases: the core's rules deserve at least 40",
        cases.len()
    );
    assert!(failed.is_empty(), "rules broken: {failed:#?}");
}
