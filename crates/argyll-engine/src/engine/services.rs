//! The [`FlowServices`] the pure decision core calls from inside a flow transaction:
//! predicates and quick script items (under the quick budget), the memo cache, retry policies,
//! tokens and the bounds. Also the helper that moves heavy CPU work off the async worker.

use std::collections::HashMap;
use std::sync::Arc;

use argyll_model::{Args, Step, StepType, args_hash};
use argyll_retry::RetryPolicy;
use argyll_script::{Phase, ScriptError, ScriptLimits, ScriptRunner};
use argyll_store::Store;
use parking_lot::Mutex;
use serde_json::Value;

use super::Engine;
use crate::flow::{FlowServices, PredicateCheck, QuickFailure};
use crate::runner::script_arg_names;

/// What the services own: the script runner (and its compile cache) and the memo cache.
pub(super) struct ServiceParts {
    pub(super) scripts: Arc<ScriptRunner>,
    memo: moka::sync::Cache<String, Args>,
}

impl ServiceParts {
    pub(super) fn new(scripts: Arc<ScriptRunner>, memo_entries: u64) -> Self {
        ServiceParts {
            scripts,
            memo: moka::sync::Cache::new(memo_entries.max(1)),
        }
    }
}

impl<S: Store> Engine<S> {
    /// The services of one flow transaction.
    pub(super) fn services(&self) -> Services<'_> {
        let config = &self.inner.config;
        Services {
            scripts: &self.inner.services.scripts,
            memo: &self.inner.services.memo,
            retry: &config.retry,
            quick_script_budget: config.quick_script_budget.as_ref(),
            max_work_items: config.max_work_items,
            min_retry_delay_ms: u64::try_from(config.min_retry_delay.as_millis())
                .unwrap_or(u64::MAX),
            max_state_bytes: config.max_state_bytes,
            predicates: Mutex::default(),
        }
    }
}

/// [`FlowServices`] over the engine's parts and settings.
pub(super) struct Services<'a> {
    scripts: &'a ScriptRunner,
    memo: &'a moka::sync::Cache<String, Args>,
    retry: &'a RetryPolicy,
    quick_script_budget: Option<&'a ScriptLimits>,
    max_work_items: usize,
    min_retry_delay_ms: u64,
    max_state_bytes: u64,
    /// The predicate checks this command made, by step and inputs.
    predicates: Mutex<HashMap<(String, String), PredicateCheck>>,
}

/// The failure message of a predicate that did not compile or failed (the step's error).
pub(super) fn predicate_failure(error: ScriptError) -> String {
    match error.phase {
        Phase::Compile => format!("predicate compilation failed: {}", error.message),
        _ => format!("predicate evaluation failed: {}", error.message),
    }
}

impl FlowServices for Services<'_> {
    fn evaluate_predicate(&self, step: &Step, inputs: &Args) -> PredicateCheck {
        let Some(predicate) = step.predicate.as_ref() else {
            return PredicateCheck::Decided(Ok(true));
        };
        // A command re-run after a write conflict asks again: the first answer stands
        // (predicates are pure), so a predicate costs its budget once per command.
        let key = (step.id.clone(), args_hash(inputs));
        if let Some(known) = self.predicates.lock().get(&key) {
            return known.clone();
        }
        // Decided inside the flow transaction, on an async worker, within the quick budget:
        // most predicates take microseconds. One that needs longer is evaluated on the
        // blocking pool under its full limits, outside the transaction.
        let quick = self.quick_script_budget.and_then(|budget| {
            self.scripts.evaluate_predicate_within(
                budget,
                predicate.language.as_str(),
                &predicate.script,
                &script_arg_names(step),
                inputs,
            )
        });
        let check = match quick {
            Some(result) => PredicateCheck::Decided(result.map_err(predicate_failure)),
            None => PredicateCheck::Deferred,
        };
        self.predicates.lock().insert(key, check.clone());
        check
    }

    fn memo_lookup(&self, step: &Step, inputs: &Args) -> Option<Args> {
        self.memo.get(&memo_key(step, inputs))
    }

    fn memo_store(&self, step: &Step, inputs: &Args, outputs: &Args) {
        let key = memo_key(step, inputs);
        if !self.memo.contains_key(&key) {
            self.memo.insert(key, outputs.clone());
        }
    }

    fn retry_policy(&self, step: &Step) -> RetryPolicy {
        RetryPolicy::for_step(step.work_config.as_ref(), self.retry)
    }

    fn new_token(&self) -> String {
        uuid::Uuid::new_v4().to_string()
    }

    fn max_work_items(&self) -> usize {
        self.max_work_items
    }

    fn min_retry_delay_ms(&self) -> u64 {
        self.min_retry_delay_ms
    }

    fn max_state_bytes(&self) -> u64 {
        self.max_state_bytes
    }

    fn run_script_quickly(&self, step: &Step, inputs: &Args) -> Option<Result<Args, String>> {
        let budget = self.quick_script_budget?;
        let script = step
            .script
            .as_ref()
            .filter(|_| step.step_type == StepType::Script)?;
        self.scripts
            .execute_within(
                budget,
                script.language.as_str(),
                &script.script,
                &script_arg_names(step),
                inputs,
            )
            .map(|result| result.map_err(|error| error.message))
    }
}

