//! Recording work results. Results of one flow that arrive together are recorded in one
//! command (and their leases released in one call) instead of a command each that conflicts
//! with its siblings; results reported from outside (the webhook) are answered as soon as they
//! are recorded.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argyll_model::{Args, Step};
use argyll_store::Store;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::work_key::WorkKey;
use super::{Engine, EngineError};
use crate::flow::TxError;
use crate::runner::WorkOutcome;

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

/// Work results waiting to be recorded, by flow id. A flow has an entry while one of its
/// results is being recorded; results arriving meanwhile queue up and go into the next
/// command together.
#[derive(Default)]
pub(super) struct ResultQueues {
    by_flow: Mutex<HashMap<String, Vec<PendingResult>>>,
}

/// A work result waiting to be recorded; `recorded` fires once it has been (or could not be).
struct PendingResult {
    step: Arc<Step>,
    token: String,
    outcome: WorkOutcome,
    recorded: oneshot::Sender<()>,
}

/// Removes a flow's result queue if its recorder stops early (then the queued results' senders
/// drop and their runners stop waiting; their items keep their leases, which lapse and are
/// taken over).
struct QueueGuard<'a> {
    queues: &'a ResultQueues,
    flow_id: &'a str,
    armed: bool,
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.queues.by_flow.lock().remove(self.flow_id);
        }
    }
}

impl<S: Store> Engine<S> {
    /// Records a work result reported from outside (the webhook). Refused when the flow,
    /// step or token is unknown, the step is not async, or the item is not running. is unknown, the step is not async, or the item is not running.
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
        let item = WorkKey::new(flow_id, step_id, token);
        self.spawn_tracked(|engine| async move {
            if let Some(committed) = committed {
                engine.carry_out(committed, &[]).await;
            }
            engine.unpark(&item).await;
        });
        Ok(())
    }

    /// Records a work result, together with the results of the same flow that arrive while
    /// another of its results is being recorded: one command and one lease release for all of
    /// them instead of a command per result that conflicts with its siblings.
    pub(super) async fn record_result(
        &self,
        flow_id: &str,
        step: Arc<Step>,
        token: String,
        outcome: WorkOutcome,
    ) {
        let (recorded, finished) = oneshot::channel();
        let pending = PendingResult {
            step,
            token,
            outcome,
            recorded,
        };
        let leads = {
            let mut queues = self.inner.results.by_flow.lock();
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
                    let mut queues = self.inner.results.by_flow.lock();
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
            .map(|result| WorkKey::new(flow_id, &result.step.id, &result.token).lease())
            .collect();
        let refused = Mutex::new(Vec::new());
        let attempts = AtomicUsize::new(0);
        // While the store is away the results are kept and retried (and the leases renewed),
        // so an outage does not make the handlers run twice.
        let recorded = self
            .retrying_store(|| async {
                if attempts.fetch_add(1, Ordering::Relaxed) > 0 {
                    for lease in &leases {
                        let _ = store
                            .renew(lease, owner, config.lease_ttl, self.now())
                            .await;
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
                    *refused.lock() = refusals;
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
                std::mem::take(&mut *refused.lock())
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
}
