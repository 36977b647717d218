//! The catalog as the engine sees it: a cache of the catalog aggregate (refreshed from the
//! store on every read, decision 21), the step commands (register, update, unregister) with
//! their validation and script compile checks, and plans shared between flow starts.

use std::sync::Arc;

use argyll_events::{AggregateId, EngineEvent};
use argyll_model::{Args, EngineState, ExecutionPlan, Step};
use argyll_store::Store;
use parking_lot::RwLock;

use super::{Engine, EngineError};
use crate::aggregate::{Current, apply_newer, execute, load};
use crate::catalog::{self, CatalogError, Registration};
use crate::runner::script_arg_names;

/// Plans kept for reuse by later starts.
const PLAN_CACHE_SIZE: u64 = 1024;

/// The catalog as this instance last read it, and the plans made from it.
pub(super) struct CatalogCache {
    current: RwLock<Arc<Current<EngineState>>>,
    plans: moka::sync::Cache<PlanKey, Arc<ExecutionPlan>>,
}

impl Default for CatalogCache {
    fn default() -> Self {
        CatalogCache {
            current: RwLock::new(Arc::new(Current {
                state: EngineState::default(),
                next_sequence: 0,
            })),
            plans: moka::sync::Cache::new(PLAN_CACHE_SIZE),
        }
    }
}

/// What a plan depends on: the catalog (by its sequence), the goals and the init names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PlanKey {
    catalog_sequence: u64,
    goals: Vec<String>,
    init_names: Vec<String>,
}

impl<S: Store> Engine<S> {
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
        let mut slot = self.inner.catalog.current.write();
        if slot.next_sequence < current.next_sequence {
            *slot = current.clone();
        }
        Ok(current)
    }

    /// The catalog as this instance last read it (no store access).
    pub(super) fn cached_catalog(&self) -> Arc<Current<EngineState>> {
        self.inner.catalog.current.read().clone()
    }

    /// The bounds step definitions are checked against.
    pub(super) fn step_limits(&self) -> argyll_model::StepLimits {
        let config = &self.inner.config;
        argyll_model::StepLimits {
            max_id_length: config.max_id_length,
            max_parallelism: i64::try_from(config.max_work_items).unwrap_or(i64::MAX),
            ..argyll_model::StepLimits::default()
        }
    }

    pub(super) fn compile_scripts(&self, step: &Step) -> Result<(), EngineError> {
        let names = script_arg_names(step);
        for (what, config) in [("script", &step.script), ("predicate", &step.predicate)] {
            if let Some(config) = config {
                self.inner
                    .services
                    .scripts
                    .validate(config.language.as_str(), &config.script, &names)
                    .map_err(|e| {
                        EngineError::Script(format!("{what} does not compile: {}", e.message))
                    })?;
            }
        }
        Ok(())
    }

    pub(super) async fn catalog_command(
        &self,
        command: impl FnMut(&EngineState) -> Result<(Vec<EngineEvent>, ()), CatalogError> + Send,
    ) -> Result<(), EngineError> {
        let attempts = self.inner.config.command_attempts;
        execute(
            &self.inner.store,
            &*self.inner.clock,
            &AggregateId::Engine,
            attempts,
            command,
        )
        .await??;
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
        self.inner.health.probes.forget(step_id);
        Ok(())
    }

    /// The plan for a flow start, shared by every flow started with the same goals and init
    /// attribute names on the same catalog: planning depends on nothing else, and flows that
    /// share their plan share its memory.
    pub(super) async fn shared_plan(
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
        if let Some(plan) = self.inner.catalog.plans.get(&key) {
            return Ok(plan);
        }
        let plan = Arc::new(argyll_plan::plan(
            &catalog.state.steps,
            &catalog.state.attributes,
            goals,
            init,
        )?);
        self.inner.catalog.plans.insert(key, plan.clone());
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
}
