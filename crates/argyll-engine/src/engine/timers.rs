//! Durable retry timers: a retry is a timer in the store (it survives restarts and fires on
//! whichever instance claims it), and the loop that resumes a step when its timer is due.

use std::time::Duration;

use argyll_model::Timestamp;
use argyll_store::{Store, Timer};
use tokio::sync::Notify;

use super::Engine;
use super::work_key::{RetryTimer, WorkKey};

/// Longest the timer loop sleeps before asking the store again (another instance may have
/// scheduled an earlier timer).
const TIMER_POLL: Duration = Duration::from_millis(250);

/// Timers claimed per round.
const TIMERS_PER_ROUND: usize = 256;

/// Wakes the timer loop when this instance schedules a timer (it may be due before the loop
/// would look again).
#[derive(Default)]
pub(super) struct TimerWakeup {
    scheduled: Notify,
}

impl<S: Store> Engine<S> {
    /// Stores the retry timer of a work item.
    pub(super) async fn schedule_retry(&self, work: &WorkKey, due: Timestamp) {
        let timer = work.retry_timer().to_string();
        let timer = Timer {
            key: timer.clone(),
            due,
            payload: timer.into(),
        };
        let scheduled = self
            .retrying_store(|| async { Ok(self.inner.store.schedule(timer.clone()).await?) })
            .await;
        if let Err(error) = scheduled {
            tracing::error!(flow_id = %work.flow_id, step_id = %work.step_id, %error, "retry timer not stored");
        }
        self.inner.timers.scheduled.notify_one();
    }

    /// Removes the retry timer of a work item (its result came first).
    pub(super) async fn cancel_retry(&self, work: &WorkKey) {
        let timer = work.retry_timer().to_string();
        if let Err(error) = self.inner.store.cancel(&timer).await {
            tracing::warn!(flow_id = %work.flow_id, %error, "retry timer not cancelled");
        }
    }

    /// Claims due timers and resumes their steps, until shutdown.
    pub(super) async fn timer_loop(&self) {
        loop {
            let sleep_for = match self.inner.store.next_due().await {
                Ok(Some(due)) => {
                    let millis = u64::try_from(due.millis_since(self.now())).unwrap_or(0);
                    Duration::from_millis(millis).min(TIMER_POLL)
                }
                _ => TIMER_POLL,
            };
            tokio::select! {
                () = self.inner.timers.scheduled.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
            }
            let due = match self
                .inner
                .store
                .take_due(self.now(), TIMERS_PER_ROUND)
                .await
            {
                Ok(due) => due,
                Err(error) => {
                    tracing::error!(%error, "retry timers unavailable");
                    continue;
                }
            };
            for timer in due {
                let Ok(RetryTimer(work)) = timer.payload.parse::<RetryTimer>() else {
                    tracing::warn!(key = %timer.key, "a timer that is not a retry timer was dropped");
                    continue;
                };
                self.spawn_tracked(|engine| async move {
                    let (flow_id, step_id) = (&work.flow_id, &work.step_id);
                    if let Err(error) = engine
                        .flow_command(flow_id, |tx| tx.resume_step(step_id))
                        .await
                    {
                        tracing::error!(%flow_id, %step_id, %error, "retry not started");
                    }
                });
            }
        }
    }
}
