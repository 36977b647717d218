//! Shared helpers of the engine's integration tests: a mock step runner and step builders.

// Test helpers outside #[test] functions may panic on broken fixtures: that is a test failure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argyll_engine::{
    Engine, EngineConfig, ScriptStepRunner, StartFlow, StepRunner, WorkFuture, WorkOutcome,
    WorkRequest,
};
use argyll_model::{
    Args, AttributeSpec, AttributeType, BackoffType, FlowState, ScriptLanguage, Step, StepType,
    WorkConfig,
};
use argyll_retry::RetryPolicy;
use argyll_script::{ScriptLimits, ScriptRunner};
use argyll_store::EmbeddedStore;
use serde_json::{Value, json};

/// What the mock answers for one step.
#[derive(Clone, Debug)]
pub enum Reply {
    Outputs(Value),
    Retryable(String),
    Failed(String),
    Accepted,
}

/// One recorded call.
#[derive(Clone, Debug)]
pub struct Call {
    pub step_id: String,
    pub token: String,
    pub inputs: Args,
    pub metadata: Args,
}

/// A step runner answering from a per-step script of replies (the last reply repeats).
#[derive(Clone)]
pub struct MockRunner {
    scripts: ScriptStepRunner,
    replies: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    calls: Arc<Mutex<Vec<Call>>>,
    delays: Arc<Mutex<HashMap<String, Duration>>>,
    gates: Arc<Mutex<HashMap<String, Arc<tokio::sync::Barrier>>>>,
    holds: Arc<Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>>,
}

/// Calls of a held step wait until the test releases them.
pub struct Held(Arc<tokio::sync::Semaphore>);

impl Held {
    /// Lets every waiting and later call of the step answer.
    pub fn release(&self) {
        self.0.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

impl Default for MockRunner {
    fn default() -> Self {
        MockRunner {
            scripts: ScriptStepRunner::new(Arc::new(ScriptRunner::new(ScriptLimits::default()))),
            replies: Arc::default(),
            calls: Arc::default(),
            delays: Arc::default(),
            gates: Arc::default(),
            holds: Arc::default(),
        }
    }
}

impl MockRunner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replies of `step_id`, in order; the last one repeats.
    pub fn on(&self, step_id: &str, replies: Vec<Reply>) -> &Self {
        self.replies
            .lock()
            .unwrap()
            .insert(step_id.into(), replies.into());
        self
    }

    pub fn outputs(&self, step_id: &str, outputs: Value) -> &Self {
        self.on(step_id, vec![Reply::Outputs(outputs)])
    }

    pub fn delay(&self, step_id: &str, delay: Duration) -> &Self {
        self.delays.lock().unwrap().insert(step_id.into(), delay);
        self
    }

    /// Calls of `step_id` answer in groups of `group`: each waits until `group` are waiting.
    pub fn gate(&self, step_id: &str, group: usize) -> &Self {
        self.gates
            .lock()
            .unwrap()
            .insert(step_id.into(), Arc::new(tokio::sync::Barrier::new(group)));
        self
    }

    /// Calls of `step_id` wait (after being recorded) until the returned [`Held`] is released.
    pub fn hold(&self, step_id: &str) -> Held {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(0));
        self.holds
            .lock()
            .unwrap()
            .insert(step_id.into(), semaphore.clone());
        Held(semaphore)
    }

