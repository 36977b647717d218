//! The engine: commands on the catalog and on flows, the side effects of committed flow
//! transactions (running work, retry timers, the flow index, child flows), and the background
//! loops (retry timers, lapsed leases, health checks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use argyll_events::{AggregateId, EngineEvent, Event, FlowEvent, StepHealthChanged};
use argyll_http::{HealthStatus as CheckedHealth, HttpRunner};
use argyll_model::{
    ActiveFlow, Args, DeactivatedFlow, EngineState, ExecutionPlan, FlowDigest, FlowState,
    FlowStatus, HealthStatus, Step, StepType, StepValidationError, WorkStatus, args_hash,
};
use argyll_plan::{InitError, PlanError};
use argyll_retry::RetryPolicy;
use argyll_script::{Phase, ScriptLimits, ScriptRunner};
use argyll_store::{
    FlowIndexEntry, FlowOutcome, FlowPage, FlowPhase, FlowQuery, Store, StoreError, Timer,
};
use serde_json::{Map, Value};
use tokio::sync::{Notify, watch};

use crate::aggregate::{
    AggregateError, Current, ProjectionCache, apply_newer, execute, execute_applied, load,
    load_current, now,
};
use crate::catalog::{self, CatalogError, Registration};
use crate::flow::{
    Effect, FlowCommandError, FlowServices, FlowTx, QuickFailure, TxError, is_settled,
};
use crate::health::HealthProbes;
use crate::runner::{
    HttpStepRunner, LOCAL_SCHEME, LocalHandlers, RunnerSet, ScriptStepRunner, StepRunner,
    WorkOutcome, WorkRequest, script_arg_names,
};
use crate::running::RunningWork;

/// Engine settings (the server fills them from `argyll-config`).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Retry policy of steps without a `work_config`.
    pub retry: RetryPolicy,
    /// Entries of the memoization cache.
    pub memo_cache_size: u64,
    /// HTTP step timeout when a step sets none (decision 6).
    pub step_timeout: Duration,
    /// Largest step response read (`STEP_MAX_RESPONSE_BYTES`), also the largest webhook
    /// result accepted; a larger one fails the work item with `step response too large`.
    pub step_max_response_bytes: usize,
    /// Base of the webhook URLs handed to async steps.
    pub webhook_base_url: String,
    /// Script resource limits.
    pub script_limits: ScriptLimits,
    /// This instance's name in leases.
    pub instance_id: String,
    /// How long a lease on running work lasts without renewal.
    pub lease_ttl: Duration,
    /// Period of the step health checks.
    pub health_check_interval: Duration,
    /// Attempts of one command under write conflicts.
    pub command_attempts: u32,
    /// Flow states kept in memory between commands (`FLOW_CACHE_SIZE`); 0 turns the cache
    /// off, which is faster on the embedded store (its logs are in process, and replaying a
    /// few shared events costs less than cloning a cached state).
    pub flow_cache_size: u64,
    /// Bytes of flow states the cache holds at most (`FLOW_CACHE_MAX_BYTES`, by the states'
    /// approximate JSON size); the oldest are dropped first.
    pub flow_cache_bytes: u64,
    /// Flow states with fewer events are not cached (0: cache all). The embedded store
    /// replays a short log faster than the cache keeps a copy; Redis caches everything.
    pub flow_cache_min_events: u64,
    /// Largest flow state (`FLOW_MAX_STATE_BYTES`, approximate JSON size): a start whose init
    /// is larger is refused; a result, fan-out or aggregation that would make the state larger
    /// fails its work item or step instead.
    pub max_state_bytes: u64,
    /// The budget within which a script step's work item is run inside the flow transaction
    /// that starts it (no lease, no second commit; see `FlowTx::run_quick_work`). A script that
    /// needs longer is dispatched as work and run on the blocking pool under
    /// [`EngineConfig::script_limits`]. Predicates are tried within it too, and one that needs
    /// longer runs again under its full limits off the async worker. `None` sends every script
    /// item through the runner and runs every predicate under its full limits at once.
    pub quick_script_budget: Option<ScriptLimits>,
    /// The most work items one step may expand to (`MAX_WORK_ITEMS`): a start that would
    /// exceed it is refused, a step that reaches it later fails.
    pub max_work_items: usize,
    /// Deepest nesting of child flows (`FLOW_MAX_DEPTH`): a flow step whose child would be
    /// deeper fails. Registration refuses flow steps that reach themselves; this bounds what a
    /// catalog changed later (or a plan the static check cannot see) could still do.
    pub flow_max_depth: usize,
    /// Longest step id, step name, attribute name, flow id and goal (`MAX_ID_LENGTH`). Child
    /// flow ids (`parent:step:token`) longer than this are shortened to a hash.
    pub max_id_length: usize,
    /// Finished flows `GET /engine` shows (`ENGINE_STATE_MAX_FLOWS`): the most recently
    /// deactivated ones, besides every active flow. The full list is the paged flow listing.
    pub engine_state_max_flows: usize,
    /// The shortest delay before a retry (`RETRY_MIN_BACKOFF_MS`), whatever a step's
    /// `work_config` says: a zero backoff does not turn into a busy loop.
    pub min_retry_delay: Duration,
}

/// The default [`EngineConfig::quick_script_budget`]: tens of microseconds of typical
/// scripts, never more than a millisecond of a worker thread.
pub const QUICK_SCRIPT_BUDGET: ScriptLimits = ScriptLimits {
    memory_bytes: usize::MAX,
    steps: 20_000,
    timeout: Duration::from_millis(1),
};

/// Plans kept for reuse by later starts.
const PLAN_CACHE_SIZE: u64 = 1024;

/// Quick script items run in one flow transaction (the rest are dispatched).
const QUICK_WORK_PER_COMMAND: usize = 256;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            retry: RetryPolicy::default(),
            memo_cache_size: 4096,
            step_timeout: Duration::from_secs(30),
            step_max_response_bytes: argyll_http::DEFAULT_MAX_RESPONSE_BYTES,
            webhook_base_url: "http://localhost:8080".into(),
            script_limits: ScriptLimits::default(),
            instance_id: format!("argyll-{}", uuid::Uuid::new_v4()),
            lease_ttl: Duration::from_secs(30),
            health_check_interval: Duration::from_secs(30),
            command_attempts: 64,
            flow_cache_size: 4096,
            flow_cache_bytes: 256 << 20,
            flow_cache_min_events: 0,
            max_state_bytes: 64 << 20,
            quick_script_budget: Some(QUICK_SCRIPT_BUDGET),
            max_work_items: 100_000,
            flow_max_depth: 16,
            max_id_length: argyll_model::DEFAULT_MAX_ID_LENGTH,
            min_retry_delay: Duration::from_millis(20),
            engine_state_max_flows: 1000,
        }
    }
}

/// Why an engine call failed. The server maps each kind to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The step definition is invalid.
    #[error(transparent)]
    InvalidStep(#[from] StepValidationError),
    /// A script or predicate does not compile.
    #[error("{0}")]
    Script(String),
    /// Refused by the catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The init values do not fit the plan.
    #[error(transparent)]
    Init(#[from] InitError),
    /// The flow id exists with other goals or init values.
    #[error("flow exists: {0}")]
    FlowExists(String),
    /// A flow start would make a step with more work items than `MAX_WORK_ITEMS`.
    #[error("{0}")]
    TooManyWorkItems(String),
    /// A flow start whose init and metadata alone exceed `FLOW_MAX_STATE_BYTES`.
    #[error("{0}")]
    StateTooLarge(String),
    /// A flow id or goal breaks a bound (too long, control characters).
    #[error("{0}")]
    InvalidRequest(String),
    /// No such flow.
    #[error("flow not found: {0}")]
    FlowNotFound(String),
    /// A reported work result was refused.
    #[error(transparent)]
    Work(#[from] FlowCommandError),
    /// The store failed or a state could not be rebuilt.
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
    /// The engine is misconfigured.
    #[error("{0}")]
    Setup(String),
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        EngineError::Aggregate(AggregateError::Store(error))
    }
}

/// A flow start request (the id already sanitised by the caller).
#[derive(Clone, Debug, Default)]
pub struct StartFlow {
    /// The flow id.
    pub flow_id: String,
    /// Goal step ids.
    pub goals: Vec<String>,
    /// Init values.
    pub init: Args,
    /// Metadata handed to HTTP steps.
    pub metadata: Map<String, Value>,
}

/// Result of a flow start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStart {
    /// The flow id.
    pub flow_id: String,
    /// `false` when the identical flow already existed (decision 10).
    pub created: bool,
}

/// A work result reported from outside (the webhook).
#[derive(Clone, Debug, PartialEq)]
pub enum WorkReport {
    /// The work item succeeded.
    Succeeded(Args),
    /// The work item failed for good.
    Failed(String),
    /// The attempt failed; retry under the step's policy (decision 14).
    Retry(String),
}

/// Builds an [`Engine`] from a store, runners and settings.
pub struct EngineBuilder<S> {
    store: S,
    config: EngineConfig,
    runner: Option<Arc<dyn StepRunner>>,
    scripts: Option<Arc<ScriptRunner>>,
    local: LocalHandlers,
}

impl<S: Store> EngineBuilder<S> {
    /// Settings.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the runner of sync, async and script steps (e.g. a mock in tests). Flow steps
    /// are always run by the engine; predicates by its script runner.
    pub fn runner(mut self, runner: Arc<dyn StepRunner>) -> Self {
        self.runner = Some(runner);
        self
    }

