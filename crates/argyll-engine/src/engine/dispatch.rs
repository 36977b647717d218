//! Running work: leasing the items a transaction started (one store call per commit,
//! decision 22), running each in a tracked task while its lease is renewed, the health gate of
//! HTTP steps (decision 15), and parking the lease of async and flow-step items until their
//! result arrives.

use std::sync::Arc;
use std::time::Duration;

use argyll_model::{Args, FlowState, HealthStatus, StepType, WorkStatus};
use argyll_store::Store;

use super::work_key::WorkKey;
use super::{Engine, EngineError};
use crate::runner::{LOCAL_SCHEME, WorkOutcome, WorkRequest};

/// Owner of the lease of a work item that was handed to an async step or a child flow and
/// waits for its result.
pub(super) const AWAITING_RESULT: &str = "awaiting-result";
/// How long such a parked lease lasts (its result ends it).
const PARKED_LEASE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long work for an unhealthy step waits for the next health check: the gap between two
/// checks, the check's own timeout, and a margin.
const HEALTH_RECHECK_PATIENCE: Duration = Duration::from_secs(6);

impl<S: Store> Engine<S> {
    /// Leases the work a transaction started, all in one store call (which also gives up the
    /// `releasing` leases), and runs it.
    pub(super) async fn dispatch(
        &self,
        state: &FlowState,
        runs: Vec<(String, String, Args)>,
        releasing: &[String],
    ) {
        let config = &self.inner.config;
        if runs.is_empty() || self.is_stopping() {
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
            .map(|(step_id, token, _)| WorkKey::new(&state.id, step_id, token).lease())
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
                        self.now(),
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

    /// Runs a work item in a task of its own; `leased` when its lease is already this
    /// instance's.
    pub(super) fn spawn_work(
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
        if self.is_stopping() {
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
        let key = WorkKey::new(&work.flow_id, &work.step.id, &work.token);
        let lease = key.lease();
        let owner = config.instance_id.as_str();
        // Decision 24: an item already running here (a re-dispatch that found its own live
        // work) is not started twice; the running call records the result.
        let Some(_running) = self.inner.running.claim(key) else {
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
                        if let Ok(false) = store.renew(&lease, owner, config.lease_ttl, self.now()).await {
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
            .acquire(&lease, AWAITING_RESULT, PARKED_LEASE, self.now())
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
            self.unpark(&WorkKey::new(&flow_id, &step.id, &token)).await;
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
                Ok(store
                    .acquire(lease, owner, config.lease_ttl, self.now())
                    .await?)
            })
            .await;
        // A new attempt of an item whose previous attempt is parked waiting for a webhook
        // (which asked for a retry) takes the parked lease over.
        let acquired = match acquired {
            Ok(false) if store.release(lease, AWAITING_RESULT).await.unwrap_or(false) => store
                .acquire(lease, owner, config.lease_ttl, self.now())
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

    /// Releases the parked lease of an item whose result arrived from outside.
    pub(super) async fn unpark(&self, work: &WorkKey) {
        let lease = work.lease();
        let _ = self.inner.store.release(&lease, AWAITING_RESULT).await;
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
                        .health
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
    pub(super) fn unhealthy_reason(&self, step_id: &str) -> Option<String> {
        let catalog = self.cached_catalog();
        let health = catalog.state.health.get(step_id)?;
        (health.status == HealthStatus::Unhealthy).then(|| health.error.clone())
    }
}
