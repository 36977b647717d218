//! Step health checks (decision 15): every HTTP step with a `health_check` URL is checked
//! periodically, soon after it is registered or updated, and sooner again after a failure
//! (`probes`); a change is recorded on the catalog, whose cached copy gates dispatch.

use argyll_events::{EngineEvent, StepHealthChanged};
use argyll_http::{HealthStatus as CheckedHealth, HttpRunner};
use argyll_model::{HealthStatus, Step};
use argyll_store::Store;
use std::future::Future;
use std::time::Duration;

use super::Engine;
use super::probes::HealthProbes;

/// The client that makes the checks, and when each step is checked next.
pub(super) struct HealthChecks {
    http: HttpRunner,
    pub(super) probes: HealthProbes,
}

impl HealthChecks {
    pub(super) fn new(http: HttpRunner) -> Self {
        HealthChecks {
            http,
            probes: HealthProbes::default(),
        }
    }
}

impl<S: Store> Engine<S> {
    /// Checks every step's health each `health_check_interval`, until shutdown.
    pub(super) async fn health_loop(&self) {
        loop {
            if let Ok(catalog) = self.catalog().await {
                let steps: Vec<Step> = catalog.state.steps.values().cloned().collect();
                for step in steps {
                    self.check_health(&step).await;
                }
            }
            tokio::time::sleep(self.inner.config.health_check_interval).await;
        }
    }

    /// Checks a step's health in the background (after a registration or update).
    pub(super) fn check_health_soon(&self, step: &Step) {
        if step
            .http
            .as_ref()
            .is_some_and(|h| !h.health_check.is_empty())
        {
            let step = step.clone();
            self.spawn_background(|engine| async move { engine.check_health(&step).await });
        }
    }

    /// Checks a step's health unless a check of it is running (then that one serves), keeping
    /// checks [`super::probes::MIN_GAP`] apart; after a failure schedules a sooner re-check.
    async fn check_health(&self, step: &Step) {
        let Some(url) = step
            .http
            .as_ref()
            .map(|h| h.health_check.clone())
            .filter(|u| !u.is_empty())
        else {
            return;
        };
        let Some(wait) = self.inner.health.probes.begin(&step.id) else {
            return;
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let healthy = self.record_health(step, &url).await;
        let interval = self.inner.config.health_check_interval;
        if let Some(delay) = self.inner.health.probes.finish(&step.id, healthy, interval) {
            self.schedule_recheck(step.id.clone(), delay);
        }
    }

    /// Checks `step_id` again after `delay` (if it is still registered and the engine runs).
    fn schedule_recheck(&self, step_id: String, delay: Duration) {
        // Boxed: the re-check runs `check_health`, which schedules re-checks.
        self.spawn_background(
            |engine| -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    engine.inner.health.probes.recheck_due(&step_id);
                    let step = engine.cached_catalog().state.steps.get(&step_id).cloned();
                    if let Some(step) = step {
                        engine.check_health(&step).await;
                    }
                })
            },
        );
    }

    /// Polls a step's `health_check` URL and records a change (only a change); whether the
    /// step is healthy.
    async fn record_health(&self, step: &Step, url: &str) -> bool {
        let (status, error) = match self.inner.health.http.check_health(url).await {
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