/// Logs the script items a committed transaction ran and failed, as a dispatched item's
/// failure is logged.
pub(super) fn log_quick_failures(flow_id: &str, failures: &[QuickFailure]) {
    for failure in failures {
        tracing::error!(%flow_id, step_id = %failure.step_id, token = %failure.token, error = %failure.error, "step execution failed");
    }
}

fn memo_key(step: &Step, inputs: &Args) -> String {
    format!("{}:{}", step.hash_key(), args_hash(inputs))
}

/// Elements above which an init value counts as large (see [`offload_if`]).
const LARGE_VALUE: usize = 512;

pub(super) fn is_large_value(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.len() > LARGE_VALUE,
        Value::Object(fields) => fields.len() > LARGE_VALUE,
        _ => false,
    }
}

/// Runs CPU-heavy `work` under `block_in_place` when `heavy` (see [`offload`]); otherwise
/// inline, without asking the runtime (this is on a hot path).
pub(super) fn offload_if<T>(heavy: bool, work: impl FnOnce() -> T) -> T {
    if heavy { offload(work) } else { work() }
}

/// Runs CPU-heavy `work` under `block_in_place` when the runtime has other workers to take
/// this one's tasks, so that a fan-out of 100,000 items does not hold up the requests queued
/// behind it; otherwise inline.
pub(super) fn offload<T>(work: impl FnOnce() -> T) -> T {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(work)
    } else {
        work()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use argyll_model::{ScriptConfig, ScriptLanguage};
    use argyll_script::{Attributes, CompiledScript, LimitKind, ScriptEngine};

    use super::*;

    /// An "ale" whose predicates count their runs and need more than 1,000,000 steps.
    struct Counting(Arc<AtomicUsize>);

    impl ScriptEngine for Counting {
        fn language(&self) -> &'static str {
            "ale"
        }

        fn compile(
            &self,
            _source: &str,
            _arg_names: &[String],
        ) -> Result<Arc<dyn CompiledScript>, ScriptError> {
            Ok(Arc::new(Counting(self.0.clone())))
        }
    }

    impl CompiledScript for Counting {
        fn execute(
            &self,
            _inputs: &Attributes,
            _limits: &ScriptLimits,
        ) -> Result<Attributes, ScriptError> {
            Ok(Attributes::new())
        }

        fn evaluate_predicate(
            &self,
            _inputs: &Attributes,
            limits: &ScriptLimits,
        ) -> Result<bool, ScriptError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            if limits.steps < 1_000_000 {
                return Err(ScriptError::limit(LimitKind::Steps, "step limit exceeded"));
            }
            Ok(true)
        }
    }

    #[test]
    fn a_predicate_over_the_quick_budget_is_deferred_and_not_run_again_by_a_rerun_command() {
        let runs = Arc::new(AtomicUsize::new(0));
        let scripts = ScriptRunner::with_engines(
            ScriptLimits::default(),
            vec![Arc::new(Counting(runs.clone()))],
        );
        let memo = moka::sync::Cache::new(8);
        let retry = RetryPolicy::never();
        let budget = crate::QUICK_SCRIPT_BUDGET;
        let services = Services {
            scripts: &scripts,
            memo: &memo,
            retry: &retry,
            quick_script_budget: Some(&budget),
            max_work_items: 10,
            min_retry_delay_ms: 0,
            max_state_bytes: 1 << 20,
            predicates: Mutex::default(),
        };
        let mut step = Step::new("s", "s", StepType::Sync);
        step.predicate = Some(ScriptConfig::new(ScriptLanguage::Ale, "slow"));
        let inputs = Args::new();
        assert_eq!(
            services.evaluate_predicate(&step, &inputs),
            PredicateCheck::Deferred
        );
        // The command is re-run after a write conflict: the first answer stands.
        assert_eq!(
            services.evaluate_predicate(&step, &inputs),
            PredicateCheck::Deferred
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
