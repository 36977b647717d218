//! The typed identity of a work item in the store: its lease key and its retry timer.
//!
//! Both are strings in the store (`work/["flow","step","token"]` and
//! `retry/["flow","step","token"]`); the flow id, step id and token are packed as a JSON array
//! because child flow ids contain `:` and `/`. The text form is persisted (leases and timers
//! outlive a process and are read by other instances), so it must not change.

use std::fmt;
use std::str::FromStr;

/// Which work item a lease or timer is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WorkKey {
    pub(crate) flow_id: String,
    pub(crate) step_id: String,
    pub(crate) token: String,
}

/// The prefix of every work lease key (the lease loop asks the store for lapsed ones).
pub(crate) const WORK_LEASE_PREFIX: &str = "work/";
const RETRY_TIMER_PREFIX: &str = "retry/";

/// A work key's text could not be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a work key: {0}")]
pub(crate) struct BadWorkKey(String);

impl WorkKey {
    pub(crate) fn new(flow_id: &str, step_id: &str, token: &str) -> Self {
        WorkKey {
            flow_id: flow_id.to_owned(),
            step_id: step_id.to_owned(),
            token: token.to_owned(),
        }
    }

    /// The key of the item's lease.
    pub(crate) fn lease(&self) -> String {
        self.to_string()
    }

    /// The timer that resumes the item's step when its retry is due.
    pub(crate) fn retry_timer(&self) -> RetryTimer {
        RetryTimer(self.clone())
    }

    fn fmt_with(&self, prefix: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [&self.flow_id, &self.step_id, &self.token];
        let json = serde_json::to_string(&parts).map_err(|_| fmt::Error)?;
        write!(f, "{prefix}{json}")
    }

    fn parse_with(prefix: &str, text: &str) -> Result<Self, BadWorkKey> {
        let bad = || BadWorkKey(text.to_owned());
        let json = text.strip_prefix(prefix).ok_or_else(bad)?;
        let [flow_id, step_id, token]: [String; 3] =
            serde_json::from_str(json).map_err(|_| bad())?;
        Ok(WorkKey {
            flow_id,
            step_id,
            token,
        })
    }
}

/// The lease key: `work/["flow","step","token"]`.
impl fmt::Display for WorkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_with(WORK_LEASE_PREFIX, f)
    }
}

impl FromStr for WorkKey {
    type Err = BadWorkKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        WorkKey::parse_with(WORK_LEASE_PREFIX, text)
    }
}

/// A retry timer of a work item: its key and its payload are both `retry/[…]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RetryTimer(pub(crate) WorkKey);

impl fmt::Display for RetryTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_with(RETRY_TIMER_PREFIX, f)
    }
}

impl FromStr for RetryTimer {
    type Err = BadWorkKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        WorkKey::parse_with(RETRY_TIMER_PREFIX, text).map(RetryTimer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_text_form_is_the_one_already_in_stores() {
        let key = WorkKey::new("parent:step:tok/1", "s", "t");
        assert_eq!(key.lease(), r#"work/["parent:step:tok/1","s","t"]"#);
        assert_eq!(
            key.retry_timer().to_string(),
            r#"retry/["parent:step:tok/1","s","t"]"#
        );
    }

    #[test]
    fn a_lease_key_is_not_a_timer_and_junk_is_neither() {
        let lease = WorkKey::new("f", "s", "t").lease();
        assert!(lease.parse::<RetryTimer>().is_err());
        assert!("work/[\"f\",\"s\"]".parse::<WorkKey>().is_err());
        assert!("work/not json".parse::<WorkKey>().is_err());
        assert!("".parse::<WorkKey>().is_err());
    }

    proptest! {
        #[test]
        fn keys_round_trip(flow in ".*", step in ".*", token in ".*") {
            let key = WorkKey::new(&flow, &step, &token);
            prop_assert_eq!(key.lease().parse::<WorkKey>(), Ok(key.clone()));
            let timer = key.retry_timer();
            prop_assert_eq!(timer.to_string().parse::<RetryTimer>(), Ok(timer));
        }
    }
}
