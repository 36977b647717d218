//! Start and graceful shutdown. Every task the engine spawns is tracked by one
//! [`TaskTracker`]: background loops end when the [`CancellationToken`] is cancelled, work and
//! the commands that follow from it run to their end, and [`Engine::shutdown`] waits for all
//! of them (up to its grace period) without polling.

use std::future::Future;
use std::time::Duration;

use argyll_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Engine, EngineError};

/// The engine's tasks and its stop signal.
#[derive(Default)]
pub(super) struct Lifecycle {
    tasks: TaskTracker,
    stopping: CancellationToken,
}

impl<S: Store> Engine<S> {
    /// Recovers unfinished flows (re-dispatching work whose executor is gone, starting what is
    /// due) and starts the background loops: retry timers, lapsed leases, health checks,
    /// retention.
    pub async fn start(&self) -> Result<(), EngineError> {
        // Subscribed before waiters may rely on it, so no terminal event falls in between.
        let feed = self.inner.store.subscribe();
        self.start_waiter_loop(feed);
        self.recover().await?;
        self.spawn_background(|engine| async move { engine.timer_loop().await });
        self.spawn_background(|engine| async move { engine.lease_loop().await });
        self.spawn_background(|engine| async move { engine.health_loop().await });
        self.spawn_background(|engine| async move { engine.retention_loop().await });
        Ok(())
    }

    /// Stops the loops, lets running work finish (up to `grace`) and releases its leases.
    pub async fn shutdown(&self, grace: Duration) {
        let lifecycle = &self.inner.lifecycle;
        lifecycle.stopping.cancel();
        lifecycle.tasks.close();
        let _ = tokio::time::timeout(grace, lifecycle.tasks.wait()).await;
    }

    /// Whether [`Engine::shutdown`] has begun: no new work is started, running work finishes.
    pub fn is_stopping(&self) -> bool {
        self.inner.lifecycle.stopping.is_cancelled()
    }

    /// Runs `task` to its end in the background: a graceful shutdown waits for it.
    pub(super) fn spawn_tracked<F, Fut>(&self, task: F)
    where
        F: FnOnce(Engine<S>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Boxed: work futures are large (a step call's whole state machine), and a task's
        // future is moved several times while it is spawned; a box moves as a pointer.
        let running = Box::pin(task(self.clone()));
        self.inner.lifecycle.tasks.spawn(running);
    }

    /// Runs `task` in the background until it ends or shutdown begins.
    pub(super) fn spawn_background<F, Fut>(&self, task: F)
    where
        F: FnOnce(Engine<S>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stopping = self.inner.lifecycle.stopping.clone();
        let running = Box::pin(task(self.clone()));
        self.inner.lifecycle.tasks.spawn(async move {
            stopping.run_until_cancelled(running).await;
        });
    }
}