    /// Shares a script runner (and its compile cache) with the caller.
    pub fn scripts(mut self, scripts: Arc<ScriptRunner>) -> Self {
        self.scripts = Some(scripts);
        self
    }

    /// In-process handlers for steps whose endpoint is `local://NAME`.
    pub fn local_handlers(mut self, local: LocalHandlers) -> Self {
        self.local = local;
        self
    }

    /// Builds the engine. Call [`Engine::start`] to recover flows and start the loops.
    pub fn build(self) -> Result<Engine<S>, EngineError> {
        if !argyll_script::metering_installed() {
            tracing::warn!(
                "Ale scripts have no memory limit: the process does not use argyll_script::MeteredAlloc as its global allocator"
            );
        }
        let scripts = self
            .scripts
            .unwrap_or_else(|| Arc::new(ScriptRunner::new(self.config.script_limits)));
        let http = HttpRunner::new(self.config.step_timeout)
            .map_err(|e| EngineError::Setup(format!("HTTP client: {e}")))?
            .with_max_response_bytes(self.config.step_max_response_bytes);
        let runner = self.runner.unwrap_or_else(|| {
            Arc::new(RunnerSet {
                http: Arc::new(HttpStepRunner::new(
                    http.clone(),
                    &self.config.webhook_base_url,
                )),
                scripts: Arc::new(ScriptStepRunner::new(scripts.clone())),
                local: Arc::new(self.local.clone()),
                flows: None,
            })
        });
        let memo = moka::sync::Cache::new(self.config.memo_cache_size.max(1));
        let flows = (self.config.flow_cache_size > 0).then(|| {
            ProjectionCache::with_byte_budget(
                self.config.flow_cache_size,
                self.config.flow_cache_bytes,
                crate::aggregate::flow_state_bytes,
            )
            .admitting_from(self.config.flow_cache_min_events)
        });
        let (shutdown, _) = watch::channel(false);
        Ok(Engine {
            inner: Arc::new(Inner {
                store: self.store,
                config: self.config,
                runner,
                scripts,
                http,
                local: self.local,
                memo,
                flows,
                catalog: RwLock::new(Arc::new(Current {
                    state: EngineState::default(),
                    next_sequence: 0,
                })),
                shutdown,
                stopping: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
                timers_changed: Notify::new(),
                waiters: std::sync::Mutex::default(),
                waiters_running: AtomicBool::new(false),
                next_waiter: std::sync::atomic::AtomicU64::new(0),
                results: std::sync::Mutex::default(),
                plans: moka::sync::Cache::new(PLAN_CACHE_SIZE),
                running: RunningWork::default(),
                probes: HealthProbes::default(),
            }),
        })
    }
}

/// The orchestration engine; cheap to clone (all clones share one engine).
pub struct Engine<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Engine<S> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    store: S,
    config: EngineConfig,
    runner: Arc<dyn StepRunner>,
    scripts: Arc<ScriptRunner>,
    http: HttpRunner,
    local: LocalHandlers,
    memo: moka::sync::Cache<String, Args>,
    flows: Option<ProjectionCache<Option<FlowState>>>,
    catalog: RwLock<Arc<Current<EngineState>>>,
    shutdown: watch::Sender<bool>,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    timers_changed: Notify,
    waiters: std::sync::Mutex<Waiters>,
    waiters_running: AtomicBool,
    next_waiter: std::sync::atomic::AtomicU64,
    results: std::sync::Mutex<ResultQueues>,
    plans: moka::sync::Cache<PlanKey, Arc<ExecutionPlan>>,
    /// Work items this process is running (their leases are renewed; recovery leaves them be).
    running: RunningWork,
    /// When each step's health is checked next, and who waits for it.
    probes: HealthProbes,
}

/// What a plan depends on: the catalog (by its sequence), the goals and the init names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    catalog_sequence: u64,
    goals: Vec<String>,
    init_names: Vec<String>,
}

/// Clients waiting for a flow to finish, by flow id.
type Waiters = std::collections::HashMap<String, Vec<(u64, tokio::sync::oneshot::Sender<()>)>>;

/// Work results waiting to be recorded, by flow id. A flow has an entry while one of its
/// results is being recorded; results arriving meanwhile queue up and go into the next
/// command together.
type ResultQueues = std::collections::HashMap<String, Vec<PendingResult>>;

/// A work result waiting to be recorded; `recorded` fires once it has been (or could not be).
struct PendingResult {
    step: Arc<Step>,
    token: String,
    outcome: WorkOutcome,
    recorded: tokio::sync::oneshot::Sender<()>,
}

/// Removes a flow's result queue if its recorder stops early (then the queued results' senders
/// drop and their runners stop waiting; their items keep their leases, which lapse and are
/// taken over).
struct QueueGuard<'a> {
    queues: &'a std::sync::Mutex<ResultQueues>,
    flow_id: &'a str,
    armed: bool,
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(self.queues).remove(self.flow_id);
        }
    }
}

/// A mutex's contents, also after a panic elsewhere (the maps it guards stay consistent).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Services<'a> {
    scripts: &'a ScriptRunner,
    memo: &'a moka::sync::Cache<String, Args>,
    retry: &'a RetryPolicy,
    quick_script_budget: Option<&'a ScriptLimits>,
    max_work_items: usize,
    min_retry_delay_ms: u64,
    max_state_bytes: u64,
}

impl FlowServices for Services<'_> {
    fn evaluate_predicate(&self, step: &Step, inputs: &Args) -> Result<bool, String> {
        let Some(predicate) = step.predicate.as_ref() else {
            return Ok(true);
        };
        let (language, names) = (predicate.language.as_str(), script_arg_names(step));
        // Predicates are decided inside the flow transaction, on an async worker: most take
        // microseconds; one that needs longer runs again (predicates are pure) under its full
        // limits with the worker's other tasks handed to another thread meanwhile.
        let quick = self.quick_script_budget.and_then(|budget| {
            self.scripts.evaluate_predicate_within(
                budget,
                language,
                &predicate.script,
                &names,
                inputs,
            )
        });
        let result = match quick {
            Some(result) => result,
            None => offload_if(true, || {
                self.scripts.evaluate_predicate_blocking(
                    language,
                    &predicate.script,
                    &names,
                    inputs,
                )
            }),
        };
        result.map_err(|error| match error.phase {
            Phase::Compile => format!("predicate compilation failed: {}", error.message),
            _ => format!("predicate evaluation failed: {}", error.message),
        })
    }

    fn memo_lookup(&self, step: &Step, inputs: &Args) -> Option<Args> {
        self.memo.get(&memo_key(step, inputs))
    }

    fn memo_store(&self, step: &Step, inputs: &Args, outputs: &Args) {
        let key = memo_key(step, inputs);
        if !self.memo.contains_key(&key) {
            self.memo.insert(key, outputs.clone());
        }
    }

    fn retry_policy(&self, step: &Step) -> RetryPolicy {
        RetryPolicy::for_step(step.work_config.as_ref(), self.retry)
    }

    fn new_token(&self) -> String {
        uuid::Uuid::new_v4().to_string()
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

    fn run_script_quickly(&self, step: &Step, inputs: &Args) -> Option<Result<Args, String>> {
        let budget = self.quick_script_budget?;
        let script = step
            .script
            .as_ref()
            .filter(|_| step.step_type == StepType::Script)?;
        self.scripts
            .execute_within(
                budget,
                script.language.as_str(),
                &script.script,
                &script_arg_names(step),
                inputs,
            )
            .map(|result| result.map_err(|error| error.message))
    }
}

/// Logs the script items a committed transaction ran and failed, as a dispatched item's
/// failure is logged.
fn log_quick_failures(flow_id: &str, failures: &[QuickFailure]) {
    for failure in failures {
        tracing::error!(%flow_id, step_id = %failure.step_id, token = %failure.token, error = %failure.error, "step execution failed");
    }
}

fn memo_key(step: &Step, inputs: &Args) -> String {
    format!("{}:{}", step.hash_key(), args_hash(inputs))
}

/// Metadata key of a child flow's nesting depth (1 for a child of a client's flow).
const FLOW_DEPTH: &str = "flow_depth";

/// Owner of the lease of a work item that was handed to an async step or a child flow and
/// waits for its result.
const AWAITING_RESULT: &str = "awaiting-result";
/// How long such a parked lease lasts (its result ends it).
const PARKED_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long work for an unhealthy step waits for the next health check: the gap between two
/// checks, the check's own timeout, and a margin.
const HEALTH_RECHECK_PATIENCE: Duration = Duration::from_secs(6);
/// How long work results, index updates and timers are retried while the store is away.
const STORE_OUTAGE_PATIENCE: Duration = Duration::from_secs(60);

fn is_unavailable(error: &EngineError) -> bool {
    matches!(
        error,
        EngineError::Aggregate(AggregateError::Store(StoreError::Unavailable(_)))
    )
}

/// Identity of a work item in lease and timer keys (flow ids of child flows contain `:`).
fn work_key(kind: &str, flow_id: &str, step_id: &str, token: &str) -> String {
    format!(
        "{kind}/{}",
        serde_json::to_string(&[flow_id, step_id, token]).unwrap_or_default()
    )
}

fn parse_work_key(key: &str) -> Option<(String, String, String)> {
    let (_, json) = key.split_once('/')?;
    let [flow, step, token]: [String; 3] = serde_json::from_str(json).ok()?;
    Some((flow, step, token))
}

