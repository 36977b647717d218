//! [`EngineConfig`]: the engine's settings and their defaults (the server fills them from
//! `argyll-config`).

use std::time::Duration;

use argyll_retry::RetryPolicy;
use argyll_script::ScriptLimits;

/// Engine settings. The defaults are the documented ones (`argyll-config`'s sections, checked
/// by `tests/defaults.rs`), so an embedded engine behaves as the server does.
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
    /// that starts it (no lease, no second commit; see `FlowTx::run_quick_work`), and within
    /// which predicates are decided there. A script that needs longer is dispatched as work
    /// and run on the blocking pool under [`EngineConfig::script_limits`]; a predicate that
    /// needs longer is evaluated on the blocking pool under its full limits and its verdict
    /// recorded by a command of its own (the step waits, pending). `None` sends every script
    /// item and every predicate to the blocking pool.
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
    /// How long finished flows are kept (`FLOW_RETENTION`; `None`: forever). Older ones are
    /// deleted from the store by a background loop (module `retention`).
    pub flow_retention: Option<Duration>,
}

/// The default [`EngineConfig::quick_script_budget`]: tens of microseconds of typical
/// scripts, never more than a millisecond of a worker thread.
pub const QUICK_SCRIPT_BUDGET: ScriptLimits = ScriptLimits {
    memory_bytes: usize::MAX,
    steps: 20_000,
    timeout: Duration::from_millis(1),
};

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
            lease_ttl: Duration::from_secs(5),
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
            flow_retention: None,
        }
    }
}
