//! Long-poll waiters: clients waiting for a flow to finish (`GET /engine/flow/{id}?wait=`).
//!
//! One feed subscriber per engine wakes the waiters of a flow (instead of every waiting client
//! receiving every event of the system). A wake means "look again": the flow ended, or the
//! subscriber missed events and cannot tell; a flow still running is waited for again until the
//! client's wait has passed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use argyll_events::{AggregateId, Event, EventEnvelope, FlowEvent};
use argyll_model::FlowState;
use argyll_store::Store;
use parking_lot::Mutex;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;

use super::{Engine, EngineError};

/// A waiting client: its ticket (to leave the list) and how to wake it.
type Waiter = (u64, oneshot::Sender<()>);

/// The clients waiting, by flow id, and whether the loop that wakes them runs.
#[derive(Default)]
pub(super) struct Waiters {
    by_flow: Mutex<HashMap<String, Vec<Waiter>>>,
    next_ticket: AtomicU64,
    loop_running: Arc<AtomicBool>,
}

impl Waiters {
    fn wake_flow(&self, flow_id: &str) {
        let woken = self.by_flow.lock().remove(flow_id);
        for (_, wake) in woken.into_iter().flatten() {
            let _ = wake.send(());
        }
    }

    fn wake_all(&self) {
        let all: Vec<_> = self.by_flow.lock().drain().collect();
        for (_, wake) in all.into_iter().flat_map(|(_, list)| list) {
            let _ = wake.send(());
        }
    }

    fn forget(&self, flow_id: &str, ticket: u64) {
        let mut by_flow = self.by_flow.lock();
        if let Some(list) = by_flow.get_mut(flow_id) {
            list.retain(|(t, _)| *t != ticket);
            if list.is_empty() {
                by_flow.remove(flow_id);
            }
        }
    }
}

/// Marks the waiter loop stopped however it ends (its feed closed, or shutdown dropped it).
struct LoopRunning(Arc<AtomicBool>);

impl Drop for LoopRunning {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn is_terminal_event_of(envelope: &EventEnvelope) -> Option<&str> {
    let terminal = matches!(
        &envelope.event,
        Event::Flow(FlowEvent::FlowCompleted(_) | FlowEvent::FlowFailed(_))
    );
    match &envelope.aggregate_id {
        AggregateId::Flow(flow_id) if terminal => Some(flow_id),
        _ => None,
    }
}

impl<S: Store> Engine<S> {
    /// Waits until the flow is terminal or `wait` has passed, then returns its state (`None`
    /// for an unknown flow).
    pub async fn wait_for_flow(
        &self,
        flow_id: &str,
        wait: Duration,
    ) -> Result<Option<FlowState>, EngineError> {
        let waiters = &self.inner.waiters;
        if !waiters.loop_running.load(Ordering::SeqCst) {
            return self.wait_on_own_subscription(flow_id, wait).await;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (wake, woken) = oneshot::channel();
            let ticket = waiters.next_ticket.fetch_add(1, Ordering::Relaxed);
            waiters
                .by_flow
                .lock()
                .entry(flow_id.to_owned())
                .or_default()
                .push((ticket, wake));
            let state = self.flow(flow_id).await;
            let finished = match &state {
                Ok(Some(flow)) => flow.is_terminal(),
                _ => true,
            };
            let woken_in_time = !finished && tokio::time::timeout_at(deadline, woken).await.is_ok();
            waiters.forget(flow_id, ticket);
            if finished {
                return state;
            }
            if !woken_in_time {
                return self.flow(flow_id).await;
            }
        }
    }

    /// Starts the loop that wakes waiters, on a feed subscribed by the caller.
    pub(super) fn start_waiter_loop(&self, feed: Receiver<Arc<EventEnvelope>>) {
        let running = self.inner.waiters.loop_running.clone();
        running.store(true, Ordering::SeqCst);
        let running = LoopRunning(running);
        self.spawn_background(|engine| async move {
            let _running = running;
            engine.waiter_loop(feed).await;
        });
    }

    /// Wakes the waiters of flows whose terminal event appears on the feed (any instance's).
    async fn waiter_loop(&self, mut feed: Receiver<Arc<EventEnvelope>>) {
        let waiters = &self.inner.waiters;
        loop {
            match feed.recv().await {
                Ok(envelope) => {
                    if let Some(flow_id) = is_terminal_event_of(&envelope) {
                        waiters.wake_flow(flow_id);
                    }
                }
                // Events were missed: every waiter looks again.
                Err(RecvError::Lagged(_)) => waiters.wake_all(),
                Err(RecvError::Closed) => return,
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
                        if is_terminal_event_of(&envelope) == Some(flow_id) {
                            return self.flow(flow_id).await;
                        }
                    }
                    Ok(Err(RecvError::Lagged(_))) => break,
                    Ok(Err(RecvError::Closed)) => return self.flow(flow_id).await,
                }
            }
        }
    }
}