/// Before/after facts of a flow transaction that drive the flow index and child flows.
/// A committed flow command's state and what remains to be done about it.
struct Committed {
    /// The flow after the command (its state is always there: a command needs a flow).
    current: Arc<Current<Option<FlowState>>>,
    milestones: Milestones,
    effects: Vec<Effect>,
    failures: Vec<QuickFailure>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Milestones {
    created: bool,
    became_terminal: bool,
    became_settled: bool,
}

fn outcome_of(status: FlowStatus) -> FlowOutcome {
    match status {
        FlowStatus::Completed => FlowOutcome::Completed,
        FlowStatus::Failed => FlowOutcome::Failed,
        FlowStatus::Pending | FlowStatus::Active => FlowOutcome::Active,
    }
}

fn index_entry(state: &FlowState) -> FlowIndexEntry {
    let parent = state
        .metadata
        .get("parent_flow_id")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    FlowIndexEntry {
        flow_id: state.id.clone(),
        parent_flow_id: parent,
        outcome: outcome_of(state.status),
        phase: if is_settled(state) {
            FlowPhase::Deactivated
        } else {
            FlowPhase::Active
        },
        created_at: state.created_at,
        completed_at: state.is_terminal().then_some(state.completed_at),
        error: (!state.error.is_empty()).then(|| state.error.clone()),
    }
}

impl<S: Store> Engine<S> {
    /// A builder over `store` with default settings and runners.
    pub fn builder(store: S) -> EngineBuilder<S> {
        EngineBuilder {
            store,
            config: EngineConfig::default(),
            runner: None,
            scripts: None,
            local: LocalHandlers::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The in-process handlers (`local://NAME` endpoints).
    pub fn local_handlers(&self) -> &LocalHandlers {
        &self.inner.local
    }

    fn services(&self) -> Services<'_> {
        Services {
            scripts: &self.inner.scripts,
            memo: &self.inner.memo,
            retry: &self.inner.config.retry,
            quick_script_budget: self.inner.config.quick_script_budget.as_ref(),
            max_work_items: self.inner.config.max_work_items,
            min_retry_delay_ms: u64::try_from(self.inner.config.min_retry_delay.as_millis())
                .unwrap_or(u64::MAX),
            max_state_bytes: self.inner.config.max_state_bytes,
        }
    }

    // ------------------------------------------------------------------ catalog

    /// The catalog (steps, health, attribute graph) and its next sequence, never older than
    /// the store's (decision 21).
    pub async fn catalog(&self) -> Result<Arc<Current<EngineState>>, EngineError> {
        let cached = self.cached_catalog();
        let newer = self
            .inner
            .store
            .read(&AggregateId::Engine, cached.next_sequence)
            .await?;
        if newer.is_empty() {
            return Ok(cached);
        }
        let mut current = (*cached).clone();
        if !apply_newer(&mut current, &newer, &AggregateId::Engine)? {
            // A gap (snapshot trimming): rebuild from the store.
            current = load(&self.inner.store, &AggregateId::Engine).await?;
        }
        let current = Arc::new(current);
        if let Ok(mut slot) = self.inner.catalog.write()
            && slot.next_sequence < current.next_sequence
        {
            *slot = current.clone();
        }
        Ok(current)
    }

    /// The catalog as this instance last read it (no store access).
    fn cached_catalog(&self) -> Arc<Current<EngineState>> {
        self.inner
            .catalog
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    /// The bounds step definitions are checked against.
    fn step_limits(&self) -> argyll_model::StepLimits {
        let config = &self.inner.config;
        argyll_model::StepLimits {
            max_id_length: config.max_id_length,
            max_parallelism: i64::try_from(config.max_work_items).unwrap_or(i64::MAX),
            ..argyll_model::StepLimits::default()
        }
    }

    fn compile_scripts(&self, step: &Step) -> Result<(), EngineError> {
        let names = script_arg_names(step);
        for (what, config) in [("script", &step.script), ("predicate", &step.predicate)] {
            if let Some(config) = config {
                self.inner
                    .scripts
                    .validate(config.language.as_str(), &config.script, &names)
                    .map_err(|e| {
                        EngineError::Script(format!("{what} does not compile: {}", e.message))
                    })?;
            }
        }
        Ok(())
    }

    async fn catalog_command(
        &self,
        command: impl FnMut(&EngineState) -> Result<(Vec<EngineEvent>, ()), CatalogError> + Send,
    ) -> Result<(), EngineError> {
        let attempts = self.inner.config.command_attempts;
        execute(&self.inner.store, &AggregateId::Engine, attempts, command).await??;
        Ok(())
    }

    /// Registers a step: validated, scripts compiled, checked against the catalog. The same
    /// definition again changes nothing (decision 9).
    pub async fn register_step(&self, step: Step) -> Result<Registration, EngineError> {
        step.validate_within(&self.step_limits())?;
        self.compile_scripts(&step)?;
        let mut outcome = Registration::Unchanged;
        self.catalog_command(|state| {
            let (events, registration) = catalog::register(state, &step)?;
            outcome = registration;
            Ok((events, ()))
        })
        .await?;
        if outcome == Registration::Created {
            self.check_health_soon(&step);
        }
        Ok(outcome)
    }

    /// Replaces a step's definition (flows already running keep their snapshot).
    pub async fn update_step(&self, step: Step) -> Result<(), EngineError> {
        step.validate_within(&self.step_limits())?;
        self.compile_scripts(&step)?;
        self.catalog_command(|state| Ok((catalog::update(state, &step)?, ())))
            .await?;
        self.check_health_soon(&step);
        Ok(())
    }

    /// Removes a step from the catalog.
    pub async fn unregister_step(&self, step_id: &str) -> Result<(), EngineError> {
        self.catalog_command(|state| Ok((catalog::unregister(state, step_id)?, ())))
            .await?;
        self.inner.probes.forget(step_id);
        Ok(())
    }

    /// The plan for a flow start, shared by every flow started with the same goals and init
    /// attribute names on the same catalog: planning depends on nothing else, and flows that
    /// share their plan share its memory.
    async fn shared_plan(
        &self,
        goals: &[String],
        init: &Args,
    ) -> Result<Arc<ExecutionPlan>, EngineError> {
        let catalog = self.catalog().await?;
        let key = PlanKey {
            catalog_sequence: catalog.next_sequence,
            goals: goals.to_vec(),
            init_names: init.keys().cloned().collect(),
        };
        if let Some(plan) = self.inner.plans.get(&key) {
            return Ok(plan);
        }
        let plan = Arc::new(argyll_plan::plan(
            &catalog.state.steps,
            &catalog.state.attributes,
            goals,
            init,
        )?);
        self.inner.plans.insert(key, plan.clone());
        Ok(plan)
    }

    /// The plan that would run for `goals` and `init` (no side effects).
    pub async fn plan(&self, goals: &[String], init: &Args) -> Result<ExecutionPlan, EngineError> {
        let catalog = self.catalog().await?;
        Ok(argyll_plan::plan(
            &catalog.state.steps,
            &catalog.state.attributes,
            goals,
            init,
        )?)
    }

    /// The engine state as the original's `GET /engine` shows it: the catalog plus the flow
    /// index — every active flow, flows being archived, and the most recently deactivated
    /// flows (`engine_state_max_flows` of them, oldest first as the original listed them),
    /// with their digests. The original listed every flow ever run, which grew without end.
    pub async fn engine_state(&self) -> Result<EngineState, EngineError> {
        let mut state = self.catalog().await?.state.clone();
        let store = &self.inner.store;
        let in_phase = |phase| FlowQuery {
            phases: vec![phase],
            ..FlowQuery::default()
        };
        let mut entries = store
            .list_flows(&in_phase(FlowPhase::Active))
            .await?
            .entries;
        entries.extend(
            store
                .list_flows(&in_phase(FlowPhase::Archiving))
                .await?
                .entries,
        );
        let mut finished = store
            .recently_deactivated(self.inner.config.engine_state_max_flows)
            .await?;
        finished.reverse();
        entries.extend(finished);
        for entry in entries {
            let parent = entry.parent_flow_id.clone().unwrap_or_default();
            match entry.phase {
                FlowPhase::Active => {
                    state.active.insert(
                        entry.flow_id.clone(),
                        ActiveFlow {
                            parent_flow_id: parent,
                            started_at: entry.created_at,
                            last_active: entry.created_at,
                        },
                    );
                }
                FlowPhase::Deactivated => state.deactivated.push(DeactivatedFlow {
                    flow_id: entry.flow_id.clone(),
                    parent_flow_id: parent,
                    deactivated_at: entry.completed_at.unwrap_or_default(),
                }),
                FlowPhase::Archiving => {
                    state.archiving.insert(
                        entry.flow_id.clone(),
                        entry.completed_at.unwrap_or_default(),
                    );
                }
                FlowPhase::Archived => continue,
            }
            state
                .flow_digests
                .insert(entry.flow_id.clone(), flow_digest(&entry));
        }
        Ok(state)
    }

    // ------------------------------------------------------------------ flows

    /// Starts a flow: plans it, validates init (required inputs, types — decision 13) and
    /// records it atomically. Starting the same id again with the same goals and init returns
    /// `created: false`; with other goals or init it is [`EngineError::FlowExists`].
    pub async fn start_flow(&self, request: StartFlow) -> Result<FlowStart, EngineError> {
        self.check_start_bounds(&request)?;
        let adding = argyll_model::args_size(&request.init)
            .saturating_add(argyll_model::args_size(&request.metadata));
        let limit = self.inner.config.max_state_bytes;
        if adding > limit {
            return Err(EngineError::StateTooLarge(crate::flow::state_too_large(
                "the init values and metadata",
                adding,
                limit,
            )));
        }
        let plan = self.shared_plan(&request.goals, &request.init).await?;
        let (started, _) = self.create_flow(&request, plan, true).await?;
        Ok(started)
    }

    /// Flow ids and goals within `MAX_ID_LENGTH` and without control characters.
    fn check_start_bounds(&self, request: &StartFlow) -> Result<(), EngineError> {
        let limit = self.inner.config.max_id_length;
        let check = |field: &'static str, text: &str| {
            argyll_model::check_text(field, text, limit)
                .map_err(|error| EngineError::InvalidRequest(error.to_string()))
        };
        check("flow ID", &request.flow_id)?;
        for goal in &request.goals {
            check("goal step ID", goal)?;
        }
        Ok(())
    }

    /// Creates the flow in one command on its aggregate: an existing flow is answered from
    /// its state (with `require_same_start`, other goals or init are [`EngineError::FlowExists`])
    /// before the init values are validated, so a duplicate id is 409 before a bad init is
    /// 400. Returns the flow's state after the command.
    async fn create_flow(
        &self,
        request: &StartFlow,
        plan: Arc<ExecutionPlan>,
        require_same_start: bool,
    ) -> Result<(FlowStart, Arc<Current<Option<FlowState>>>), EngineError> {
        let services = self.services();
        let aggregate = AggregateId::Flow(request.flow_id.clone());
        let large_init = request.init.values().any(is_large_value);
        let executed = execute_applied(
            &self.inner.store,
            self.inner.flows.as_ref(),
            true,
            &aggregate,
            self.inner.config.command_attempts,
            |current: &Option<FlowState>, at| {
                if let Some(existing) = current {
                    if require_same_start {
                        same_start(existing, request).map_err(StartError::Engine)?;
                    }
                    return Ok((Vec::new(), current.clone(), None));
                }
                argyll_plan::validate_init(&plan, &request.init)
                    .map_err(|e| StartError::Engine(e.into()))?;
                // A start over a large array fans out right here (work items, events): let the
                // worker's other tasks move to another thread meanwhile.
                offload_if(large_init, || {
                    let mut tx = FlowTx::start(
                        &services,
                        at,
                        &request.flow_id,
                        plan.clone(),
                        request.init.clone(),
                        request.metadata.clone(),
                    )
                    .map_err(StartError::Tx)?;
                    if let Some(error) = tx.too_many_work_items.take() {
                        return Err(StartError::Engine(EngineError::TooManyWorkItems(error)));
                    }
                    let failures = tx
                        .run_quick_work(QUICK_WORK_PER_COMMAND)
                        .map_err(StartError::Tx)?;
                    Ok((tx.events, Some(tx.state), Some((tx.effects, failures))))
                })
            },
        )
        .await?;
        let executed = match executed {
            Ok(executed) => executed,
            Err(StartError::Engine(error)) => return Err(error),
            Err(StartError::Tx(error)) => return Err(tx_error(&request.flow_id, error)),
        };
        let current = executed.current;
        let created = executed.result.is_some();
        match (executed.result, &current.state) {
            (Some((effects, failures)), Some(state)) => {
                log_quick_failures(&state.id, &failures);
                let milestones = Milestones {
                    created: true,
                    became_terminal: state.is_terminal(),
                    became_settled: is_settled(state),
                };
                self.after_commit(state, milestones, effects, &[]).await;
            }
            (None, Some(existing)) => {
                // A start whose reply was lost (the store went away after committing) is
                // retried by its client: make sure the flow is indexed, so the sweep finishes
                // whatever that first start left undone.
                let _ = self.inner.store.insert_flow(index_entry(existing)).await;
            }
            _ => {}
        }
        let started = FlowStart {
            flow_id: request.flow_id.clone(),
            created,
        };
        Ok((started, current))
    }

    /// A flow's current state (never older than the store's).
    pub async fn flow(&self, flow_id: &str) -> Result<Option<FlowState>, EngineError> {
        Ok(self.flow_with_sequence(flow_id).await?.state)
    }

    /// A flow's state and the sequence its next event gets (the WebSocket snapshot).
    pub async fn flow_with_sequence(
        &self,
        flow_id: &str,
    ) -> Result<Current<Option<FlowState>>, EngineError> {
        Ok(load_current(
            &self.inner.store,
            self.inner.flows.as_ref(),
            &AggregateId::Flow(flow_id.to_owned()),
        )
        .await?)
    }

    /// Waits until the flow is terminal or `wait` has passed, then returns its state (`None`
    /// for an unknown flow).
    pub async fn wait_for_flow(
        &self,
        flow_id: &str,
        wait: Duration,
    ) -> Result<Option<FlowState>, EngineError> {
        if !self.inner.waiters_running.load(Ordering::SeqCst) {
            return self.wait_on_own_subscription(flow_id, wait).await;
        }
        // One feed subscriber per engine wakes the waiters of a flow (instead of every waiting
        // client receiving every event of the system). A wake means "look again": the flow
        // ended, or the subscriber missed events and cannot tell; a flow still running is
        // waited for again until `wait` has passed.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (wake, woken) = tokio::sync::oneshot::channel();
            let ticket = self.inner.next_waiter.fetch_add(1, Ordering::Relaxed);
            self.waiters()
                .entry(flow_id.to_owned())
                .or_default()
                .push((ticket, wake));
            let state = self.flow(flow_id).await;
            let finished = match &state {
                Ok(Some(flow)) => flow.is_terminal(),
                _ => true,
            };
            let woken_in_time = !finished && tokio::time::timeout_at(deadline, woken).await.is_ok();
            if let Some(list) = self.waiters().get_mut(flow_id) {
                list.retain(|(t, _)| *t != ticket);
            }
            self.waiters().retain(|_, list| !list.is_empty());
            if finished {
                return state;
            }
            if !woken_in_time {
                return self.flow(flow_id).await;
            }
        }
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.inner
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes the waiters of flows whose terminal event appears on the feed (any instance's).
    async fn waiter_loop(
        &self,
        mut feed: tokio::sync::broadcast::Receiver<Arc<argyll_events::EventEnvelope>>,
    ) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let received = tokio::select! {
                _ = shutdown.changed() => return,
                received = feed.recv() => received,
            };
            match received {
                Ok(envelope) => {
                    let terminal = matches!(
                        &envelope.event,
                        Event::Flow(FlowEvent::FlowCompleted(_) | FlowEvent::FlowFailed(_))
                    );
                    if let (true, AggregateId::Flow(flow_id)) = (terminal, &envelope.aggregate_id) {
                        let woken = self.waiters().remove(flow_id);
                        for (_, wake) in woken.into_iter().flatten() {
                            let _ = wake.send(());
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Events were missed: every waiter looks again.
                    let all: Vec<_> = self.waiters().drain().collect();
                    for (_, list) in all {
                        for (_, wake) in list {
                            let _ = wake.send(());
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Waiting without the engine's waiter loop (an engine that was never started).
    async fn wait_on_own_subscription(
        &self,
        flow_id: &str,
        wait: Duration,
    ) -> Result<Option<FlowState>, EngineError> {
        let mut feed = self.inner.store.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let state = self.flow(flow_id).await?;
            match &state {
                Some(flow) if !flow.is_terminal() => {}
                _ => return Ok(state),
            }
            loop {
                match tokio::time::timeout_at(deadline, feed.recv()).await {
                    Err(_) => return self.flow(flow_id).await,
                    Ok(Ok(envelope)) => {
                        let terminal = matches!(
                            &envelope.event,
                            Event::Flow(FlowEvent::FlowCompleted(_) | FlowEvent::FlowFailed(_))
                        );
                        if terminal && envelope.aggregate_id == AggregateId::Flow(flow_id.into()) {
                            return self.flow(flow_id).await;
                        }
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                        return self.flow(flow_id).await;
                    }
                }
            }
        }
    }

    /// A page of the flow index.
    pub async fn list_flows(&self, query: &FlowQuery) -> Result<FlowPage, EngineError> {
        Ok(self.inner.store.list_flows(query).await?)
    }

    /// Records a work result reported from outside (the webhook). Refused when the flow,
    /// step or token is unknown, the step is not async, or the item is not running.
    pub async fn report_work(
        &self,
        flow_id: &str,
        step_id: &str,
        token: &str,
        report: WorkReport,
    ) -> Result<(), EngineError> {
        let committed = self
            .commit_flow_command(flow_id, |tx| {
                tx.check_reported_from_outside(step_id)?;
                match &report {
                    WorkReport::Succeeded(outputs) => {
                        tx.complete_work(step_id, token, outputs.clone())
                    }
                    WorkReport::Failed(error) => tx.fail_work(step_id, token, error),
                    WorkReport::Retry(error) => tx.not_complete_work(step_id, token, error),
                }
            })
            .await?;
        // The result is recorded: the caller (a webhook) is answered now, and what follows
        // from it (the index, the next work, the lease bookkeeping) runs behind the answer.
        let (flow_id, step_id, token) = (flow_id.to_owned(), step_id.to_owned(), token.to_owned());
        self.spawn_tracked(|engine| async move {
            if let Some(committed) = committed {
                engine.carry_out(committed, &[]).await;
            }
            engine.unpark(&flow_id, &step_id, &token).await;
        });
        Ok(())
    }

    /// Runs `task` in the background as in-flight work: a graceful shutdown waits for it.
    fn spawn_tracked<F, Fut>(&self, task: F)
    where
        F: FnOnce(Engine<S>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let engine = self.clone();
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        // Boxed: work futures are large (a step call's whole state machine), and a task's
        // future is moved several times while it is spawned; a box moves as a pointer.
        let running = Box::pin(task(self.clone()));
        tokio::spawn(async move {
            running.await;
            if engine.inner.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
                engine.inner.idle.notify_waiters();
            }
        });
    }

    /// Runs a command on a flow and carries out its effects after the commit.
    async fn flow_command(
        &self,
        flow_id: &str,
        command: impl FnMut(&mut FlowTx<'_>) -> Result<(), TxError> + Send,
    ) -> Result<(), EngineError> {
        if let Some(committed) = self.commit_flow_command(flow_id, command).await? {
            self.carry_out(committed, &[]).await;
        }
        Ok(())
    }

    /// The effects of a committed flow command.
    /// `releasing`: leases of finished work to give up in the same store call that leases the
    /// work the command started.
    async fn carry_out(&self, committed: Committed, releasing: &[String]) {
        let Some(state) = committed.current.state.as_ref() else {
            return;
        };
        log_quick_failures(&state.id, &committed.failures);
        self.after_commit(state, committed.milestones, committed.effects, releasing)
            .await;
    }

    /// Runs a command on a flow; returns what its commit leaves to do.
    async fn commit_flow_command(
        &self,
        flow_id: &str,
        mut command: impl FnMut(&mut FlowTx<'_>) -> Result<(), TxError> + Send,
    ) -> Result<Option<Committed>, EngineError> {
        let services = self.services();
        let aggregate = AggregateId::Flow(flow_id.to_owned());
        let executed = execute_applied(
            &self.inner.store,
            self.inner.flows.as_ref(),
            false,
            &aggregate,
            self.inner.config.command_attempts,
            |current: &Option<FlowState>, at| {
                let Some(state) = current else {
                    return Err(TxError::Refused(FlowCommandError::FlowNotFound));
                };
                let before = (state.is_terminal(), is_settled(state));
                let mut tx = FlowTx::new(state.clone(), at, &services);
                command(&mut tx)?;
                let failures = tx.run_quick_work(QUICK_WORK_PER_COMMAND)?;
                let milestones = Milestones {
                    created: false,
                    became_terminal: !before.0 && tx.state.is_terminal(),
                    became_settled: !before.1 && is_settled(&tx.state),
                };
                Ok((
                    tx.events,
                    Some(tx.state),
                    (milestones, tx.effects, failures),
                ))
            },
        )
        .await?
        .map_err(|error| tx_error(flow_id, error))?;
        let (milestones, effects, failures) = executed.result;
        Ok(executed.current.state.is_some().then(|| Committed {
            current: executed.current.clone(),
            milestones,
            effects,
            failures,
        }))
    }

    /// Side effects of a committed flow transaction, in order: the flow index, timers, work.
    async fn after_commit(
        &self,
        state: &FlowState,
        milestones: Milestones,
        effects: Vec<Effect>,
        releasing: &[String],
    ) {
        if milestones.created {
            let inserted = self
                .retrying_store(|| async {
                    Ok(self.inner.store.insert_flow(index_entry(state)).await?)
                })
                .await;
            if let Err(error) = inserted {
                tracing::error!(flow_id = %state.id, %error, "flow index update failed");
            }
        } else if milestones.became_terminal || milestones.became_settled {
            self.update_index(state).await;
        }
        if milestones.became_terminal {
            match state.status {
                FlowStatus::Failed => {
                    tracing::error!(flow_id = %state.id, error = %state.error, "flow failed");
                }
                _ => tracing::info!(flow_id = %state.id, "flow completed"),
            }
        }
        let mut runs = Vec::new();
        for effect in effects {
            match effect {
                Effect::Run {
                    step_id,
                    token,
                    inputs,
                } => runs.push((step_id, token, inputs)),
                Effect::ScheduleRetry {
                    step_id,
                    token,
                    due,
                } => {
                    let key = work_key("retry", &state.id, &step_id, &token);
                    let timer = Timer {
                        key: key.clone(),
                        due,
                        payload: key.into(),
                    };
                    let scheduled = self
                        .retrying_store(|| async {
                            Ok(self.inner.store.schedule(timer.clone()).await?)
                        })
                        .await;
                    if let Err(error) = scheduled {
                        tracing::error!(flow_id = %state.id, %step_id, %error, "retry timer not stored");
                    }
                    self.inner.timers_changed.notify_one();
                }
                Effect::CancelRetry { step_id, token } => {
                    let key = work_key("retry", &state.id, &step_id, &token);
                    if let Err(error) = self.inner.store.cancel(&key).await {
                        tracing::warn!(flow_id = %state.id, %error, "retry timer not cancelled");
                    }
                }
            }
        }
        self.dispatch(state, runs, releasing).await;
        if milestones.became_settled {
            self.notify_parent(state).await;
        }
    }

    /// Leases the work a transaction started, all in one store call (which also gives up the
    /// `releasing` leases), and runs it.
    async fn dispatch(
        &self,
        state: &FlowState,
        runs: Vec<(String, String, Args)>,
        releasing: &[String],
    ) {
        let config = &self.inner.config;
        if runs.is_empty() || self.inner.stopping.load(Ordering::SeqCst) {
            // When stopping, the items are left active without a lease: recovery or a sweep
            // runs them again.
            if !releasing.is_empty() {
                let _ = self
                    .inner
                    .store
                    .release_many(releasing, &config.instance_id)
                    .await;
            }
            return;
        }
        let keys: Vec<String> = runs
            .iter()
            .map(|(step_id, token, _)| work_key("work", &state.id, step_id, token))
            .collect();
        let leased = self
            .retrying_store(|| async {
                Ok(self
                    .inner
                    .store
                    .exchange(
                        releasing,
                        &keys,
                        &config.instance_id,
                        config.lease_ttl,
                        now(),
                    )
                    .await?)
            })
            .await;
        match leased {
            Ok(leased) => {
                for ((step_id, token, inputs), leased) in runs.into_iter().zip(leased) {
                    self.spawn_work(state, &step_id, token, inputs, leased);
                }
            }
            Err(error) => {
                tracing::error!(flow_id = %state.id, %error, "work leases not acquired");
            }
        }
    }

    /// Writes the flow's index entry unless a later transaction already moved it further.
    async fn update_index(&self, state: &FlowState) {
        let entry = index_entry(state);
        let store = &self.inner.store;
        if entry.phase == FlowPhase::Active
            && let Ok(Some(existing)) = store.get_flow(&state.id).await
            && existing.phase != FlowPhase::Active
        {
            return;
        }
        let written = self
            .retrying_store(|| async { Ok(store.put_flow(entry.clone()).await?) })
            .await;
        if let Err(error) = written {
            tracing::error!(flow_id = %state.id, %error, "flow index update failed");
        }
    }

    // ------------------------------------------------------------------ running work

    /// Runs a work item in a task of its own; `leased` when its lease is already this
    /// instance's.
    fn spawn_work(
        &self,
        state: &FlowState,
        step_id: &str,
        token: String,
        inputs: Args,
        leased: bool,
    ) {
        let Some(step) = state.plan.steps.get(step_id) else {
            return;
        };
        if self.inner.stopping.load(Ordering::SeqCst) {
            // Left active: recovery or a lease takeover runs it again.
            return;
        }
        let work = WorkRequest {
            flow_id: state.id.clone(),
            step: Arc::new(step.clone()),
            token,
            inputs,
            metadata: state.metadata.clone(),
        };
        self.spawn_tracked(|engine| async move { engine.run_work(work, leased).await });
    }

    async fn run_work(&self, work: WorkRequest, leased: bool) {
        let store = &self.inner.store;
        let config = &self.inner.config;
        let lease = work_key("work", &work.flow_id, &work.step.id, &work.token);
        let owner = config.instance_id.as_str();
        // Decision 24: an item already running here (a re-dispatch that found its own live
        // work) is not started twice; the running call records the result.
        let Some(_running) = self.inner.running.claim(&lease) else {
            tracing::debug!(flow_id = %work.flow_id, step_id = %work.step.id, token = %work.token, "work already running here; not started again");
            return;
        };
        if !leased && !self.lease_work(&work, &lease).await {
            return;
        }
        let (flow_id, step, token) = (work.flow_id.clone(), work.step.clone(), work.token.clone());
        let outcome = {
            let execution = self.execute_work(work);
            tokio::pin!(execution);
            let mut renew = tokio::time::interval(config.lease_ttl / 3);
            renew.tick().await;
            loop {
                tokio::select! {
                    outcome = &mut execution => break outcome,
                    _ = renew.tick() => {
                        if let Ok(false) = store.renew(&lease, owner, config.lease_ttl, now()).await {
                            // Another instance took the item over (this one was cut off for
                            // longer than the lease): its result decides; this one is refused.
                            tracing::warn!(%flow_id, step_id = %step.id, %token, "work lease lost while the call runs");
                        }
                    }
                }
            }
        };
        tracing::debug!(%flow_id, step_id = %step.id, %token, ?outcome, "work ran");
        match &outcome {
            WorkOutcome::Retryable(error) => {
                tracing::warn!(%flow_id, step_id = %step.id, %token, %error, "step attempt failed");
            }
            WorkOutcome::Failed(error) => {
                tracing::error!(%flow_id, step_id = %step.id, %token, %error, "step execution failed");
            }
            WorkOutcome::Completed(_) | WorkOutcome::Accepted => {}
        }
        if outcome != WorkOutcome::Accepted {
            self.record_result(&flow_id, step, token, outcome).await;
            return;
        }
        // The result comes by webhook (or from a child flow), maybe to another instance:
        // park the lease so sweeps and restarts do not call the step again meanwhile.
        let _ = store.release(&lease, owner).await;
        let _ = store
            .acquire(&lease, AWAITING_RESULT, PARKED_LEASE, now())
            .await;
        // The result may have arrived before the lease was parked: then nobody else
        // would unpark it.
        let still_waiting = self
            .flow(&flow_id)
            .await
            .ok()
            .flatten()
            .is_some_and(|flow| {
                flow.executions
                    .get(&step.id)
                    .and_then(|e| e.work_items.get(&token))
                    .is_some_and(|item| item.status == WorkStatus::Active)
            });
        if !still_waiting {
            self.unpark(&flow_id, &step.id, &token).await;
        }
    }

    /// Takes the lease of an item that was not leased with its transaction's others (another
    /// owner held it then); `false` when it is not this instance's to run.
    async fn lease_work(&self, work: &WorkRequest, lease: &str) -> bool {
        let store = &self.inner.store;
        let config = &self.inner.config;
        let owner = config.instance_id.as_str();
        let acquired = self
            .retrying_store(|| async {
                Ok(store.acquire(lease, owner, config.lease_ttl, now()).await?)
            })
            .await;
        // A new attempt of an item whose previous attempt is parked waiting for a webhook
        // (which asked for a retry) takes the parked lease over.
        let acquired = match acquired {
            Ok(false) if store.release(lease, AWAITING_RESULT).await.unwrap_or(false) => store
                .acquire(lease, owner, config.lease_ttl, now())
                .await
                .map_err(EngineError::from),
            other => other,
        };
        match acquired {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(flow_id = %work.flow_id, step_id = %work.step.id, token = %work.token, "work leased elsewhere; not run here");
                false
            }
            Err(error) => {
                tracing::error!(flow_id = %work.flow_id, %error, "work lease not acquired");
                false
            }
        }
    }

    /// Records a work result, together with the results of the same flow that arrive while
    /// another of its results is being recorded: one command and one lease release for all of
    /// them instead of a command per result that conflicts with its siblings.
    async fn record_result(
        &self,
        flow_id: &str,
        step: Arc<Step>,
        token: String,
        outcome: WorkOutcome,
    ) {
        let (recorded, finished) = tokio::sync::oneshot::channel();
        let pending = PendingResult {
            step,
            token,
            outcome,
            recorded,
        };
        let leads = {
            let mut queues = lock(&self.inner.results);
            match queues.get_mut(flow_id) {
                Some(queue) => {
                    queue.push(pending);
                    false
                }
                None => {
                    queues.insert(flow_id.to_owned(), vec![pending]);
                    true
                }
            }
        };
        if leads {
            let mut guard = QueueGuard {
                queues: &self.inner.results,
                flow_id,
                armed: true,
            };
            loop {
                // Let the runners woken with this one queue their results first.
                tokio::task::yield_now().await;
                let batch = {
                    let mut queues = lock(&self.inner.results);
                    match queues.get_mut(flow_id) {
                        Some(queue) if !queue.is_empty() => std::mem::take(queue),
                        _ => {
                            queues.remove(flow_id);
                            break;
                        }
                    }
                };
                self.commit_results(flow_id, batch).await;
            }
            guard.armed = false;
        }
        let _ = finished.await;
    }

    /// One command for a batch of results of one flow, then one release of their leases.
    async fn commit_results(&self, flow_id: &str, batch: Vec<PendingResult>) {
        let store = &self.inner.store;
        let config = &self.inner.config;
        let owner = config.instance_id.as_str();
        let leases: Vec<String> = batch
            .iter()
            .map(|result| work_key("work", flow_id, &result.step.id, &result.token))
            .collect();
        let refused = std::sync::Mutex::new(Vec::new());
        let attempts = AtomicUsize::new(0);
        // While the store is away the results are kept and retried (and the leases renewed),
        // so an outage does not make the handlers run twice.
        let recorded = self
            .retrying_store(|| async {
                if attempts.fetch_add(1, Ordering::Relaxed) > 0 {
                    for lease in &leases {
                        let _ = store.renew(lease, owner, config.lease_ttl, now()).await;
                    }
                }
                self.commit_flow_command(flow_id, |tx| {
                    let mut refusals = Vec::new();
                    for (index, result) in batch.iter().enumerate() {
                        let (step_id, token) = (result.step.id.as_str(), result.token.as_str());
                        let applied = match &result.outcome {
                            WorkOutcome::Completed(outputs) => {
                                tx.complete_work(step_id, token, outputs.clone())
                            }
                            WorkOutcome::Retryable(error) => {
                                tx.not_complete_work(step_id, token, error)
                            }
                            WorkOutcome::Failed(error) => tx.fail_work(step_id, token, error),
                            WorkOutcome::Accepted => Ok(()),
                        };
                        match applied {
                            Ok(()) => {}
                            Err(TxError::Refused(refusal)) => refusals.push((index, refusal)),
                            Err(other) => return Err(other),
                        }
                    }
                    *lock(&refused) = refusals;
                    Ok(())
                })
                .await
            })
            .await;
        // Each result that was not recorded, with why; a refused result (the item already
        // finished) is normal for a completion racing a takeover.
        let failures: Vec<(usize, String, bool)> = match recorded {
            Ok(committed) => {
                // The leases go back in the call that leases the work these results started.
                match committed {
                    Some(committed) => self.carry_out(committed, &leases).await,
                    None => {
                        let _ = store.release_many(&leases, owner).await;
                    }
                }
                std::mem::take(&mut *lock(&refused))
                    .into_iter()
                    .map(|(index, refusal)| (index, refusal.to_string(), true))
                    .collect()
            }
            Err(error) => {
                let _ = store.release_many(&leases, owner).await;
                (0..batch.len())
                    .map(|index| (index, error.to_string(), false))
                    .collect()
            }
        };
        for (index, error, refused) in &failures {
            let Some(result) = batch.get(*index) else {
                continue;
            };
            let step_id = &result.step.id;
            if *refused && matches!(result.outcome, WorkOutcome::Completed(_)) {
                tracing::debug!(%flow_id, %step_id, %error, "work result not recorded (item already finished)");
            } else {
                tracing::error!(%flow_id, %step_id, %error, "work result not recorded");
            }
        }
        for result in batch {
            let _ = result.recorded.send(());
        }
    }

    /// Releases the parked lease of an item whose result arrived from outside.
    async fn unpark(&self, flow_id: &str, step_id: &str, token: &str) {
        let lease = work_key("work", flow_id, step_id, token);
        let _ = self.inner.store.release(&lease, AWAITING_RESULT).await;
    }

    /// Runs `operation` again while it fails because the store is unavailable (a lost
    /// connection), with backoff, for up to [`STORE_OUTAGE_PATIENCE`].
    async fn retrying_store<T, F, Fut>(&self, mut operation: F) -> Result<T, EngineError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, EngineError>>,
    {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match operation().await {
                Err(error)
                    if is_unavailable(&error) && started.elapsed() < STORE_OUTAGE_PATIENCE =>
                {
                    tracing::debug!(%error, "store unavailable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    async fn execute_work(&self, work: WorkRequest) -> WorkOutcome {
        match work.step.step_type {
            StepType::Flow => match self.start_child(&work).await {
                Ok(()) => WorkOutcome::Accepted,
                Err(error) => WorkOutcome::Failed(error),
            },
            StepType::Sync | StepType::Async => {
                let local = work
                    .step
                    .http
                    .as_ref()
                    .is_some_and(|h| h.endpoint.starts_with(LOCAL_SCHEME));
                if !local && self.unhealthy_reason(&work.step.id).is_some() {
                    // The verdict may predate the service (SDK services register first and
                    // listen afterwards): wait for one more check before giving up.
                    let next_check = self
                        .inner
                        .probes
                        .next_result(&work.step.id, HEALTH_RECHECK_PATIENCE);
                    self.check_health_soon(&work.step);
                    next_check.await;
                    if let Some(reason) = self.unhealthy_reason(&work.step.id) {
                        // Decision 15: not sent; the retry policy decides.
                        return WorkOutcome::Retryable(format!("step unhealthy: {reason}"));
                    }
                }
                self.inner.runner.run(work).await
            }
            _ => self.inner.runner.run(work).await,
        }
    }

    /// The step's health as this instance last read the catalog (refreshed by every flow
    /// start and health check): the gate needs no store round trip per work item.
    fn unhealthy_reason(&self, step_id: &str) -> Option<String> {
        let catalog = self.cached_catalog();
        let health = catalog.state.health.get(step_id)?;
        (health.status == HealthStatus::Unhealthy).then(|| health.error.clone())
    }

    // ------------------------------------------------------------------ child flows

    async fn start_child(&self, work: &WorkRequest) -> Result<(), String> {
        let Some(config) = work.step.flow.as_ref() else {
            return Err("flow step without flow config".into());
        };
        let mut init = Args::new();
        for (name, value) in &work.inputs {
            let child_name = config.input_map.get(name).unwrap_or(name);
            init.insert(child_name.clone(), value.clone());
        }
        // Nesting depth: 0 for a flow started by a client, one more for each child level.
        let depth = work
            .metadata
            .get(FLOW_DEPTH)
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .saturating_add(1);
        let max_depth = self.inner.config.flow_max_depth;
        if depth > u64::try_from(max_depth).unwrap_or(u64::MAX) {
            return Err(format!(
                "child flow depth limit reached: flows nest at most {max_depth} levels deep (FLOW_MAX_DEPTH)"
            ));
        }
        let mut metadata = work.metadata.clone();
        metadata.insert("parent_flow_id".into(), work.flow_id.clone().into());
        metadata.insert("parent_step_id".into(), work.step.id.clone().into());
        metadata.insert("parent_work_item_token".into(), work.token.clone().into());
        metadata.insert(FLOW_DEPTH.into(), depth.into());
        let request = StartFlow {
            flow_id: argyll_model::child_flow_id(
                &work.flow_id,
                &work.step.id,
                &work.token,
                self.inner.config.max_id_length,
            ),
            goals: config.goals.clone(),
            init,
            metadata,
        };
        let plan = self
            .shared_plan(&request.goals, &request.init)
            .await
            .map_err(|e| e.to_string())?;
        // Starting is idempotent: a re-dispatched item finds its child already there, and a
        // child that already settled reports to the parent again.
        let (started, state) = self
            .create_flow(&request, plan, false)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(child) = state
            .state
            .as_ref()
            .filter(|child| !started.created && is_settled(child))
        {
            self.notify_parent(child).await;
        }
        Ok(())
    }

    /// A settled child flow completes or fails its parent's work item. Boxed: recording the
    /// parent's result commits another flow transaction, whose after-commit may notify a
    /// grandparent, and a recursive future needs a known type.
    fn notify_parent<'a>(
        &'a self,
        child: &'a FlowState,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let parent_key = |key: &str| {
                child
                    .metadata
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            let (Some(parent_id), Some(step_id), Some(token)) = (
                parent_key("parent_flow_id"),
                parent_key("parent_step_id"),
                parent_key("parent_work_item_token"),
            ) else {
                return;
            };
            let report = match self.flow(&parent_id).await {
                Ok(Some(parent)) => match parent.plan.steps.get(&step_id) {
                    Some(step) => child_report(child, step),
                    None => return,
                },
                _ => return,
            };
            let result = self
                .retrying_store(|| {
                    self.flow_command(&parent_id, |tx| match &report {
                        WorkReport::Succeeded(outputs) => {
                            tx.complete_work(&step_id, &token, outputs.clone())
                        }
                        WorkReport::Failed(error) | WorkReport::Retry(error) => {
                            tx.fail_work(&step_id, &token, error)
                        }
                    })
                })
                .await;
            if result.is_ok() {
                self.unpark(&parent_id, &step_id, &token).await;
            }
            if let Err(error) = result
                && !matches!(
                    error,
                    EngineError::Work(FlowCommandError::InvalidTransition(_))
                )
            {
                tracing::error!(flow_id = %parent_id, %step_id, %error, "child flow result not recorded");
            }
        })
    }

    // ------------------------------------------------------------------ lifecycle

    /// Recovers unfinished flows (re-dispatching work whose executor is gone, starting what is
    /// due) and starts the background loops: retry timers, lapsed leases, health checks.
    pub async fn start(&self) -> Result<(), EngineError> {
        let engine = self.clone();
        // Subscribed before waiters may rely on it, so no terminal event falls in between.
        let feed = self.inner.store.subscribe();
        self.inner.waiters_running.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            engine.waiter_loop(feed).await;
            engine.inner.waiters_running.store(false, Ordering::SeqCst);
        });
        self.recover().await?;
        let engine = self.clone();
        tokio::spawn(async move { engine.timer_loop().await });
        let engine = self.clone();
        tokio::spawn(async move { engine.lease_loop().await });
        let engine = self.clone();
        tokio::spawn(async move { engine.health_loop().await });
        Ok(())
    }

    /// Startup recovery: every unfinished flow, at once.
    async fn recover(&self) -> Result<(), EngineError> {
        let count = self.sweep(Duration::ZERO).await?;
        if count > 0 {
            tracing::info!(flows = count, "recovered unfinished flows");
        }
        Ok(())
    }

    /// Recovers every unfinished flow not updated within `quiet` (0: all); returns how many
    /// were looked at. Catches what a dead instance left behind beyond lapsed leases: work
    /// committed but never leased, retry timers claimed but never run, index entries not
    /// updated.
    async fn sweep(&self, quiet: Duration) -> Result<usize, EngineError> {
        let mut query = FlowQuery {
            phases: vec![FlowPhase::Active],
            limit: 500,
            ..FlowQuery::default()
        };
        let mut count = 0;
        loop {
            let page = self.inner.store.list_flows(&query).await?;
            for entry in &page.entries {
                count += 1;
                match self.recover_quiet_flow(&entry.flow_id, quiet).await {
                    // Gone from the store (reported when it left the index).
                    Ok(()) | Err(EngineError::FlowNotFound(_)) => {}
                    Err(error) => {
                        tracing::error!(flow_id = %entry.flow_id, %error, "flow recovery failed");
                    }
                }
            }
            match page.next_after {
                Some(after) => query.after = Some(after),
                None => return Ok(count),
            }
        }
    }

    /// Re-dispatches a flow's running items whose lease is free (a live instance's work is
    /// left alone), resumes due retries and advances the flow.
    pub async fn recover_flow(&self, flow_id: &str) -> Result<(), EngineError> {
        self.recover_quiet_flow(flow_id, Duration::ZERO).await
    }

    async fn recover_quiet_flow(&self, flow_id: &str, quiet: Duration) -> Result<(), EngineError> {
        let Some(state) = self.flow(flow_id).await? else {
            self.forget_lost_flow(flow_id).await?;
            return Err(EngineError::FlowNotFound(flow_id.to_owned()));
        };
        if is_settled(&state) {
            self.update_index(&state).await;
            return Ok(());
        }
        let quiet_millis = i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX);
        if now().millis_since(state.last_updated) < quiet_millis {
            return Ok(());
        }
        let config = &self.inner.config;
        let mut orphaned = Vec::new();
        for (step_id, execution) in &state.executions {
            for (token, item) in &execution.work_items {
                if matches!(item.status, WorkStatus::Active | WorkStatus::NotCompleted) {
                    let lease = work_key("work", flow_id, step_id, token);
                    if self.inner.running.contains(&lease) {
                        // Work in progress here keeps its lease (decision 24).
                        continue;
                    }
                    let store = &self.inner.store;
                    if store
                        .acquire(&lease, &config.instance_id, config.lease_ttl, now())
                        .await?
                        || self.child_lost(&state, step_id, token, &lease).await?
                    {
                        orphaned.push((step_id.clone(), token.clone()));
                    }
                }
            }
        }
        self.take_over(flow_id, &orphaned, true).await
    }

    /// Whether the item of a flow step waits (under a parked lease) for a child flow the store
    /// no longer has — lost with writes the store dropped. Then the parked lease is taken, so
    /// the item is dispatched again (starting a child is idempotent).
    async fn child_lost(
        &self,
        parent: &FlowState,
        step_id: &str,
        token: &str,
        lease: &str,
    ) -> Result<bool, EngineError> {
        let is_flow_step = parent
            .plan
            .steps
            .get(step_id)
            .is_some_and(|step| step.step_type == StepType::Flow);
        if !is_flow_step {
            return Ok(false);
        }
        let child_id = argyll_model::child_flow_id(
            &parent.id,
            step_id,
            token,
            self.inner.config.max_id_length,
        );
        if self.flow(&child_id).await?.is_some() {
            return Ok(false);
        }
        let store = &self.inner.store;
        let config = &self.inner.config;
        if !store.release(lease, AWAITING_RESULT).await? {
            return Ok(false);
        }
        tracing::error!(flow_id = %parent.id, %step_id, %token, child_flow_id = %child_id, "child flow lost from the store; starting it again");
        Ok(store
            .acquire(lease, &config.instance_id, config.lease_ttl, now())
            .await?)
    }

    /// A flow the index lists as active but whose events are gone (lost with writes the store
    /// dropped): nothing is left to run it from, so it leaves the index, loudly.
    async fn forget_lost_flow(&self, flow_id: &str) -> Result<(), EngineError> {
        let store = &self.inner.store;
        if let Some(entry) = store.get_flow(flow_id).await?
            && entry.phase == FlowPhase::Active
            && store
                .load(&AggregateId::Flow(flow_id.to_owned()))
                .await?
                .next_sequence
                == 0
        {
            store.remove_flow(flow_id).await?;
            tracing::error!(%flow_id, created_at = %entry.created_at, "flow lost from the store: the index listed it as active but its events are gone; removed from the index");
        }
        Ok(())
    }

    /// Re-dispatches items whose leases this instance just took; releases the leases of
    /// those that turned out to be finished. With `resume`, also starts due retries and
    /// advances the flow.
    async fn take_over(
        &self,
        flow_id: &str,
        items: &[(String, String)],
        resume: bool,
    ) -> Result<(), EngineError> {
        let mut redispatched = Vec::new();
        let result = self
            .flow_command(flow_id, |tx| {
                redispatched.clear();
                for (step_id, token) in items {
                    if tx.redispatch(step_id, token)? {
                        redispatched.push((step_id.clone(), token.clone()));
                    }
                }
                if resume {
                    let steps: Vec<String> = tx.state.executions.keys().cloned().collect();
                    for step_id in steps {
                        tx.resume_step(&step_id)?;
                    }
                    tx.advance()?;
                }
                Ok(())
            })
            .await;
        for (step_id, token) in items {
            if result.is_err() || !redispatched.contains(&(step_id.clone(), token.clone())) {
                let lease = work_key("work", flow_id, step_id, token);
                let _ = self
                    .inner
                    .store
                    .release(&lease, &self.inner.config.instance_id)
                    .await;
            }
        }
        result
    }

    /// Stops the loops, lets running work finish (up to `grace`) and releases its leases.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let _ = self.inner.shutdown.send(true);
        let wait_idle = async {
            while self.inner.in_flight.load(Ordering::SeqCst) > 0 {
                let notified = self.inner.idle.notified();
                if self.inner.in_flight.load(Ordering::SeqCst) == 0 {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
            }
        };
        let _ = tokio::time::timeout(grace, wait_idle).await;
    }

    async fn timer_loop(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            let sleep_for = match self.inner.store.next_due().await {
                Ok(Some(due)) => {
                    let millis = due.millis_since(now()).clamp(0, 250);
                    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
                }
                _ => Duration::from_millis(250),
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                () = self.inner.timers_changed.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
            }
            let due = match self.inner.store.take_due(now(), 256).await {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(%error, "retry timers unavailable");
                    continue;
                }
            };
            for timer in due {
                let Some((flow_id, step_id, _token)) = parse_work_key(&timer.payload) else {
                    continue;
                };
                let engine = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = engine
                        .flow_command(&flow_id, |tx| tx.resume_step(&step_id))
                        .await
                    {
                        tracing::error!(%flow_id, %step_id, %error, "retry not started");
                    }
                });
            }
        }
    }