    /// The first call, once it has been made (within about a second).
    pub async fn first_call(&self) -> Call {
        for _ in 0..200 {
            if let Some(call) = self.calls().into_iter().next() {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no step was called");
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn calls_of(&self, step_id: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.step_id == step_id)
            .collect()
    }
}

impl StepRunner for MockRunner {
    fn run(&self, work: WorkRequest) -> WorkFuture {
        if work.step.step_type == StepType::Script {
            // Scripts run for real; only HTTP steps are played by the mock.
            return self.scripts.run(work);
        }
        self.calls.lock().unwrap().push(Call {
            step_id: work.step.id.clone(),
            token: work.token.clone(),
            inputs: work.inputs.clone(),
            metadata: work.metadata.clone(),
        });
        let reply = {
            let mut replies = self.replies.lock().unwrap();
            match replies.get_mut(&work.step.id) {
                Some(queue) if queue.len() > 1 => queue.pop_front().unwrap(),
                Some(queue) => queue.front().cloned().unwrap_or(Reply::Outputs(json!({}))),
                None => Reply::Outputs(json!({})),
            }
        };
        let delay = self.delays.lock().unwrap().get(&work.step.id).copied();
        let gate = self.gates.lock().unwrap().get(&work.step.id).cloned();
        let hold = self.holds.lock().unwrap().get(&work.step.id).cloned();
        Box::pin(async move {
            if let Some(hold) = hold {
                let _ = hold.acquire().await;
            }
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if let Some(gate) = gate {
                gate.wait().await;
            }
            match reply {
                Reply::Outputs(Value::Object(outputs)) => WorkOutcome::Completed(outputs),
                Reply::Outputs(_) => WorkOutcome::Completed(Args::new()),
                Reply::Retryable(error) => WorkOutcome::Retryable(error),
                Reply::Failed(error) => WorkOutcome::Failed(error),
                Reply::Accepted => WorkOutcome::Accepted,
            }
        })
    }
}

/// The original harness's engine: default retries 3 × 1 s exponential; here 3 × 10 ms fixed so
/// tests stay fast.
pub fn test_config() -> EngineConfig {
    EngineConfig {
        retry: RetryPolicy {
            max_retries: 3,
            backoff_ms: 10,
            max_backoff_ms: 100,
            backoff_type: BackoffType::Fixed,
            jitter: 0.0,
        },
        lease_ttl: Duration::from_secs(2),
        ..EngineConfig::default()
    }
}

pub async fn engine_with(store: EmbeddedStore, mock: &MockRunner) -> Engine<EmbeddedStore> {
    engine_configured(store, mock, test_config()).await
}

/// A started engine on `store` with `config`, running steps with `mock`.
pub async fn engine_configured(
    store: EmbeddedStore,
    mock: &MockRunner,
    config: EngineConfig,
) -> Engine<EmbeddedStore> {
    let engine = Engine::builder(store)
        .config(config)
        .runner(Arc::new(mock.clone()))
        .build()
        .unwrap();
    engine.start().await.unwrap();
    engine
}

pub async fn engine(mock: &MockRunner) -> Engine<EmbeddedStore> {
    engine_with(EmbeddedStore::new(), mock).await
}

pub fn any() -> AttributeType {
    AttributeType::Any
}

/// A sync step with outputs and required inputs (all untyped).
pub fn step(id: &str, requires: &[&str], outputs: &[&str]) -> Step {
    let mut step = Step::sync(id, "http://test:8080");
    for name in requires {
        step = step.with_attribute(*name, AttributeSpec::required(AttributeType::Untyped));
    }
    for name in outputs {
        step = step.with_attribute(*name, AttributeSpec::output(AttributeType::Untyped));
    }
    step
}

/// An async step (completed by webhook) with outputs and required inputs (all untyped).
pub fn async_step(id: &str, requires: &[&str], outputs: &[&str]) -> Step {
    let mut step = step(id, requires, outputs);
    step.step_type = argyll_model::StepType::Async;
    step
}

pub fn no_retry(mut step: Step) -> Step {
    step.work_config = Some(WorkConfig {
        max_retries: 0,
        ..WorkConfig::default()
    });
    step
}

pub fn with_work_config(mut step: Step, config: WorkConfig) -> Step {
    step.work_config = Some(config);
    step
}

pub fn ale_script(id: &str, source: &str) -> Step {
    Step::script(id, ScriptLanguage::Ale, source)
}

pub fn lua_script(id: &str, source: &str) -> Step {
    Step::script(id, ScriptLanguage::Lua, source)
}

pub fn flow_step(id: &str) -> Step {
    Step::new(id, id, StepType::Flow)
}

pub async fn register(engine: &Engine<EmbeddedStore>, steps: Vec<Step>) {
    for step in steps {
        engine.register_step(step).await.unwrap();
    }
}

pub fn init(value: Value) -> Args {
    match value {
        Value::Object(map) => map,
        _ => Args::new(),
    }
}

pub async fn start(engine: &Engine<EmbeddedStore>, flow_id: &str, goals: &[&str], init: Args) {
    engine
        .start_flow(StartFlow {
            flow_id: flow_id.into(),
            goals: goals.iter().map(|g| (*g).to_owned()).collect(),
            init,
            metadata: Default::default(),
        })
        .await
        .unwrap();
}

/// Waits until the flow is terminal (10 s at most) and returns it.
pub async fn wait(engine: &Engine<EmbeddedStore>, flow_id: &str) -> FlowState {
    let flow = engine
        .wait_for_flow(flow_id, Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("flow {flow_id} not found"));
    assert!(
        flow.is_terminal(),
        "flow {flow_id} did not finish: {flow:#?}"
    );
    flow
}

/// Waits until the flow has no pending or running work left (deactivated).
pub async fn wait_settled(engine: &Engine<EmbeddedStore>, flow_id: &str) -> FlowState {
    for _ in 0..500 {
        let flow = engine.flow(flow_id).await.unwrap().unwrap();
        if flow.is_terminal() && !flow.has_unfinished_work() {
            return flow;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("flow {flow_id} never settled");
}

pub async fn run(
    engine: &Engine<EmbeddedStore>,
    flow_id: &str,
    goals: &[&str],
    init: Args,
) -> FlowState {
    start(engine, flow_id, goals, init).await;
    wait(engine, flow_id).await
}

pub fn status(flow: &FlowState, step_id: &str) -> String {
    flow.executions[step_id].status.to_string()
}

pub fn attr(flow: &FlowState, name: &str) -> Option<Value> {
    flow.attribute(name).cloned()
}
