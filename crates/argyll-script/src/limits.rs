//! Budgets for one script run (contract decision 17) and how they are configured.

use std::time::Duration;

/// Budgets for one run of a script or predicate. Exceeding one fails the run with an error of
/// phase [`crate::Phase::Limit`] naming the limit; the process keeps running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Lua: memory of the interpreter state. Ale: live memory of the run (when the process
    /// installs `argyll_ale::MeteredAlloc`) and bytes of any value written out (`str`, outputs).
    pub memory_bytes: usize,
    /// Lua VM instructions or Ale evaluation steps.
    pub steps: u64,
    /// Wall-clock time of one run.
    pub timeout: Duration,
}

impl Default for ScriptLimits {
    /// 64 MiB, 10⁸ steps, 1 s.
    fn default() -> Self {
        ScriptLimits {
            memory_bytes: 64 * 1024 * 1024,
            steps: 100_000_000,
            timeout: Duration::from_secs(1),
        }
    }
}

/// A configuration variable with a value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}={value:?}: {reason}")]
pub struct LimitConfigError {
    /// The variable's name.
    pub variable: &'static str,
    /// Its value as given.
    pub value: String,
    /// Why it was refused.
    pub reason: String,
}

impl ScriptLimits {
    /// Reads `SCRIPT_MEMORY_LIMIT_MB` (MiB), `SCRIPT_STEP_LIMIT` (count) and `SCRIPT_TIMEOUT`
    /// (milliseconds, or a number with `ms`/`s`/`m` suffix) through `lookup`; an unset variable
    /// keeps its default, a malformed or zero one is an error naming it.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, LimitConfigError> {
        let mut limits = ScriptLimits::default();
        if let Some(value) = lookup("SCRIPT_MEMORY_LIMIT_MB") {
            let mib = positive("SCRIPT_MEMORY_LIMIT_MB", &value)?;
            limits.memory_bytes = usize::try_from(mib)
                .ok()
                .and_then(|mib| mib.checked_mul(1024 * 1024))
                .ok_or_else(|| invalid("SCRIPT_MEMORY_LIMIT_MB", &value, "too large"))?;
        }
        if let Some(value) = lookup("SCRIPT_STEP_LIMIT") {
            limits.steps = positive("SCRIPT_STEP_LIMIT", &value)?;
        }
        if let Some(value) = lookup("SCRIPT_TIMEOUT") {
            limits.timeout = parse_duration("SCRIPT_TIMEOUT", &value)?;
        }
        Ok(limits)
    }
}

fn invalid(variable: &'static str, value: &str, reason: &str) -> LimitConfigError {
    LimitConfigError {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn positive(variable: &'static str, value: &str) -> Result<u64, LimitConfigError> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(invalid(variable, value, "must be greater than zero")),
        Ok(n) => Ok(n),
        Err(_) => Err(invalid(variable, value, "expected a whole number")),
    }
}

fn parse_duration(variable: &'static str, value: &str) -> Result<Duration, LimitConfigError> {
    let text = value.trim();
    let (number, unit_ms) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000)
    } else {
        (text, 1)
    };
    let n = positive(variable, number.trim()).map_err(|_| {
        invalid(
            variable,
            value,
            "expected milliseconds, or a number with ms, s or m",
        )
    })?;
    n.checked_mul(unit_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| invalid(variable, value, "too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn unset_variables_keep_the_defaults() {
        assert_eq!(
            ScriptLimits::from_vars(vars(&[])).unwrap(),
            ScriptLimits::default()
        );
    }

    #[test]
    fn variables_set_the_limits() {
        let limits = ScriptLimits::from_vars(vars(&[
            ("SCRIPT_MEMORY_LIMIT_MB", "8"),
            ("SCRIPT_STEP_LIMIT", "5000"),
            ("SCRIPT_TIMEOUT", "2s"),
        ]))
        .unwrap();
        assert_eq!(
            limits,
            ScriptLimits {
                memory_bytes: 8 << 20,
                steps: 5000,
                timeout: Duration::from_secs(2)
            }
        );
        let plain = ScriptLimits::from_vars(vars(&[("SCRIPT_TIMEOUT", "250")])).unwrap();
        assert_eq!(plain.timeout, Duration::from_millis(250));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let error = ScriptLimits::from_vars(vars(&[("SCRIPT_STEP_LIMIT", "lots")])).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid SCRIPT_STEP_LIMIT=\"lots\": expected a whole number"
        );
        let error = ScriptLimits::from_vars(vars(&[("SCRIPT_MEMORY_LIMIT_MB", "0")])).unwrap_err();
        assert_eq!(error.variable, "SCRIPT_MEMORY_LIMIT_MB");
        let error = ScriptLimits::from_vars(vars(&[("SCRIPT_TIMEOUT", "1h")])).unwrap_err();
        assert_eq!(error.variable, "SCRIPT_TIMEOUT");
    }
}