    /// Decision 22: work whose lease lapsed (its instance died) is taken over; a periodic
    /// sweep catches what has no lease at all.
    async fn lease_loop(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        let ttl = self.inner.config.lease_ttl;
        let period = (ttl / 2).max(Duration::from_millis(100));
        let sweep_every = (ttl * 2).max(Duration::from_secs(1));
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(period) => {}
            }
            if let Ok(lapsed) = self.inner.store.lapsed("work/", now(), 64).await {
                for lease in lapsed {
                    self.take_over_lapsed(&lease).await;
                }
            }
            if last_sweep.elapsed() >= sweep_every {
                last_sweep = tokio::time::Instant::now();
                if let Err(error) = self.sweep(ttl).await {
                    tracing::warn!(%error, "sweep of unfinished flows failed");
                }
            }
        }
    }

    async fn take_over_lapsed(&self, lease: &argyll_store::Lease) {
        let Some((flow_id, step_id, token)) = parse_work_key(&lease.key) else {
            return;
        };
        let config = &self.inner.config;
        let store = &self.inner.store;
        if self.inner.running.contains(&lease.key) {
            // Still running here; its renewal came late (a busy process). Renew, never re-run.
            let _ = store
                .acquire(&lease.key, &config.instance_id, config.lease_ttl, now())
                .await;
            return;
        }
        if !matches!(
            store
                .acquire(&lease.key, &config.instance_id, config.lease_ttl, now())
                .await,
            Ok(true)
        ) {
            return;
        }
        tracing::warn!(%flow_id, %step_id, %token, previous_owner = %lease.owner, "taking over work of a lapsed lease");
        if let Err(error) = self.take_over(&flow_id, &[(step_id, token)], false).await {
            tracing::error!(%flow_id, %error, "lapsed work not taken over");
        }
    }

    async fn health_loop(&self) {
        let mut shutdown = self.inner.shutdown.subscribe();
        loop {
            if let Ok(catalog) = self.catalog().await {
                let steps: Vec<Step> = catalog.state.steps.values().cloned().collect();
                for step in steps {
                    self.check_health(&step).await;
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(self.inner.config.health_check_interval) => {}
            }
        }
    }

    fn check_health_soon(&self, step: &Step) {
        if step
            .http
            .as_ref()
            .is_some_and(|h| !h.health_check.is_empty())
        {
            let engine = self.clone();
            let step = step.clone();
            tokio::spawn(async move { engine.check_health(&step).await });
        }
    }

    /// Checks a step's health unless a check of it is running (then that one serves), keeping
    /// checks [`crate::health::MIN_GAP`] apart; after a failure schedules a sooner re-check.
    async fn check_health(&self, step: &Step) {
        let Some(url) = step
            .http
            .as_ref()
            .map(|h| h.health_check.clone())
            .filter(|u| !u.is_empty())
        else {
            return;
        };
        let Some(wait) = self.inner.probes.begin(&step.id) else {
            return;
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let healthy = self.record_health(step, &url).await;
        let interval = self.inner.config.health_check_interval;
        if let Some(delay) = self.inner.probes.finish(&step.id, healthy, interval) {
            self.schedule_recheck(step.id.clone(), delay);
        }
    }

    /// Checks `step_id` again after `delay` (if it is still registered and the engine runs).
    fn schedule_recheck(&self, step_id: String, delay: Duration) {
        let engine = self.clone();
        let mut shutdown = self.inner.shutdown.subscribe();
        // Boxed: the re-check runs `check_health`, which schedules re-checks.
        let recheck: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                engine.inner.probes.recheck_due(&step_id);
                let step = engine.cached_catalog().state.steps.get(&step_id).cloned();
                if let Some(step) = step {
                    engine.check_health(&step).await;
                }
            });
        tokio::spawn(recheck);
    }

    /// Polls a step's `health_check` URL and records a change (only a change); whether the
    /// step is healthy.
    async fn record_health(&self, step: &Step, url: &str) -> bool {
        let (status, error) = match self.inner.http.check_health(url).await {
            CheckedHealth::Healthy => (HealthStatus::Healthy, String::new()),
            CheckedHealth::Unhealthy(reason) => (HealthStatus::Unhealthy, reason),
        };
        let step_id = step.id.clone();
        let result = self
            .catalog_command(|state| {
                let unchanged = state
                    .health
                    .get(&step_id)
                    .is_some_and(|h| h.status == status && h.error == error);
                if unchanged || !state.steps.contains_key(&step_id) {
                    return Ok((Vec::new(), ()));
                }
                Ok((
                    vec![EngineEvent::from(StepHealthChanged {
                        step_id: step_id.clone(),
                        status,
                        error: error.clone(),
                    })],
                    (),
                ))
            })
            .await;
        if let Err(error) = result {
            tracing::warn!(%step_id, %error, "health not recorded");
        }
        // The dispatch gate reads the cached catalog: bring it up to date.
        let _ = self.catalog().await;
        status == HealthStatus::Healthy
    }
}

