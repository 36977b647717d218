//! Recovery: what a dead or restarted instance left behind is found and finished. At start-up
//! every unfinished flow is recovered; while running, work whose lease lapsed is taken over
//! (decision 22) and a periodic sweep catches what has no lease at all (work committed but
//! never leased, timers claimed but never run, index entries not updated). Work running in
//! this process keeps its lease and is never dispatched twice (decision 24).

use std::time::Duration;

use argyll_events::AggregateId;
use argyll_model::{FlowState, StepType, WorkStatus};
use argyll_store::{FlowPhase, FlowQuery, Lease, Store};

use super::dispatch::AWAITING_RESULT;
use super::work_key::{WORK_LEASE_PREFIX, WorkKey};
use super::{Engine, EngineError};
use crate::flow::is_settled;

/// Flows read per page of a sweep.
const SWEEP_PAGE: usize = 500;
/// Lapsed leases taken over per round of the lease loop.
const LAPSED_PER_ROUND: usize = 64;

/// What a takeover does besides re-dispatching the items it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterTakeOver {
    /// Nothing: the flow is otherwise in the hands of a live instance.
    Nothing,
    /// Start due retries and advance the flow (recovery of a flow nobody runs).
    ResumeFlow,
}

impl<S: Store> Engine<S> {
    /// Startup recovery: every unfinished flow, at once.
    pub(super) async fn recover(&self) -> Result<(), EngineError> {
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
            limit: SWEEP_PAGE,
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
        if self.now().millis_since(state.last_updated) < quiet_millis {
            return Ok(());
        }
        let config = &self.inner.config;
        let mut orphaned = Vec::new();
        for (step_id, execution) in &state.executions {
            for (token, item) in &execution.work_items {
                if matches!(item.status, WorkStatus::Active | WorkStatus::NotCompleted) {
                    let key = WorkKey::new(flow_id, step_id, token);
                    if self.inner.running.contains(&key) {
                        // Work in progress here keeps its lease (decision 24).
                        continue;
                    }
                    let store = &self.inner.store;
                    if store
                        .acquire(
                            &key.lease(),
                            &config.instance_id,
                            config.lease_ttl,
                            self.now(),
                        )
                        .await?
                        || self.child_lost(&state, &key).await?
                    {
                        orphaned.push(key);
                    }
                }
            }
        }
        self.take_over(flow_id, &orphaned, AfterTakeOver::ResumeFlow)
            .await
    }

    /// Whether the item of a flow step waits (under a parked lease) for a child flow the store
    /// no longer has — lost with writes the store dropped. Then the parked lease is taken, so
    /// the item is dispatched again (starting a child is idempotent).
    async fn child_lost(&self, parent: &FlowState, item: &WorkKey) -> Result<bool, EngineError> {
        let (step_id, token) = (&item.step_id, &item.token);
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
        let lease = item.lease();
        if !store.release(&lease, AWAITING_RESULT).await? {
            return Ok(false);
        }
        tracing::error!(flow_id = %parent.id, %step_id, %token, child_flow_id = %child_id, "child flow lost from the store; starting it again");
        Ok(store
            .acquire(&lease, &config.instance_id, config.lease_ttl, self.now())
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
    /// those that turned out to be finished.
    async fn take_over(
        &self,
        flow_id: &str,
        items: &[WorkKey],
        after: AfterTakeOver,
    ) -> Result<(), EngineError> {
        let mut redispatched = Vec::new();
        let result = self
            .flow_command(flow_id, |tx| {
                redispatched.clear();
                for item in items {
                    if tx.redispatch(&item.step_id, &item.token)? {
                        redispatched.push(item);
                    }
                }
                if after == AfterTakeOver::ResumeFlow {
                    let steps: Vec<String> = tx.state.executions.keys().cloned().collect();
                    for step_id in steps {
                        tx.resume_step(&step_id)?;
                    }
                    tx.advance()?;
                }
                Ok(())
            })
            .await;
        for item in items {
            if result.is_err() || !redispatched.contains(&item) {
                let _ = self
                    .inner
                    .store
                    .release(&item.lease(), &self.inner.config.instance_id)
                    .await;
            }
        }
        result
    }

    /// Decision 22: work whose lease lapsed (its instance died) is taken over; a periodic
    /// sweep catches what has no lease at all. Runs until shutdown.
    pub(super) async fn lease_loop(&self) {
        let ttl = self.inner.config.lease_ttl;
        let period = (ttl / 2).max(Duration::from_millis(100));
        let sweep_every = (ttl * 2).max(Duration::from_secs(1));
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(period).await;
            let lapsed = self
                .inner
                .store
                .lapsed(WORK_LEASE_PREFIX, self.now(), LAPSED_PER_ROUND)
                .await;
            if let Ok(lapsed) = lapsed {
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

    async fn take_over_lapsed(&self, lease: &Lease) {
        let Ok(item) = lease.key.parse::<WorkKey>() else {
            return;
        };
        let config = &self.inner.config;
        let store = &self.inner.store;
        if self.inner.running.contains(&item) {
            // Still running here; its renewal came late (a busy process). Renew, never re-run.
            let _ = store
                .acquire(
                    &lease.key,
                    &config.instance_id,
                    config.lease_ttl,
                    self.now(),
                )
                .await;
            return;
        }
        if !matches!(
            store
                .acquire(
                    &lease.key,
                    &config.instance_id,
                    config.lease_ttl,
                    self.now()
                )
                .await,
            Ok(true)
        ) {
            return;
        }
        let (flow_id, step_id, token) = (&item.flow_id, &item.step_id, &item.token);
        tracing::warn!(%flow_id, %step_id, %token, previous_owner = %lease.owner, "taking over work of a lapsed lease");
        let taken = std::slice::from_ref(&item);
        if let Err(error) = self.take_over(flow_id, taken, AfterTakeOver::Nothing).await {
            tracing::error!(%flow_id, %error, "lapsed work not taken over");
        }
    }
}
