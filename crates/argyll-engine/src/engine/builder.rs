//! [`EngineBuilder`] and the engine's accessors.

use std::sync::Arc;

use argyll_http::HttpRunner;
use argyll_script::ScriptRunner;
use argyll_store::{Clock, Store, system_clock};

use super::catalog::CatalogCache;
use super::health::HealthChecks;
use super::lifecycle::Lifecycle;
use super::predicates::SlowPredicates;
use super::results::ResultQueues;
use super::running::RunningWork;
use super::services::ServiceParts;
use super::timers::TimerWakeup;
use super::waiters::Waiters;
use super::{Engine, EngineConfig, EngineError, Inner};
use crate::aggregate::ProjectionCache;
use crate::runner::{HttpStepRunner, LocalHandlers, RunnerSet, ScriptStepRunner, StepRunner};

/// Builds an [`Engine`] from a store, runners and settings.
pub struct EngineBuilder<S> {
    store: S,
    config: EngineConfig,
    runner: Option<Arc<dyn StepRunner>>,
    scripts: Option<Arc<ScriptRunner>>,
    local: LocalHandlers,
    clock: Arc<dyn Clock>,
}

impl<S> std::fmt::Debug for EngineBuilder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("config", &self.config)
            .field("custom_runner", &self.runner.is_some())
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
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

    /// The clock (the system's by default; a [`argyll_store::ManualClock`] in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
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
            })
        });
        let flows = (self.config.flow_cache_size > 0).then(|| {
            ProjectionCache::with_byte_budget(
                self.config.flow_cache_size,
                self.config.flow_cache_bytes,
                crate::aggregate::flow_state_bytes,
            )
            .admitting_from(self.config.flow_cache_min_events)
        });
        let services = ServiceParts::new(scripts, self.config.memo_cache_size);
        Ok(Engine {
            inner: Arc::new(Inner {
                store: self.store,
                config: self.config,
                clock: self.clock,
                runner,
                local: self.local,
                flows,
                services,
                slow_predicates: SlowPredicates::default(),
                catalog: CatalogCache::default(),
                waiters: Waiters::default(),
                results: ResultQueues::default(),
                running: RunningWork::default(),
                health: HealthChecks::new(http),
                timers: TimerWakeup::default(),
                lifecycle: Lifecycle::default(),
            }),
        })
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
            clock: system_clock(),
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
}