enum StartError {
    Engine(EngineError),
    Tx(TxError),
}

fn tx_error(flow_id: &str, error: TxError) -> EngineError {
    match error {
        TxError::Refused(FlowCommandError::FlowNotFound) => {
            EngineError::FlowNotFound(flow_id.to_owned())
        }
        TxError::Refused(refused) => EngineError::Work(refused),
        TxError::Apply(apply) => EngineError::Aggregate(AggregateError::InvalidEvent {
            aggregate: AggregateId::Flow(flow_id.to_owned()),
            reason: apply.to_string(),
        }),
    }
}

/// Elements above which an init value counts as large (see [`offload_if`]).
const LARGE_VALUE: usize = 512;

fn is_large_value(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.len() > LARGE_VALUE,
        Value::Object(fields) => fields.len() > LARGE_VALUE,
        _ => false,
    }
}

/// Runs CPU-heavy `work` under `block_in_place` when `heavy` (and the runtime has other
/// workers to take this one's tasks), so that a fan-out of 100,000 items does not hold up the
/// requests queued behind it; otherwise inline.
fn offload_if<T>(heavy: bool, work: impl FnOnce() -> T) -> T {
    // The runtime is asked only when the work is heavy: this is on a hot path.
    let multi_threaded = || {
        tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        })
    };
    if heavy && multi_threaded() {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

/// Decision 10: the same goals and init (key order irrelevant) is the same start.
fn same_start(existing: &FlowState, request: &StartFlow) -> Result<(), EngineError> {
    let init: BTreeMap<&String, &Value> = existing
        .attributes
        .iter()
        .filter(|(_, attribute)| attribute.step.is_none())
        .map(|(name, attribute)| (name, &attribute.value))
        .collect();
    let requested: BTreeMap<&String, &Value> = request.init.iter().collect();
    if existing.plan.goals == request.goals && init == requested {
        Ok(())
    } else {
        Err(EngineError::FlowExists(request.flow_id.clone()))
    }
}

/// The flow digest the original listed (`GET /engine/flow`), from an index entry.
pub fn flow_digest(entry: &FlowIndexEntry) -> FlowDigest {
    FlowDigest {
        status: match entry.outcome {
            FlowOutcome::Active => FlowStatus::Active,
            FlowOutcome::Completed => FlowStatus::Completed,
            FlowOutcome::Failed => FlowStatus::Failed,
        },
        created_at: entry.created_at,
        completed_at: entry.completed_at.unwrap_or_default(),
        error: entry.error.clone().unwrap_or_default(),
    }
}

/// The parent work item's result from a settled child (`engine.md` §5.12).
fn child_report(child: &FlowState, parent_step: &Step) -> WorkReport {
    if child.status != FlowStatus::Completed {
        let error = if child.error.is_empty() {
            "child flow failed".to_owned()
        } else {
            child.error.clone()
        };
        return WorkReport::Failed(error);
    }
    let declared: Vec<&String> = parent_step.outputs().collect();
    let mut outputs = Args::new();
    if let Some(config) = &parent_step.flow {
        for (child_name, parent_name) in &config.output_map {
            if !declared.contains(&parent_name) {
                continue;
            }
            match child.attribute(child_name) {
                Some(value) => {
                    outputs.insert(parent_name.clone(), value.clone());
                }
                None => return WorkReport::Failed(format!("flow output missing: {child_name}")),
            }
        }
    }
    for name in declared {
        if !outputs.contains_key(name)
            && let Some(value) = child.attribute(name)
        {
            outputs.insert(name.clone(), value.clone());
        }
    }
    WorkReport::Succeeded(outputs)
}
