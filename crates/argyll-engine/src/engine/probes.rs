//! When to check a step's health again, and waiting for that check.
//!
//! Services built with the original SDKs register their steps and only then start listening,
//! so the check made at registration fails ("connection refused"). Checked again only at the
//! next periodic round (30 s), such a step kept every flow waiting half a minute. Here a failed
//! check is followed by re-checks after 1 s, 2 s, 4 s… up to the periodic interval, and work
//! that meets an unhealthy step waits for one more check before the retry policy hears of it
//! (decision 15 still holds: an unhealthy step's work is not sent).
//!
//! Checks of one step never overlap and start at least [`MIN_GAP`] apart: callers that ask for
//! a check while one is running (or just ran) share it.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

/// Shortest time between the starts of two checks of one step.
pub(super) const MIN_GAP: Duration = Duration::from_secs(1);
/// First delay of the re-checks after a failed check; it doubles up to the periodic interval.
const FIRST_RECHECK: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Probe {
    /// Counts finished checks; waiters wait for it to move.
    finished: Option<watch::Sender<u64>>,
    running: bool,
    last_started: Option<Instant>,
    failures: u32,
    recheck_scheduled: bool,
}

impl Probe {
    fn finished(&mut self) -> &watch::Sender<u64> {
        self.finished.get_or_insert_with(|| watch::channel(0).0)
    }
}

/// Health-check bookkeeping of every step, shared by the checks and the dispatch gate.
#[derive(Default)]
pub(super) struct HealthProbes {
    probes: Mutex<HashMap<String, Probe>>,
}

impl HealthProbes {
    fn with<T>(&self, step_id: &str, f: impl FnOnce(&mut Probe) -> T) -> T {
        let mut probes = self.probes.lock();
        f(probes.entry(step_id.to_owned()).or_default())
    }

    /// Claims the next check of `step_id`: how long to wait before making it (to keep
    /// [`MIN_GAP`]), or `None` when a check is already running or waiting to run (its result
    /// serves this caller too).
    pub(super) fn begin(&self, step_id: &str) -> Option<Duration> {
        self.with(step_id, |probe| {
            if probe.running {
                return None;
            }
            probe.running = true;
            let now = Instant::now();
            let wait = probe.last_started.map_or(Duration::ZERO, |last| {
                (last + MIN_GAP).saturating_duration_since(now)
            });
            probe.last_started = Some(now + wait);
            Some(wait)
        })
    }

    /// Records the result of the check claimed by [`HealthProbes::begin`] and wakes the
    /// waiters. After a failure, returns when to check again (1 s, 2 s, 4 s… capped at
    /// `interval`) unless a re-check is already scheduled.
    pub(super) fn finish(
        &self,
        step_id: &str,
        healthy: bool,
        interval: Duration,
    ) -> Option<Duration> {
        self.with(step_id, |probe| {
            probe.running = false;
            probe.finished().send_modify(|count| *count += 1);
            if healthy {
                probe.failures = 0;
                return None;
            }
            probe.failures = probe.failures.saturating_add(1);
            if probe.recheck_scheduled {
                return None;
            }
            probe.recheck_scheduled = true;
            let doubling = 2u32.saturating_pow(probe.failures.saturating_sub(1).min(16));
            Some(FIRST_RECHECK.saturating_mul(doubling).min(interval))
        })
    }

    /// A scheduled re-check is due (so another may be scheduled after it).
    pub(super) fn recheck_due(&self, step_id: &str) {
        self.with(step_id, |probe| probe.recheck_scheduled = false);
    }

    /// Waits until a check of `step_id` finishes after this call (one may have to be started by
    /// the caller: call [`HealthProbes::begin`] after this), at most `patience`.
    pub(super) fn next_result(
        &self,
        step_id: &str,
        patience: Duration,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut finished = self.with(step_id, |probe| probe.finished().subscribe());
        let seen = *finished.borrow_and_update();
        async move {
            let _ = tokio::time::timeout(patience, finished.wait_for(|count| *count > seen)).await;
        }
    }

    /// Forgets `step_id` (unregistered).
    pub(super) fn forget(&self, step_id: &str) {
        self.probes.lock().remove(step_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn checks_do_not_overlap_and_keep_their_gap() {
        let probes = HealthProbes::default();
        assert_eq!(probes.begin("s"), Some(Duration::ZERO));
        assert_eq!(probes.begin("s"), None, "one check at a time");
        assert_eq!(probes.finish("s", true, Duration::from_secs(30)), None);
        let wait = probes.begin("s").unwrap();
        assert!(wait > Duration::ZERO && wait <= MIN_GAP, "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_checks_are_retried_sooner_then_at_the_interval() {
        let probes = HealthProbes::default();
        let interval = Duration::from_secs(30);
        let mut delays = Vec::new();
        for _ in 0..7 {
            probes.begin("s");
            delays.push(probes.finish("s", false, interval).unwrap());
            probes.recheck_due("s");
        }
        let seconds: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 30, 30]);
        // One re-check at a time; a success resets the backoff.
        probes.begin("s");
        assert_eq!(probes.finish("s", false, interval), Some(interval));
        probes.begin("s");
        assert_eq!(probes.finish("s", false, interval), None);
        probes.recheck_due("s");
        probes.begin("s");
        assert_eq!(probes.finish("s", true, interval), None);
        probes.begin("s");
        assert_eq!(
            probes.finish("s", false, interval),
            Some(Duration::from_secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_wake_on_the_next_finished_check() {
        let probes = std::sync::Arc::new(HealthProbes::default());
        let waiting = probes.next_result("s", Duration::from_secs(3600));
        let checker = probes.clone();
        let check = tokio::spawn(async move {
            checker.begin("s");
            checker.finish("s", true, Duration::from_secs(30));
        });
        waiting.await;
        check.await.unwrap();
        // A check that finished before the wait began does not count.
        let started = Instant::now();
        probes.next_result("s", Duration::from_secs(5)).await;
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(5),
            "waited out its patience"
        );
    }
}
