//! [`Clock`]: where the time comes from. The engine stamps events, leases and retry timers
//! with it and the archiver ages flows by it; stores take the time from their callers. The
//! system clock runs the product; a [`ManualClock`] lets a test set the time instead of waiting
//! for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argyll_model::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
            });
        Timestamp::from_unix_nanos(nanos)
    }
}

/// A clock that stands still until it is moved; clones share one time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    unix_nanos: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn starting_at(start: Timestamp) -> Self {
        ManualClock {
            unix_nanos: Arc::new(AtomicI64::new(start.unix_nanos().unwrap_or(0))),
        }
    }

    /// A clock showing the system's time now (then standing still).
    pub fn starting_now() -> Self {
        Self::starting_at(SystemClock.now())
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.unix_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_nanos(self.unix_nanos.load(Ordering::SeqCst))
    }
}

/// The clock of the product.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::starting_at(Timestamp::from_unix_millis(1_000));
        let other = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_unix_millis(1_000));
        other.advance(Duration::from_millis(250));
        assert_eq!(clock.now(), Timestamp::from_unix_millis(1_250));
    }

    #[test]
    fn the_system_clock_is_after_2020() {
        assert!(SystemClock.now() > Timestamp::from_unix_millis(1_577_836_800_000));
    }
}
